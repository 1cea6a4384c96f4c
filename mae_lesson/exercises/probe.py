"""Checker for notebook 07's linear probe: :func:`mae_lesson.evaluate.linear_probe`'s recipe on cached features.

The reference trains with the same seed: BatchNorm without affine, a linear layer, AdamW and a cosine
schedule. The check trains on the whole training set as one batch, so every correct probe, whatever order
it draws its data in, makes the same predictions up to float rounding.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate import linear_probe
from ._feedback import call_learner, checker, passed
from ._judge import Mistake, expect_shape, fail, judge
from ._models import one_thread


def _probe_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features on wildly different scales and offsets (BatchNorm matters), and a test set whose
    class mix differs from the training set's (so its own batch statistics would mislead)."""
    gen = torch.Generator().manual_seed(seed)
    classes, dim = 4, 16
    centres = torch.randn(classes, dim, generator=gen) * 0.5  # classes overlap
    scale = torch.exp(torch.randn(dim, generator=gen) * 1.5)
    offset = torch.randn(dim, generator=gen) * 5

    def draw(y: torch.Tensor) -> torch.Tensor:
        return (centres[y] + torch.randn(len(y), dim, generator=gen)) * scale + offset

    train_y = torch.arange(classes).repeat(150)
    test_y = torch.cat([torch.zeros(150, dtype=torch.long), torch.arange(1, classes).repeat(20)])
    return draw(train_y), train_y, draw(test_y), test_y


def _probe_variant(train_x, train_y, test_x, epochs, batch_size, lr, seed, change: str) -> torch.Tensor:
    """``linear_probe``'s recipe with one usual mistake (``change``)."""
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    dim, classes = train_x.shape[1], int(train_y.max()) + 1
    layers = [] if change == "no_norm" else [nn.BatchNorm1d(dim, affine=change == "affine", eps=1e-6)]
    probe = nn.Sequential(*layers, nn.Linear(dim, classes))
    nn.init.trunc_normal_(probe[-1].weight, std=0.01)
    nn.init.zeros_(probe[-1].bias)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    probe.train()
    for _ in range(epochs):
        order = torch.arange(len(train_x)) if change == "no_shuffle" else torch.randperm(len(train_x), generator=shuffle)
        for ids in order.split(batch_size):
            loss = F.cross_entropy(probe(train_x[ids]), train_y[ids])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if change != "no_schedule":
                schedule.step()
    if change != "train_mode":
        probe.eval()
    with torch.no_grad():
        return probe(test_x).argmax(dim=1)


def _trained(change: str, message: str) -> Mistake:
    """A row: the probe trained with ``change``, on the case (train_x, train_y, test_x, then the settings)."""
    return Mistake(change, lambda c: _probe_variant(*c, change=change), message)


# The case: the positional arguments of the call (train_x, train_y, test_x, epochs, batch_size, lr, seed).
PROBE_MISTAKES = (
    _trained("no_norm", "no BatchNorm before the linear layer: the features have very different scales; put "
                        "nn.BatchNorm1d(D, affine=False, eps=1e-6) first"),
    _trained("affine", "BatchNorm with a learnable scale and shift (affine=True): the paper's probe normalises only, "
                       "nn.BatchNorm1d(D, affine=False, eps=1e-6), so that the linear layer is all that learns"),
    _trained("train_mode", "the probe still in training mode at test time: BatchNorm then normalises with the test "
                           "batch's own statistics; call probe.eval() before predicting, so it uses the running "
                           "statistics of the training features"),
    _trained("no_shuffle", "the same order of training features in every epoch: draw torch.randperm(N, generator=...) "
                           "once per epoch"),
    _trained("no_schedule", "a constant learning rate: step the CosineAnnealingLR(optimizer, T_max=total steps) after "
                            "every optimizer step"),
)
# The check trains on the whole training set as one batch (batch_size = N): whatever order a
# correct probe draws its data in (randperm, a DataLoader, none), its one batch per epoch holds
# the same features, so every correct probe makes the same predictions up to float rounding.
# That allows a deterministic bound: all but PROBE_MAX_DIFFERENT test points the same.
PROBE_SETTINGS = {"epochs": 40, "lr": 3e-2, "seed": 0}
PROBE_MAX_DIFFERENT = 2
# A second, mini-batch run only to name one mistake no full batch can show: the same order every epoch.
SHUFFLE_SETTINGS = {"epochs": 4, "batch_size": 64, "lr": 1e-2, "seed": 0}


def _row(name: str) -> Mistake:
    return next(row for row in PROBE_MISTAKES if row.name == name)


@contextlib.contextmanager
def _batchnorms_built() -> Iterator[list[nn.BatchNorm1d]]:
    """Record every ``nn.BatchNorm1d`` built inside the block (the learner's probe, if it uses one)."""
    built: list[nn.BatchNorm1d] = []
    original = nn.BatchNorm1d.__init__

    def record(self: nn.BatchNorm1d, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        built.append(self)

    nn.BatchNorm1d.__init__ = record  # type: ignore[method-assign]
    try:
        yield built
    finally:
        nn.BatchNorm1d.__init__ = original  # type: ignore[method-assign]


@checker("linear_probe")
def check_linear_probe(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(train_x, train_y, test_x, epochs, batch_size, lr, seed)`` -> predictions ``[N_test]``."""
    with one_thread():
        return _check_linear_probe(fn)


def _predictions(where: str, got: object, count: int) -> torch.Tensor:
    """The contract of the answer: ``count`` integer class indices, not the accuracy, the logits or floats."""
    if isinstance(got, (float, int)) or (isinstance(got, torch.Tensor) and got.dim() == 0):
        fail(f"{where}: expected the predicted classes, a tensor of shape {[count]}, got a single "
             f"number ({got}): return the predictions, not the accuracy")
    if isinstance(got, torch.Tensor) and list(got.shape) == [count, 4]:
        fail(f"{where}: expected the predicted classes, shape {[count]}, got the logits {list(got.shape)}: take .argmax(dim=1)")
    expect_shape(where, got, [count], hint="one predicted class per test feature")
    if got.dtype.is_floating_point or got.dtype == torch.bool:
        fail(f"{where}: expected integer class indices (torch.long), got dtype {got.dtype}: argmax(dim=1) returns them")
    return got.long()


def _check_linear_probe(fn: Callable[..., torch.Tensor]) -> bool:
    train_x, train_y, test_x, test_y = _probe_data()
    settings = {"epochs": PROBE_SETTINGS["epochs"], "batch_size": len(train_x), "lr": PROBE_SETTINGS["lr"],
                "seed": PROBE_SETTINGS["seed"]}  # the call's positional order
    expected = linear_probe(train_x, train_y, test_x, test_y, weight_decay=0.0, **settings)["predictions"]
    where = (f"linear_probe(train_x {list(train_x.shape)}, train_y, test_x {list(test_x.shape)}, "
             + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")")
    with _batchnorms_built() as norms:
        got = call_learner(fn, "linear_probe", train_x.clone(), train_y.clone(), test_x.clone(), *settings.values())
    got = _predictions(where, got, len(test_x))
    if any(norm.affine for norm in norms):
        fail(f"{where}: expected BatchNorm1d(D, affine=False), got a BatchNorm1d with affine=True. "
             f"You trained {_row('affine').says(None)}")
    different = int((got != expected).sum())
    said = (f"{where}: expected predictions {expected[:10].tolist()}..., got {got[:10].tolist()}... ({different} of "
            f"{len(test_x)} test features differ")
    judge(where, got, expected, [row for row in PROBE_MISTAKES if row.name != "no_shuffle"],
          (train_x, train_y, test_x, *settings.values()),
          matches=lambda a, b: b is not None and int((a != b).sum()) <= (PROBE_MAX_DIFFERENT if b is expected else 0),
          found=lambda m: f"{said}). You trained {m}", differs=lambda: fail(
              f"{said}; with the whole training set as one batch, the data order cannot "
              f"matter, so a probe of this recipe agrees on all of them): torch.manual_seed(seed); BatchNorm1d(D, "
              f"affine=False, eps=1e-6) then Linear(D, classes) with trunc_normal_(std=0.01) weights and zero bias; "
              f"AdamW(lr, weight_decay=0) with a cosine schedule stepped every batch; probe.eval() before predicting"))
    _check_shuffled(fn, where, (train_x, train_y, test_x, test_y))
    return passed("linear_probe", "the same predictions as mae_lesson.evaluate.linear_probe on the full-batch set"
                                  + (f" (all but {different} of {len(test_x)} test features, float rounding)"
                                     if different else ""))


def _check_shuffled(fn: Callable[..., torch.Tensor], where: str, data: tuple[torch.Tensor, ...]) -> None:
    """A mini-batch run, only to name the one mistake no full batch can show: the same order every epoch."""
    train_x, train_y, test_x, test_y = data
    minibatch = call_learner(fn, "linear_probe", train_x.clone(), train_y.clone(), test_x.clone(),
                             *SHUFFLE_SETTINGS.values())
    want = linear_probe(train_x, train_y, test_x, test_y, weight_decay=0.0, **SHUFFLE_SETTINGS)["predictions"]
    if not isinstance(minibatch, torch.Tensor) or torch.equal(minibatch.long(), want):
        return
    where = where.split(", epochs=")[0] + ", " + ", ".join(f"{k}={v}" for k, v in SHUFFLE_SETTINGS.items()) + ")"
    judge(where, minibatch.long(), want, [_row("no_shuffle")], (train_x, train_y, test_x, *SHUFFLE_SETTINGS.values()),
          matches=torch.equal, differs=lambda: None,
          found=lambda m: f"{where}: expected a new order of the training features each epoch, got the same order "
                          f"every epoch: {m}")
