"""Checkers for the optional stretch exercise at the end of notebooks 01-07, and the package's answers.

A stretch exercise goes one step past the notebook (nothing after it depends on it). Each one has
the package's answer here (``sincos_grid``, ...: what the student edition falls back to) and a table
of known mistakes, ``*_MISTAKES``: :class:`~._judge.Mistake` rows whose ``wrong(case)`` computes the
wrong answer from the check's inputs ``case`` (the arguments, as a tuple), read by :func:`~._judge.judge`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..masking import num_kept
from ..pos_embed import get_2d_sincos_pos_embed, sincos_1d
from ._feedback import call_learner, checker, passed
from ._judge import Contract, Mistake, judge


def _row(name: str, wrong: Callable[..., Any], message: str) -> Mistake:
    """A mistake whose wrong answer is ``wrong(*case)``: called like the exercise."""
    return Mistake(name, lambda case: wrong(*case), message)


def _shape_row(name: str, shape: Callable[..., list[int]], message: str) -> Mistake:
    """A mistake recognised by the answer's shape alone, ``shape(*case)``."""
    return Mistake(name, lambda case: shape(*case), message, shape=True)


def _dtype(where: str, dtype: torch.dtype, why: str) -> Contract:
    """The answer must have ``dtype``; the message says what came back and why it matters."""
    return Contract(dtype=(dtype, lambda got: f"{where}: expected dtype {dtype}, got {got.dtype}: {why}"))


# ------------------------------------------------------------------ 01: the sin-cos table of a non-square grid
def sincos_grid(embed_dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """The official 2-D sin-cos table of a ``grid_h x grid_w`` grid, no cls row: ``[grid_h * grid_w, D]`` float32."""
    return get_2d_sincos_pos_embed(embed_dim, (grid_h, grid_w))


def _table(embed_dim: int, first: torch.Tensor, second: torch.Tensor, interleave: bool = False) -> torch.Tensor:
    """Two 1-D codes of width D/2 side by side (a wrong answer's building block)."""
    codes = [sincos_1d(embed_dim // 2, t) for t in (first, second)]
    if interleave:  # sin_0, cos_0, sin_1, cos_1, ... instead of all sines then all cosines
        codes = [torch.stack(c.chunk(2, dim=1), dim=2).reshape(c.shape) for c in codes]
    return torch.cat(codes, dim=1).float()


def _rows_cols(grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")


SINCOS_GRID_MISTAKES = (
    _row("column_by_column", lambda d, h, w: _table(d, _rows_cols(h, w)[1].T, _rows_cols(h, w)[0].T),
         "the patches are numbered column by column; number them row by row, patch l = row * grid_w + col, as patchify does"),
    _row("row_code_first", lambda d, h, w: _table(d, _rows_cols(h, w)[0], _rows_cols(h, w)[1]),
         "the first half of the channels encodes the row; the official table puts the column's code first and the row's second"),
    _row("grid_swapped", lambda d, h, w: sincos_grid(d, w, h),
         "this is the table of a grid_w x grid_h grid: grid_h counts the rows (the first coordinate), grid_w the columns"),
    _row("sin_cos_interleaved", lambda d, h, w: _table(d, _rows_cols(h, w)[1], _rows_cols(h, w)[0], interleave=True),
         "sines and cosines are interleaved; each axis's code is all its sines, then all its cosines (sincos_1d's layout)"),
    _shape_row("square_of_grid_h", lambda d, h, w: [h * h, d],
               "a grid_h x grid_w grid has grid_h * grid_w patches, not grid_h * grid_h"),
    _shape_row("square_of_grid_w", lambda d, h, w: [w * w, d],
               "a grid_h x grid_w grid has grid_h * grid_w patches, not grid_w * grid_w"),
    _shape_row("full_width_per_axis", lambda d, h, w: [h * w, 2 * d],
               "each axis gets half the channels: sincos_1d(embed_dim // 2, ...)"),
    _shape_row("cls_row", lambda d, h, w: [1 + h * w, d], "leave out the cls row; the model adds it"),
)


@checker("sincos_grid")
def check_sincos_grid(fn: Callable[[int, int, int], torch.Tensor]) -> bool:
    """Check ``fn(embed_dim, grid_h, grid_w)`` -> ``[grid_h * grid_w, embed_dim]`` float32 on grids with h != w."""
    for case in ((8, 2, 3), (16, 3, 5), (12, 4, 2)):
        where = "sincos_grid(embed_dim={}, grid_h={}, grid_w={})".format(*case)
        got = call_learner(fn, "sincos_grid", *case)
        judge(where, got, sincos_grid(*case), SINCOS_GRID_MISTAKES, case, atol=1e-5, rtol=1e-4,
              hint="column code in the first half, row code in the second, patches row by row",
              contract=_dtype(where, torch.float32, "the model's tables are float32; end with .float() "
                                                    "(sincos_1d computes in float64)"))
    return passed("sincos_grid", "row by row, column code first, float32, on grids with grid_h != grid_w")


# ------------------------------------------------------------------ 02: block masking from scratch, the ratio exact
def _block_mask(order: torch.Tensor, grid_h: int, grid_w: int, block: int, mask_ratio: float, *,
                removed: int | None = None, blocks_by_column: bool = False, whole_blocks: bool = False) -> torch.Tensor:
    """The block mask, and (through the keywords) the known wrong ones."""
    rows, cols = (t.reshape(-1) for t in _rows_cols(grid_h, grid_w))
    blocks_h, blocks_w = -(-grid_h // block), -(-grid_w // block)
    block_id = (cols // block) * blocks_h + rows // block if blocks_by_column else (rows // block) * blocks_w + cols // block
    within = (rows % block) * block + cols % block  # row by row inside the block
    position = torch.argsort(order, dim=1)  # [N, blocks]: where each block comes in the order
    key = position[:, block_id] * block * block + within  # [N, L]: blocks never interleave
    rank = torch.argsort(torch.argsort(key, dim=1), dim=1)
    length = grid_h * grid_w
    count = length - num_kept(length, mask_ratio) if removed is None else removed
    if whole_blocks:  # stop before the block that would overshoot
        sizes = torch.bincount(block_id, minlength=blocks_h * blocks_w)[order]  # [N, blocks] in removal order
        done = (sizes.cumsum(dim=1) <= count).sum(dim=1, keepdim=True)
        count = torch.gather(torch.cat([torch.zeros_like(done), sizes.cumsum(dim=1)], dim=1), 1, done)
    return (rank < count).float()


def block_mask(order: torch.Tensor, grid_h: int, grid_w: int, block: int, mask_ratio: float) -> torch.Tensor:
    """Block masking with an exact count: ``[N, grid_h * grid_w]`` float32, 0 = keep, 1 = removed.

    Args:
        order: ``[N, blocks]``, a permutation per image of the ``block x block`` squares that tile the grid
            (numbered row by row; the last row and column of squares are cut by the grid's edge).
    Returns:
        The mask that removes the squares in ``order``, each square's patches row by row, until exactly
        ``L - int(L * (1 - mask_ratio))`` patches are removed.
    """
    return _block_mask(order, grid_h, grid_w, block, mask_ratio)


BLOCK_MASK_MISTAKES = (
    _row("int_of_ratio_removed", lambda o, h, w, b, r: _block_mask(o, h, w, b, r, removed=int(h * w * r)),
         "removed int(L * mask_ratio) patches; MAE keeps int(L * (1 - mask_ratio)) and removes the rest"),
    _row("mask_inverted", lambda o, h, w, b, r: 1 - _block_mask(o, h, w, b, r),
         "the mask is inverted: 0 = keep, 1 = removed"),
    _row("whole_squares_only", lambda o, h, w, b, r: _block_mask(o, h, w, b, r, whole_blocks=True),
         "only whole squares are removed, so the count falls short; remove part of the next square to make it exact"),
    _row("squares_by_column", lambda o, h, w, b, r: _block_mask(o, h, w, b, r, blocks_by_column=True),
         "the squares are numbered column by column; number them row by row, square (i, j) = i * blocks_w + j"),
    _shape_row("no_batch", lambda o, h, w, b, r: [h * w], "one row of L entries per image: [N, L]"),
)


@checker("block_mask")
def check_block_mask(fn: Callable[[torch.Tensor, int, int, int, float], torch.Tensor]) -> bool:
    """Check ``fn(order, grid_h, grid_w, block, mask_ratio)`` -> ``[N, L]`` float32 on grids that squares do not fit."""
    gen = torch.Generator().manual_seed(0)
    for n, h, w, b, ratio in ((3, 7, 7, 2, 0.75), (2, 6, 8, 3, 0.6), (2, 5, 4, 2, 0.5)):
        blocks = -(-h // b) * -(-w // b)
        case = (torch.stack([torch.randperm(blocks, generator=gen) for _ in range(n)]), h, w, b, ratio)
        where = f"block_mask(order {[n, blocks]}, grid_h={h}, grid_w={w}, block={b}, mask_ratio={ratio})"
        got = call_learner(fn, "block_mask", case[0].clone(), *case[1:])
        judge(where, got, block_mask(*case), BLOCK_MASK_MISTAKES, case, atol=1e-6, rtol=1e-6,
              hint="remove the squares in order, each row by row, until L - int(L * (1 - mask_ratio)) are removed",
              contract=_dtype(where, torch.float32, "the mask multiplies the loss: return floats 0.0 / 1.0 (mask.float())"))
    return passed("block_mask", "whole squares in the given order, the count exact, on grids the squares do not fit")



# ------------------------------------------------------------------ 03: attention rollout
def _rollout(weights: list[torch.Tensor], *, fuse: str = "mean", residual: str = "half", normalise: bool = True,
             later_on_left: bool = True) -> torch.Tensor:
    """Attention rollout, and (through the keywords) the known wrong ones."""
    n, _, t, _ = weights[0].shape
    eye = torch.eye(t, dtype=weights[0].dtype)
    rollout = eye.expand(n, t, t)
    for w in weights:
        mixed = w.mean(dim=1) if fuse == "mean" else w.amax(dim=1)
        mixed = {"half": 0.5 * mixed + 0.5 * eye, "sum": mixed + eye, "none": mixed}[residual]
        mixed = mixed / mixed.sum(dim=-1, keepdim=True) if normalise else mixed
        rollout = mixed @ rollout if later_on_left else rollout @ mixed
    return rollout


def attention_rollout(weights: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): one ``[N, heads, T, T]`` per block, first block first -> ``[N, T, T]``.

    Each block's heads are averaged, half of each row given back to the token itself (the residual),
    the rows renormalised, and the blocks multiplied with the later block on the left.
    """
    return _rollout(weights)


ROLLOUT_MISTAKES = (
    _row("wrong_order", lambda ws: _rollout(ws, later_on_left=False),
         "the blocks are multiplied in the wrong order; a later block reads what the earlier ones mixed: "
         "rollout = A_block @ rollout"),
    _row("no_residual", lambda ws: _rollout(ws, residual="none"),
         "the residual connection is missing: mix each block's attention half and half with the identity, 0.5 * A + 0.5 * I"),
    _row("max_over_heads", lambda ws: _rollout(ws, fuse="max"), "the heads are fused with their maximum; average them (mean over dim 1)"),
    _row("not_renormalised", lambda ws: _rollout(ws, residual="sum", normalise=False),
         "rows are not renormalised; divide each row by its sum, so that every row of the rollout sums to 1"),
    _row("last_block_only", lambda ws: _rollout(ws[-1:]),
         "only the last block is used; multiply the mixed attention of every block, first block first"),
    _shape_row("heads_kept", lambda ws: list(ws[0].shape), "average the heads: one [T, T] per image"),
    _shape_row("no_batch", lambda ws: list(ws[0].shape[2:]), "keep the batch dimension: [N, T, T]"),
)


@checker("attention_rollout")
def check_attention_rollout(fn: Callable[[list[torch.Tensor]], torch.Tensor]) -> bool:
    """Check ``fn(weights)`` -> ``[N, T, T]`` on random attention maps of 3 and 2 blocks (no two alike)."""
    gen = torch.Generator().manual_seed(0)
    for n, heads, t, blocks in ((2, 3, 5, 3), (1, 4, 6, 2)):
        case = ([torch.softmax(3 * torch.randn(n, heads, t, t, generator=gen), dim=-1) for _ in range(blocks)],)
        where = f"attention_rollout({blocks} x weights {[n, heads, t, t]})"
        got = call_learner(fn, "attention_rollout", [w.clone() for w in case[0]])
        judge(where, got, attention_rollout(*case), ROLLOUT_MISTAKES, case, atol=1e-5, rtol=1e-4,
              hint="per block: mean over heads, 0.5 * A + 0.5 * I, rows / their sum; rollout = A_block @ rollout",
              contract=_dtype(where, torch.float32, "keep the weights' dtype, float32"))
    return passed("attention_rollout", "heads averaged, the residual, rows renormalised, later blocks on the left")


# ------------------------------------------------------------------ 04: the decoder's sequence by scatter, from ids_keep
def _kept_mask(ids_keep: torch.Tensor, length: int) -> torch.Tensor:
    """``[N, L]`` bool, True at the kept patches."""
    return torch.zeros(ids_keep.shape[0], length, dtype=torch.bool).scatter(1, ids_keep, True)


def scatter_tokens(x_visible: torch.Tensor, ids_keep: torch.Tensor, mask_token: torch.Tensor, length: int) -> torch.Tensor:
    """The decoder's full sequence, built by scatter: ``[N, L_keep, D]`` kept tokens (shuffled order, as
    ``ids_keep [N, L_keep]`` lists their patches) put at their patches, ``mask_token [1, 1, D]`` everywhere
    else: ``[N, L, D]`` in image order, with the gradient reaching ``mask_token``."""
    n, _, dim = x_visible.shape
    full = mask_token.expand(n, length, dim)
    return full.scatter(1, ids_keep.unsqueeze(-1).expand(-1, -1, dim), x_visible)


def _bool_fill(x_visible: torch.Tensor, ids_keep: torch.Tensor, mask_token: torch.Tensor, length: int) -> torch.Tensor:
    """The kept positions filled through a boolean mask: in image order, so with the tokens in the wrong places."""
    n, _, dim = x_visible.shape
    out = mask_token.expand(n, length, dim).clone()
    out[_kept_mask(ids_keep, length)] = x_visible.reshape(-1, dim)
    return out


SCATTER_MISTAKES = (
    _row("boolean_fill", _bool_fill,
         "the kept tokens are in the wrong places: x_visible is in shuffled order (ids_keep's order), but filling "
         "out[kept] = ... goes through the kept positions in image order; scatter them with ids_keep"),
    _row("still_shuffled", lambda x, ids, token, length: torch.cat([x, token.expand(x.shape[0], length - x.shape[1], -1)], 1),
         "the kept tokens are still first, in shuffled order; put token j at patch ids_keep[:, j]"),
    _row("zeros_not_mask_token", lambda x, ids, token, length: scatter_tokens(x, ids, torch.zeros_like(token), length),
         "the removed patches hold zeros; they hold the learned mask_token, which the decoder trains"),
    _shape_row("no_removed", lambda x, ids, token, length: list(x.shape), "return all L patches: [N, L, D]"),
)


@checker("scatter_tokens")
def check_scatter_tokens(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(x_visible, ids_keep, mask_token, L)`` -> ``[N, L, D]`` with the gradient reaching ``mask_token``."""
    gen = torch.Generator().manual_seed(0)
    for n, keep, length, dim in ((2, 3, 8, 4), (3, 12, 49, 5)):
        ids_keep = torch.argsort(torch.rand(n, length, generator=gen), dim=1)[:, :keep]  # shuffled, not sorted
        token = torch.randn(1, 1, dim, generator=gen).requires_grad_()  # learned: the only input that needs grad
        case = (torch.randn(n, keep, dim, generator=gen), ids_keep, token, length)
        where = f"scatter_tokens(x_visible {[n, keep, dim]}, ids_keep {[n, keep]}, mask_token [1, 1, {dim}], L={length})"
        got = call_learner(fn, "scatter_tokens", case[0].clone(), ids_keep.clone(), token, length)
        judge(where, got, scatter_tokens(*case).detach(), SCATTER_MISTAKES, case, atol=1e-6, rtol=1e-6,
              hint="start from mask_token.expand(N, L, D) and scatter x_visible along dim 1 at ids_keep",
              contract=Contract(dtype=(torch.float32, lambda got: f"{where}: expected dtype torch.float32, got {got.dtype}"),
                                requires_grad=(True, f"{where}: expected a result that requires grad, got one that does not, "
                                                     f"so mask_token would never learn: keep it in the graph (no .detach(), "
                                                     f".data or torch.no_grad())")))
    return passed("scatter_tokens", "kept tokens at their patches, the mask token elsewhere, its gradient kept")


# ------------------------------------------------------------------ 05: a norm_pix_loss prediction back to pixels
def _unnormalize(pred: torch.Tensor, target: torch.Tensor, *, dims: tuple[int, ...] = (-1,), unbiased: bool = True,
                 eps: float = 1e-6, power: float = 0.5) -> torch.Tensor:
    """``pred`` scaled by the target patches' std and shifted by their mean; the keywords give the known wrong ones."""
    mean = target.mean(dim=dims, keepdim=True)
    var = target.var(dim=dims, keepdim=True, unbiased=unbiased)
    return pred * (var + eps) ** power + mean


def unnormalize_pred(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A ``norm_pix_loss`` prediction in pixels: ``pred [N, L, p*p*C]`` times each target patch's std
    (unbiased variance + 1e-6, as :func:`~mae_lesson.loss.normalize_patches`) plus its mean."""
    return _unnormalize(pred, target)


UNNORMALIZE_MISTAKES = (
    _row("biased_variance", lambda p, t: _unnormalize(p, t, unbiased=False),
         "the variance is the biased one; normalize_patches uses target.var(dim=-1), the unbiased variance"),
    _row("no_eps", lambda p, t: _unnormalize(p, t, eps=0.0),
         "eps is missing: the std is sqrt(var + 1e-6), as in normalize_patches (a flat patch has var 0)"),
    _row("variance_not_std", lambda p, t: _unnormalize(p, t, power=1.0), "pred is scaled by the variance; scale it by the std, sqrt(var + 1e-6)"),
    _row("per_image_statistics", lambda p, t: _unnormalize(p, t, dims=(1, 2)),
         "the mean and std are the whole image's; each patch has its own, over its p*p*C values (dim=-1)"),
    _row("normalised_again", lambda p, t: (p - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5,
         "pred is normalised a second time; undo the normalisation: pred * std + mean"),
    _row("shift_then_scale", lambda p, t: (p + t.mean(-1, keepdim=True)) * (t.var(-1, keepdim=True) + 1e-6) ** 0.5,
         "the mean is added before scaling; scale first, then add the mean: pred * std + mean"),
)


@checker("unnormalize_pred")
def check_unnormalize_pred(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(pred, target)`` -> ``[N, L, p*p*C]`` on patches of different scales, a flat one among them."""
    gen = torch.Generator().manual_seed(0)
    for n, length, dim in ((2, 6, 16), (3, 10, 12)):
        target = torch.randn(n, length, dim, generator=gen) * torch.rand(n, length, 1, generator=gen) * 3 + 2
        target[0, 1] = 0.5  # a flat patch: only eps keeps its std above 0
        case = (torch.randn(n, length, dim, generator=gen), target)
        where = f"unnormalize_pred(pred {[n, length, dim]}, target {[n, length, dim]})"
        got = call_learner(fn, "unnormalize_pred", case[0].clone(), target.clone())
        judge(where, got, unnormalize_pred(*case), UNNORMALIZE_MISTAKES, case, atol=1e-5, rtol=1e-4,
              hint="per patch (dim=-1): pred * (target.var + 1e-6) ** 0.5 + target.mean",
              contract=_dtype(where, torch.float32, "keep pred's dtype, float32"))
    return passed("unnormalize_pred", "each patch's own mean and unbiased std with eps, scale then shift")
