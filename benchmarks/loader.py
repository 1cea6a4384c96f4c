"""Data loading against the model: can ``BatchLoader`` keep the default model's training step fed?

``mae_lesson.data.BatchLoader`` on Fashion-MNIST (batch 256, the training augmentation: random
resized crop + flip + normalise), images/s, timed inside the rounds of the default model's
configuration (``fashion_mnist_p7``, ``benchmarks.peers``) beside its eager training step; the
ratio is the median over rounds of loader images/s over model images/s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import torch

from benchmarks.common import ROOT, ratio_spread, summary
from mae_lesson.data import NORMALIZATION, BatchLoader, ImageData, load_fashion_mnist

AUGMENTATION = "random resized crop (0.2, 1) + flip + normalise"


@dataclass
class LoaderResult:
    """Seconds per batch of the loader (``common.summary``), and its speed over the model's."""

    config: str  # the configuration whose rounds timed it
    source: str
    batch: int
    augmentation: str
    median_s: float
    min_s: float
    max_s: float
    rounds: int
    images_per_s: float
    vs_model_paired: float | None  # median over rounds of loader images/s / model images/s
    vs_model_spread: dict[str, float] | None


def make_loader(batch: int) -> tuple[BatchLoader, str]:
    """The default pretraining loader on Fashion-MNIST (synthetic images if the data is absent), and its source."""
    try:
        data = load_fashion_mnist(ROOT / "data", "train")
        source = f"Fashion-MNIST train ({len(data)} images)"
    except FileNotFoundError:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=gen)
        mean, std = NORMALIZATION["fashion_mnist"]
        data = ImageData(images, torch.zeros(60000, dtype=torch.long), ("x",), mean, std)
        source = "synthetic uint8 28x28 (Fashion-MNIST not found)"
    return BatchLoader(data, batch, 28, train=True, seed=0), source


def next_batch_fn(loader: BatchLoader) -> Callable[[], Any]:
    """One call, one augmented batch, cycling through the epoch (the first batch made once, untimed)."""
    counter = itertools.count()
    loader.batch(0)
    return lambda: loader.batch(next(counter) % len(loader))


def result(config: str, source: str, batch: int, times: list[float], model_times: list[float] | None) -> LoaderResult:
    """The record from the loader's seconds per round and (if it ran) the model's in the same rounds."""
    vs_model = ratio_spread(model_times, times) if model_times else None
    return LoaderResult(config, source, batch, AUGMENTATION, **summary(times, batch),
                        vs_model_paired=vs_model and vs_model["median"], vs_model_spread=vs_model)
