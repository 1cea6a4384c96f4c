"""Datasets as in-memory uint8 tensors, augmented a whole batch at a time.

On a 2-core laptop a per-image PIL pipeline costs as much as the model. Fashion-MNIST (47 MB),
CIFAR-10 (180 MB) and course-sized image folders fit in memory as one uint8 tensor, so we
crop, resize, flip and normalise a batch with one ``grid_sample`` call instead.

Fashion-MNIST is looked for, in order: ``data/`` (torchvision's layout), Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), then torchvision's
downloader when ``download=True``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .errors import RunError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Per-channel mean/std of the training images (pixels in [0, 1]).
NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# A prime larger than any epoch or step count: (seed, epoch, step) -> distinct batch seeds.
SEED_STRIDE = 1_000_003
# The largest run seed whose batch seeds (seed, epoch, step) and mask seeds (+ 1) fit a torch generator's 64 bits.
MAX_SEED = (2**64 - 1) // SEED_STRIDE**2 - 1
# Names of unreadable images listed in a warning or an error before "and N more".
LIST_LIMIT = 10


@dataclass
class ImageData:
    """A split held in memory: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8:
            raise ValueError(
                f"ImageData.images must be uint8 pixels 0..255 [N, C, H, W], got dtype {self.images.dtype}; for "
                f"floats in [0, 1] pass (images * 255).round().to(torch.uint8), for 0..255 floats images.round()"
                f".to(torch.uint8)")
        if self.images.dim() != 4:
            raise ValueError(f"ImageData.images must be 4-D [N, C, H, W], got shape {list(self.images.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def fingerprint(self) -> str:
        """A short hash of every pixel and label: tells the images a run was trained on from any others."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(str(tuple(self.images.shape)).encode())
        digest.update(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.numpy().astype(np.int64).tobytes())
        return digest.hexdigest()

    def subset(self, count: int | None) -> "ImageData":
        """The first ``count`` images (all when ``None``): quick runs and tests."""
        if count is None or count >= len(self):
            return self
        return ImageData(self.images[:count], self.labels[:count], self.classes, self.mean, self.std)


# ----------------------------------------------------------------------------- Fashion-MNIST
def check_seed(seed: int, flag: str = "--seed") -> None:
    """Refuse a seed the batch and mask seeds derived from it would not fit (0 to :data:`MAX_SEED`)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{flag} must be between 0 and {MAX_SEED:,} (each batch's seed is derived from it and "
                         f"must fit 64 bits), got {seed}")


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


# ------------------------------------------------------------------------------ transforms
def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float, scaled to [0, 1], then per-channel standardised."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - m) / s


def denormalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Inverse of :func:`normalize`, to [0, 1] pixels for figures (clamped)."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images * s + m).clamp(0, 1)


def size_hw(img_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``img_size`` as ``(height, width)``: a config may give one side or a pair."""
    return (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))


def random_resized_crop_flip(
    images: torch.Tensor, out_size: int | tuple[int, int], generator: torch.Generator,
    scale: tuple[float, float] = (0.2, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
) -> torch.Tensor:
    """The paper's augmentation for a whole float batch ``[N, C, H, W]`` in one ``grid_sample``.

    Per image: an area fraction from ``scale``, a log-uniform aspect ratio from ``ratio``,
    a uniform position, and a horizontal flip with probability 0.5 (as torchvision's
    RandomResizedCrop + RandomHorizontalFlip, bilinear). Randomness comes only from
    ``generator``, so a batch is reproducible.
    """
    n = images.shape[0]
    area = torch.empty(n).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    # Crop width/height as fractions of the image; clamp instead of torchvision's retry loop.
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * (1 - w) + w / 2) * 2 - 1  # crop centre in [-1, 1]
    cy = (torch.rand(n, generator=generator) * (1 - h) + h / 2) * 2 - 1
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(images), [n, images.shape[1], *size_hw(out_size)], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def eval_transform(images: torch.Tensor, data: ImageData, img_size: int | tuple[int, int]) -> torch.Tensor:
    """uint8 batch -> normalised float at ``img_size`` (resized only when sizes differ)."""
    x = normalize(images, data.mean, data.std)
    if tuple(x.shape[-2:]) != size_hw(img_size):
        x = F.interpolate(x, size=size_hw(img_size), mode="bilinear", align_corners=False, antialias=True)
    return x


# --------------------------------------------------------------------------------- loader
class BatchLoader:
    """Seeded, shardable mini-batches from an in-memory :class:`ImageData`.

    Each epoch draws one permutation from ``seed + epoch``; global batch ``s`` is
    ``perm[s*B:(s+1)*B]`` and rank ``r`` of ``world`` processes takes every ``world``-th image of
    it (a distributed sampler), so any number of processes sees the same global batches, and a
    resumed run sees the same batches as an uninterrupted one.

    Yields ``(images [B/world, C, S, S] float, labels [B/world], step_seed)``.
    """

    def __init__(self, data: ImageData, batch_size: int, img_size: int, train: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool | None = None,
                 crop_scale: tuple[float, float] = (0.2, 1.0)) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} must be divisible by the {world_size} processes")
        check_seed(seed, "seed")
        self.data, self.batch_size, self.img_size, self.train = data, batch_size, img_size, train
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_last = train if drop_last is None else drop_last
        self.crop_scale = crop_scale
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        """This epoch's image order (one permutation per epoch, cached)."""
        if getattr(self, "_cached", (None,))[0] != self.epoch:
            n = len(self.data)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch)) if self.train else torch.arange(n)
            self._cached = (self.epoch, order)
        return self._cached[1]

    def batch_seed(self, step_in_epoch: int) -> int:
        """A seed unique to (run seed, epoch, step): augmentation and masks draw from it."""
        return (self.seed * SEED_STRIDE + self.epoch) * SEED_STRIDE + step_in_epoch

    def batch(self, step_in_epoch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One global batch's share for this rank (random access, so resume can skip ahead)."""
        ids = self._order()[step_in_epoch * self.batch_size:(step_in_epoch + 1) * self.batch_size]
        seed = self.batch_seed(step_in_epoch)
        if not self.train:
            ids = ids[self.rank::self.world_size]
            return eval_transform(self.data.images[ids], self.data, self.img_size), self.data.labels[ids], seed
        # Augment the whole global batch from one generator, then keep this rank's share, so the
        # images are identical whatever the number of processes.
        x = normalize(self.data.images[ids], self.data.mean, self.data.std)
        x = random_resized_crop_flip(x, self.img_size, torch.Generator().manual_seed(seed), scale=self.crop_scale)
        share = slice(self.rank, None, self.world_size)
        return x[share], self.data.labels[ids][share], seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        for step in range(len(self)):
            yield self.batch(step)
