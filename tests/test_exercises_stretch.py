"""The optional stretch exercises of notebooks 01-07 (mae_lesson/exercises/stretch.py and, for 06 and 07,
stretch_training.py).

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

from mae_lesson.exercises import stretch, stretch_training
from mae_lesson.exercises._judge import close

from conftest import accepts, not_attempted, np_2d_sincos, rejects, translated


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


# ------------------------------------------------------------------------- 06 accumulate_grads
def accumulate_strided(model, imgs, noise, accum_iter):
    """Another split (every accum_iter-th image, its noise row with it), each loss weighted by its share."""
    total = 0.0
    for i in range(accum_iter):
        x, z = imgs[i::accum_iter], noise[i::accum_iter]
        loss = model(x, noise=z)["loss"] * (x.shape[0] / imgs.shape[0])
        loss.backward()
        total += loss.item()
    return total


def accumulate_tensor(model, imgs, noise, accum_iter):
    """Right, but the loss comes back as a 0-dim tensor."""
    losses = []
    for x, z in zip(imgs.chunk(accum_iter), noise.chunk(accum_iter)):
        loss = model(x, noise=z)["loss"] / accum_iter
        loss.backward()
        losses.append(loss.detach())
    return torch.stack(losses).sum()


def accumulate_scaled(model, imgs, noise, accum_iter):
    """The loss right, the gradients 1.5 times too large: a mistake no table lists."""
    total = 0.0
    for x, z in zip(imgs.chunk(accum_iter), noise.chunk(accum_iter)):
        loss = model(x, noise=z)["loss"] / accum_iter
        (1.5 * loss).backward()
        total += loss.item()
    return total


def accumulate_as(*, divide=True, clear=False, noise_of="own", images_of="chunk", report="mean"):
    """A learner's loop with one mistake, written apart from the package's."""
    def fn(model, imgs, noise, accum_iter):
        size = imgs.shape[0] // accum_iter
        losses = []
        for i in range(accum_iter):
            x = imgs[i::accum_iter] if images_of == "strided" else imgs[i * size:(i + 1) * size]
            z = noise[:size] if noise_of == "first" else noise[i * size:(i + 1) * size]
            if clear:
                model.zero_grad()
            loss = model(x, noise=z)["loss"]
            (loss / accum_iter if divide else loss).backward()
            losses.append(loss.item())
        return {"mean": sum(losses) / len(losses), "last": losses[-1], "sum": sum(losses)}[report]
    return fn


ACCUMULATE_AS = {"not_divided": accumulate_as(divide=False), "cleared_divided": accumulate_as(clear=True),
                 "cleared": accumulate_as(clear=True, divide=False), "same_noise": accumulate_as(noise_of="first"),
                 "split_differently": accumulate_as(images_of="strided"), "last_loss": accumulate_as(report="last"),
                 "summed_loss": accumulate_as(report="sum")}


def test_accumulate_grads_accepts_other_styles(capsys):
    accepts(stretch_training.check_accumulate_grads, accumulate_strided, capsys)
    assert stretch_training.check_accumulate_grads(accumulate_tensor) is True
    printed = capsys.readouterr().out
    assert printed.startswith("Correct: ") and "returned a torch.Tensor; it is used as the float" in printed
    translated(printed)


def test_accumulate_grads_stub_is_not_attempted(capsys):
    not_attempted(stretch_training.check_accumulate_grads, stub, capsys, "accumulate_grads")


@rows(stretch_training.ACCUM_MISTAKES)
def test_accumulate_grads_names_each_mistake(row):
    rejects(stretch_training.check_accumulate_grads, ACCUMULATE_AS[row.name], row.message)


def no_backward(model, imgs, noise, accum_iter):
    with torch.no_grad():
        return model(imgs, noise=noise)["loss"].item()


@pytest.mark.parametrize("fn, phrase", [
    (no_backward, "got None for"),
    (lambda m, x, z, k: [accumulate_strided(m, x, z, k)], "expected a number (a Python float), got list"),
    (lambda m, x, z, k: accumulate_strided(m, x, z, k) * 1.1 + 0.5, "expected loss"),
    (accumulate_scaled, "expected the gradients of one backward"),
    (forgot_return, "did you forget `return`"),
])
def test_accumulate_grads_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch_training.check_accumulate_grads, fn, phrase)


def test_accumulate_grads_refuses_a_batch_it_cannot_split():
    with pytest.raises(ValueError, match="divisible by accum_iter"):
        stretch_training.accumulate_grads(None, torch.zeros(6, 1, 16, 16), torch.zeros(6, 16), 4)


# ------------------------------------------------------------------------- 07 cutmix
def cutmix_where(images, labels, perm, box, num_classes):
    top, left, height, width = box
    rows_, cols = torch.arange(images.shape[-2])[:, None], torch.arange(images.shape[-1])
    inside = (rows_ >= top) & (rows_ < top + height) & (cols >= left) & (cols < left + width)  # [H, W]
    a = inside.float().mean()
    eye = torch.eye(num_classes)
    return torch.where(inside, images[perm], images), (1 - a) * eye[labels] + a * eye[labels[perm]]


def cutmix_loops(images, labels, perm, box, num_classes):
    top, left, height, width = box
    n, _, h, w = images.shape
    bottom, right = min(h, top + height), min(w, left + width)
    a = (bottom - top) * (right - left) / (h * w)
    mixed, targets = images.clone(), torch.zeros(n, num_classes)
    for i in range(n):
        mixed[i, :, top:bottom, left:right] = images[perm[i], :, top:bottom, left:right]
        targets[i, labels[i]] += 1 - a
        targets[i, labels[perm[i]]] += a
    return mixed, targets


@pytest.mark.parametrize("fn", [cutmix_where, cutmix_loops])
def test_cutmix_accepts_other_styles(fn, capsys):
    accepts(stretch_training.check_cutmix, fn, capsys)


def test_cutmix_stub_is_not_attempted(capsys):
    not_attempted(stretch_training.check_cutmix, stub, capsys, "cutmix")


@rows(stretch_training.CUTMIX_MISTAKES)
def test_cutmix_names_each_mistake(row):
    rejects(stretch_training.check_cutmix, answer_of(row), row.message)


def in_place(images, labels, perm, box, num_classes):
    top, left, height, width = box
    images[..., top:top + height, left:left + width] = images[perm][..., top:top + height, left:left + width]
    return images, cutmix_loops(images, labels, perm, (0, 0, 0, 0), num_classes)[1]


@pytest.mark.parametrize("fn, phrase", [
    (in_place, "changed in place"),
    (lambda *args: (cutmix_loops(*args)[0], cutmix_loops(*args)[1].long()), "got torch.int64"),
    (lambda *args: (cutmix_loops(*args)[0], cutmix_loops(*args)[1].double()), "got torch.float64"),
    (lambda *args: cutmix_loops(*args)[0], "expected a pair"),
    (lambda *args: (cutmix_loops(*args)[0], cutmix_loops(*args)[1].argmax(dim=1)), "expected shape"),
    (lambda *args: (cutmix_loops(*args)[0], 0.9 * cutmix_loops(*args)[1]), "sum to 1"),
    (lambda x, y, p, b, k: (cutmix_loops(x, y, p, b, k)[0], cutmix_loops(x, y, p, (0, 0, x.shape[-2], x.shape[-1] // 2), k)[1]),
     "expected targets"),
    (lambda *args: (cutmix_where(*args)[0] + 0.25, cutmix_where(*args)[1]), "expected mixed image"),
    (forgot_return, "did you forget `return`"),
])
def test_cutmix_rejects_other_wrong_answers(fn, phrase):
    assert "Correct" not in rejects(stretch_training.check_cutmix, fn, phrase)


def test_cutmix_matches_torchvision_for_its_box_and_roll():
    """v2.CutMix pastes image i - 1 (perm = roll by one) into image i, weighted by the clipped area."""
    v2 = pytest.importorskip("torchvision.transforms.v2")
    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(3)
    mixed, targets = v2.CutMix(alpha=1.0, num_classes=4)(images, labels)
    changed = (mixed != images).any(dim=(0, 1)).nonzero()  # the pixels of the box
    top, left = changed.min(dim=0).values.tolist()
    height, width = (changed.max(dim=0).values - changed.min(dim=0).values + 1).tolist()
    ours = stretch_training.cutmix(images, labels, torch.arange(4).roll(1), (top, left, height, width), 4)
    torch.testing.assert_close(ours[0], mixed)
    torch.testing.assert_close(ours[1], targets)


# ------------------------------------------------------------------------- every exercise
CHECKERS = {name.removeprefix("check_"): fn for module in (stretch, stretch_training)
            for name, fn in vars(module).items() if name.startswith("check_")}


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


# Answers that are not one tensor (a loss and the gradients; a pair of tensors), compared as the checker does.
OUTCOME_TABLES = {
    "accumulate_grads": (stretch_training.ACCUM_MISTAKES, lambda *case: stretch_training.whole_batch(case),
                         (torch.randn(8, 1, 16, 16), torch.rand(8, 16), 4)),
    "cutmix": (stretch_training.CUTMIX_MISTAKES, stretch_training.cutmix,
               (torch.rand(4, 3, 8, 10), torch.tensor([0, 1, 2, 3]), torch.tensor([1, 3, 0, 2]), (5, 1, 6, 2), 4)),
}


@pytest.mark.parametrize("name", sorted(OUTCOME_TABLES))
def test_each_listed_outcome_mistake_differs_from_the_right_answer(name):
    mistakes, right, args = OUTCOME_TABLES[name]
    for row in mistakes:
        assert not close(row.wrong(args), right(*args), atol=stretch_training.ACCUM_ATOL,
                         rtol=stretch_training.ACCUM_RTOL), row.name


def test_every_exercise_is_in_the_tables():
    assert sorted({**TABLES, **OUTCOME_TABLES}) == sorted(CHECKERS)
