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

from ..config import Config
from ..data import BatchLoader, ImageData
from ..model import MAE
from ..optim import WarmupCosine, param_groups, scaled_lr
from ..pretrain import MASK_SEED_OFFSET
from ._feedback import ExerciseError, call_learner, checker, passed


def _number(value: Any, where: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExerciseError(f"{where}: expected a number (a Python float), got {type(value).__name__}")
    return float(value)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


# ----------------------------------------------------------------------------------- scaled lr
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
        if _close(got, expected):
            continue
        mistakes = [
            (blr * (batch * accum // 256), "integer division '//' rounds the batch ratio down (to 0 below 256 "
                                           "images): use '/', blr * batch_size * accum_iter / 256"),
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
def _tiny_setup(seed: int = 0, total_steps: int = 6) -> tuple[MAE, torch.optim.Optimizer, WarmupCosine]:
    """A small seeded model with the engine's optimiser (AdamW, betas 0.9/0.95, decay groups) and schedule."""
    torch.manual_seed(seed)
    model = MAE(Config(img_size=16, patch_size=4, in_chans=1, embed_dim=16, encoder_depth=1, encoder_num_heads=2,
                       decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, mask_ratio=0.75))
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-2, betas=(0.9, 0.95))
    return model, optimizer, WarmupCosine(optimizer, 1e-2, total_steps=total_steps, warmup_steps=2)


def reference_train_step(model: MAE, optimizer: torch.optim.Optimizer, schedule: WarmupCosine,
                         imgs: torch.Tensor, noise: torch.Tensor) -> float:
    """One optimiser step on ``imgs [N, C, H, W]`` masked by ``noise [N, L]``; returns the loss (a float)."""
    loss = model(imgs, noise=noise)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    schedule.step()
    return loss.item()


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


_STEP_MISTAKES = {
    "no_zero_grad": "the gradients are never cleared, so each step adds the previous steps' gradients: call "
                    "optimizer.zero_grad() once per step (after optimizer.step(), or before backward)",
    "no_optimizer_step": "the weights never change: either optimizer.step() is missing, or optimizer.zero_grad() "
                         "runs between backward and optimizer.step() and wipes the gradients before they are used "
                         "(clear them after the step, or before the forward pass)",
    "no_schedule": "no schedule.step(): the learning rate stays at its step-0 value; call it after every optimizer step",
    "schedule_first": "schedule.step() before optimizer.step(): every step uses the next step's learning rate "
                      "(the first step skips lr 0 of the warm-up); step the schedule after the optimizer",
    "loss_after": "the loss recomputed after the update: return the loss of the forward pass that made the gradients",
}


def _run_steps(fn: Callable, name: str, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list, list, torch.Tensor]:
    model, optimizer, schedule = _tiny_setup()
    losses, lrs = [], []
    for imgs, noise in batches:
        losses.append(call_learner(fn, name, model, optimizer, schedule, imgs.clone(), noise.clone()))
        lrs.append(optimizer.param_groups[0]["lr"])
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return losses, lrs, weights


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
    if (all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) for a, b in zip(losses, want_losses))
            and all(_close(a, b) for a, b in zip(lrs, want_lrs))
            and torch.allclose(weights, want_weights, atol=1e-6, rtol=1e-5)):
        return passed("train_step", "forward, backward, optimizer step, gradients cleared, schedule step")
    for change, message in _STEP_MISTAKES.items():
        v_losses, v_lrs, v_weights = _run_steps(_step_variant(change), "variant", batches)
        if (all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) for a, b in zip(losses, v_losses))
                and all(_close(a, b) for a, b in zip(lrs, v_lrs)) and torch.allclose(weights, v_weights, atol=1e-6, rtol=1e-5)):
            raise ExerciseError(f"{where}: expected losses {[round(x, 5) for x in want_losses]} and lr "
                                f"{[f'{x:.3g}' for x in want_lrs]} after the steps, got {[round(x, 5) for x in losses]} "
                                f"and {[f'{x:.3g}' for x in lrs]}. Looks like {message}")
    if not math.isclose(losses[0], want_losses[0], rel_tol=1e-5, abs_tol=1e-7):
        raise ExerciseError(f"{where}: expected loss {want_losses[0]:.6g} at the first step, got {losses[0]:.6g}. Hint: "
                            f"return the loss of model(imgs, noise=noise)['loss'] as it is, with the noise passed so the mask "
                            f"is the given one")
    if not all(_close(a, b) for a, b in zip(lrs, want_lrs)):
        raise ExerciseError(f"{where}: expected the learning rate {[f'{x:.3g}' for x in want_lrs]} after each step, got "
                            f"{[f'{x:.3g}' for x in lrs]}. Hint: one schedule.step() after each optimizer.step()")
    raise ExerciseError(f"{where}: expected losses {[round(x, 5) for x in want_losses]}, got "
                        f"{[round(x, 5) for x in losses]}; the weights after three steps differ by up to "
                        f"{(weights - want_weights).abs().max().item():.3g}. Hint: loss.backward(), "
                        f"optimizer.step(), optimizer.zero_grad(), schedule.step(), once each per call")


# ------------------------------------------------------------------------------ epoch loop
def batch_noise(model: MAE, batch_seed: int, batch: int) -> torch.Tensor:
    """The engine's mask noise ``[batch, L]`` for a batch: drawn from the batch seed + 1 (the augmentation used the seed)."""
    return model.mask_noise(batch, generator=torch.Generator().manual_seed(batch_seed + MASK_SEED_OFFSET))


def reference_train_one_epoch(model: MAE, optimizer: torch.optim.Optimizer, schedule: WarmupCosine,
                              loader: BatchLoader, epoch: int, train_step: Callable) -> list[float]:
    """Every batch of epoch ``epoch`` through ``train_step``; returns the losses in order."""
    model.train()
    loader.set_epoch(epoch)
    losses = []
    for step in range(len(loader)):
        imgs, _, seed = loader.batch(step)  # augmented [B, C, S, S], labels, the batch's seed
        noise = batch_noise(model, seed, imgs.shape[0])
        losses.append(train_step(model, optimizer, schedule, imgs, noise))
    return losses


class _Recorder:
    """A train_step that records what it was given, then runs the reference step."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, model, optimizer, schedule, imgs, noise):
        self.calls.append((imgs.detach().clone(), noise.detach().clone()))
        return reference_train_step(model, optimizer, schedule, imgs, noise)


def _epoch_data() -> ImageData:
    gen = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (40, 1, 16, 16), generator=gen, dtype=torch.uint8)
    return ImageData(images, torch.zeros(40, dtype=torch.long), ("x",), (0.5,), (0.25,))


EPOCHS = (1, 2)  # two epochs in a row: a schedule stepped once more per epoch shows after the first


@checker("train_one_epoch")
def check_train_one_epoch(fn: Callable[[MAE, torch.optim.Optimizer, WarmupCosine, BatchLoader, int, Callable], list]) -> bool:
    """Check ``fn(model, optimizer, schedule, loader, epoch, train_step) -> losses`` on epochs 1 then 2 of a
    5-batch loader, with the same model, optimiser and schedule: batches, noise, losses and the learning rate
    after each epoch."""
    data = _epoch_data()
    runs: dict[str, list[tuple[Any, list, float]]] = {}
    models = {}
    for who, f in (("reference", reference_train_one_epoch), ("mine", fn)):
        model, optimizer, schedule = _tiny_setup(total_steps=12)
        loader = BatchLoader(data, batch_size=8, img_size=16, train=True, seed=3)
        name = "my_train_one_epoch" if who == "mine" else who
        runs[who] = []
        for epoch in EPOCHS:
            recorder = _Recorder()
            out = call_learner(f, name, model, optimizer, schedule, loader, epoch, recorder)
            runs[who].append((out, recorder.calls, optimizer.param_groups[0]["lr"]))
        models[who] = model
    for (want, want_calls, want_lr), (got, calls, lr), epoch in zip(runs["reference"], runs["mine"], EPOCHS):
        where = (f"my_train_one_epoch(model, optimizer, schedule, loader with {len(want_calls)} batches of 8, "
                 f"epoch={epoch}, train_step)" + (f", after epoch {EPOCHS[0]}" if epoch != EPOCHS[0] else ""))
        _compare_epoch(where, epoch, data, got, calls, want, want_calls, models["reference"])
        if not _close(lr, want_lr):
            raise ExerciseError(
                f"{where}: expected the learning rate {want_lr:.6g} after epoch {epoch} (one schedule.step() per "
                f"batch, inside train_step), got {lr:.6g}: the schedule is stepped outside train_step too (for "
                f"example once per epoch), so every later epoch runs at the wrong learning rate; leave the "
                f"stepping to train_step")
    return passed("train_one_epoch", "set_epoch, every batch in order, mask noise from seed + 1, one train_step "
                                     "each, over two epochs in a row")


def _compare_epoch(where: str, epoch: int, data: ImageData, got: Any, calls: list, want: list, want_calls: list,
                   ref_model: MAE) -> None:
    """Raise naming the first difference between one epoch of the learner's loop and the reference's."""
    if len(calls) != len(want_calls):
        raise ExerciseError(f"{where}: expected {len(want_calls)} calls of train_step (one per batch, "
                            f"range(len(loader))), got {len(calls)}")
    probe = BatchLoader(data, batch_size=8, img_size=16, train=True, seed=3)
    for k, ((imgs, noise), (want_imgs, want_noise)) in enumerate(zip(calls, want_calls)):
        if imgs.shape != want_imgs.shape or not torch.equal(imgs, want_imgs):
            probe.set_epoch(0)
            if imgs.shape == want_imgs.shape and torch.equal(imgs, probe.batch(k)[0]):
                hint = "these are epoch 0's batches: call loader.set_epoch(epoch) before the first batch"
            else:
                hint = "take batch k from loader.batch(k) (it returns imgs, labels, seed), after loader.set_epoch(epoch)"
            raise ExerciseError(f"{where}: expected batch {k}'s images {list(want_imgs.shape)} from loader.batch({k}), "
                                f"got different images {list(imgs.shape)}. Hint: {hint}")
        if noise.shape != want_noise.shape or not torch.equal(noise, want_noise):
            probe.set_epoch(epoch)
            seed = probe.batch_seed(k)
            from_seed = ref_model.mask_noise(imgs.shape[0], generator=torch.Generator().manual_seed(seed))
            if noise.shape == from_seed.shape and torch.equal(noise, from_seed):
                hint = ("the noise comes from the batch seed itself, which the augmentation already used: "
                        "draw it from torch.Generator().manual_seed(seed + 1)")
            else:
                hint = ("draw the noise with model.mask_noise(imgs.shape[0], generator=torch.Generator()"
                        ".manual_seed(seed + 1)), seed from loader.batch(k); noise from the global random state "
                        "would make the masks depend on everything run before")
            raise ExerciseError(f"{where}: expected the mask noise {list(want_noise.shape)} of batch {k} (seed + 1), "
                                f"got different noise {list(noise.shape)}. Hint: {hint}")
    if not isinstance(got, (list, tuple)) or len(got) != len(want):
        raise ExerciseError(f"{where}: expected the list of the {len(want)} losses train_step returned, got "
                            f"{type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, (list, tuple)) else ""))
    if any(not isinstance(a, (int, float)) or not math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, want)):
        raise ExerciseError(f"{where}: expected the losses {[round(x, 5) for x in want]} (what train_step returned, in "
                            f"order), got {got}")
