"""Every figure of the course: reconstructions (honest about what the model saw), training curves,
confusion matrices, feature maps and fine-tuning curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .loader import denormalize
from .evaluate import confusion_matrix
from .loss import normalize_patches

# One figure language for the course: removed patches are always this colour (never black or grey,
# which Fashion-MNIST's background and garments already use), and the two kinds of output always
# carry these names.
REMOVED_COLOR = (0.55, 0.75, 0.95)
LABELS = {"original": "original", "masked": "masked input (blue = removed)",
          "reconstruction": "reconstruction", "pasted": "reconstruction + visible patches"}


def to_rgb(pics: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` pictures in [0, 1] (C = 1 or 3) -> ``[N, H, W, 3]`` for ``imshow``."""
    pics = pics.detach().float().cpu().clamp(0, 1)
    return (pics.expand(-1, 3, -1, -1) if pics.shape[1] == 1 else pics).permute(0, 2, 3, 1)


def paint_removed(pics: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """Pictures ``[N, C, H, W]`` in [0, 1] with removed pixels (``pixel_mask`` 1) in ``REMOVED_COLOR``.

    Returns ``[N, H, W, 3]``; ``pixel_mask`` is ``[N, 1 or C, H, W]`` (``reconstruct(...)["mask"]``).
    """
    rgb = to_rgb(pics)
    removed = pixel_mask.detach().float().cpu()[:, :1].permute(0, 2, 3, 1)  # [N, H, W, 1]
    return rgb * (1 - removed) + torch.tensor(REMOVED_COLOR) * removed


@torch.no_grad()
def reconstruct(model, imgs: torch.Tensor, noise: torch.Tensor | None = None,
                mask_ratio: float | None = None) -> dict[str, torch.Tensor]:
    """Original, masked, reconstruction and reconstruction-plus-visible, in model input space.

    For a ``norm_pix_loss`` model the prediction is per-patch normalised. Undoing that with the
    hidden patch's own mean and std would leak the answer, so we use the mean and std of the
    *visible* pixels of the same image instead: only what the model saw.

    Returns a dict of ``[N, C, H, W]`` tensors: ``original``, ``masked``, ``reconstruction``,
    ``pasted`` and the pixel-level ``mask`` (1 where removed).
    """
    model.eval()
    out = model(imgs, mask_ratio=mask_ratio, noise=noise)
    pred, mask = out["pred"], out["mask"]
    if model.norm_pix_loss:
        target = model.patchify(imgs)
        visible = (1 - mask).unsqueeze(-1)
        count = visible.sum(dim=(1, 2), keepdim=True) * target.shape[-1]
        mean = (target * visible).sum(dim=(1, 2), keepdim=True) / count
        std = (((target - mean) ** 2 * visible).sum(dim=(1, 2), keepdim=True) / count).sqrt()
        pred = normalize_patches(pred) * std + mean
    size = imgs.shape[-2:]
    recon = model.unpatchify(pred, size=size)
    pixel_mask = model.unpatchify(mask.unsqueeze(-1).expand_as(pred), size=size)
    return {"original": imgs, "masked": imgs * (1 - pixel_mask), "reconstruction": recon,
            "pasted": imgs * (1 - pixel_mask) + recon * pixel_mask, "mask": pixel_mask}


def reconstruction_figure(model, imgs: torch.Tensor, mean, std, noise: torch.Tensor | None = None,
                          title: str = "", mask_ratio: float | None = None) -> plt.Figure:
    """A 4-row grid: original, masked (removed in ``REMOVED_COLOR``), reconstruction, reconstruction + visible patches."""
    parts = reconstruct(model, imgs, noise, mask_ratio)
    rows = ["original", "masked", "reconstruction", "pasted"]
    n = imgs.shape[0]
    fig, axes = plt.subplots(4, n, figsize=(1.2 * n, 5.2), squeeze=False)
    for r, key in enumerate(rows):
        pics = denormalize(parts[key], mean, std)
        pics = paint_removed(pics, parts["mask"]) if key == "masked" else to_rgb(pics)
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(pics[i].numpy())
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(LABELS[key].replace(" + ", "\n+ ").replace(" (", "\n("), fontsize=7)
    note = " (norm-pix target, shown with the visible patches' mean/std)" if model.norm_pix_loss else " (pixel target)"
    fig.suptitle((title + note).strip(), fontsize=9)
    fig.tight_layout()
    return fig


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a JSONL metrics file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def loss_curve_figure(metrics_path: str | Path, title: str = "MAE pretraining") -> plt.Figure:
    """Training loss per logged step and test reconstruction loss per epoch."""
    rows = read_metrics(metrics_path)
    train = [r for r in rows if r.get("kind") == "train"]
    test = [r for r in rows if r.get("kind") == "epoch"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, label="train loss (batch)")
    if test:
        ax.plot([r["step"] for r in test], [r["test_loss"] for r in test], "o-", label="test loss (fixed masks)")
    ax.set_xlabel("optimizer step"), ax.set_ylabel("MSE on removed patches"), ax.set_title(title)
    ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    return fig


def confusion_figure(predictions: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...],
                     title: str = "") -> plt.Figure:
    """A row-normalised confusion matrix with the class names."""
    counts = confusion_matrix(predictions, labels, len(class_names)).float()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if rates[i, j] >= 0.01:
                ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {float(counts.diag().sum() / counts.sum()):.1%}", fontsize=10)
    fig.colorbar(im, fraction=0.046)
    fig.tight_layout()
    return fig


def principal_components(features: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact PCA: the features ``[N, D]`` projected on their first ``k`` principal axes ``[N, k]``,
    and the fraction of the total variance each axis explains ``[k]``."""
    x = features.float() - features.float().mean(dim=0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    variance = s**2
    return x @ vh[:k].T, variance[:k] / variance.sum()


def feature_map_figure(features: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...],
                       title: str = "PCA of frozen features", max_points: int = 3000, seed: int = 0,
                       ax: plt.Axes | None = None) -> plt.Figure:
    """First two principal components of the features, coloured by class; axes give the explained variance.

    Draws into ``ax`` when given (to put several maps side by side), else into a new figure.
    """
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randperm(len(features), generator=gen)[:max_points]
    xy, explained = principal_components(features[ids], 2)
    xy = xy.numpy()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(class_names):
        sel = (labels[ids] == c).numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=3, color=colours(c), label=name, alpha=0.7)
    ax.legend(markerscale=4, fontsize=7, loc="best")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of the variance)", fontsize=8)
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of the variance)", fontsize=8)
    ax.set_title(title, fontsize=10)
    if not fig.get_constrained_layout():
        fig.tight_layout()
    return fig


def attention_figure(images: torch.Tensor, maps: dict[str, dict[str, torch.Tensor]], grid_hw: tuple[int, int],
                     title: str = "", cmap: str = "viridis") -> plt.Figure:
    """Attention over the patch grid: one row per image and model, one column per kind of map.

    Args:
        images: ``[N, C, H, W]`` in [0, 1] (denormalised), shown in the first column.
        maps: ``maps[model][column]`` is ``[N, L]`` with ``L = grid_h * grid_w`` (patches row by
            row), e.g. ``{"pretrained": {"head 1": ..., "mean of heads": ..., "rollout": ...}}``.
            Every model must have the same columns.
        grid_hw: the patch grid ``(grid_h, grid_w)``.
    Each column has one colour scale, from 0 to its largest value over every row, and its colour
    bar underneath, so two models compare on the same scale.
    """
    models = list(maps)
    columns = list(maps[models[0]])
    if any(list(maps[m]) != columns for m in models):
        raise ValueError(f"every model needs the same columns; got {[list(maps[m]) for m in models]}")
    grid_h, grid_w = grid_hw
    n = images.shape[0]
    for m in models:
        for c in columns:
            if tuple(maps[m][c].shape) != (n, grid_h * grid_w):
                raise ValueError(f"maps[{m!r}][{c!r}] has shape {list(maps[m][c].shape)}; expected "
                                 f"[N, L] = {[n, grid_h * grid_w]} for {n} images and a {grid_h}x{grid_w} grid")
    rows = [(i, m) for i in range(n) for m in models]
    pics = to_rgb(images)
    fig, axes = plt.subplots(len(rows), 1 + len(columns), figsize=(1.05 * (1 + len(columns)), 1.05 * len(rows) + 0.9),
                             squeeze=False, constrained_layout=True)
    for j, column in enumerate(columns, start=1):
        vmax = max(float(maps[m][column].max()) for m in models)
        for r, (i, m) in enumerate(rows):
            grid = maps[m][column][i].detach().float().cpu().reshape(grid_h, grid_w)
            im = axes[r, j].imshow(grid.numpy(), cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
            if r == 0:
                axes[r, j].set_title(column, fontsize=8)
        fig.colorbar(im, ax=axes[:, j], orientation="horizontal", fraction=0.04, pad=0.01, aspect=12).ax.tick_params(labelsize=6)
    for r, (i, m) in enumerate(rows):
        axes[r, 0].imshow(pics[i].numpy())
        axes[r, 0].set_ylabel(m, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def finetune_curve_figure(histories: dict[str, list[list[tuple[float, float]]]]) -> plt.Figure:
    """Test accuracy against fine-tuning epochs, one line per run (``histories[name][seed]``)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for color, (name, runs) in zip(["tab:blue", "tab:orange", "tab:green", "tab:red"], histories.items()):
        for i, run in enumerate(runs):
            epochs, accs = zip(*run)
            ax.plot(epochs, [100 * a for a in accs], "o-", color=color, alpha=0.8, label=name if i == 0 else None)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("fine-tuning epoch")
    ax.set_ylabel("test accuracy %")
    ax.set_title("Fine-tuning: pretrained MAE vs the same ViT from scratch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
