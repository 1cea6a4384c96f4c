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
from ._feedback import (
    ExerciseError,
    call_learner,
    checker,
    expect_close,
    expect_shape,
    passed,
    same,
)

# Wrong layouts a learner typically writes, and what to say about each.
_PATCHIFY_MISTAKES = (
    ("n c (h p) (w q) -> n (h w) (c p q)",
     "each patch vector is laid out channel-first '(c p q)'; MAE lays it out '(p q c)', channel "
     "fastest (the official einsum 'nchpwq->nhwpqc'), so pred and patchify(imgs) line up"),
    ("n c (h p) (w q) -> n (w h) (p q c)",
     "the patches come out column by column '(w h)'; list them row by row '(h w)', the order of "
     "the position table"),
    ("n c (h p) (w q) -> n (h w) (q p c)",
     "the pixels inside each patch are transposed '(q p c)'; walk each patch row by row '(p q c)'"),
    ("n c (h p) (w q) -> n (h w) (c q p)",
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
        expect_shape(f"patchify of {list(imgs.shape)} with p={p}", got, expected.shape,
                     hint=f"L = (H/p)*(W/p) = {(h // p) * (w // p)} patches, each a vector of p*p*C = {p * p * c} values")
        if same(got, expected):
            continue
        for pattern, hint in _PATCHIFY_MISTAKES:
            if same(got, rearrange(imgs, pattern, p=p, q=p)):
                raise ExerciseError(
                    f"patchify of {list(imgs.shape)} with p={p}: expected layout 'n (h w) (p q c)', "
                    f"got '{pattern.split('-> ')[1]}': {hint}. First patch expected "
                    f"{_head(expected[0, 0])}, got {_head(got[0, 0])}"
                )
        expect_close(f"patchify of {list(imgs.shape)} with p={p}", got, expected,
                     hint="patch l = h*(W/p) + w holds pixels [h*p:(h+1)*p, w*p:(w+1)*p], channel fastest")
    return passed("patchify", "layout (p q c), patches row by row, on 3-channel and 1-channel images")


def _head(vector: torch.Tensor, k: int = 6) -> str:
    values = ", ".join(f"{v:.2f}" for v in vector.flatten()[:k].tolist())
    return f"[{values}, ...]"


@checker("sincos_2d")
def check_sincos_2d(fn: Callable[[int, int], torch.Tensor]) -> bool:
    """Check ``fn(embed_dim, grid_size)`` -> the official ``[grid_size**2, embed_dim]`` table (no cls row)."""
    for dim, grid in ((16, 4), (32, 7)):
        expected = get_2d_sincos_pos_embed(dim, grid)
        got = call_learner(fn, "sincos_2d", dim, grid)
        length = grid * grid
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (length + 1, dim):
            raise ExerciseError(
                f"sincos_2d({dim}, {grid}): expected shape {[length, dim]}, got {list(got.shape)}: "
                f"leave out the cls row here (the model adds it with cls_token=True)"
            )
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (length, 2 * dim):
            raise ExerciseError(
                f"sincos_2d({dim}, {grid}): expected shape {[length, dim]}, got {list(got.shape)}: "
                f"each axis gets half the width, sincos_1d(embed_dim // 2, ...)"
            )
        expect_shape(f"sincos_2d({dim}, {grid})", got, expected.shape,
                     hint="one row per patch (grid_size**2 rows), embed_dim columns")
        if same(got, expected):
            if got.dtype != torch.float32:  # right values, but 01's proof cells compare with the float32 buffer
                raise ExerciseError(
                    f"sincos_2d({dim}, {grid}): expected dtype torch.float32, got {got.dtype}: end with .float() "
                    f"(sincos_1d computes in float64; the model's weights are float32, and the cells below add the "
                    f"table to float32 patch embeddings and compare it with the model's buffer)")
            continue
        rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        half = dim // 2
        row_first = torch.cat([sincos_1d(half, rows), sincos_1d(half, cols)], dim=1)
        if same(got, row_first):
            raise ExerciseError(
                f"sincos_2d({dim}, {grid}): expected the column code in the first half of the channels, "
                f"got the row code there: the official table (np.meshgrid(grid_w, grid_h)) encodes the "
                f"column first and the row second; swap the two halves"
            )
        expect_close(f"sincos_2d({dim}, {grid})", got, expected,
                     hint="cat([sincos_1d(D/2, column index), sincos_1d(D/2, row index)], dim=1)")
    return passed("sincos_2d", "official layout: column code first, row code second")
