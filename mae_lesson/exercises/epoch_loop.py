"""Checker for notebook 06's epoch loop, ``train_one_epoch``, against the engine's order of operations
(``engine_pretrain.train_one_epoch`` of the official code): batches from ``loader.batch(step)`` after
``loader.set_epoch(epoch)``, mask noise from the batch seed + 1, one training step per batch.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..loader import BatchLoader, ImageData
from ..model import MAE
from ..optim import WarmupCosine
from ..engine import MASK_SEED_OFFSET
from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import Mistake, fail, judge
from ._models import tiny_training


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def reference_train_step(model: MAE, optimizer: torch.optim.Optimizer, schedule: WarmupCosine,
                         imgs: torch.Tensor, noise: torch.Tensor) -> float:
    """One optimiser step on ``imgs [N, C, H, W]`` masked by ``noise [N, L]``; returns the loss (a float)."""
    loss = model(imgs, noise=noise)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    schedule.step()
    return loss.item()


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
        model, optimizer, schedule = tiny_training(total_steps=12)
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


def _epoch_0_batch(c: dict) -> torch.Tensor:
    c["probe"].set_epoch(0)
    return c["probe"].batch(c["k"])[0]


def _noise_from_seed(c: dict) -> torch.Tensor:
    c["probe"].set_epoch(c["epoch"])
    return c["model"].mask_noise(c["n"], generator=torch.Generator().manual_seed(c["probe"].batch_seed(c["k"])))


# The case: a loader like the check's (``probe``), the batch index k, the epoch, the reference model, the batch size n.
EPOCH_MISTAKES = (
    Mistake("epoch_0_batches", _epoch_0_batch,
            "these are epoch 0's batches: call loader.set_epoch(epoch) before the first batch"),
    Mistake("noise_from_seed", _noise_from_seed, "the noise comes from the batch seed itself, which the augmentation "
            "already used: draw it from torch.Generator().manual_seed(seed + 1)"),
)


def _rows(*names: str) -> tuple[Mistake, ...]:
    return tuple(row for row in EPOCH_MISTAKES if row.name in names)


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b)


def _compare_epoch(where: str, epoch: int, data: ImageData, got: Any, calls: list, want: list, want_calls: list,
                   ref_model: MAE) -> None:
    """Raise naming the first difference between one epoch of the learner's loop and the reference's."""
    if len(calls) != len(want_calls):
        raise ExerciseError(f"{where}: expected {len(want_calls)} calls of train_step (one per batch, "
                            f"range(len(loader))), got {len(calls)}")
    probe = BatchLoader(data, batch_size=8, img_size=16, train=True, seed=3)
    for k, ((imgs, noise), (want_imgs, want_noise)) in enumerate(zip(calls, want_calls)):
        case = {"probe": probe, "k": k, "epoch": epoch, "model": ref_model, "n": imgs.shape[0]}
        said = (f"{where}: expected batch {k}'s images {list(want_imgs.shape)} from loader.batch({k}), got different "
                f"images {list(imgs.shape)}. Hint: ")
        judge(where, imgs, want_imgs, _rows("epoch_0_batches"), case, matches=_equal, found=lambda m: said + m,
              differs=lambda: fail(said + "take batch k from loader.batch(k) (it returns imgs, labels, seed), after "
                                          "loader.set_epoch(epoch)"))
        said = (f"{where}: expected the mask noise {list(want_noise.shape)} of batch {k} (seed + 1), got different noise "
                f"{list(noise.shape)}. Hint: ")
        judge(where, noise, want_noise, _rows("noise_from_seed"), case, matches=_equal, found=lambda m: said + m,
              differs=lambda: fail(said + "draw the noise with model.mask_noise(imgs.shape[0], generator=torch.Generator()"
                                          ".manual_seed(seed + 1)), seed from loader.batch(k); noise from the global random "
                                          "state would make the masks depend on everything run before"))
    if not isinstance(got, (list, tuple)) or len(got) != len(want):
        raise ExerciseError(f"{where}: expected the list of the {len(want)} losses train_step returned, got "
                            f"{type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, (list, tuple)) else ""))
    if any(not isinstance(a, (int, float)) or not math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, want)):
        raise ExerciseError(f"{where}: expected the losses {[round(x, 5) for x in want]} (what train_step returned, in "
                            f"order), got {got}")
