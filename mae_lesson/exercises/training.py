"""Checkers for notebook 06 (pretraining): the lr scaling rule, warm-up + cosine, the training step and the epoch loop.

The references are :func:`mae_lesson.optim.scaled_lr` and :class:`mae_lesson.optim.WarmupCosine`,
the official recipe: ``lr = blr * effective_batch / 256``; per step, a linear warm-up from 0 that
reaches the base lr exactly at ``warmup_steps``, then a half-cycle cosine down to ``min_lr``.
The training step and the epoch loop are checked against the engine's order of operations
(``engine_pretrain.train_one_epoch`` of the official code): forward with the batch's mask noise,
backward, optimiser step, gradients cleared, schedule step; batches from ``loader.batch(step)``
after ``loader.set_epoch(epoch)``, mask noise from the batch seed + 1.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..model import MAE
from ..optim import WarmupCosine, scaled_lr
from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import Mistake, fail, judge
from ._models import parameters_of, tiny_training
from .epoch_loop import EPOCH_MISTAKES, EPOCHS, batch_noise, check_train_one_epoch, reference_train_one_epoch, reference_train_step


def _number(value: Any, where: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExerciseError(f"{where}: expected a number (a Python float), got {type(value).__name__}")
    return float(value)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


# ----------------------------------------------------------------------------------- scaled lr
# The case: (blr, batch_size, accum_iter).
SCALED_LR_MISTAKES = (
    Mistake("integer_division", lambda c: c[0] * (c[1] * c[2] // 256), "integer division '//' rounds the batch ratio "
            "down (to 0 below 256 images): use '/', blr * batch_size * accum_iter / 256"),
    Mistake("unscaled", lambda c: c[0], "blr unchanged: the lr must be scaled by the effective batch / 256 (the linear "
            "scaling rule)"),
    Mistake("no_division", lambda c: c[0] * c[1] * c[2], "no division by 256: blr is the lr of a batch of 256 images"),
    Mistake("accum_ignored", lambda c: scaled_lr(c[0], c[1]), "accum_iter ignored: gradient accumulation makes the "
            "effective batch batch_size * accum_iter, and the lr follows it"),
    Mistake("square_root", lambda c: c[0] * math.sqrt(c[1] * c[2] / 256),
            "square-root scaling: MAE scales linearly, blr * batch / 256"),
    Mistake("upside_down", lambda c: c[0] * 256 / (c[1] * c[2]), "the ratio upside down: a larger batch gets a larger lr"),
)


@checker("scaled_lr")
def check_scaled_lr(fn: Callable[[float, int, int], float]) -> bool:
    """Check ``fn(blr, batch_size, accum_iter)`` -> ``blr * batch_size * accum_iter / 256``."""
    # 100 * 3 and 200 are not multiples of 256: integer division shows there and nowhere else
    cases = ((1.5e-4, 4096, 1), (1.5e-4, 256, 1), (1e-3, 128, 2), (1.5e-4, 64, 4), (5e-4, 1024, 1),
             (1e-3, 100, 3), (1.5e-4, 200, 1))
    for blr, batch, accum in cases:
        where = f"scaled_lr(blr={blr:g}, batch_size={batch}, accum_iter={accum})"
        got = _number(call_learner(fn, "scaled_lr", blr, batch, accum), where)
        expected = scaled_lr(blr, batch * accum)
        judge(where, got, expected, SCALED_LR_MISTAKES, (blr, batch, accum), matches=_close,
              found=lambda m: f"{where}: expected {expected:.6g}, got {got:.6g}: {m}",
              differs=lambda: fail(f"{where}: expected {expected:.6g} = {blr:g} * {batch} * {accum} / 256, got {got:.6g}"))
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


@checker("lr_schedule")
def check_lr_schedule(fn: Callable[[int, float, int, int, float], float]) -> bool:
    """Check ``fn(step, base_lr, total_steps, warmup_steps, min_lr)`` for every step 0..total_steps."""
    cases = ((1e-3, 100, 10, 0.0), (2.4e-3, 50, 5, 1e-5), (1.5e-4, 40, 0, 0.0), (1e-3, 30, 29, 1e-4))
    for base, total, warmup, min_lr in cases:
        args = f"base_lr={base:g}, total_steps={total}, warmup_steps={warmup}, min_lr={min_lr:g}"
        got = [_number(call_learner(fn, "lr_at", s, base, total, warmup, min_lr), f"lr_at(step={s}, {args})")
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


# ------------------------------------------------------------------------------ train step
_tiny_setup = tiny_training  # the name the tests know


def _step_variant(change: str) -> Callable:
    """What the usual mistakes do, as training steps."""
    def step(model, optimizer, schedule, imgs, noise):
        loss = model(imgs, noise=noise)["loss"]
        loss.backward()
        if change == "schedule_first":
            schedule.step()
        if change != "no_optimizer_step":
            optimizer.step()
        if change != "no_zero_grad":
            optimizer.zero_grad()
        if change not in ("no_schedule", "schedule_first"):
            schedule.step()
        if change == "loss_after":
            with torch.no_grad():
                return model(imgs, noise=noise)["loss"].item()
        return loss.item()
    return step


def _stepped(change: str, message: str) -> Mistake:
    """A row: three steps with ``change`` on the case's batches -> (losses, learning rates, weights)."""
    return Mistake(change, lambda batches: _run_steps(_step_variant(change), "variant", batches), message)


# The case: the batches [(imgs, noise), ...] the three steps take.
STEP_MISTAKES = (
    _stepped("no_zero_grad", "the gradients are never cleared, so each step adds the previous steps' gradients: call "
                             "optimizer.zero_grad() once per step (after optimizer.step(), or before backward)"),
    _stepped("no_optimizer_step", "the weights never change: either optimizer.step() is missing, or optimizer.zero_grad() "
                                  "runs between backward and optimizer.step() and wipes the gradients before they are used "
                                  "(clear them after the step, or before the forward pass)"),
    _stepped("no_schedule", "no schedule.step(): the learning rate stays at its step-0 value; call it after every "
                            "optimizer step"),
    _stepped("schedule_first", "schedule.step() before optimizer.step(): every step uses the next step's learning rate "
                               "(the first step skips lr 0 of the warm-up); step the schedule after the optimizer"),
    _stepped("loss_after", "the loss recomputed after the update: return the loss of the forward pass that made the gradients"),
)


def _same_run(a: tuple, b: tuple) -> bool:
    """Two runs of three steps agree: losses, learning rates and the weights after them."""
    return (all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7) for x, y in zip(a[0], b[0]))
            and all(_close(x, y) for x, y in zip(a[1], b[1])) and torch.allclose(a[2], b[2], atol=1e-6, rtol=1e-5))


def _run_steps(fn: Callable, name: str, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list, list, torch.Tensor]:
    model, optimizer, schedule = _tiny_setup()
    losses, lrs = [], []
    for imgs, noise in batches:
        losses.append(call_learner(fn, name, model, optimizer, schedule, imgs.clone(), noise.clone()))
        lrs.append(optimizer.param_groups[0]["lr"])
    return losses, lrs, parameters_of(model)


def _batches(count: int = 3, n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(11)
    return [(torch.randn(n, 1, 16, 16, generator=gen), torch.rand(n, 16, generator=gen)) for _ in range(count)]


@checker("train_step")
def check_train_step(fn: Callable[[MAE, torch.optim.Optimizer, WarmupCosine, torch.Tensor, torch.Tensor], float]) -> bool:
    """Check ``fn(model, optimizer, schedule, imgs, noise) -> loss`` over three steps: losses, learning rates, weights."""
    batches = _batches()
    want_losses, want_lrs, want_weights = _run_steps(reference_train_step, "reference", batches)
    losses, lrs, weights = _run_steps(fn, "my_train_step", batches)
    where = "three calls of my_train_step(model, optimizer, schedule, imgs [4, 1, 16, 16], noise [4, 16])"
    for k, value in enumerate(losses):
        if isinstance(value, torch.Tensor):
            raise ExerciseError(f"{where}: expected a Python float from call {k + 1}, got a torch.Tensor: return "
                                f"loss.item() (a tensor would keep its whole autograd graph alive in a list of losses)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExerciseError(f"{where}: expected a Python float (loss.item()) from call {k + 1}, got {type(value).__name__}")
    judge(where, (losses, lrs, weights), (want_losses, want_lrs, want_weights), STEP_MISTAKES, batches,
          matches=_same_run, differs=lambda: _step_differs(where, (losses, lrs, weights), (want_losses, want_lrs, want_weights)),
          found=lambda m: f"{where}: expected losses {[round(x, 5) for x in want_losses]} and lr "
                          f"{[f'{x:.3g}' for x in want_lrs]} after the steps, got {[round(x, 5) for x in losses]} "
                          f"and {[f'{x:.3g}' for x in lrs]}. Looks like {m}")
    return passed("train_step", "forward, backward, optimizer step, gradients cleared, schedule step")


def _step_differs(where: str, got: tuple, want: tuple) -> None:
    """Say where three steps that no table row explains differ: the first loss, the learning rates, else the weights."""
    (losses, lrs, weights), (want_losses, want_lrs, want_weights) = got, want
    if not math.isclose(losses[0], want_losses[0], rel_tol=1e-5, abs_tol=1e-7):
        fail(f"{where}: expected loss {want_losses[0]:.6g} at the first step, got {losses[0]:.6g}. Hint: "
             f"return the loss of model(imgs, noise=noise)['loss'] as it is, with the noise passed so the mask "
             f"is the given one")
    if not all(_close(a, b) for a, b in zip(lrs, want_lrs)):
        fail(f"{where}: expected the learning rate {[f'{x:.3g}' for x in want_lrs]} after each step, got "
             f"{[f'{x:.3g}' for x in lrs]}. Hint: one schedule.step() after each optimizer.step()")
    fail(f"{where}: expected losses {[round(x, 5) for x in want_losses]}, got "
         f"{[round(x, 5) for x in losses]}; the weights after three steps differ by up to "
         f"{(weights - want_weights).abs().max().item():.3g}. Hint: loss.backward(), "
         f"optimizer.step(), optimizer.zero_grad(), schedule.step(), once each per call")


__all__ = ["EPOCHS", "EPOCH_MISTAKES", "SCALED_LR_MISTAKES", "STEP_MISTAKES", "batch_noise", "check_lr_schedule",
           "check_scaled_lr", "check_train_one_epoch", "check_train_step", "reference_train_one_epoch",
           "reference_train_step"]
