"""Pretraining, the whole run: :func:`pretrain` sets up a :class:`~mae_lesson.run.state.Run`, runs the engine's
epochs with their end-of-epoch work, and writes ``model.pt``; Ctrl-C or SIGTERM stops it between two steps."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..engine import train_one_epoch
from ..model import MAE
from ..stopping import TrainingInterrupted, stop_on_signals
from .args import PretrainArgs
from .setup import setup_run
from .state import end_of_epoch, finish_pending_epoch


def pretrain(args: PretrainArgs | None = None, model_class: type[MAE] = MAE, **kwargs: Any) -> Path:
    """Run (or resume) pretraining; returns the run folder.

    The folder holds ``args.json``, ``config.yaml``, ``metrics.jsonl``, ``loss_curve.png``,
    ``recon_epochNNN.png`` after each epoch, ``checkpoint.pt`` (full state, for ``resume``)
    and ``model.pt`` (weights + config, for ``MAE.from_checkpoint``). ``model_class`` trains a
    subclass of ``MAE`` (the ablations use one). A folder that already holds a run needs
    ``resume=True`` or ``overwrite=True``. Ctrl-C or SIGTERM saves ``checkpoint.pt`` after the
    current step and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``).
    """
    run = setup_run(dataclasses.replace(args or PretrainArgs(), **kwargs), model_class)
    try:
        # model.pt and the final meeting of the processes stay under the handler: torchrun sends a
        # SIGTERM to every process, and one killed while waiting there leaves the others a gloo error.
        with stop_on_signals(announce=run.rank == 0) as run.stop:
            finish_pending_epoch(run)
            while run.step < run.total_steps:
                epoch = run.step // run.steps_per_epoch
                stats = train_one_epoch(run, epoch)
                end_of_epoch(run, epoch, stats)
            if run.rank == 0:
                run.model.save_checkpoint(run.out / "model.pt", step=run.step, args=dataclasses.asdict(run.args))
            if run.world > 1:
                dist.barrier()  # model.pt is written; a signal that comes while a process waits here is shared next
            if run.stop_requested():
                raise TrainingInterrupted(
                    f"stopped by {signal.Signals(run.stop.signum).name} after the last step ({run.step} of "
                    f"{run.total_steps}): the run is complete, {run.out / 'model.pt'} saved", run.stop.signum)
    finally:
        run.close()
    return run.out
