"""Checkers for notebook 01 (patch embedding): ``patchify`` and the 2-D sin-cos table.

Each checker calls the learner's function on fixed inputs, compares the result with
:mod:`mae_lesson.patch_embed` / :mod:`mae_lesson.pos_embed`, and either prints one success
line or raises :class:`~mae_lesson.exercises.ExerciseError` saying what was expected, what came
back and, for the usual mistakes, what went wrong.
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange

from ..patch_embed import patchify
from ..pos_embed import get_2d_sincos_pos_embed, sincos_1d
from ._feedback import call_learner, checker, passed
from ._judge import Contract, Mistake, judge


def _layout(name: str, pattern: str, hint: str) -> Mistake:
    """A wrong patch layout: the images rearranged by ``pattern``; the message names the layout it gives."""
    return Mistake(name, lambda c: rearrange(c["imgs"], pattern, p=c["p"], q=c["p"]), f"'{pattern.split('-> ')[1]}': {hint}")


# Wrong layouts a learner typically writes, and what to say about each. The case: imgs and p.
PATCHIFY_MISTAKES = (
    _layout("channel_first", "n c (h p) (w q) -> n (h w) (c p q)",
            "each patch vector is laid out channel-first '(c p q)'; MAE lays it out '(p q c)', channel "
            "fastest (the official einsum 'nchpwq->nhwpqc'), so pred and patchify(imgs) line up"),
    _layout("column_order", "n c (h p) (w q) -> n (w h) (p q c)",
            "the patches come out column by column '(w h)'; list them row by row '(h w)', the order of "
            "the position table"),
    _layout("transposed_pixels", "n c (h p) (w q) -> n (h w) (q p c)",
            "the pixels inside each patch are transposed '(q p c)'; walk each patch row by row '(p q c)'"),
    _layout("channel_first_transposed", "n c (h p) (w q) -> n (h w) (c q p)",
            "each patch vector is channel-first and transposed '(c q p)'; use '(p q c)'"),
)


@checker("patchify")
def check_patchify(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(imgs, p)``: ``[N, C, H, W]`` -> ``[N, L, p*p*C]`` in the official layout.

    Tested on a 3-channel non-square batch (where every layout mistake shows) and on a
    Fashion-MNIST-sized batch.
    """
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(2, 3, 8, 12, generator=gen), 4), (torch.randn(2, 1, 28, 28, generator=gen), 4)]
    for imgs, p in cases:
        n, c, h, w = imgs.shape
        expected = patchify(imgs, p)
        got = call_learner(fn, "patchify", imgs.clone(), p)
        where = f"patchify of {list(imgs.shape)} with p={p}"
        judge(where, got, expected, PATCHIFY_MISTAKES, {"imgs": imgs, "p": p},
              shape_hint=f"L = (H/p)*(W/p) = {(h // p) * (w // p)} patches, each a vector of p*p*C = {p * p * c} values",
              found=lambda m: f"{where}: expected layout 'n (h w) (p q c)', got {m}. First patch expected "
                              f"{_head(expected[0, 0])}, got {_head(got[0, 0])}",
              hint="patch l = h*(W/p) + w holds pixels [h*p:(h+1)*p, w*p:(w+1)*p], channel fastest")
    return passed("patchify", "layout (p q c), patches row by row, on 3-channel and 1-channel images")


def _head(vector: torch.Tensor, k: int = 6) -> str:
    values = ", ".join(f"{v:.2f}" for v in vector.flatten()[:k].tolist())
    return f"[{values}, ...]"


def _row_first(c: dict) -> torch.Tensor:
    """The table with the row code first: the halves swapped."""
    rows, cols = torch.meshgrid(torch.arange(c["grid"]), torch.arange(c["grid"]), indexing="ij")
    return torch.cat([sincos_1d(c["dim"] // 2, rows), sincos_1d(c["dim"] // 2, cols)], dim=1)


# The case: dim (embed_dim) and grid (grid_size).
SINCOS_MISTAKES = (
    Mistake("cls_row", lambda c: [c["grid"] ** 2 + 1, c["dim"]], shape=True,
            message="leave out the cls row here (the model adds it with cls_token=True)"),
    Mistake("full_width_per_axis", lambda c: [c["grid"] ** 2, 2 * c["dim"]], shape=True,
            message="each axis gets half the width, sincos_1d(embed_dim // 2, ...)"),
    Mistake("row_first", _row_first, "expected the column code in the first half of the channels, got the row code "
            "there: the official table (np.meshgrid(grid_w, grid_h)) encodes the column first and the row second; "
            "swap the two halves"),
)
def _float32(where: str) -> Contract:
    """Right values in float64 are named: 01's proof cells compare the table with the model's float32 buffer."""
    return Contract(dtype=(torch.float32, lambda got: (
        f"{where}: expected dtype torch.float32, got {got.dtype}: end with .float() (sincos_1d computes in float64; "
        f"the model's weights are float32, and the cells below add the table to float32 patch embeddings and "
        f"compare it with the model's buffer)")))


@checker("sincos_2d")
def check_sincos_2d(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Check ``fn(embed_dim, grid_size)`` -> the official ``[grid_size**2, embed_dim]`` table (no cls row)."""
    for dim, grid in ((16, 4), (32, 7)):
        expected = get_2d_sincos_pos_embed(dim, grid)
        got = call_learner(fn, "sincos_2d", dim, grid)
        where = f"sincos_2d({dim}, {grid})"
        judge(where, got, expected, SINCOS_MISTAKES, {"dim": dim, "grid": grid}, contract=_float32(where),
              shape_hint="one row per patch (grid_size**2 rows), embed_dim columns", found=lambda m: f"{where}: {m}",
              hint="cat([sincos_1d(D/2, column index), sincos_1d(D/2, row index)], dim=1)")
    return passed("sincos_2d", "official layout: column code first, row code second")
