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
from ._judge import Mistake, close, expect_close, judge
def _same(value: Any, other: Any) -> bool:
    """:func:`close` in double precision, with NaN equal to NaN: the no-eps mistake gives NaN."""
    return close(value, other, atol=1e-6, rtol=1e-5, equal_nan=True, double=True)


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
EPS = 1e-6


def _per_channel(x: torch.Tensor, channels: int) -> torch.Tensor:
    """A mean and variance per channel within each patch."""
    n, length, dim = x.shape
    per_c = x.reshape(n, length, dim // channels, channels)
    return ((per_c - per_c.mean(2, keepdim=True)) / (per_c.var(2, keepdim=True) + EPS) ** 0.5).reshape(n, length, dim)


def _m(x: torch.Tensor) -> torch.Tensor:
    return x.mean(-1, keepdim=True)


# What the usual mistakes return from the case's patches ``x`` (with ``channels``), and what to say about each.
NORMALIZE_MISTAKES = (
    Mistake("biased_variance", lambda c: (c["x"] - _m(c["x"])) / (c["x"].var(-1, keepdim=True, unbiased=False) + EPS) ** 0.5,
            "the biased variance (dividing by p*p*C): the official code uses target.var(dim=-1), the "
            "unbiased variance (dividing by p*p*C - 1)"),
    Mistake("per_image", lambda c: (c["x"] - c["x"].mean(dim=(1, 2), keepdim=True)) / (c["x"].var(dim=(1, 2), keepdim=True)
                                                                                        + EPS) ** 0.5,
            "one mean and variance per image: MAE normalises every patch by its own statistics, "
            "mean and var over the last dimension (dim=-1, keepdim=True)"),
    Mistake("over_patches", lambda c: (c["x"] - c["x"].mean(1, keepdim=True)) / (c["x"].var(1, keepdim=True) + EPS) ** 0.5,
            "statistics over the patches (dim=1), one per pixel position: take them over each patch's "
            "own p*p*C values (dim=-1)"),
    Mistake("per_channel", lambda c: _per_channel(c["x"], c["channels"]),
            "a mean and variance per channel within each patch: MAE takes one mean and one variance "
            "over all p*p*C values of the patch"),
    Mistake("eps_on_std", lambda c: (c["x"] - _m(c["x"])) / (c["x"].var(-1, keepdim=True).sqrt() + EPS),
            "eps added to the standard deviation: add it to the variance, (var + 1e-6) ** 0.5, as the "
            "official code (it matters for nearly constant patches)"),
    Mistake("no_eps", lambda c: (c["x"] - _m(c["x"])) / c["x"].var(-1, keepdim=True).sqrt(),
            "no eps: a constant patch (variance 0) becomes 0/0 = NaN; divide by (var + 1e-6) ** 0.5"),
    Mistake("mean_only", lambda c: c["x"] - _m(c["x"]),
            "only the mean subtracted: also divide by the patch's standard deviation, (var + 1e-6) ** 0.5"),
    Mistake("std_only", lambda c: c["x"] / (c["x"].var(-1, keepdim=True) + EPS) ** 0.5,
            "only divided by the standard deviation: also subtract the patch mean"),
    Mistake("unchanged", lambda c: c["x"].clone(), "the patches unchanged"),
)


def _at_largest(where: str, got: torch.Tensor, expected: torch.Tensor) -> str:
    """``where: expected <value> at index [..], got <value>`` at the largest difference (NaN counts as largest)."""
    diff = (got.double() - expected).abs().nan_to_num(float("inf"))
    idx = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
    return f"{where}: expected {expected[idx].item():.5g} at index {list(idx)}, got {got[idx].item():.5g}"


def _normalize_differs(where: str, got: torch.Tensor, expected: torch.Tensor) -> None:
    """Say where a normalisation no table row explains differs: a NaN first, else the largest difference."""
    if torch.isnan(got).any():
        raise ExerciseError(f"{where}: expected finite values, got NaN at "
                            f"{torch.nonzero(torch.isnan(got))[0].tolist()}; patch 0 of image 0 is constant "
                            f"(variance 0): divide by (var + 1e-6) ** 0.5")
    expect_close(where, got, expected, atol=1e-6,
                 hint="mean = target.mean(dim=-1, keepdim=True), var = target.var(dim=-1, keepdim=True), "
                      "(target - mean) / (var + 1e-6) ** 0.5")


@checker("normalize_patches")
def check_normalize_patches(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(target)``: ``[N, L, p*p*C]`` -> each patch minus its mean, over sqrt(unbiased var + 1e-6)."""
    for channels, p in ((3, 2), (1, 4)):
        x = _targets(channels, p)
        expected = normalize_patches(x)
        where = f"normalize_patches(target {list(x.shape)}, p={p}, C={channels})"
        got = call_learner(fn, "normalize_patches", x.clone())
        judge(where, got, expected, NORMALIZE_MISTAKES, {"x": x, "channels": channels}, matches=_same,
              shape_hint="normalise each patch, keep the shape [N, L, p*p*C]",
              found=lambda m: f"{_at_largest(where, got, expected)}. You used {m}",
              differs=lambda: _normalize_differs(where, got, expected))
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


def _err(c: dict) -> torch.Tensor:
    """The squared error of each value ``[N, L, p*p*C]`` against the case's target (normalised with ``norm``)."""
    return (c["pred"] - _tgt(c)) ** 2


def _tgt(c: dict) -> torch.Tensor:
    return normalize_patches(c["target"]) if c["norm"] else c["target"]


def _over_removed(per_patch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_patch * mask).sum() / mask.sum()


def _norm_row(row: Mistake) -> Mistake:
    """norm_pix_loss computed with one of :data:`NORMALIZE_MISTAKES` (only when norm_pix_loss is on)."""
    return Mistake(f"norm_pix_{row.name}", lambda c: masked_mse(c["pred"], row.wrong({"x": c["target"], "channels": c["channels"]}),
                                                               c["mask"]) if c["norm"] else None,
                   "norm_pix_loss with " + row.says(None))


# The case: target, pred, mask (1 = removed), norm (norm_pix_loss) and channels.
LOSS_MISTAKES = (
    Mistake("all_patches", lambda c: _err(c).mean(-1).mean(),
            "the mean over all patches: MAE scores only the removed patches (mask 1), "
            "(loss * mask).sum() / mask.sum(). A model can lower an all-patch loss by copying what it sees"),
    Mistake("visible_patches", lambda c: _over_removed(_err(c).mean(-1), 1 - c["mask"]),
            "the mean over the visible patches: the mask is 1 for removed patches, so multiply by mask, "
            "not by (1 - mask)"),
    Mistake("sum_per_patch", lambda c: _over_removed(_err(c).sum(-1), c["mask"]),
            "the sum over each patch's p*p*C values: take the mean over the last dimension, "
            "loss.mean(dim=-1), so the scale does not depend on the patch size"),
    Mistake("mean_over_all", lambda c: (_err(c).mean(-1) * c["mask"]).mean(),
            "(loss * mask).mean(), which divides by all N*L patches: divide by mask.sum(), the number of "
            "removed patches"),
    Mistake("root", lambda c: _over_removed(_err(c).mean(-1).sqrt(), c["mask"]),
            "the root of each patch's error: MAE uses the squared error"),
    Mistake("l1", lambda c: _over_removed((c["pred"] - _tgt(c)).abs().mean(-1), c["mask"]),
            "the absolute error (L1): MAE uses the squared error"),
    Mistake("mean_of_values", lambda c: ((c["pred"] - _tgt(c)) * c["mask"][..., None]).pow(2).mean(),
            "the squared error averaged over all N*L*p*p*C values: average over each patch (dim=-1), then over the "
            "removed patches: (loss * mask).sum() / mask.sum()"),
    Mistake("norm_pix_ignored", lambda c: masked_mse(c["pred"], c["target"] if c["norm"] else normalize_patches(c["target"]),
                                                     c["mask"]),
            lambda c: "norm_pix_loss=True ignored: normalise the target patches first" if c["norm"] else
                      "normalised targets although norm_pix_loss=False: use the raw patches then"),
    Mistake("pred_normalised", lambda c: masked_mse(normalize_patches(c["pred"]), _tgt(c), c["mask"]) if c["norm"] else None,
            "the prediction normalised too: only the target is normalised; the decoder learns to "
            "predict normalised patches"),
    *(_norm_row(row) for row in NORMALIZE_MISTAKES[:6]),
)


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
            case = {"target": target, "pred": pred, "mask": mask, "norm": norm, "channels": channels}
            judge(where, got, expected, LOSS_MISTAKES, case, matches=_same, atol=1e-6,
                  found=lambda m: f"{where}: expected {expected.item():.6g}, got {got.item():.6g}. You computed {m}",
                  hint="loss = ((pred - target) ** 2).mean(dim=-1); (loss * mask).sum() / mask.sum()")
    return passed("mae_loss", "squared error per patch, averaged over removed patches only; norm_pix_loss per patch")
