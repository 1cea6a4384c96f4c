"""The pretraining engine: one optimizer step (:func:`train_step`) and the loop over an epoch's steps.

The official ``engine_pretrain.train_one_epoch`` in the shape nanoGPT's ``train.py`` keeps its loop:
fetch the step's micro-batches (:func:`micro_batches`), take the step, count the loss, report. What a
run does around a step (metrics rows, checkpoints, stop signals) is the run's ``after_step``, in
:mod:`mae_lesson.run.state`; the set-up that builds a run is :func:`mae_lesson.run.setup.setup_run`.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Any

import torch
from tqdm.auto import tqdm

from .optim import WarmupCosine

# Each batch's mask is drawn from its augmentation seed plus this offset (the checkers redraw it too).
MASK_SEED_OFFSET = 1


class NonFiniteLossError(RuntimeError):
    """The loss or the weights became NaN or Inf; the last good checkpoint is left untouched."""


def micro_batches(run: Any, step_in_epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(imgs, noise)`` pairs of one optimizer step, on the run's device.

    Each micro-batch's augmentation and mask come from its own seed, so a resumed run or any
    number of processes sees exactly the batches and masks of one uninterrupted run.
    """
    batches = []
    for micro in range(run.args.accum_iter):
        imgs, _, seed = run.loader.batch(step_in_epoch * run.args.accum_iter + micro)
        generator = torch.Generator().manual_seed(seed + MASK_SEED_OFFSET)
        noise = run.model.mask_noise(run.args.batch_size, device="cpu", generator=generator)  # the global batch's
        noise = noise[run.rank::run.world]  # this process's share, as the loader's
        batches.append((imgs.to(run.device, non_blocking=True), noise.to(run.device, non_blocking=True)))
    return batches


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: WarmupCosine,
               batches: list[tuple[torch.Tensor, torch.Tensor]], *, autocast: Any = None,
               scaler: torch.amp.GradScaler | None = None, clip_grad: float | None = None) -> float:
    """One optimizer step over ``batches`` (``accum_iter`` micro-batches of ``(imgs, noise)``).

    Returns the step's loss (the mean over micro-batches). Raises :class:`NonFiniteLossError`
    before the update when the loss is NaN or Inf, so the weights stay as they were.
    """
    loss_value = 0.0
    for i, (imgs, noise) in enumerate(batches):
        # Under DDP, gradients are averaged across processes only on the last micro-batch.
        last = i == len(batches) - 1
        sync = nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast or nullcontext():
                loss = model(imgs, noise=noise)["loss"] / len(batches)
            (scaler.scale(loss) if scaler else loss).backward()
        loss_value += float(loss.detach())  # a host sync per micro-batch: the loss is logged
    if not math.isfinite(loss_value):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"loss is {loss_value}")
    if scaler:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    schedule.step()  # the learning rate of the next step
    return loss_value


def train_one_epoch(run: Any, epoch: int) -> dict[str, float]:
    """Optimizer steps from ``run.step`` to the end of ``epoch`` (or of the run).

    ``run`` is a :class:`mae_lesson.run.state.Run` (from ``setup_run``). Returns ``{"train_loss",
    "seconds", "images"}``: the epoch's mean loss (over all its steps, those before a resume included)
    and the time and images of the steps run here. After each step ``run.after_step`` writes the
    metrics row and the periodic checkpoint, and stops the run when a stop signal came.
    """
    start = epoch * run.steps_per_epoch
    end = min(start + run.steps_per_epoch, run.total_steps)
    run.loader.set_epoch(epoch)
    if run.step == start:
        run.epoch_loss_sum, run.epoch_loss_count = 0.0, 0
    seen, tick = 0, time.perf_counter()

    def stats() -> dict[str, float]:  # the epoch so far (a stop after its last step records it)
        return epoch_stats(run, tick, seen)

    run.train_model.train()
    with tqdm(total=end - start, initial=run.step - start, leave=True, desc=f"epoch {epoch + 1}/{run.args.epochs}",
              disable=run.rank != 0 or not run.args.progress, dynamic_ncols=True) as bar:
        while run.step < end:
            batches = micro_batches(run, run.step - start)
            try:
                loss = train_step(run.train_model, run.optimizer, run.schedule, batches, autocast=run.autocast,
                                  scaler=run.scaler, clip_grad=run.args.clip_grad)
            except NonFiniteLossError as exc:
                raise NonFiniteLossError(f"{exc} at optimizer step {run.step + 1} (epoch {epoch + 1}). "
                                         + run.nan_advice()) from None
            run.step += 1
            run.epoch_loss_sum += loss
            run.epoch_loss_count += 1
            seen += sum(imgs.shape[0] for imgs, _ in batches) * run.world
            rate = seen / max(1e-9, time.perf_counter() - tick)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{run.schedule.lr:.2e}", img_s=f"{rate:.0f}")
            run.after_step(epoch, end, loss, rate, stats)
    return stats()


def epoch_stats(run: Any, tick: float, seen: int) -> dict[str, float]:
    """The epoch's mean loss so far, and the seconds and images since ``tick``."""
    mean = run.epoch_loss_sum / run.epoch_loss_count if run.epoch_loss_count else float("nan")
    return {"train_loss": mean, "seconds": time.perf_counter() - tick, "images": seen}
