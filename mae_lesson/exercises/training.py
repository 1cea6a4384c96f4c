"""Checkers for notebook 06 (pretraining): the linear lr scaling rule and warm-up + cosine.

The references are :func:`mae_lesson.optim.scaled_lr` and :class:`mae_lesson.optim.WarmupCosine`,
the official recipe: ``lr = blr * effective_batch / 256``; per step, a linear warm-up from 0 that
reaches the base lr exactly at ``warmup_steps``, then a half-cycle cosine down to ``min_lr``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..optim import WarmupCosine, scaled_lr
from ._feedback import ExerciseError, passed


def _call(fn: Callable, name: str, *args: Any) -> Any:
    """Run the learner's function; turn its exception into feedback that names the inputs."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure is feedback for the learner
        raise ExerciseError(f"{name}({', '.join(repr(a) for a in args)}) raised {type(exc).__name__}: {exc}") from exc


def _number(value: Any, where: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExerciseError(f"{where}: expected a number (a Python float), got {type(value).__name__}")
    return float(value)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


# ----------------------------------------------------------------------------------- scaled lr
def check_scaled_lr(fn: Callable[[float, int, int], float]) -> bool:
    """Check ``fn(blr, batch_size, accum_iter)`` -> ``blr * batch_size * accum_iter / 256``."""
    cases = ((1.5e-4, 4096, 1), (1.5e-4, 256, 1), (1e-3, 128, 2), (1.5e-4, 64, 4), (5e-4, 1024, 1))
    for blr, batch, accum in cases:
        where = f"scaled_lr(blr={blr:g}, batch_size={batch}, accum_iter={accum})"
        got = _number(_call(fn, "scaled_lr", blr, batch, accum), where)
        expected = scaled_lr(blr, batch * accum)
        if _close(got, expected):
            continue
        mistakes = [
            (blr, "blr unchanged: the lr must be scaled by the effective batch / 256 (the linear scaling rule)"),
            (blr * batch * accum, "no division by 256: blr is the lr of a batch of 256 images"),
            (scaled_lr(blr, batch), "accum_iter ignored: gradient accumulation makes the effective batch "
                                    "batch_size * accum_iter, and the lr follows it"),
            (blr * math.sqrt(batch * accum / 256), "square-root scaling: MAE scales linearly, blr * batch / 256"),
            (blr * 256 / (batch * accum), "the ratio upside down: a larger batch gets a larger lr"),
        ]
        for value, message in mistakes:
            if _close(got, value):
                raise ExerciseError(f"{where}: expected {expected:.6g}, got {got:.6g}: {message}")
        raise ExerciseError(f"{where}: expected {expected:.6g} = {blr:g} * {batch} * {accum} / 256, got {got:.6g}")
    return passed("scaled_lr", "lr = blr * batch_size * accum_iter / 256")


# -------------------------------------------------------------------------------- lr schedule
def _reference(step: int, base_lr: float, total: int, warmup: int, min_lr: float) -> float:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    return WarmupCosine(opt, base_lr, total, warmup, min_lr).lr_at(step)


def _phase(step: int, warmup: int, total: int) -> str:
    if step < warmup:
        return f"during the warm-up (steps 0 to {warmup - 1})"
    if step == warmup:
        return "at the end of the warm-up"
    return f"during the cosine decay (steps {warmup} to {total})"


def check_lr_schedule(fn: Callable[[int, float, int, int, float], float]) -> bool:
    """Check ``fn(step, base_lr, total_steps, warmup_steps, min_lr)`` for every step 0..total_steps."""
    cases = ((1e-3, 100, 10, 0.0), (2.4e-3, 50, 5, 1e-5), (1.5e-4, 40, 0, 0.0), (1e-3, 30, 29, 1e-4))
    for base, total, warmup, min_lr in cases:
        args = f"base_lr={base:g}, total_steps={total}, warmup_steps={warmup}, min_lr={min_lr:g}"
        got = [_number(_call(fn, "lr_at", s, base, total, warmup, min_lr), f"lr_at(step={s}, {args})")
               for s in range(total + 1)]
        want = [_reference(s, base, total, warmup, min_lr) for s in range(total + 1)]
        wrong = [s for s in range(total + 1) if not _close(got[s], want[s])]
        if not wrong:
            continue
        where = f"lr_at(step, {args})"
        if warmup and not _close(got[warmup], base):
            peak = max(got)
            reach = ("it never reaches base_lr (highest value {:.6g})".format(peak) if peak < base * (1 - 1e-9)
                     else "it reaches base_lr at step {}".format(got.index(peak)))
            raise ExerciseError(
                f"{where}: expected the warm-up to reach base_lr = {base:g} exactly at step {warmup}, got "
                f"{got[warmup]:.6g} there; {reach}. The warm-up is lr = base_lr * step / warmup_steps "
                f"for step < warmup_steps, and the cosine starts at base_lr: progress = "
                f"(step - warmup_steps) / (total_steps - warmup_steps)")
        if warmup and not _close(got[0], 0.0):
            raise ExerciseError(
                f"{where}: expected lr 0 at step 0 (the warm-up starts from zero), got {got[0]:.6g}: "
                f"use base_lr * step / warmup_steps, not (step + 1)")
        if not _close(got[total], min_lr):
            raise ExerciseError(
                f"{where}: expected lr = min_lr = {min_lr:g} at the last step ({total}), got {got[total]:.6g}: "
                f"min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress)), progress 1 at the end")
        s = wrong[0]
        raise ExerciseError(
            f"{where}: expected {want[s]:.6g} at step {s} ({_phase(s, warmup, total)}), got {got[s]:.6g} "
            f"({len(wrong)} of {total + 1} steps differ). After the warm-up: min_lr + (base_lr - min_lr) * 0.5 * "
            f"(1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))")
    return passed("lr schedule", "linear warm-up from 0 to base_lr, then a half-cosine to min_lr")
