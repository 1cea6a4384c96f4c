"""Checker for notebook 07's fine-tuning loop, ``finetune_steps``: the loop of :func:`mae_lesson.finetune.finetune`,
started from the same set-up (:func:`finetune_setup`) and compared weight by weight after the same steps."""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..loader import ImageData
from ..finetuning import FinetuneArgs, FinetuneRun, finetune, finetune_setup
from ._feedback import call_learner, checker, passed
from ._judge import Mistake, fail, judge
from ._models import CHECK_CONFIG, one_thread, tiny_mae


def _check_data(count: int, seed: int) -> ImageData:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    images = torch.randint(0, 80, (count, 1, 16, 16), generator=gen, dtype=torch.uint8)
    for c in range(3):  # each class brightens its own band of rows, so there is something to learn
        images[labels == c, :, 5 * c:5 * c + 5] += 150
    return ImageData(images, labels, ("a", "b", "c"), (0.5,), (0.25,))


def _loop_variant(model, loader, optimizer, schedule, steps, label_smoothing, change: str) -> list[float]:
    """The fine-tuning loop with one usual mistake (``change``)."""
    losses = []
    model.train()
    for step in range(steps):
        if change != "no_set_epoch":
            loader.set_epoch(step // len(loader))
        imgs, labels, _ = loader.batch(step % len(loader))
        loss = F.cross_entropy(model(imgs), labels, label_smoothing=0.0 if change == "no_smoothing" else label_smoothing)
        if change != "no_zero_grad":
            optimizer.zero_grad()
        loss.backward()
        if change == "schedule_first":
            schedule.step()
        optimizer.step()
        if change not in ("schedule_first", "no_schedule"):
            schedule.step()
        losses.append(loss.item())
    return losses


def _parts(run: FinetuneRun) -> tuple:
    """``(model, loader, optimizer, schedule, total_steps)``: what the learner's loop takes."""
    return run.model, run.loader, run.optimizer, run.schedule, run.total_steps


def _looped(change: str, message: str) -> Mistake:
    """A row: the model after the loop with ``change``, from a fresh set-up of the case (mae, train, args)."""
    def trained(c: tuple) -> nn.Module:
        model, loader, optimizer, schedule, total = _parts(finetune_setup(*c))
        _loop_variant(model, loader, optimizer, schedule, total, c[2].label_smoothing, change)
        return model
    return Mistake(change, trained, message)


# The case: (mae, train, args), what finetune_setup takes.
LOOP_MISTAKES = (
    _looped("no_zero_grad", "no optimizer.zero_grad(): gradients add up over the steps; clear them before backward()"),
    _looped("no_schedule", "no schedule.step(): the learning rate stays where the warm-up starts, at 0; call "
                           "schedule.step() after every optimizer.step()"),
    _looped("schedule_first", "schedule.step() before optimizer.step(): every step uses the next step's learning rate; "
                              "step the optimizer first"),
    _looped("no_set_epoch", "no loader.set_epoch(step // len(loader)): every epoch repeats the first epoch's order"),
    _looped("no_smoothing", "no label smoothing: F.cross_entropy(logits, labels, label_smoothing=label_smoothing)"),
)
# The package writes the smoothed cross-entropy as sum(-target * log_softmax); F.cross_entropy with
# label_smoothing computes the same value in another order, so weights agree to float rounding only.
LOOP_ATOL = 1e-5


def _max_difference(a: nn.Module, b: nn.Module) -> tuple[float, str]:
    diffs = {k: float((v.float() - b.state_dict()[k].float()).abs().max()) for k, v in a.state_dict().items()}
    name = max(diffs, key=diffs.get)
    return diffs[name], name


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return _max_difference(a, b)[0] <= LOOP_ATOL


@checker("finetune_steps")
def check_finetune_steps(fn: Callable[..., list[float]]) -> bool:
    """Check ``fn(model, loader, optimizer, schedule, steps, label_smoothing)`` -> losses, against ``finetune``.

    Runs :func:`mae_lesson.finetune.finetune` on a small model for two epochs, then the learner's
    loop from the same set-up, and compares the weights after the last step.
    """
    with one_thread():
        return _check_finetune_steps(fn)


def _check_finetune_steps(fn: Callable[..., list[float]]) -> bool:
    mae = tiny_mae(0, eval=False, keep_rng=False, **CHECK_CONFIG)
    train, test = _check_data(48, 0), _check_data(12, 1)
    args = FinetuneArgs(epochs=2, max_steps=None, batch_size=16, blr=0.1, layer_decay=0.75, weight_decay=0.05,
                        drop_path=0.0, label_smoothing=0.1, mixup=0.0, warmup_epochs=0.5, crop_scale=0.8,
                        seed=0, device="cpu", progress=False, eval_every_epoch=False)
    expected = finetune(mae, train, test, args)["model"]
    model, loader, optimizer, schedule, total = _parts(finetune_setup(mae, train, args))
    start = copy.deepcopy(model)
    where = f"finetune_steps(ViTClassifier, BatchLoader of {len(loader)} batches, optimizer, schedule, steps={total}, label_smoothing=0.1)"
    losses = call_learner(fn, "finetune_steps", model, loader, optimizer, schedule, total, args.label_smoothing)
    if not isinstance(losses, (list, tuple)) or len(losses) != total or not all(isinstance(v, (float, int)) for v in losses):
        fail(f"{where}: expected a list of {total} losses (floats, loss.item()), got {type(losses).__name__}"
             + (f" of length {len(losses)}" if isinstance(losses, (list, tuple)) else ""))
    diff, name = _max_difference(model, expected)
    if diff > LOOP_ATOL and _max_difference(model, start)[0] == 0.0:
        fail(f"{where}: expected the weights to change (finetune() moves {name} by "
             f"{_max_difference(expected, start)[0]:.3g}), got the starting weights: call "
             f"optimizer.step() and schedule.step() every step (the warm-up starts at learning rate 0)")
    said = f"{where}: expected the weights finetune() reaches, got others ({name} differs by {diff:.3g})"
    judge(where, model, expected, LOOP_MISTAKES, (mae, train, args), matches=_same_weights,
          found=lambda m: f"{said}. You wrote {m}", differs=lambda: fail(
              f"{said}: per step loader.set_epoch(step // len(loader)); imgs, labels, _ = loader.batch(step % len(loader)); "
              f"F.cross_entropy(model(imgs), labels, label_smoothing=...); zero_grad, backward, optimizer.step(), "
              f"schedule.step()"))
    _check_losses(where, losses, (mae, train, args))
    return passed("finetune_steps", f"after {total} steps every weight equals finetune()'s within {LOOP_ATOL:g}, "
                                    f"the float rounding of the two ways to write the smoothed loss")


def _check_losses(where: str, losses: list, case: tuple) -> None:
    """The weights are right: the losses must be each step's loss.item(), in order."""
    fresh, loader, optimizer, schedule, total = _parts(finetune_setup(*case))
    want = _loop_variant(fresh, loader, optimizer, schedule, total, case[2].label_smoothing, change="none")
    if not all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(losses, want)):
        fail(f"{where}: expected the loss of each step {[round(v, 4) for v in want[:4]]}..., got "
             f"{[round(float(v), 4) for v in losses[:4]]}... (the weights are right): return "
             f"loss.item() of every step, in order")
