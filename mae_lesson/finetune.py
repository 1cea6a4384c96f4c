"""Fine-tuning: ``python -m mae_lesson.finetune`` or :func:`finetune`.

The fine-tuning code lives in :mod:`mae_lesson.finetuning` (notebook 07) and the command line in
:mod:`mae_lesson.run.finetune_cli`; this module names both, so ``from mae_lesson.finetune import
finetune`` and ``python -m mae_lesson.finetune`` keep working.
"""

from __future__ import annotations

from .finetuning import DEFAULT_RECIPE, FinetuneArgs, FinetuneRun, accuracy, finetune, finetune_setup, finetune_step, predict
from .run.finetune_cli import main

__all__ = ["DEFAULT_RECIPE", "FinetuneArgs", "FinetuneRun", "accuracy", "finetune", "finetune_setup", "finetune_step",
           "predict", "main"]

if __name__ == "__main__":
    main()
