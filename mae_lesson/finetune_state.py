"""A fine-tuning run that outlives its process: its state saved every few steps, and continued from there.

A long fine-tune (the paper's recipe: hours per seed on a laptop; the compute-matched study's runs) can
be stopped at any moment and started again with the same arguments: :func:`restore` loads the last
state saved by :func:`save` and the run goes on from that step, with the batches, augmentations and
mixes of an uninterrupted run (each is drawn from its batch's seed) and the global RNG (drop path) as
it was. A state saved by a run with other arguments is refused, never mixed in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import atomic_save, safe_load
from .optim import WarmupCosine


def run_settings(args: Any, **extra: Any) -> dict[str, Any]:
    """What identifies a run's result: its argument dataclass's values, less the progress bar and the device
    (neither changes the result), plus ``extra``. A saved state or a recorded seed must match it."""
    return {**dataclasses.asdict(args), "progress": None, "device": None, **extra}


@dataclasses.dataclass
class Progress:
    """Where a run stands: the next step, its training seconds so far and its ``(epoch, accuracy)`` history."""

    step: int = 0
    seconds: float = 0.0
    history: list[tuple[float, float]] = dataclasses.field(default_factory=list)


def save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: WarmupCosine,
         progress: Progress, settings: dict[str, Any]) -> None:
    """Write the run's state to ``path`` atomically (a crash mid-write keeps the previous state)."""
    atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "rng": torch.get_rng_state(), "step": progress.step, "seconds": progress.seconds,
                 "history": [list(pair) for pair in progress.history], "settings": settings}, path)


def restore(path: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: WarmupCosine,
            settings: dict[str, Any]) -> Progress:
    """The saved state of this run, loaded into ``model``, ``optimizer`` and ``schedule``; a fresh
    :class:`Progress` when ``path`` is ``None`` or holds nothing yet."""
    if path is None or not Path(path).is_file():
        return Progress()
    state = safe_load(path)
    changed = sorted(k for k in settings.keys() | state["settings"].keys()
                     if settings.get(k) != state["settings"].get(k))
    if changed:
        raise ValueError(f"{path} holds a fine-tuning run with other settings ({', '.join(changed)}): delete it to "
                         f"start this run afresh, or give this run another state file")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    return Progress(state["step"], state["seconds"], [tuple(pair) for pair in state["history"]])
