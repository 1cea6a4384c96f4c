"""Self-supervised pretraining: ``python -m mae_lesson.pretrain`` or :func:`pretrain`.

The official recipe (AdamW betas (0.9, 0.95), decay 0.05 off biases/norms/tables,
``lr = blr * batch / 256``, warm-up then cosine, gradient accumulation, autocast on CUDA),
a run folder with metrics, figures and atomic checkpoints, exact resume, and
DistributedDataParallel under ``torchrun``. Every random choice (batch order, augmentation,
masks) is drawn from a seed derived from (seed, epoch, step), so a resumed run and a run on
any number of processes see the same batches and masks as a single uninterrupted one.

The code lives in two layers, and this module names their parts in one place:

- the engine, :mod:`mae_lesson.engine`: ``micro_batches``, ``train_step``, ``train_one_epoch``
  (notebook 06 writes them by hand);
- the run around it, :mod:`mae_lesson.run`: ``PretrainArgs`` (``run.args``), processes and RNG
  states (``run.distributed``), ``setup_run`` (``run.setup``), the ``Run`` and its per-step and
  end-of-epoch work (``run.state``), ``pretrain`` (``run.pretraining``) and the command line
  (``run.pretrain_cli``).
"""

from __future__ import annotations

from .engine import MASK_SEED_OFFSET, NonFiniteLossError, micro_batches, train_one_epoch, train_step
from .errors import RunError
from .run.args import DEFAULT_RECIPE, MAX_FIGURE_IMAGES, PretrainArgs, model_config, resume_command
from .run.distributed import init_distributed, rng_state, set_rng_state
from .run.pretrain_cli import build_parser, main, parse_args, parse_overrides
from .run.pretraining import pretrain
from .run.setup import FIGURE_MASK_SEED, build_model, setup_run
from .run.state import Run, check_finite_weights, end_of_epoch, finish_pending_epoch, log_metrics, save_state

__all__ = ["DEFAULT_RECIPE", "FIGURE_MASK_SEED", "MASK_SEED_OFFSET", "MAX_FIGURE_IMAGES", "NonFiniteLossError",
           "PretrainArgs", "Run", "RunError", "build_model", "build_parser", "check_finite_weights", "end_of_epoch",
           "finish_pending_epoch", "init_distributed", "log_metrics", "main", "micro_batches", "model_config",
           "parse_args", "parse_overrides", "pretrain", "resume_command", "rng_state", "save_state", "set_rng_state",
           "setup_run", "train_one_epoch", "train_step"]

if __name__ == "__main__":
    main()
