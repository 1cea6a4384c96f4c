"""Checkers for the optional stretch exercise at the end of notebooks 01-07, and the package's answers.

A stretch exercise goes one step past the notebook (nothing after it depends on it). Each one has
the package's answer here (``sincos_grid``, ...: what the student edition falls back to), a contract
(type, shape, dtype) checked first, and a table of known mistakes: ``(name, wrong answer, message)``,
where the wrong answer is computed from the same inputs as the right one, so the checker names the
mistake when the learner's output equals it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..pos_embed import get_2d_sincos_pos_embed, sincos_1d
from ._feedback import ExerciseError, call_learner, checker, diagnose, expect_shape, passed

# (name, the wrong answer computed from the checker's inputs, what to tell the learner)
Mistake = tuple[str, Callable[..., Any], str]


def _contract(where: str, got: Any, shape: list[int], dtype: torch.dtype, hints: dict[tuple[int, ...], str],
              dtype_hint: str) -> None:
    """A tensor of ``shape`` and ``dtype``; ``hints`` names the mistake behind a known wrong shape."""
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(shape) and tuple(got.shape) in hints:
        raise ExerciseError(f"{where}: expected shape {list(shape)}, got {list(got.shape)}: {hints[tuple(got.shape)]}")
    expect_shape(where, got, shape)
    if got.dtype != dtype:
        raise ExerciseError(f"{where}: expected dtype {dtype}, got {got.dtype}: {dtype_hint}")


def _judge(where: str, got: torch.Tensor, args: tuple, reference: Callable[..., torch.Tensor],
           mistakes: list[Mistake], hint: str, atol: float = 1e-5) -> None:
    """Pass if ``got`` equals ``reference(*args)``; else name the first mistake of the table it reproduces."""
    wrong = [(fn(*args), message) for _, fn, message in mistakes]
    diagnose(where, got, reference(*args), wrong, hint, atol=atol, rtol=1e-4)


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


SINCOS_GRID_MISTAKES: list[Mistake] = [
    ("column by column", lambda d, h, w: _table(d, _rows_cols(h, w)[1].T, _rows_cols(h, w)[0].T),
     "the patches are numbered column by column; number them row by row, patch l = row * grid_w + col, as patchify does"),
    ("row code first", lambda d, h, w: _table(d, _rows_cols(h, w)[0], _rows_cols(h, w)[1]),
     "the first half of the channels encodes the row; the official table puts the column's code first and the row's second"),
    ("grid_h and grid_w swapped", lambda d, h, w: sincos_grid(d, w, h),
     "this is the table of a grid_w x grid_h grid: grid_h counts the rows (the first coordinate), grid_w the columns"),
    ("sin and cos interleaved", lambda d, h, w: _table(d, _rows_cols(h, w)[1], _rows_cols(h, w)[0], interleave=True),
     "sines and cosines are interleaved; each axis's code is all its sines, then all its cosines (sincos_1d's layout)"),
]


@checker("sincos_grid")
def check_sincos_grid(fn: Callable[[int, int, int], torch.Tensor]) -> bool:
    """Check ``fn(embed_dim, grid_h, grid_w)`` -> ``[grid_h * grid_w, embed_dim]`` float32 on grids with h != w."""
    for d, h, w in ((8, 2, 3), (16, 3, 5), (12, 4, 2)):
        where = f"sincos_grid(embed_dim={d}, grid_h={h}, grid_w={w})"
        got = call_learner(fn, "sincos_grid", d, h, w)
        hints = {(h * h, d): "a grid_h x grid_w grid has grid_h * grid_w patches, not grid_h * grid_h",
                 (w * w, d): "a grid_h x grid_w grid has grid_h * grid_w patches, not grid_w * grid_w",
                 (h * w, 2 * d): "each axis gets half the channels: sincos_1d(embed_dim // 2, ...)",
                 (1 + h * w, d): "leave out the cls row; the model adds it"}
        _contract(where, got, [h * w, d], torch.float32, hints,
                  "the model's tables are float32; end with .float() (sincos_1d computes in float64)")
        _judge(where, got, (d, h, w), sincos_grid, SINCOS_GRID_MISTAKES,
               hint="column code in the first half, row code in the second, patches row by row")
    return passed("sincos_grid", "row by row, column code first, float32, on grids with grid_h != grid_w")
