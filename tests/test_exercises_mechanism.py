"""The checkers recognise a known wrong answer one way: a table of Mistake rows per exercise, read by judge().

The size rule of issue 29 (checkers included) is tests/test_layers.py's.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pytest
import torch

import mae_lesson.exercises as exercises
from mae_lesson.exercises import ExerciseError, Mistake, judge

# Modules not yet moved onto the one mechanism (strict xfail: each fails loudly once it is moved, to be taken off).
TABLES_TODO: set[str] = set()


def todo(values, names, key):
    mark = pytest.mark.xfail(strict=True, reason="not yet on the one mechanism")
    return [pytest.param(v, marks=mark) if key(v) in names else v for v in values]


# ----------------------------------------------------------------------------------- the judge
def test_judge_reads_the_table_in_order_and_says_the_row():
    x = torch.arange(6.0).reshape(2, 3)
    table = (Mistake("doubled", lambda c: 2 * c, "doubled"), Mistake("negated", lambda c: -c, "the sign is flipped"),
             Mistake("transposed", lambda c: list(c.T.shape), "transposed", shape=True))
    judge("f(x)", x + 1e-7, x, table, x)  # right: returns
    with pytest.raises(ExerciseError, match=r"^f\(x\): expected \[0.000, 1.000, 2.000, 3.000, \.\.\.\], got .*: the sign is flipped$"):
        judge("f(x)", -x, x, table, x)
    with pytest.raises(ExerciseError, match=r"^f\(x\): expected shape \[2, 3\], got \[3, 2\]: transposed$"):
        judge("f(x)", x.T, x, table, x)
    with pytest.raises(ExerciseError, match="values differ .* Hint: add one"):
        judge("f(x)", x + 0.5, x, table, x, hint="add one")
    with pytest.raises(ExerciseError, match="dtype!"):
        judge("f(x)", x.double(), x, table, x, contract=exercises._judge.Contract(dtype=(torch.float32, "dtype!")))


def test_judge_compares_numbers_lists_and_dicts():
    table = (Mistake("halved", lambda c: {"a": [c / 2, 1.0]}, "halved"),)
    judge("g()", {"a": [2.0, 1.0]}, {"a": [2.0, 1.0]}, table, 2.0)
    with pytest.raises(ExerciseError, match="halved"):
        judge("g()", {"a": [1.0, 1.0]}, {"a": [2.0, 1.0]}, table, 2.0, found=lambda m: f"g(): {m}")


# ------------------------------------------------------------------ every exercise, one mechanism
def exercise_modules():
    for info in pkgutil.iter_modules(exercises.__path__):
        module = importlib.import_module(f"mae_lesson.exercises.{info.name}")
        if any(name.startswith("check_") for name in vars(module)):
            yield module


def tables(module) -> dict[str, tuple]:
    return {name: value for name, value in vars(module).items() if name.endswith("MISTAKES")}


@pytest.mark.parametrize("module", todo(list(exercise_modules()), TABLES_TODO, lambda m: m.__name__.rsplit(".", 1)[1]),
                         ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_checker_module_keeps_its_mistakes_as_tables_of_rows(module):
    found = tables(module)
    assert found, f"{module.__name__} has no *MISTAKES table"
    for name, table in found.items():
        assert isinstance(table, tuple) and table, f"{name} is not a non-empty tuple"
        assert all(isinstance(row, Mistake) for row in table), f"{name} holds something else than Mistake rows"
        names = [row.name for row in table]
        assert len(set(names)) == len(names), f"{name}: two rows share a name"


def with_message(module, table: str, row: str, monkeypatch) -> str:
    """Give one row of ``module.table`` a marker message; return the marker."""
    marker = f"MARKER {table}.{row}"
    rows = tuple(dataclasses.replace(r, message=marker) if r.name == row else r for r in getattr(module, table))
    assert any(r.name == row for r in rows), f"{table} has no row {row!r}"
    monkeypatch.setattr(module, table, rows)
    return marker


def verdict(check, fn, capsys) -> str:
    assert check(fn) is False
    return capsys.readouterr().out


def test_a_wrong_answer_gets_its_rows_message_welcome(monkeypatch, capsys):
    from mae_lesson.exercises import welcome
    marker = with_message(welcome, "MISTAKES", "no_cls", monkeypatch)
    assert marker in verdict(welcome.check_encoder_tokens, lambda s, p, r: int((s // p) ** 2 * (1 - r)), capsys)


def test_a_wrong_answer_gets_its_rows_message_encoder(monkeypatch, capsys):
    from mae_lesson.exercises import encoder
    marker = with_message(encoder, "ATTENTION_MISTAKES", "unscaled", monkeypatch)
    assert marker in verdict(encoder.check_attention, lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v, capsys)
    marker = with_message(encoder, "ATTENTION_MISTAKES", "weights", monkeypatch)
    assert marker in verdict(encoder.check_attention, lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1), capsys)


def test_a_wrong_answer_gets_its_rows_message_decoder(monkeypatch, capsys):
    from mae_lesson.exercises import decoder
    marker = with_message(decoder, "UNSHUFFLE_MISTAKES", "still_shuffled", monkeypatch)

    def still_shuffled(x, token, ids_restore):
        return torch.cat([x, token.expand(x.shape[0], ids_restore.shape[1] - x.shape[1], -1)], dim=1)

    assert marker in verdict(decoder.check_unshuffle, still_shuffled, capsys)


def test_a_wrong_answer_gets_its_rows_message_patches_and_masking(monkeypatch, capsys):
    from einops import rearrange

    from mae_lesson.exercises import masking, patches
    from mae_lesson.masking import random_masking
    marker = with_message(patches, "PATCHIFY_MISTAKES", "channel_first", monkeypatch)
    assert marker in verdict(patches.check_patchify, lambda x, p: rearrange(x, "n c (h p) (w q) -> n (h w) (c p q)",
                                                                            p=p, q=p), capsys)
    marker = with_message(masking, "MASKING_MISTAKES", "mask_inverted", monkeypatch)

    def inverted(x, ratio, noise):
        x_masked, mask, ids_restore = random_masking(x, ratio, noise)
        return x_masked, 1 - mask, ids_restore

    assert marker in verdict(masking.check_random_masking, inverted, capsys)


def test_a_wrong_answer_gets_its_rows_message_loss_flops_and_statistics(monkeypatch, capsys):
    from mae_lesson.exercises import ablations, further, loss
    marker = with_message(loss, "NORMALIZE_MISTAKES", "biased_variance", monkeypatch)
    biased = lambda x: (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5  # noqa: E731
    assert marker in verdict(loss.check_normalize_patches, biased, capsys)
    marker = with_message(loss, "LOSS_MISTAKES", "all_patches", monkeypatch)
    assert marker in verdict(loss.check_mae_loss, lambda t, p, m, norm: (
        (p - (loss.normalize_patches(t) if norm else t)) ** 2).mean(), capsys)
    marker = with_message(further, "MISTAKES", "macs", monkeypatch)
    assert marker in verdict(further.check_forward_flops, lambda cfg, r: further.forward_flops(cfg, r) // 2, capsys)
    marker = with_message(ablations, "MISTAKES", "variance", monkeypatch)
    assert marker in verdict(ablations.check_standard_error, lambda p, n: p * (1 - p) / n, capsys)


def test_a_wrong_answer_gets_its_rows_message_notebook_07(monkeypatch, capsys):
    from mae_lesson.exercises import features, head
    marker = with_message(features, "MEAN_POOL_MISTAKES", "cls_included", monkeypatch)
    assert marker in verdict(features.check_mean_pool, lambda latent: latent.mean(dim=1), capsys)
    marker = with_message(features, "MEAN_POOL_MISTAKES", "keepdim", monkeypatch)
    assert marker in verdict(features.check_mean_pool, lambda latent: latent[:, 1:].mean(dim=1, keepdim=True), capsys)
    marker = with_message(head, "HEAD_MISTAKES", "no_fc_norm", monkeypatch)
    assert marker in verdict(head.check_classifier_head, lambda x, fc_norm, h: h(x[:, 1:].mean(dim=1)), capsys)


def test_a_wrong_answer_gets_its_rows_message_notebooks_05_06(monkeypatch, capsys):
    from mae_lesson.exercises import training
    marker = with_message(training, "SCALED_LR_MISTAKES", "integer_division", monkeypatch)
    assert marker in verdict(training.check_scaled_lr, lambda blr, b, a: blr * (b * a // 256), capsys)
    marker = with_message(training, "STEP_MISTAKES", "no_schedule", monkeypatch)
    assert marker in verdict(training.check_train_step, training._step_variant("no_schedule"), capsys)
