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


def answer_of(row):
    """A learner's function that makes the mistake of ``row``: its wrong answer (a tensor of its shape for a shape row)."""
    if row.shape:
        return lambda *args: torch.zeros(row.wrong(args))
    return lambda *args: row.wrong(args)


def rows(table):
    return pytest.mark.parametrize("row", table, ids=[row.name for row in table])


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


@rows(stretch.SINCOS_GRID_MISTAKES)
def test_sincos_grid_names_each_mistake(row):
    rejects(stretch.check_sincos_grid, answer_of(row), row.message)


@pytest.mark.parametrize("fn, phrase", [
    (lambda d, h, w: sincos_grid_numpy(d, h, w).double(), "end with .float()"),
    (lambda d, h, w: sincos_grid_numpy(d, h, h), "not grid_h * grid_h"),
    (lambda d, h, w: torch.cat([torch.zeros(1, d), sincos_grid_numpy(d, h, w)]), "leave out the cls row"),
    (lambda d, h, w: sincos_grid_numpy(2 * d, h, w), "half the channels"),
    (lambda d, h, w: sincos_grid_numpy(d, h, w)[:, : d // 2], "expected shape"),
    (nudged(sincos_grid_numpy), "values differ"),
    (forgot_return, "did you forget `return`"),
])
def test_sincos_grid_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch.check_sincos_grid, fn, phrase)


def test_sincos_grid_stub_is_not_attempted(capsys):
    not_attempted(stretch.check_sincos_grid, stub, capsys, "sincos_grid")


# ------------------------------------------------------------------------- 02 block_mask
def block_mask_loops(order, grid_h, grid_w, block, mask_ratio):
    length = grid_h * grid_w
    todo = length - math.floor(length * (1 - mask_ratio))
    per_row = math.ceil(grid_w / block)
    mask = torch.zeros(order.shape[0], length)
    for i, squares in enumerate(order.tolist()):
        patches = [r * grid_w + c for s in squares
                   for r in range(s // per_row * block, min(s // per_row * block + block, grid_h))
                   for c in range(s % per_row * block, min(s % per_row * block + block, grid_w))]
        mask[i, patches[:todo]] = 1.0
    return mask


def test_block_mask_accepts_another_style(capsys):
    accepts(stretch.check_block_mask, block_mask_loops, capsys)


@rows(stretch.BLOCK_MASK_MISTAKES)
def test_block_mask_names_each_mistake(row):
    rejects(stretch.check_block_mask, answer_of(row), row.message)


@pytest.mark.parametrize("fn, phrase", [
    (lambda *args: block_mask_loops(*args).bool(), "return floats 0.0 / 1.0"),
    (lambda *args: block_mask_loops(*args)[0], "one row of L entries per image"),
    (lambda o, h, w, b, r: block_mask_loops(o.flip(1), h, w, b, r), "remove the squares in order"),
    (forgot_return, "did you forget `return`"),
])
def test_block_mask_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch.check_block_mask, fn, phrase)


def test_block_mask_is_blocky_and_exact():
    """The reference itself, from first principles: exact count, and all but one removed square removed whole."""
    order = torch.stack([torch.randperm(16, generator=torch.Generator().manual_seed(i)) for i in range(20)])
    mask = stretch.block_mask(order, 7, 7, 2, 0.75)
    assert mask.sum(dim=1).eq(37).all()
    squares = mask.reshape(20, 7, 7)[:, :6, :6].reshape(20, 3, 2, 3, 2).sum(dim=(2, 4))  # the whole 2x2 squares
    assert ((squares == 0) | (squares == 4)).flatten(1).sum(dim=1).ge(8).all()


# ------------------------------------------------------------------------- 03 attention_rollout
def rollout_loops(weights):
    """Abnar & Zuidema's recipe with A + I (renormalised, the same as 0.5 A + 0.5 I), one image at a time."""
    out = []
    for i in range(weights[0].shape[0]):
        t = weights[0].shape[-1]
        total = torch.eye(t)
        for w in weights:
            a = w[i].sum(dim=0) / w.shape[1] + torch.eye(t)
            total = torch.linalg.multi_dot([a / a.sum(dim=1, keepdim=True), total])
        out.append(total)
    return torch.stack(out)


def test_attention_rollout_accepts_another_style_and_equals_the_package(capsys):
    from mae_lesson.attention import attention_rollout
    accepts(stretch.check_attention_rollout, rollout_loops, capsys)
    weights = [torch.softmax(torch.randn(2, 3, 5, 5), dim=-1) for _ in range(3)]
    torch.testing.assert_close(stretch.attention_rollout(weights), attention_rollout(weights))


@rows(stretch.ROLLOUT_MISTAKES)
def test_attention_rollout_names_each_mistake(row):
    rejects(stretch.check_attention_rollout, answer_of(row), row.message)


@pytest.mark.parametrize("fn, phrase", [
    (lambda ws: rollout_loops(ws).double(), "float32"),
    (lambda ws: rollout_loops([w.transpose(-2, -1) for w in ws]), "values differ"),
    (nudged(rollout_loops), "values differ"),
    (forgot_return, "did you forget `return`"),
])
def test_attention_rollout_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch.check_attention_rollout, fn, phrase)


# ------------------------------------------------------------------------- 04 scatter_tokens
def scatter_tokens_index(x_visible, ids_keep, mask_token, length):
    n, keep, d = x_visible.shape
    out = mask_token.expand(n, length, d).clone()  # clone keeps the graph back to mask_token
    out[torch.arange(n)[:, None], ids_keep] = x_visible
    return out


def scatter_tokens_official(x_visible, ids_keep, mask_token, length):
    """The official way: append mask tokens, then gather with ids_restore (recovered from ids_keep)."""
    n, keep, d = x_visible.shape
    removed = torch.stack([torch.tensor([l for l in range(length) if l not in set(row)]) for row in ids_keep.tolist()])
    ids_restore = torch.argsort(torch.cat([ids_keep, removed], dim=1), dim=1)
    x_ = torch.cat([x_visible, mask_token.repeat(n, length - keep, 1)], dim=1)
    return torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, d))


@pytest.mark.parametrize("fn", [scatter_tokens_index, scatter_tokens_official])
def test_scatter_tokens_accepts_other_styles(fn, capsys):
    accepts(stretch.check_scatter_tokens, fn, capsys)


@rows(stretch.SCATTER_MISTAKES)
def test_scatter_tokens_names_each_mistake(row):
    rejects(stretch.check_scatter_tokens, answer_of(row), row.message)


@pytest.mark.parametrize("fn, phrase", [
    (lambda x, i, t, n: scatter_tokens_index(x, i, t.detach(), n), "mask_token would never learn"),
    (lambda x, i, t, n: scatter_tokens_index(x, i, t.data, n), "mask_token would never learn"),
    (lambda x, i, t, n: scatter_tokens_index(x, i, t, n).double(), "expected dtype torch.float32"),
    (lambda x, i, t, n: scatter_tokens_index(x, i.sort(dim=1).values, t, n), "wrong places"),
    (lambda x, i, t, n: scatter_tokens_index(x.flip(1), i, t, n), "values differ"),
    (forgot_return, "did you forget `return`"),
])
def test_scatter_tokens_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch.check_scatter_tokens, fn, phrase)


# ------------------------------------------------------------------------- 05 unnormalize_pred
def unnormalize_numpy(pred, target):
    t = target.numpy().astype(np.float64)
    std = np.sqrt(t.var(axis=-1, ddof=1, keepdims=True) + 1e-6)
    return torch.from_numpy(pred.numpy() * std + t.mean(axis=-1, keepdims=True)).float()


def test_unnormalize_pred_accepts_another_style_and_undoes_normalize_patches(capsys):
    from mae_lesson.loss import normalize_patches
    accepts(stretch.check_unnormalize_pred, unnormalize_numpy, capsys)
    target = torch.rand(2, 5, 16)
    torch.testing.assert_close(stretch.unnormalize_pred(normalize_patches(target), target), target)


@rows(stretch.UNNORMALIZE_MISTAKES)
def test_unnormalize_pred_names_each_mistake(row):
    rejects(stretch.check_unnormalize_pred, answer_of(row), row.message)


@pytest.mark.parametrize("fn, phrase", [
    (lambda p, t: unnormalize_numpy(p, t).double(), "float32"),
    (lambda p, t: unnormalize_numpy(p, t)[..., 0], "expected shape"),
    (lambda p, t: p * t.std(dim=-1, keepdim=True) + t.median(dim=-1, keepdim=True).values, "values differ"),
    (nudged(unnormalize_numpy), "values differ"),
    (forgot_return, "did you forget `return`"),
])
def test_unnormalize_pred_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch.check_unnormalize_pred, fn, phrase)


# ------------------------------------------------------------------------- every exercise
CHECKERS = {name.removeprefix("check_"): fn for name, fn in vars(stretch).items() if name.startswith("check_")}


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_only_the_stub_is_not_attempted(name):
    printed = rejects(CHECKERS[name], forgot_return, "returned None")
    assert "Not attempted" not in printed


TABLES = {  # exercise: (its mistakes, its reference, inputs like the checker's)
    "sincos_grid": (stretch.SINCOS_GRID_MISTAKES, stretch.sincos_grid, (16, 3, 5)),
    "block_mask": (stretch.BLOCK_MASK_MISTAKES, stretch.block_mask,
                   (torch.stack([torch.randperm(6, generator=torch.Generator().manual_seed(i)) for i in range(2)]), 6, 8, 3, 0.6)),
    "attention_rollout": (stretch.ROLLOUT_MISTAKES, stretch.attention_rollout,
                          ([torch.softmax(torch.randn(2, 3, 5, 5), dim=-1) for _ in range(3)],)),
    "scatter_tokens": (stretch.SCATTER_MISTAKES, stretch.scatter_tokens,
                       (torch.randn(3, 12, 5), torch.argsort(torch.rand(3, 49), dim=1)[:, :12], torch.randn(1, 1, 5), 49)),
    "unnormalize_pred": (stretch.UNNORMALIZE_MISTAKES, stretch.unnormalize_pred,
                         (torch.randn(2, 6, 16), torch.cat([torch.full((2, 1, 16), 0.5), 3 * torch.rand(2, 5, 16)], dim=1))),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_each_listed_mistake_differs_from_the_right_answer(name):
    """Else the checker could never name it."""
    mistakes, right, args = TABLES[name]
    for row in mistakes:
        if not row.shape:
            assert not torch.allclose(row.wrong(args).float(), right(*args).float()), row.name


def test_every_exercise_is_in_the_tables():
    assert sorted(TABLES) == sorted(CHECKERS)
