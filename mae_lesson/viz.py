"""Figures: reconstructions (honest about what the model saw) and training curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .data import denormalize
from .loss import normalize_patches


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
    """A 4-row grid: original, masked (grey), reconstruction, reconstruction + visible patches."""
    parts = reconstruct(model, imgs, noise, mask_ratio)
    rows = ["original", "masked", "reconstruction", "pasted"]
    labels = ["original", "masked input", "reconstruction", "recon. + visible"]
    n = imgs.shape[0]
    fig, axes = plt.subplots(4, n, figsize=(1.2 * n, 5.2), squeeze=False)
    for r, key in enumerate(rows):
        pics = denormalize(parts[key], mean, std)
        if key == "masked":
            pics = pics * (1 - parts["mask"]) + 0.5 * parts["mask"]
        for i in range(n):
            ax = axes[r, i]
            img = pics[i].permute(1, 2, 0).cpu().numpy()
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(labels[r], fontsize=8)
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
