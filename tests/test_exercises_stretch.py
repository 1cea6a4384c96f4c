"""The optional stretch exercises of notebooks 01-07 (mae_lesson/exercises/stretch.py).

Per exercise: the checker accepts a right answer written in another style than the package's, names every
mistake of its table with its message, rejects a wrong answer the table does not list without saying
"Correct", and says "Not attempted" only for the untouched stub. The right answers here are written
independently of the package (loops, NumPy, the official recipes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mae_lesson.exercises import stretch

from conftest import accepts, not_attempted, np_2d_sincos, rejects


def stub(*args):
    """The untouched stub."""
    # your code here
    ...


def forgot_return(*args):
    answer = torch.zeros(3)  # noqa: F841 - computed, never returned
    answer += 1


def nudged(fn):
    """A wrong answer no table lists: the right one, shifted."""
    return lambda *args: fn(*args) + 0.25


# ------------------------------------------------------------------------- 01 sincos_grid
def sincos_grid_numpy(embed_dim, grid_h, grid_w):
    return torch.from_numpy(np_2d_sincos(embed_dim, (grid_h, grid_w))).float()


def sincos_grid_loops(embed_dim, grid_h, grid_w):
    half = embed_dim // 2
    omega = [1.0 / 10000 ** (i / (half / 2)) for i in range(half // 2)]
    rows = []
    for r in range(grid_h):
        for c in range(grid_w):
            row = []
            for pos in (c, r):
                row += [math.sin(pos * o) for o in omega] + [math.cos(pos * o) for o in omega]
            rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("fn", [sincos_grid_numpy, sincos_grid_loops])
def test_sincos_grid_accepts_other_styles(fn, capsys):
    accepts(stretch.check_sincos_grid, fn, capsys)


@pytest.mark.parametrize("name, wrong, message", stretch.SINCOS_GRID_MISTAKES, ids=[m[0] for m in stretch.SINCOS_GRID_MISTAKES])
def test_sincos_grid_names_each_mistake(name, wrong, message):
    rejects(stretch.check_sincos_grid, wrong, message)


@pytest.mark.parametrize("fn, phrase", [
    (lambda d, h, w: sincos_grid_numpy(d, h, w).double(), "end with .float()"),
    (lambda d, h, w: sincos_grid_numpy(d, h, h), "not grid_h * grid_h"),
    (lambda d, h, w: torch.cat([torch.zeros(1, d), sincos_grid_numpy(d, h, w)]), "leave out the cls row"),
    (lambda d, h, w: sincos_grid_numpy(2 * d, h, w), "half the channels"),
    (nudged(sincos_grid_numpy), "values differ"),
    (forgot_return, "did you forget `return`"),
])
def test_sincos_grid_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch.check_sincos_grid, fn, phrase)


def test_sincos_grid_stub_is_not_attempted(capsys):
    not_attempted(stretch.check_sincos_grid, stub, capsys, "sincos_grid")


# ------------------------------------------------------------------------- every exercise
CHECKERS = {name.removeprefix("check_"): fn for name, fn in vars(stretch).items() if name.startswith("check_")}


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_only_the_stub_is_not_attempted(name):
    printed = rejects(CHECKERS[name], forgot_return, "returned None")
    assert "Not attempted" not in printed


def test_the_tables_hold_distinct_wrong_answers():
    """Each listed mistake differs from the right answer on the checker's inputs (else it could never be named)."""
    for d, h, w in ((8, 2, 3), (16, 3, 5)):
        right = stretch.sincos_grid(d, h, w)
        for name, wrong, _ in stretch.SINCOS_GRID_MISTAKES:
            assert not torch.allclose(wrong(d, h, w), right), name
