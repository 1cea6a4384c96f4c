"""The MAE objective: mean squared error on the removed patches only."""

from __future__ import annotations

import torch


def normalize_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalisation (``norm_pix_loss``): subtract the patch mean, divide by its std.

    Uses the unbiased variance and ``eps`` 1e-6, exactly as the official code.
    ``[N, L, p*p*C]`` -> same shape.
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over removed patches of each patch's mean squared error.

    Args:
        pred, target: ``[N, L, p*p*C]``.
        mask: ``[N, L]``, 1 for removed patches.
    Returns:
        A scalar. When nothing is removed (``mask_ratio=0``) it is the mean over all patches,
        so feature extraction never yields NaN.
    """
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # [N, L]
    removed = mask.sum()
    masked = (per_patch * mask).sum() / removed.clamp_min(1)
    return torch.where(removed > 0, masked, per_patch.mean())


def mae_loss(target_patches: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool) -> torch.Tensor:
    """The full objective on patchified images ``[N, L, p*p*C]``."""
    target = normalize_patches(target_patches) if norm_pix_loss else target_patches
    return masked_mse(pred, target, mask)
