"""Judging a model: test reconstruction loss, and frozen features by linear probe and kNN.

Features are computed once (``extract_features``) and cached as a tensor, so a linear probe
trains in seconds on CPU: the encoder never runs again. :func:`evaluate_encoder` is the one way
every command (the results table, the ablations) and notebook scores an encoder's features.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import Config
from .loader import ImageData, eval_transform
from .model import MAE
from .utils import on_device


@torch.no_grad()
def extract_features(model: MAE, data: ImageData, pool: str = "cls", batch_size: int = 500,
                     device: torch.device | str = "cpu", progress: bool = True) -> torch.Tensor:
    """Frozen encoder features of every image, no masking.

    Args:
        pool: ``cls`` (the cls token, as the paper's linear probe), ``mean`` (average of patch
            tokens) or ``both`` (concatenated ``[cls, mean]``).
        device: where the encoder runs; the model is moved there for the call and back after it.
    Returns:
        ``[N, D]`` (``[N, 2D]`` for ``both``), on the CPU.
    """
    chunks = []
    with on_device(model, device):
        for start in tqdm(range(0, len(data), batch_size), desc=f"features ({pool})", disable=not progress, leave=False):
            imgs = eval_transform(data.images[start:start + batch_size], data, model.config.img_size).to(device)
            latent, _, _ = model.forward_encoder(imgs, 0.0)  # [N, 1 + L, D], patches in image order
            cls, mean = latent[:, 0], latent[:, 1:].mean(dim=1)
            chunks.append({"cls": cls, "mean": mean, "both": torch.cat([cls, mean], dim=1)}[pool].cpu())
    return torch.cat(chunks)


def pixel_features(data: ImageData) -> torch.Tensor:
    """The raw-pixel baseline: normalised pixels flattened, ``[N, C*H*W]``."""
    return eval_transform(data.images, data, data.images.shape[-1]).flatten(1)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 epochs: int = 30, batch_size: int = 1024, lr: float = 1e-3, weight_decay: float = 0.0,
                 seed: int = 0, batchnorm: bool = True) -> dict[str, float | torch.Tensor]:
    """The paper's probe on cached features: BatchNorm without affine, then a linear layer.

    Trained with AdamW and a cosine schedule (the paper uses LARS at ImageNet batch sizes).

    Args:
        train_x, test_x: features ``[N, D]`` and ``[M, D]``; train_y, test_y: labels ``[N]``, ``[M]``.
        batchnorm: ``False`` drops the BatchNorm, so the linear layer sees the raw features (the
            ablation of notebook 10: the features' scale then matters).
    Returns:
        ``{"accuracy", "predictions"}`` on the test features (predictions ``[M]``).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    classes = int(train_y.max()) + 1
    # BatchNorm without affine has no parameters, so it draws nothing from the seeded RNG: the
    # linear layer starts from the same weights with or without it.
    norm = nn.BatchNorm1d(train_x.shape[1], affine=False, eps=1e-6) if batchnorm else nn.Identity()
    head = nn.Sequential(norm, nn.Linear(train_x.shape[1], classes))
    nn.init.trunc_normal_(head[1].weight, std=0.01)
    nn.init.zeros_(head[1].bias)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(train_x) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    head.train()
    for _ in range(epochs):
        for ids in torch.randperm(len(train_x), generator=gen).split(batch_size):
            loss = F.cross_entropy(head(train_x[ids]), train_y[ids])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    head.eval()
    with torch.no_grad():
        predictions = head(test_x).argmax(dim=1)
    return {"accuracy": float((predictions == test_y).float().mean()), "predictions": predictions}


@torch.no_grad()
def knn_classify(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, chunk: int = 1000) -> dict[str, float | torch.Tensor]:
    """k-nearest neighbours by cosine similarity; neighbours vote with weight ``exp(sim / T)``."""
    train = F.normalize(train_x.float(), dim=1)
    classes = int(train_y.max()) + 1
    predictions = []
    for start in range(0, len(test_x), chunk):
        sims = F.normalize(test_x[start:start + chunk].float(), dim=1) @ train.T  # [n, N_train]
        top_sim, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(top_idx), classes).scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    predictions = torch.cat(predictions)
    return {"accuracy": float((predictions == test_y).float().mean()), "predictions": predictions}


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """``[classes, classes]`` counts: row = true class, column = predicted."""
    return torch.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def summarize(values: list[float]) -> str:
    """``mean ± std (n=...)`` in percent, for results tables."""
    arr = np.array(values) * 100
    return f"{arr.mean():.1f} ± {arr.std(ddof=1) if len(arr) > 1 else 0:.1f} (n={len(arr)})"


def fixed_mask_batches(model: MAE, data: ImageData, max_images: int = 2000, batch_size: int = 500,
                       seed: int = 0, cfg: Config | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches :func:`evaluate_loss` scores, each with its masks' noise, on the CPU.

    The first ``max_images`` images of ``data``, normalised at ``cfg.img_size``; the noise ``[n, L]``
    at ``cfg.mask_ratio`` comes from ``model.mask_noise`` with one generator seeded with ``seed``, so
    every call sees the same masks (``cfg``: the model's config when ``None``).

    Yields:
        ``(imgs [n, C, H, W], noise [n, L])`` with ``n <= batch_size``.
    """
    cfg = model.config if cfg is None else cfg
    gen = torch.Generator().manual_seed(seed)
    stop = min(max_images, len(data))
    for start in range(0, stop, batch_size):
        imgs = eval_transform(data.images[start:min(start + batch_size, stop)], data, cfg.img_size)
        # The model's own source of masks, so a subclass that overrides mask_noise is evaluated on its masks.
        yield imgs, model.mask_noise(imgs.shape[0], mask_ratio=cfg.mask_ratio, generator=gen, device="cpu")


@torch.no_grad()
def evaluate_loss(model: MAE, data: ImageData, cfg: Config, device: torch.device | str,
                  max_images: int = 2000, batch_size: int = 500, seed: int = 0) -> float:
    """Mean reconstruction loss on the first ``max_images`` images with fixed, seeded masks.

    The model runs in eval mode on ``device`` for the call and comes back to its own device and mode.
    """
    total, count = 0.0, 0
    with on_device(model, device):
        for imgs, noise in fixed_mask_batches(model, data, max_images, batch_size, seed, cfg):
            total += float(model(imgs.to(device), noise=noise.to(device))["loss"]) * imgs.shape[0]
            count += imgs.shape[0]
    return total / count


def evaluate_features(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                      probe_epochs: int = 30, batchnorm: bool = True, k: int = 20, seed: int = 0) -> dict[str, Any]:
    """Linear probe (:func:`linear_probe`) and kNN (:func:`knn_classify`) on cached features.

    Args:
        train_x, test_x: features ``[N, D]`` and ``[M, D]``; train_y, test_y: labels ``[N]``, ``[M]``.
    Returns:
        ``{"linear_probe", "knn"}`` test accuracies and their ``"probe_predictions"``, ``"knn_predictions"`` ``[M]``.
    """
    probe = linear_probe(train_x, train_y, test_x, test_y, epochs=probe_epochs, seed=seed, batchnorm=batchnorm)
    knn = knn_classify(train_x, train_y, test_x, test_y, k=k)
    return {"linear_probe": probe["accuracy"], "knn": knn["accuracy"], "probe_predictions": probe["predictions"],
            "knn_predictions": knn["predictions"]}


def evaluate_encoder(model: MAE, train: ImageData, test: ImageData, pool: str = "cls", probe_epochs: int = 30,
                     batchnorm: bool = True, k: int = 20, seed: int = 0, device: torch.device | str = "cpu",
                     progress: bool = True) -> dict[str, Any]:
    """An encoder's frozen features scored by linear probe and kNN: fitted on ``train``, tested on ``test``.

    Args:
        pool: ``cls``, ``mean`` or ``both`` (see :func:`extract_features`).
        probe_epochs, batchnorm, seed: the linear probe's (:func:`linear_probe`); k: the kNN's neighbours.
        device: where the encoder runs; the probe and kNN run on the CPU.
    Returns:
        :func:`evaluate_features`'s dict plus ``"test_features"`` ``[M, D]`` (``[M, 2D]`` for ``both``).
    """
    train_x = extract_features(model, train, pool, device=device, progress=progress)
    test_x = extract_features(model, test, pool, device=device, progress=progress)
    scores = evaluate_features(train_x, train.labels, test_x, test.labels, probe_epochs, batchnorm, k, seed)
    return {**scores, "test_features": test_x}
