"""Checkers for notebook 05 (loss): ``normalize_patches`` (norm_pix_loss) and the masked MSE.

The reference is :mod:`mae_lesson.loss`, which is the official ``forward_loss``: per-patch mean
and *unbiased* variance, ``eps`` 1e-6 inside the square root, squared error averaged over each
patch's ``p*p*C`` values, then averaged over the removed patches (mask 1) only.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..loss import masked_mse, normalize_patches
from ..masking import random_masking
from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import expect_close, expect_shape
def _same(value: Any, other: torch.Tensor, atol: float = 1e-5) -> bool:
    """Like ``_feedback.same`` in double precision, with NaN equal to NaN: the no-eps mistake gives NaN."""
    return (isinstance(value, torch.Tensor) and value.shape == other.shape
            and torch.allclose(value.double(), other.double(), atol=atol, rtol=1e-5, equal_nan=True))


def _targets(channels: int, p: int, n: int = 2, length: int = 6, seed: int = 0) -> torch.Tensor:
    """Patch vectors ``[N, L, p*p*C]`` with different means and scales per patch, and two hard patches.

    Patch 0 of image 0 is constant (a background patch: variance 0); patch 1 of image 0 is nearly
    constant (variance about 1e-6), where the placement of ``eps`` matters.
    """
    gen = torch.Generator().manual_seed(seed)
    dim = p * p * channels
    scale = torch.rand(n, length, 1, generator=gen) * 2 + 0.2
    shift = torch.randn(n, length, 1, generator=gen) * 2
    # Each channel gets its own offset, so per-channel statistics differ from per-patch ones.
    offsets = torch.randn(channels, generator=gen).repeat(p * p) if channels > 1 else torch.zeros(dim)
    x = torch.randn(n, length, dim, generator=gen) * scale + shift + offsets
    x[0, 0] = 0.7
    x[0, 1] = 0.3 + 1e-3 * torch.randn(dim, generator=gen)
    return x.double()


# --------------------------------------------------------------------------- normalize_patches
def _norm_variants(x: torch.Tensor, channels: int) -> list[tuple[torch.Tensor, str]]:
    """What the usual mistakes return, with what to say about each."""
    eps = 1e-6
    m = x.mean(-1, keepdim=True)
    var_b = x.var(-1, keepdim=True, unbiased=False)
    var_u = x.var(-1, keepdim=True)
    img_m = x.mean(dim=(1, 2), keepdim=True)
    img_v = x.var(dim=(1, 2), keepdim=True)
    n, length, dim = x.shape
    per_c = x.reshape(n, length, dim // channels, channels)
    per_c = ((per_c - per_c.mean(2, keepdim=True)) / (per_c.var(2, keepdim=True) + eps) ** 0.5).reshape(n, length, dim)
    return [
        ((x - m) / (var_b + eps) ** 0.5,
         "the biased variance (dividing by p*p*C): the official code uses target.var(dim=-1), the "
         "unbiased variance (dividing by p*p*C - 1)"),
        ((x - img_m) / (img_v + eps) ** 0.5,
         "one mean and variance per image: MAE normalises every patch by its own statistics, "
         "mean and var over the last dimension (dim=-1, keepdim=True)"),
        ((x - x.mean(1, keepdim=True)) / (x.var(1, keepdim=True) + eps) ** 0.5,
         "statistics over the patches (dim=1), one per pixel position: take them over each patch's "
         "own p*p*C values (dim=-1)"),
        (per_c,
         "a mean and variance per channel within each patch: MAE takes one mean and one variance "
         "over all p*p*C values of the patch"),
        ((x - m) / (var_u.sqrt() + eps),
         "eps added to the standard deviation: add it to the variance, (var + 1e-6) ** 0.5, as the "
         "official code (it matters for nearly constant patches)"),
        ((x - m) / var_u.sqrt(),
         "no eps: a constant patch (variance 0) becomes 0/0 = NaN; divide by (var + 1e-6) ** 0.5"),
        (x - m, "only the mean subtracted: also divide by the patch's standard deviation, (var + 1e-6) ** 0.5"),
        (x / (var_u + eps) ** 0.5, "only divided by the standard deviation: also subtract the patch mean"),
        (x.clone(), "the patches unchanged"),
    ]


@checker("normalize_patches")
def check_normalize_patches(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(target)``: ``[N, L, p*p*C]`` -> each patch minus its mean, over sqrt(unbiased var + 1e-6)."""
    for channels, p in ((3, 2), (1, 4)):
        x = _targets(channels, p)
        expected = normalize_patches(x)
        where = f"normalize_patches(target {list(x.shape)}, p={p}, C={channels})"
        got = call_learner(fn, "normalize_patches", x.clone())
        expect_shape(where, got, expected.shape, hint="normalise each patch, keep the shape [N, L, p*p*C]")
        if _same(got, expected, atol=1e-6):
            continue
        for variant, message in _norm_variants(x, channels):
            if _same(got, variant, atol=1e-6):
                diff = (got.double() - expected).abs().nan_to_num(float("inf"))
                idx = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
                raise ExerciseError(
                    f"{where}: expected {expected[idx].item():.5g} at index {list(idx)}, got "
                    f"{got[idx].item():.5g}. You used {message}")
        if torch.isnan(got).any():
            raise ExerciseError(f"{where}: expected finite values, got NaN at "
                                f"{torch.nonzero(torch.isnan(got))[0].tolist()}; patch 0 of image 0 is constant "
                                f"(variance 0): divide by (var + 1e-6) ** 0.5")
        expect_close(where, got, expected, atol=1e-6,
                     hint="mean = target.mean(dim=-1, keepdim=True), var = target.var(dim=-1, keepdim=True), "
                          "(target - mean) / (var + 1e-6) ** 0.5")
    return passed("normalize_patches", "per-patch mean and unbiased variance, eps 1e-6 inside the square root")


# ------------------------------------------------------------------------------------ mae_loss
def _loss_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """(target, pred, mask, channels): every image loses the same number of patches, as in MAE."""
    cases = []
    gen = torch.Generator().manual_seed(1)
    for channels, p, n, length, ratio in ((1, 4, 2, 10, 0.7), (3, 2, 3, 8, 0.75)):
        target = _targets(channels, p, n, length, seed=channels)
        pred = torch.randn(n, length, p * p * channels, generator=gen).double()
        _, mask, _ = random_masking(torch.zeros(n, length, 1), ratio, torch.rand(n, length, generator=gen))
        cases.append((target, pred, mask.double(), channels))
    return cases


def _loss_variants(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, norm: bool,
                   channels: int) -> list[tuple[torch.Tensor, str]]:
    tgt = normalize_patches(target) if norm else target
    err = (pred - tgt) ** 2
    per_patch = err.mean(-1)
    kept = 1 - mask
    out = [
        (per_patch.mean(),
         "the mean over all patches: MAE scores only the removed patches (mask 1), "
         "(loss * mask).sum() / mask.sum(). A model can lower an all-patch loss by copying what it sees"),
        ((per_patch * kept).sum() / kept.sum(),
         "the mean over the visible patches: the mask is 1 for removed patches, so multiply by mask, "
         "not by (1 - mask)"),
        ((err.sum(-1) * mask).sum() / mask.sum(),
         "the sum over each patch's p*p*C values: take the mean over the last dimension, "
         "loss.mean(dim=-1), so the scale does not depend on the patch size"),
        ((per_patch * mask).mean(),
         "(loss * mask).mean(), which divides by all N*L patches: divide by mask.sum(), the number of "
         "removed patches"),
        ((per_patch.sqrt() * mask).sum() / mask.sum(), "the root of each patch's error: MAE uses the squared error"),
        (((pred - tgt).abs().mean(-1) * mask).sum() / mask.sum(), "the absolute error (L1): MAE uses the squared error"),
        ((((pred - tgt) * mask[..., None]).pow(2).mean()), "the squared error averaged over all N*L*p*p*C values: "
         "average over each patch (dim=-1), then over the removed patches: (loss * mask).sum() / mask.sum()"),
    ]
    other = target if norm else normalize_patches(target)
    out.append((masked_mse(pred, other, mask),
                "norm_pix_loss=True ignored: normalise the target patches first" if norm else
                "normalised targets although norm_pix_loss=False: use the raw patches then"))
    if norm:
        out.append((masked_mse(normalize_patches(pred), tgt, mask),
                    "the prediction normalised too: only the target is normalised; the decoder learns to "
                    "predict normalised patches"))
        for variant, message in _norm_variants(target, channels)[:6]:
            out.append((masked_mse(pred, variant, mask), "norm_pix_loss with " + message))
    return out


@checker("mae_loss")
def check_mae_loss(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]) -> bool:
    """Check ``fn(target, pred, mask, norm_pix_loss)`` -> the scalar MAE loss (mask 1 = removed)."""
    for norm in (False, True):
        for target, pred, mask, channels in _loss_cases():
            expected = masked_mse(pred, normalize_patches(target) if norm else target, mask)
            where = (f"mae_loss(target {list(target.shape)}, pred {list(pred.shape)}, mask {list(mask.shape)} "
                     f"with {int(mask[0].sum())} removed per image, norm_pix_loss={norm})")
            got = call_learner(fn, "mae_loss", target.clone(), pred.clone(), mask.clone(), norm)
            if not isinstance(got, torch.Tensor):
                raise ExerciseError(f"{where}: expected a scalar torch.Tensor, got {type(got).__name__}")
            if got.dim() != 0:
                raise ExerciseError(
                    f"{where}: expected a scalar (shape []), got shape {list(got.shape)}: average each patch's "
                    f"error over dim=-1 to get [N, L], then over the removed patches to get one number")
            if _same(got, expected, atol=1e-6):
                continue
            for variant, message in _loss_variants(target, pred, mask, norm, channels):
                if _same(got, variant, atol=1e-6):
                    raise ExerciseError(f"{where}: expected {expected.item():.6g}, got {got.item():.6g}. "
                                        f"You computed {message}")
            expect_close(where, got, expected, atol=1e-6,
                         hint="loss = ((pred - target) ** 2).mean(dim=-1); (loss * mask).sum() / mask.sum()")
    return passed("mae_loss", "squared error per patch, averaged over removed patches only; norm_pix_loss per patch")
