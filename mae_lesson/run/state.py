"""The state of a pretraining run (:class:`Run`) and what it does around the engine's steps.

After each step (:meth:`Run.after_step`): a metrics row, the periodic checkpoint, a stop when a
signal came. After each epoch (:func:`end_of_epoch`): the test loss, the reconstruction figure, the
epoch's row, ``checkpoint.pt`` and the loss curve. ``checkpoint.pt`` holds everything
:func:`mae_lesson.run.setup.setup_run` needs to resume exactly, and only ever finite weights.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import torch
import torch.distributed as dist

from ..checkpoint import atomic_save, nonfinite_weights
from ..engine import NonFiniteLossError
from ..evaluate import evaluate_loss
from ..loader import BatchLoader, ImageData
from ..model import MAE
from ..optim import WarmupCosine
from ..runfolder import FolderLock, release_lock
from ..stopping import StopRequest, TrainingInterrupted
from ..viz import loss_curve_figure, reconstruction_figure
from .args import PretrainArgs, resume_command
from .distributed import rng_state, stop_requested


@dataclass
class Run:
    """The state of one pretraining run, built by :func:`~mae_lesson.run.setup.setup_run` and passed to every stage."""

    args: PretrainArgs
    rank: int
    world: int
    device: torch.device
    out: Path
    model: MAE                  # the module whose weights are saved
    train_model: torch.nn.Module  # what the step calls: the model, wrapped by DDP and/or compile
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    autocast: Any
    scaler: torch.amp.GradScaler | None
    loader: BatchLoader
    test_data: ImageData
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    fig_imgs: torch.Tensor | None = None   # fixed test images and masks for figures
    fig_noise: torch.Tensor | None = None
    # The running epoch's loss, summed in step order: checkpointed, so a resumed epoch reports the same mean.
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    saved_step: int | None = None           # step of checkpoint.pt, None before the first save
    # An epoch whose steps are all done but whose end-of-epoch work (test loss, figure, row, curve) is not:
    # a stop after an epoch's last step saves it, and the resume does that work first.
    pending_epoch: dict[str, float] | None = None
    data: dict[str, Any] = field(default_factory=dict)  # the training images' count, fingerprint, steps per epoch
    lock: FolderLock | None = None          # rank 0's lock on the run folder
    stop: StopRequest = field(default_factory=StopRequest)

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def close(self) -> None:
        """Free the run folder for the next run (``pretrain`` does this when it ends)."""
        release_lock(self.lock)

    def after_step(self, epoch: int, end: int, loss: float, rate: float, stats: Callable[[], dict[str, float]]) -> None:
        """The run's work after an optimizer step of ``epoch`` (whose steps end at ``end``): the train row
        every ``log_every_steps``, ``checkpoint.pt`` every ``ckpt_every_steps``, and a stop when asked.

        A stop saves ``checkpoint.pt`` and raises :class:`TrainingInterrupted`; ``stats()`` is the epoch so
        far, kept for the resume when the stop comes after the epoch's last step.
        """
        if self.step % self.args.log_every_steps == 0:
            log_metrics(self, {"kind": "train", "step": self.step, "epoch": epoch + 1, "loss": loss,
                               "lr": self.schedule.lr, "img_per_s": rate})
        if self.step % self.args.ckpt_every_steps == 0 and self.step < end:
            save_state(self)
        if self.stop_requested():
            if self.step == end:  # the epoch's steps are done, its end-of-epoch work is left to the resume
                self.pending_epoch = {"epoch": epoch, **stats()}
            save_and_stop(self)

    def stop_requested(self) -> bool:
        """Whether any process got a stop signal (all processes stop after the same step)."""
        return stop_requested(self.stop, self.world, self.device)

    def nan_advice(self) -> str:
        """What to do after a NaN, naming the checkpoint only when one exists."""
        causes = ("Likely causes: a learning rate too high for this batch (a lower --blr, a longer --warmup-epochs, "
                  "--clip-grad 1.0), fp16 overflow (--amp bf16 or none), or inputs that are not normalised. ")
        if self.saved_step is None:
            return causes + (f"No checkpoint was saved before it (the first comes at step {self.args.ckpt_every_steps} "
                             f"or at the end of epoch 1): fix the cause and start again with --overwrite.")
        return causes + (f"The last good checkpoint, {self.ckpt_path} (step {self.saved_step}), is intact: start again "
                         f"with a fix and --overwrite, or continue it with --resume and --clip-grad 1.0 or --amp bf16.")


def save_and_stop(run: Run) -> None:
    """Save ``checkpoint.pt`` at the current step and raise :class:`TrainingInterrupted` with the resume command."""
    save_state(run)
    if run.world > 1:
        dist.barrier()
    name = signal.Signals(run.stop.signum).name
    raise TrainingInterrupted(
        f"stopped by {name} at step {run.step} of {run.total_steps}; saved {run.ckpt_path}. Continue with:\n"
        f"  {resume_command(run.args)}", run.stop.signum)


def finish_pending_epoch(run: Run) -> None:
    """Do the end-of-epoch work of an epoch a stop cut off after its last step (a resume starts here),
    so the resumed run's rows, figures and curve are an uninterrupted run's."""
    if run.pending_epoch is not None:
        stats = dict(run.pending_epoch)
        end_of_epoch(run, int(stats.pop("epoch")), stats)


def end_of_epoch(run: Run, epoch: int, stats: dict[str, float]) -> None:
    """Test loss, the reconstruction figure, the metrics row, the checkpoint and the loss curve."""
    model, cfg = run.model, run.model.config
    test_loss = float("nan")
    if run.rank == 0:
        check_finite_weights(run)
        model.eval()
        test_loss = evaluate_loss(model, run.test_data, cfg, run.device)
        fig = reconstruction_figure(model, run.fig_imgs, run.test_data.mean, run.test_data.std, run.fig_noise,
                                    title=f"test images, epoch {epoch + 1}, step {run.step}")
        fig.savefig(run.out / f"recon_epoch{epoch + 1:03d}.png", dpi=110)
        plt.close(fig)
        model.train()
    log_metrics(run, {"kind": "epoch", "step": run.step, "epoch": epoch + 1, "train_loss": stats["train_loss"],
                      "test_loss": test_loss, "seconds": stats["seconds"],
                      "img_per_s": stats["images"] / max(1e-9, stats["seconds"])})
    run.pending_epoch = None
    save_state(run)
    if run.rank == 0:
        fig = loss_curve_figure(run.metrics_path, title=f"MAE pretraining: {cfg.model_name}")
        fig.savefig(run.out / "loss_curve.png", dpi=110)
        plt.close(fig)


def check_finite_weights(run: Run) -> None:
    """Raise :class:`NonFiniteLossError` when a weight holds NaN or Inf (an update that diverged after a
    finite loss), before a figure, a metrics row or a checkpoint is written from them."""
    bad = nonfinite_weights(run.model.state_dict())
    if bad:
        raise NonFiniteLossError(f"the weights after optimizer step {run.step} hold {bad}, so nothing was saved "
                                 f"from them. " + run.nan_advice())


def save_state(run: Run) -> None:
    """Atomically write ``checkpoint.pt``: everything ``setup_run`` needs to resume exactly.

    Raises :class:`NonFiniteLossError` instead when a weight holds NaN or Inf, so the checkpoint on disk
    (the last good one) always has finite weights.
    """
    if run.rank != 0:
        return
    check_finite_weights(run)
    atomic_save({"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                 "scheduler": run.schedule.state_dict(), "scaler": run.scaler.state_dict() if run.scaler else {},
                 "rng": rng_state(), "step": run.step, "epoch": run.step // max(1, run.steps_per_epoch),
                 "epoch_loss": [run.epoch_loss_sum, run.epoch_loss_count], "pending_epoch": run.pending_epoch,
                 "data": run.data,
                 "config": run.model.config.to_dict(), "args": dataclasses.asdict(run.args)}, run.ckpt_path)
    run.saved_step = run.step


def log_metrics(run: Run, row: dict[str, Any]) -> None:
    """Append one JSON row to ``metrics.jsonl`` (rank 0 only)."""
    if run.rank == 0:
        with open(run.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
