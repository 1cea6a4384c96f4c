"""Issue 32, image folders: 16-bit pixels are scaled, float pixels refused by name, and links are
followed into each folder once (a link back up is no loop, no image counts twice)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mae_lesson.data import load_image_folder
from mae_lesson.errors import RunError

from conftest import run_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def folder_of(root: Path, count: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_sixteen_bit_greys_are_scaled_not_clipped(tmp_path):
    root = folder_of(tmp_path / "imgs")
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(root / "a" / "ramp16.png")
    assert Image.open(root / "a" / "ramp16.png").mode == "I;16"
    data = load_image_folder(root, img_size=8, in_chans=1)
    loaded = data.images[4, 0].numpy().astype(int)  # class a's files in name order: 0..3, then ramp16
    assert np.abs(loaded - ramp / 257).max() <= 1, loaded
    rgb = load_image_folder(root, img_size=8, in_chans=3).images[4].numpy().astype(int)
    assert np.abs(rgb - ramp / 257).max() <= 1


def test_float_pixels_are_refused_by_name(tmp_path):
    root = folder_of(tmp_path / "imgs")
    Image.fromarray(np.random.default_rng(1).random((8, 8)).astype(np.float32)).save(root / "b" / "depth.tiff")
    with pytest.warns(UserWarning, match=r"skipped 1 .*depth\.tiff \(32-bit float pixels"):
        data = load_image_folder(root, img_size=8, in_chans=1)
    assert len(data) == 8
    with pytest.raises(RunError, match=r"depth\.tiff"):
        load_image_folder(root, img_size=8, in_chans=1, strict=True)


LOAD = """
import json, resource, sys
from mae_lesson.data import load_image_folder
used = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) << 10
resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), used + (2 << 30)))  # a loop fails here, not the machine
data = load_image_folder(sys.argv[1], img_size=8, in_chans=1)
print(json.dumps({"images": len(data), "labels": data.labels.tolist()}))
"""


@pytest.mark.slow
def test_links_back_up_and_across_are_read_once(tmp_path):
    root = folder_of(tmp_path / "imgs")
    os.symlink("..", root / "a" / "up")           # a/up -> the root: a loop
    os.symlink("../a", root / "b" / "also_a")     # b/also_a -> a: a second way in, and a second loop
    os.symlink("0.png", root / "a" / "same.png")  # one image under two names
    done = subprocess.run([sys.executable, "-c", LOAD, str(root)], env=run_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout)
    assert loaded == {"images": 8, "labels": [0, 0, 0, 0, 1, 1, 1, 1]}


def in_mode(base: np.ndarray, mode: str) -> Image.Image:
    """The grey ramp ``base`` as a PIL image of ``mode`` (16-bit modes hold it times 257)."""
    if mode in ("I;16", "I;16B"):
        return Image.frombytes(mode, base.shape[::-1], (base.astype(np.uint16) * 257).astype(
            "<u2" if mode == "I;16" else ">u2").tobytes())
    if mode == "I":
        return Image.fromarray(base.astype(np.int32) * 257, "I")
    return Image.fromarray(base).convert("RGB").convert(mode)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV", "I;16", "I;16B", "I"])
def test_every_pixel_format_reads_as_the_same_picture(mode):
    from mae_lesson.data import eight_bit

    base = np.linspace(0, 255, 64).round().astype(np.uint8).reshape(8, 8)
    img = in_mode(base, mode)
    assert img.mode == mode
    for target, expected in (("L", base), ("RGB", base[..., None])):
        assert np.abs(np.asarray(eight_bit(img).convert(target)).astype(int) - expected).max() <= 1, (mode, target)


@pytest.mark.parametrize("mode, phrase", [("F", "32-bit float pixels"), ("LAB", "LAB"), ("La", "La")])
def test_pixel_formats_without_a_fixed_picture_are_refused_by_name(mode, phrase):
    from mae_lesson.data import eight_bit

    img = Image.fromarray(np.random.default_rng(0).random((8, 8)).astype(np.float32)) if mode == "F" else \
        in_mode(np.zeros((8, 8), dtype=np.uint8), mode)
    with pytest.raises(ValueError, match=phrase):
        eight_bit(img).convert("L")  # as a grey model loads it
