"""The arguments of a pretraining run: :class:`PretrainArgs`, its model config, and the command that resumes it."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..amp import AMP_CHOICES
from ..cli import arg_field, check_fields, check_recipe
from ..bundled import load_recipe
from ..config import Config
from ..data import check_seed

DEFAULT_RECIPE = "pretrain_cpu"
_RECIPE = load_recipe(DEFAULT_RECIPE)

# Columns of a reconstruction figure: each is 1.2 inches wide, so more would draw a figure no one can read.
MAX_FIGURE_IMAGES = 32


@dataclass
class PretrainArgs:
    """Everything a pretraining run needs; saved in the run folder as ``args.json``.

    Defaults are the ``pretrain_cpu`` recipe (``mae_lesson/configs/recipes/pretrain_cpu.yaml``).
    """

    config: str = arg_field(_RECIPE["config"], "model config: a bundled name (fashion_mnist_p7, "
                       "fashion_mnist_tiny, cifar_tiny, mae_base, ...) or a YAML path")
    overrides: dict[str, Any] = field(default_factory=dict)  # model config keys to change (--set key=value)
    dataset: str = arg_field(_RECIPE["dataset"], "fashion_mnist, cifar10, or a folder of class sub-folders of "
                             "images (loaded at the config's img_size and in_chans)")
    strict_images: bool = arg_field(False, "refuse an image folder that holds unreadable files (listing them) "
                                    "instead of skipping them")
    data_root: str = arg_field("data", "folder that holds (or receives) the datasets")
    download: bool = arg_field(False, "fetch a missing dataset with torchvision")
    train_images: int | None = arg_field(None, "use only the first N training images (quick runs, tests); "
                                         "None: all", metavar="N", at_least=1)
    epochs: int = arg_field(_RECIPE["epochs"], "passes over the training images, in epochs", at_least=1)
    max_steps: int | None = arg_field(None, "stop after this many optimizer steps (quick runs); None: no cap",
                                      metavar="STEPS", at_least=1)
    schedule_steps: int | None = arg_field(None, "length of the cosine schedule in optimizer steps; "
                                      "None: epochs x steps per epoch", metavar="STEPS", at_least=1)
    batch_size: int = arg_field(_RECIPE["batch_size"], "images per micro-step, over all processes", metavar="IMAGES",
                                at_least=1)
    accum_iter: int = arg_field(_RECIPE["accum_iter"], "micro-steps per optimizer step (gradient accumulation)",
                                metavar="MICRO_STEPS", at_least=1)
    blr: float = arg_field(_RECIPE["blr"], "base learning rate; lr = blr x batch_size x accum_iter / 256",
                           positive=True)
    lr: float | None = arg_field(None, "absolute learning rate (replaces blr); None: from blr", metavar="LR",
                                 positive=True)
    min_lr: float = arg_field(_RECIPE["min_lr"], "learning rate at the end of the cosine (absolute)",
                              non_negative=True)
    warmup_epochs: float = arg_field(_RECIPE["warmup_epochs"], "linear warm-up length, in epochs", non_negative=True)
    weight_decay: float = arg_field(_RECIPE["weight_decay"], "AdamW weight decay (not on biases, norms, tokens, tables)",
                                   non_negative=True)
    clip_grad: float | None = arg_field(None, "clip the gradient's L2 norm to this value; None: no clipping",
                                        metavar="NORM", positive=True)
    amp: str = arg_field("auto", "mixed precision on CUDA: auto, bf16, fp16 or none (CPU always fp32)",
                         choices=AMP_CHOICES)
    compile: bool = arg_field(False, "torch.compile the model")
    device: str = arg_field("auto", "auto (cuda, then mps, then cpu), cuda, mps or cpu")
    seed: int = arg_field(_RECIPE["seed"], "seed of batches, augmentation, masks and initialisation")
    out: str = arg_field("runs/pretrain", "run folder (created if missing); a folder that holds a run needs "
                         "--resume or --overwrite")
    resume: bool = arg_field(False, "continue the run in --out from its checkpoint.pt (the model, batch and "
                             "schedule settings must be the run's)")
    overwrite: bool = arg_field(False, "start over in an --out that holds a run: delete its checkpoints, "
                                "metrics and figures first")
    ckpt_every_steps: int = arg_field(200, "also save checkpoint.pt every this many optimizer steps", metavar="STEPS",
                                   at_least=1)
    log_every_steps: int = arg_field(10, "write a train row to metrics.jsonl every this many steps", metavar="STEPS",
                                  at_least=1)
    num_figure_images: int = arg_field(8, "test images in each recon_epochNNN.png", metavar="IMAGES",
                                   at_least=1, at_most=MAX_FIGURE_IMAGES,
                                   why={"at_most": "one column of the figure each"})
    progress: bool = arg_field(True, "show a progress bar")

    def __post_init__(self) -> None:
        """Refuse a value the run cannot use, naming the flag and a valid value."""
        check_fields(self)  # types and the ranges given to arg_field
        check_seed(self.seed)
        if not str(self.out).strip():
            raise ValueError("--out is empty: name a folder for the run, e.g. --out runs/pretrain")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite deletes it: choose one")


check_recipe(PretrainArgs, _RECIPE, DEFAULT_RECIPE)


def model_config(args: PretrainArgs) -> Config:
    """The config of ``args.config`` with ``args.overrides`` (before the data's normalisation is recorded)."""
    return Config.from_file(args.config).replace(**args.overrides)


def resume_command(args: PretrainArgs) -> str:
    """The shell command that continues ``args``'s run: its non-default flags plus ``--resume``."""
    defaults = PretrainArgs()
    parts = ["python", "-m", "mae_lesson.pretrain"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        parts = ["torchrun", f"--nproc_per_node={world}", "-m", "mae_lesson.pretrain"]
    for f in dataclasses.fields(PretrainArgs):
        value = getattr(args, f.name)
        if f.name in ("overrides", "resume", "overwrite") or value == getattr(defaults, f.name) or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        parts += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    for key, value in args.overrides.items():
        parts += ["--set", f"{key}={json.dumps(value)}"]
    return shlex.join([*parts, "--resume"])
