"""Every figure of the course: reconstructions (honest about what the model saw), training curves,
confusion matrices, feature maps and fine-tuning curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .data import denormalize
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


def feature_map_figure(features: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...],
                       title: str = "PCA of frozen features", max_points: int = 3000, seed: int = 0) -> plt.Figure:
    """First two principal components of the features, coloured by class."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randperm(len(features), generator=gen)[:max_points]
    x = features[ids].float()
    x = x - x.mean(dim=0)
    _, _, v = torch.pca_lowrank(x, q=2, center=False)
    xy = (x @ v[:, :2]).numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    colours = plt.get_cmap("tab10")
    for c, name in enumerate(class_names):
        sel = (labels[ids] == c).numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=3, color=colours(c), label=name, alpha=0.7)
    ax.legend(markerscale=4, fontsize=7, loc="best")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
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
