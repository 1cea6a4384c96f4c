"""The dataset files: where each dataset is found, how it is read, and the registry every command uses.

A dataset becomes an :class:`~mae_lesson.loader.ImageData` (uint8 images in memory); the batch
transforms and the :class:`~mae_lesson.loader.BatchLoader` over it are :mod:`mae_lesson.loader`'s, and
their names can be imported from here too (``from mae_lesson.data import BatchLoader, load_fashion_mnist``).

Fashion-MNIST is looked for, in order: ``data/`` (torchvision's layout), Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), then torchvision's
downloader when ``download=True``.
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import RunError
# The loader's names, importable from here as before the split (notebooks, tests, experiments).
from .loader import (MAX_SEED, SEED_STRIDE, BatchLoader, ImageData, check_seed, denormalize, eval_transform,  # noqa: F401
                     normalize, random_resized_crop_flip, size_hw)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Per-channel mean/std of the training images (pixels in [0, 1]).
NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# Names of unreadable images listed in a warning or an error before "and N more".
LIST_LIMIT = 10


# ----------------------------------------------------------------------------- Fashion-MNIST
def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (MNIST's format), gzipped or not; a damaged file is refused, naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
        ndim = raw[3]
        shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        if raw[:3] != b"\0\0\x08" or ndim not in (1, 3):
            raise ValueError("its header is not an idx file's of bytes")
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, EOFError, IndexError, ValueError, gzip.BadGzipFile) as exc:
        raise RunError(f"{path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'cut short'}"
                       f"): delete it and copy or download Fashion-MNIST again") from None


def _idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """Images and labels files of a split in ``folder`` (``.gz`` or not), if both exist."""
    prefix = "train" if split == "train" else "t10k"
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        names = [folder / f"{prefix}-{kind}", folder / f"{prefix}-{kind}.gz"]
        hit = next((p for p in names if p.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def fashion_mnist_sources(root: str | Path) -> list[Path]:
    """Folders searched for the raw idx files, in order."""
    root = Path(root)
    return [root / "FashionMNIST" / "raw", root / "fashion-mnist", DEBIAN_FASHION_MNIST]


def load_fashion_mnist(root: str | Path = "data", split: str = "train", download: bool = False) -> ImageData:
    """Fashion-MNIST as uint8 ``[N, 1, 28, 28]`` (60,000 train or 10,000 test images).

    Raises:
        FileNotFoundError: naming the three ways to get the data.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    for folder in fashion_mnist_sources(root):
        pair = _idx_pair(folder, split)
        if pair:
            images, labels = (torch.from_numpy(read_idx(p).copy()) for p in pair)
            break
    else:
        if not download:
            searched = ", ".join(str(f) for f in fashion_mnist_sources(root))
            raise FileNotFoundError(
                "Fashion-MNIST not found (searched " + searched + "). Get it one of three ways:\n"
                "  1. Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
                f"  2. copy the four *-ubyte.gz files into {Path(root) / 'FashionMNIST' / 'raw'}\n"
                "  3. online: pass download=True (or --download) to use torchvision's downloader"
            )
        from torchvision.datasets import FashionMNIST

        ds = FashionMNIST(str(root), train=split == "train", download=True)
        images, labels = ds.data, ds.targets
    mean, std = NORMALIZATION["fashion_mnist"]
    return ImageData(images.unsqueeze(1).contiguous(), labels.long(), FASHION_MNIST_CLASSES, mean, std)


# ---------------------------------------------------------------------------- other datasets
def load_cifar10(root: str | Path = "data", split: str = "train", download: bool = False) -> ImageData:
    """CIFAR-10 (torchvision's files under ``root``) as uint8 ``[N, 3, 32, 32]``."""
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as exc:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {root}: pass download=True (or --download) when online, "
            f"or copy cifar-10-batches-py into {root} ({exc})"
        ) from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    mean, std = NORMALIZATION["cifar10"]
    return ImageData(images, torch.tensor(ds.targets, dtype=torch.long), tuple(ds.classes), mean, std)


def _listing(bad: list[tuple[str, str]]) -> str:
    names = [f"{name} ({reason})" for name, reason in bad[:LIST_LIMIT]]
    return ", ".join(names) + (f" and {len(bad) - LIST_LIMIT} more" if len(bad) > LIST_LIMIT else "")


def load_image_folder(root: str | Path, img_size: int | tuple[int, int] = 32, in_chans: int = 3,
                      strict: bool = False) -> ImageData:
    """A folder of ``class_name/image.ext`` files, resized to ``img_size`` with ``in_chans`` channels
    (1: grey, 3: RGB), held in memory as uint8 ``[N, in_chans, H, W]``.

    Normalisation statistics are measured on the images themselves. Unreadable files (truncated,
    not an image) are skipped with a warning that names them; ``strict=True`` refuses the folder
    instead, listing them.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {str(root)!r} does not exist; expected root/<class>/<image> files")
    if in_chans not in (1, 3):
        raise ValueError(f"an image folder loads as 1 (grey) or 3 (RGB) channels; the config asks for in_chans={in_chans}")
    height, width = size_hw(img_size)
    classes, samples = image_files(root)
    if not samples:
        raise FileNotFoundError(f"No images found under {str(root)!r}")
    mode = "L" if in_chans == 1 else "RGB"
    arrays, labels, bad = [], [], []
    for path, label in samples:
        try:
            with Image.open(path) as img:
                img = eight_bit(img).convert(mode).resize((width, height), Image.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8).reshape(height, width, in_chans))
                labels.append(label)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            bad.append((str(Path(path).relative_to(root)), str(exc).splitlines()[0][:60] or type(exc).__name__))
    if bad and (strict or not arrays):
        raise RunError(f"{len(bad)} of {len(samples)} files in {root} are not readable images: {_listing(bad)}; "
                       f"remove or repair them" + ("" if strict else ", or point to another folder"))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable file(s) in {root}: {_listing(bad)}", stacklevel=2)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    pixels = images.float().div(255)
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    return ImageData(images, torch.tensor(labels, dtype=torch.long), tuple(classes), mean, std)


def image_files(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """``(classes, [(path, class index), ...])`` of ``root/<class>/**/<image>``, in torchvision ImageFolder's order.

    Links are followed, but into each folder only once and to each file only once: a link back up to
    the root or into another class's folder, or to a folder already read, adds nothing, so the walk ends,
    no image counts twice and each keeps its own class.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"No class folders under {str(root)!r}; expected root/<class>/<image> files")
    tops = [os.path.realpath(root / name) for name in classes]
    seen_dirs, seen_files, samples = {os.path.realpath(root), *tops}, set(), []
    for index, name in enumerate(classes):
        walked = []
        for folder, subfolders, files in os.walk(root / name, followlinks=True):
            walked.append((folder, files))
            keep = []
            for sub in subfolders:  # read each folder once: not a loop, not another class's, not twice
                real = os.path.realpath(os.path.join(folder, sub))
                if real not in seen_dirs:
                    seen_dirs.add(real)
                    keep.append(sub)
            subfolders[:] = keep
        for folder, files in sorted(walked):
            for file in sorted(files):
                path = os.path.join(folder, file)
                real = os.path.realpath(path)
                if file.lower().endswith(IMG_EXTENSIONS) and real not in seen_files and os.path.isfile(path):
                    seen_files.add(real)
                    samples.append((path, index))
    return classes, samples


# 16-bit greys (PNG, TIFF): Pillow's convert() would clip them to 255 instead of scaling them.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def eight_bit(img: Any) -> Any:
    """A PIL image whose pixels ``convert()`` reads right: 8-bit modes as they are, 16-bit greys scaled
    to 0-255; float pixels (no fixed range) and 32-bit integers beyond 16 bits are refused, naming the mode."""
    from PIL import Image

    if img.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{img.mode} pixels outside 0..65535: save it with 8 or 16 bits per channel")
        return Image.fromarray(np.round(values / 257).astype(np.uint8), "L")
    if img.mode == "F":
        raise ValueError("32-bit float pixels have no fixed range: save it with 8 or 16 bits per channel")
    return img


# A dataset is one entry: name -> loader(root, split, download) returning that split as ImageData
# (uint8 [N, C, H, W], labels, class names, the training images' per-channel mean/std). Every
# command (pretraining, the results table and probe, fine-tuning, the ablations) finds its data here.
DatasetLoader = Callable[[Path, str, bool], ImageData]
DATASETS: dict[str, DatasetLoader] = {
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}
DATASET_ALIASES = {"fashion-mnist": "fashion_mnist", "fmnist": "fashion_mnist", "cifar-10": "cifar10"}


def load_dataset(name: str, root: str | Path = "data", split: str = "train", download: bool = False,
                 img_size: int | tuple[int, int] = 32, in_chans: int = 3, strict_images: bool = False) -> ImageData:
    """A dataset of :data:`DATASETS` by name, or a path to an image folder (its ``split`` subfolder if present).

    An image folder is loaded at ``img_size`` with ``in_chans`` channels (the model config's);
    ``strict_images`` refuses one with unreadable files instead of skipping them.

    Raises:
        ValueError: for a name that is neither registered nor a folder, listing the registered names.
    """
    name = DATASET_ALIASES.get(name, name)
    if name in DATASETS:
        return DATASETS[name](Path(root), split, download)
    folder = Path(name)
    if folder.is_dir():
        return load_image_folder(folder / split if (folder / split).is_dir() else folder, img_size, in_chans,
                                 strict_images)
    raise ValueError(f"Unknown dataset {name!r}: use one of {', '.join(map(repr, DATASETS))} (registered in "
                     f"mae_lesson.data.DATASETS) or a folder of class subfolders")
