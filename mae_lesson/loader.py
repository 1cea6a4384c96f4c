"""A split held in memory, the batch transforms, and the seeded loader that notebook 06 teaches.

On a 2-core laptop a per-image PIL pipeline costs as much as the model. Fashion-MNIST (47 MB),
CIFAR-10 (180 MB) and course-sized image folders fit in memory as one uint8 tensor (:class:`ImageData`),
so we crop, resize, flip and normalise a batch with one ``grid_sample`` call instead. Reading the
dataset files (the registry of datasets, their readers and where they are looked for) is
:mod:`mae_lesson.data`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

# A prime larger than any epoch or step count: (seed, epoch, step) -> distinct batch seeds.
SEED_STRIDE = 1_000_003
# The largest run seed whose batch seeds (seed, epoch, step) and mask seeds (+ 1) fit a torch generator's 64 bits.
MAX_SEED = (2**64 - 1) // SEED_STRIDE**2 - 1


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

    def subset(self, count: int | None) -> "ImageData":
        """The first ``count`` images (all when ``None``): quick runs and tests."""
        if count is None or count >= len(self):
            return self
        return ImageData(self.images[:count], self.labels[:count], self.classes, self.mean, self.std)


def check_seed(seed: int, flag: str = "--seed") -> None:
    """Refuse a seed the batch and mask seeds derived from it would not fit (0 to :data:`MAX_SEED`)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{flag} must be between 0 and {MAX_SEED:,} (each batch's seed is derived from it and "
                         f"must fit 64 bits), got {seed}")


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
