"""Pre-flight: is this machine ready for the course, and how long will each notebook take here?

``python -m mae_lesson.doctor`` prints one line per requirement (Python, torch, device, data,
checkpoints, widgets, write access) with the fix for anything missing, then times a few seconds of
training steps of the notebooks' model and scales the measured minutes of ``docs/minutes.json``
by this machine's speed. Exit status 1 when something the notebooks need is missing.

``docs/minutes.json`` holds the measured minutes and the speed of the machine they came from::

    {"machine": "...", "images_per_s_reference": 1234.5,
     "notebooks": {"00_welcome": {"quick": 0.2, "full": 0.7}, ...}}

``images_per_s_reference`` is what ``python -m mae_lesson.doctor --json`` reports as
``images_per_s`` on that machine, with the same thread count as the measured runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import Config
from .data import _idx_pair, fashion_mnist_sources
from .model import MAE
from .optim import WarmupCosine
from .engine import train_step
from .pretrained import DATA_DIR, pretrained_path
from .utils import get_device

ROOT = DATA_DIR.parent
MINUTES_FILE = ROOT / "docs" / "minutes.json"
# The shipped checkpoints the notebooks load by name.
NOTEBOOK_CHECKPOINTS = ("mae_fashion_mnist_tiny", "mae_fashion_mnist_p7", "mae_fashion_mnist_p7_e150")
MEASURE_CONFIG, MEASURE_BATCH = "fashion_mnist_tiny", 64  # the model and batch of 05's and 06's training cells
MIN_PYTHON = (3, 10)


@dataclass
class Check:
    """One requirement: whether it is met, what was found, and how to fix it if not."""

    name: str
    ok: bool
    found: str
    fix: str = ""
    needed: bool = True  # False: the course runs without it, only worse (slower, no progress bars)


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("python", sys.version_info[:2] >= MIN_PYTHON, version,
                 f"the course needs Python {'.'.join(map(str, MIN_PYTHON))} or newer")


def check_torch() -> Check:
    return Check("torch", True, f"{torch.__version__}, {torch.get_num_threads()} CPU threads")


def check_device() -> Check:
    device = get_device("auto")
    found = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    return Check("device", device.type != "cpu", found,
                 "no GPU: the notebooks run on the CPU (set MAE_LESSON_QUICK=1 on a slow laptop; on Colab "
                 "Runtime > Change runtime type > GPU)", needed=False)


def check_data(root: Path = DATA_DIR) -> Check:
    found = {split: next((folder for folder in fashion_mnist_sources(root) if _idx_pair(folder, split)), None)
             for split in ("train", "test")}
    missing = [split for split, folder in found.items() if folder is None]
    if not missing:
        return Check("data", True, f"Fashion-MNIST in {found['train']}")
    return Check("data", False, f"Fashion-MNIST {' and '.join(missing)} split not found",
                 f"sudo apt-get install dataset-fashion-mnist, or copy the four *-ubyte.gz files into "
                 f"{root / 'FashionMNIST' / 'raw'}, or run a notebook online (its data cell downloads them)")


def check_checkpoints(data_dir: Path = DATA_DIR) -> Check:
    missing = [name for name in NOTEBOOK_CHECKPOINTS if not pretrained_path(name, data_dir).is_file()]
    if not missing:
        return Check("checkpoints", True, f"{len(NOTEBOOK_CHECKPOINTS)} shipped checkpoints in {data_dir}")
    return Check("checkpoints", False, f"missing {', '.join(f'{n}.pt' for n in missing)}",
                 "they ship in the repository's data/ folder: clone the repository again (not a source "
                 "archive without data/), or git lfs pull if your mirror stores them with LFS")


def check_widgets() -> Check:
    try:
        widgets = importlib.import_module("ipywidgets")
    except ImportError:
        return Check("widgets", False, "ipywidgets not installed",
                     "pip install ipywidgets (without it progress bars print text lines)", needed=False)
    return Check("widgets", True, f"ipywidgets {widgets.__version__}")


def check_write_access(folders: tuple[Path, ...] = (ROOT, DATA_DIR)) -> Check:
    """The repository root (``runs/`` is made there) and ``data/`` (downloads) must take new files."""
    refused = []
    for folder in folders:
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
                pass
        except OSError:
            refused.append(str(folder))
    if not refused:
        return Check("write access", True, ", ".join(str(f) for f in folders))
    return Check("write access", False, f"cannot write in {', '.join(refused)}",
                 "work in a copy you own (git clone it into your home folder)")


def run_checks() -> list[Check]:
    return [check_python(), check_torch(), check_device(), check_data(), check_checkpoints(), check_widgets(),
            check_write_access()]


def measure_images_per_s(seconds: float = 3.0, device: str | torch.device = "auto",
                         batch_size: int = MEASURE_BATCH) -> float:
    """Training images per second of the notebooks' model (``fashion_mnist_tiny``) on random images.

    Two warm-up steps (allocation, kernel choice), then steps until ``seconds`` have passed.
    """
    device = get_device(device)
    generator = torch.Generator().manual_seed(0)
    model = MAE(Config.from_file(MEASURE_CONFIG)).to(device).train()
    size, chans = model.config.img_size, model.config.in_chans
    imgs = torch.randn(batch_size, chans, size, size, generator=generator).to(device)
    noise = model.mask_noise(batch_size, generator=generator).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    schedule = WarmupCosine(optimizer, 1e-4, 10**6, 0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        train_step(model, optimizer, schedule, [(imgs, noise)])
    sync()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        train_step(model, optimizer, schedule, [(imgs, noise)])
        steps += 1
    sync()
    return steps * batch_size / (time.perf_counter() - start)


def read_minutes(path: Path = MINUTES_FILE) -> dict | None:
    """The measured minutes file, or None when absent; a malformed one raises naming what is wrong."""
    if not path.is_file():
        return None
    table = json.loads(path.read_text(encoding="utf-8"))
    reference = table.get("images_per_s_reference")
    if not isinstance(reference, (int, float)) or reference <= 0 or not isinstance(table.get("notebooks"), dict):
        raise ValueError(f"{path}: expected {{\"images_per_s_reference\": <positive number>, \"notebooks\": "
                         f"{{\"00_welcome\": {{\"quick\": min, \"full\": min}}, ...}}}}; fix or delete the file")
    return table


def predict_minutes(table: dict, images_per_s: float) -> dict[str, dict[str, float]]:
    """Each notebook's measured minutes scaled by (reference speed / this machine's speed)."""
    factor = table["images_per_s_reference"] / images_per_s
    return {name: {mode: minutes * factor for mode, minutes in modes.items() if isinstance(minutes, (int, float))}
            for name, modes in table["notebooks"].items()}


def report(checks: list[Check], images_per_s: float | None, table: dict | None, minutes_path: Path) -> str:
    lines = []
    for c in checks:
        status = "ok" if c.ok else ("MISSING" if c.needed else "note")
        lines.append(f"{status:<8}{c.name:<14}{c.found}" + (f"\n{'':22}-> {c.fix}" if not c.ok else ""))
    if images_per_s is None:
        return "\n".join(lines)
    lines.append(f"\nspeed: {images_per_s:,.0f} training images/s ({MEASURE_CONFIG}, batch {MEASURE_BATCH}, "
                 f"{torch.get_num_threads()} threads, {get_device('auto')})")
    if table is None:
        lines.append(f"no {minutes_path.name} at {minutes_path}: no measured minutes to scale")
        return "\n".join(lines)
    factor = table["images_per_s_reference"] / images_per_s
    machine = table.get("machine", "the reference machine")
    if isinstance(machine, dict):  # as tools/run_notebooks.py records it
        machine = f"{machine.get('cpu', 'a CPU')} ({machine.get('cores')} cores, {machine.get('torch_threads')} threads)"
    lines.append(f"predicted minutes here: the minutes measured on {machine} "
                 f"x {factor:.2f} (rough: downloads and reading time are not included)")
    lines.append(f"  {'notebook':<24}{'quick':>7}{'full':>7}")
    predicted = predict_minutes(table, images_per_s)
    for name, modes in predicted.items():
        cells = "".join(f"{modes[m]:>7.1f}" if m in modes else f"{'-':>7}" for m in ("quick", "full"))
        lines.append(f"  {name:<24}{cells}")
    totals = [sum(m.get(mode, 0.0) for m in predicted.values()) for mode in ("quick", "full")]
    lines.append(f"  {'all notebooks':<24}{totals[0]:>7.1f}{totals[1]:>7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mae_lesson.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the speed measurement (default 3)")
    parser.add_argument("--no-measure", action="store_true", help="only the checks, no speed measurement")
    parser.add_argument("--minutes", type=Path, default=MINUTES_FILE, help="measured minutes (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the checks and images_per_s as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds}")
    checks = run_checks()
    try:
        table = read_minutes(args.minutes)
    except (ValueError, json.JSONDecodeError) as err:
        parser.error(str(err))
    images_per_s = None if args.no_measure else measure_images_per_s(args.seconds)
    if args.json:
        print(json.dumps({"checks": [asdict(c) for c in checks], "images_per_s": images_per_s,
                          "threads": torch.get_num_threads(), "device": str(get_device("auto")),
                          "predicted_minutes": predict_minutes(table, images_per_s) if table and images_per_s else None},
                         indent=1))
    else:
        print(report(checks, images_per_s, table, args.minutes))
    return 1 if any(c.needed and not c.ok for c in checks) else 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
