"""Self-supervised pretraining: ``python -m mae_lesson.pretrain`` or :func:`pretrain`.

The official recipe (AdamW betas (0.9, 0.95), decay 0.05 off biases/norms/tables,
``lr = blr * batch / 256``, warm-up then cosine, gradient accumulation, autocast on CUDA),
a run folder with metrics, figures and atomic checkpoints, exact resume, and
DistributedDataParallel under ``torchrun``. Every random choice (batch order, augmentation,
masks) is drawn from a seed derived from (seed, epoch, step), so a resumed run and a run on
any number of processes see the same batches and masks as a single uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shlex
import signal
import sys
import time
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.distributed as dist
import yaml
from tqdm.auto import tqdm

from .amp import AMP_CHOICES, autocast_for
from .checkpoint import atomic_save, nonfinite_weights, safe_load
from .cli import add_dataclass_flags, arg_field, check_device, check_field_types, check_recipe, dataclass_values
from .config import Config, load_recipe
from .data import BatchLoader, ImageData, check_seed, eval_transform, load_dataset
from .errors import EXIT_SIGINT, EXIT_SIGTERM, RunError, command_line_errors
from .evaluate import evaluate_loss
from .model import MAE
from .optim import WarmupCosine, adamw, param_groups, scaled_lr
from .runfolder import FolderLock, check_resume, check_resume_data, claim_folder, clear_run_files, release_lock, truncate_metrics
from .stopping import StopRequest, TrainingInterrupted, stop_on_signals
from .utils import get_device, set_seed
from .viz import loss_curve_figure, reconstruction_figure


DEFAULT_RECIPE = "pretrain_cpu"
_RECIPE = load_recipe(DEFAULT_RECIPE)

# Seeds of the fixed test images' masks, and of each batch's mask relative to its augmentation seed.
FIGURE_MASK_SEED = 1234
MASK_SEED_OFFSET = 1
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
                                         "None: all", metavar="N")
    epochs: int = arg_field(_RECIPE["epochs"], "passes over the training images, in epochs")
    max_steps: int | None = arg_field(None, "stop after this many optimizer steps (quick runs); None: no cap",
                                      metavar="STEPS")
    schedule_steps: int | None = arg_field(None, "length of the cosine schedule in optimizer steps; "
                                      "None: epochs x steps per epoch", metavar="STEPS")
    batch_size: int = arg_field(_RECIPE["batch_size"], "images per micro-step, over all processes", metavar="IMAGES")
    accum_iter: int = arg_field(_RECIPE["accum_iter"], "micro-steps per optimizer step (gradient accumulation)",
                                metavar="MICRO_STEPS")
    blr: float = arg_field(_RECIPE["blr"], "base learning rate; lr = blr x batch_size x accum_iter / 256")
    lr: float | None = arg_field(None, "absolute learning rate (replaces blr); None: from blr", metavar="LR")
    min_lr: float = arg_field(_RECIPE["min_lr"], "learning rate at the end of the cosine (absolute)")
    warmup_epochs: float = arg_field(_RECIPE["warmup_epochs"], "linear warm-up length, in epochs")
    weight_decay: float = arg_field(_RECIPE["weight_decay"], "AdamW weight decay (not on biases, norms, tokens, tables)")
    clip_grad: float | None = arg_field(None, "clip the gradient's L2 norm to this value; None: no clipping",
                                        metavar="NORM")
    amp: str = arg_field("auto", "mixed precision on CUDA: auto, bf16, fp16 or none (CPU always fp32)")
    compile: bool = arg_field(False, "torch.compile the model")
    device: str = arg_field("auto", "auto (cuda, then mps, then cpu), cuda, mps or cpu")
    seed: int = arg_field(_RECIPE["seed"], "seed of batches, augmentation, masks and initialisation")
    out: str = arg_field("runs/pretrain", "run folder (created if missing); a folder that holds a run needs "
                         "--resume or --overwrite")
    resume: bool = arg_field(False, "continue the run in --out from its checkpoint.pt (the model, batch and "
                             "schedule settings must be the run's)")
    overwrite: bool = arg_field(False, "start over in an --out that holds a run: delete its checkpoints, "
                                "metrics and figures first")
    ckpt_every_steps: int = arg_field(200, "also save checkpoint.pt every this many optimizer steps", metavar="STEPS")
    log_every_steps: int = arg_field(10, "write a train row to metrics.jsonl every this many steps", metavar="STEPS")
    num_figure_images: int = arg_field(8, "test images in each recon_epochNNN.png", metavar="IMAGES")
    progress: bool = arg_field(True, "show a progress bar")

    def __post_init__(self) -> None:
        """Refuse a value the run cannot use, naming the flag and a valid value."""
        check_field_types(self)
        at_least_one = ("epochs", "batch_size", "accum_iter", "ckpt_every_steps", "log_every_steps",
                        "num_figure_images", "train_images", "max_steps", "schedule_steps")
        for name in at_least_one:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("blr", "lr", "clip_grad"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name in ("min_lr", "warmup_epochs", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if self.num_figure_images > MAX_FIGURE_IMAGES:
            raise ValueError(f"--num-figure-images must be at most {MAX_FIGURE_IMAGES} (one column of the figure "
                             f"each), got {self.num_figure_images}")
        check_seed(self.seed)
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        if not str(self.out).strip():
            raise ValueError("--out is empty: name a folder for the run, e.g. --out runs/pretrain")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite deletes it: choose one")


check_recipe(PretrainArgs, _RECIPE, DEFAULT_RECIPE)


# ------------------------------------------------------------------------------ distributed
def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """Join the torchrun process group when launched by torchrun; returns (rank, world, device)."""
    check_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, get_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = get_device(device)
    if chosen.type == "cuda":
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return dist.get_rank(), world, chosen


# ------------------------------------------------------------------------------ RNG states
def rng_state() -> dict[str, Any]:
    """Every global RNG as plain data (loads with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class NonFiniteLossError(RuntimeError):
    """The loss or the weights became NaN or Inf; the last good checkpoint is left untouched."""


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


# --------------------------------------------------------------------------------- training
def model_config(args: PretrainArgs) -> Config:
    """The config of ``args.config`` with ``args.overrides`` (before the data's normalisation is recorded)."""
    return Config.from_file(args.config).replace(**args.overrides)


def build_model(args: PretrainArgs, data: ImageData, model_class: type[MAE] = MAE) -> MAE:
    """The model of ``args.config`` with overrides, recording the data's normalisation."""
    cfg = model_config(args)
    cfg = cfg.replace(norm_mean=list(data.mean), norm_std=list(data.std), dataset=args.dataset)
    if cfg.in_chans != data.images.shape[1]:
        raise ValueError(f"config {args.config} expects {cfg.in_chans} channels but {args.dataset} has "
                         f"{data.images.shape[1]}; pick a config for this dataset")
    return model_class(cfg)


@dataclass
class Run:
    """The state of one pretraining run, built by :func:`setup_run` and passed to every stage."""

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
            if _stop_requested(run):
                raise TrainingInterrupted(
                    f"stopped by {signal.Signals(run.stop.signum).name} after the last step ({run.step} of "
                    f"{run.total_steps}): the run is complete, {run.out / 'model.pt'} saved", run.stop.signum)
    finally:
        run.close()
    return run.out


def _share_outcome(problem: str | None, rank: int, world: int) -> None:
    """Tell every process whether rank 0 could claim the folder, so none waits for a run that will not start."""
    if world == 1:
        return
    box = [problem]
    dist.broadcast_object_list(box, src=0)
    if rank != 0 and box[0]:
        raise RunError(box[0])


def setup_run(args: PretrainArgs, model_class: type[MAE] = MAE) -> Run:
    """The run folder (checked and locked first), data, model, optimizer, schedule, mixed precision,
    then the resumed state. Nothing in the folder changes until every check has passed."""
    model_config(args)  # a bad config fails before the folder is touched
    rank, world, device = init_distributed(args.device)
    lock, created, resume_from = None, False, None
    if rank == 0:
        try:
            lock, created, resume_from = claim_folder(args.out, args.resume, args.overwrite)
        except Exception as exc:
            _share_outcome(f"rank 0 could not start: {exc}", rank, world)
            raise
    _share_outcome(None, rank, world)
    try:
        run = _build_run(args, model_class, rank, world, device, resume_from)
    except BaseException:
        release_lock(lock)
        if created and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()
        raise
    run.lock = lock
    # A run set up without pretrain() (a notebook driving train_one_epoch) frees its folder when it is
    # garbage-collected or the interpreter exits.
    weakref.finalize(run, release_lock, lock)
    return run


def _build_run(args: PretrainArgs, model_class: type[MAE], rank: int, world: int, device: torch.device,
               resume_from: Path | None) -> Run:
    out = Path(args.out)
    if rank != 0 and args.resume and (out / "checkpoint.pt").is_file():
        resume_from = out / "checkpoint.pt"
    state, changed = None, {}
    if resume_from is not None:
        state = safe_load(resume_from, map_location=device)
        changed = check_resume(dataclasses.asdict(args), model_config(args), state, resume_from)
    set_seed(args.seed)
    wanted = model_config(args)
    train_data = load_dataset(args.dataset, args.data_root, "train", args.download, wanted.img_size,
                              wanted.in_chans, args.strict_images).subset(args.train_images)
    test_data = load_dataset(args.dataset, args.data_root, "test", args.download, wanted.img_size,
                             wanted.in_chans, args.strict_images)
    model = build_model(args, train_data, model_class).to(device)
    cfg = model.config
    loader = BatchLoader(train_data, args.batch_size, cfg.img_size, train=True, seed=args.seed,
                         rank=rank, world_size=world)
    steps_per_epoch = len(loader) // args.accum_iter
    if steps_per_epoch == 0:
        raise RunError(
            f"one optimizer step takes batch_size x accum_iter = {args.batch_size * args.accum_iter} images but the "
            f"training set has {len(train_data)}: lower --batch-size or --accum-iter, or use more --train-images")
    total_steps = args.epochs * steps_per_epoch
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    data = {"images": len(train_data), "fingerprint": train_data.fingerprint(), "steps_per_epoch": steps_per_epoch}
    if state is not None:
        check_resume_data(state.get("data"), data, state["scheduler"]["total_steps"], total_steps, resume_from)
    base_lr = args.lr if args.lr is not None else scaled_lr(args.blr, args.batch_size * args.accum_iter)
    optimizer = adamw(param_groups(model, args.weight_decay), base_lr, betas=(0.9, 0.95))
    schedule = WarmupCosine(optimizer, base_lr, args.schedule_steps or args.epochs * steps_per_epoch,
                            int(args.warmup_epochs * steps_per_epoch), args.min_lr)
    autocast, scaler = autocast_for(device, args.amp)
    run = Run(args, rank, world, device, out, model, model, optimizer, schedule, autocast, scaler,
              loader, test_data, steps_per_epoch, total_steps, data=data)

    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])  # the run keeps its schedule, whatever --epochs says now
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        run.step = run.saved_step = int(state["step"])
        run.epoch_loss_sum, run.epoch_loss_count = state.get("epoch_loss", (0.0, 0))
        run.pending_epoch = state.get("pending_epoch")

    if world > 1:
        run.train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        run.train_model = torch.compile(run.train_model)
    run.fig_imgs = eval_transform(test_data.images[: args.num_figure_images], test_data, cfg.img_size).to(device)
    run.fig_noise = model.mask_noise(run.fig_imgs.shape[0], device="cpu",
                                     generator=torch.Generator().manual_seed(FIGURE_MASK_SEED)).to(device)
    # The folder changes only now, when everything above has passed (a failure before leaves it as it was).
    if rank == 0 and state is not None:
        truncate_metrics(run.metrics_path, run.step)
        _record_resume(run, changed)
    elif rank == 0:
        clear_run_files(out)  # empty unless overwrite (claim_folder refused it otherwise)
        (out / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
        (out / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.to_dict().items()))
    return run


def _record_resume(run: Run, changed: dict[str, list[Any]]) -> None:
    """``args.json`` describes the run as it continues, with every resume and what it changed."""
    path = run.out / "args.json"
    try:
        history = json.loads(path.read_text()).get("resumed", [])
    except (OSError, ValueError, AttributeError):
        history = []
    history = [*(history if isinstance(history, list) else []), {"step": run.step, "changed": changed}]
    path.write_text(json.dumps({**dataclasses.asdict(run.args), "resumed": history}, indent=2))
    if changed and run.rank == 0:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        print(f"resuming {run.out} at step {run.step} with changed settings: {listed} (recorded in {path}; "
              f"the learning-rate schedule keeps its {run.schedule.total_steps} steps)", file=sys.stderr)


def micro_batches(run: Run, step_in_epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
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


def train_one_epoch(run: Run, epoch: int) -> dict[str, float]:
    """Optimizer steps from ``run.step`` to the end of ``epoch`` (or of the run); logs as it goes.

    Returns ``{"train_loss", "seconds", "images"}``: the epoch's mean loss (over all its steps, those
    before a resume included) and the time and images of the steps run here. A stop signal saves
    ``checkpoint.pt`` after the current step and raises :class:`TrainingInterrupted`.
    """
    args, start = run.args, epoch * run.steps_per_epoch
    end = min(start + run.steps_per_epoch, run.total_steps)
    run.loader.set_epoch(epoch)
    if run.step == start:
        run.epoch_loss_sum, run.epoch_loss_count = 0.0, 0
    bar = tqdm(total=end - start, initial=run.step - start, leave=True, desc=f"epoch {epoch + 1}/{args.epochs}",
               disable=run.rank != 0 or not args.progress, dynamic_ncols=True)
    seen, tick = 0, time.perf_counter()
    run.train_model.train()
    while run.step < end:
        batches = micro_batches(run, run.step - start)
        try:
            loss = train_step(run.train_model, run.optimizer, run.schedule, batches, autocast=run.autocast,
                              scaler=run.scaler, clip_grad=args.clip_grad)
        except NonFiniteLossError as exc:
            bar.close()
            raise NonFiniteLossError(f"{exc} at optimizer step {run.step + 1} (epoch {epoch + 1}). "
                                     + _nan_advice(run)) from None
        run.step += 1
        run.epoch_loss_sum += loss
        run.epoch_loss_count += 1
        seen += sum(imgs.shape[0] for imgs, _ in batches) * run.world
        rate = seen / max(1e-9, time.perf_counter() - tick)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{run.schedule.lr:.2e}", img_s=f"{rate:.0f}")
        if run.step % args.log_every_steps == 0:
            log_metrics(run, {"kind": "train", "step": run.step, "epoch": epoch + 1, "loss": loss,
                              "lr": run.schedule.lr, "img_per_s": rate})
        if run.step % args.ckpt_every_steps == 0 and run.step < end:
            save_state(run)
        if _stop_requested(run):
            bar.close()
            if run.step == end:  # the epoch's steps are done, its end-of-epoch work is left to the resume
                run.pending_epoch = {"epoch": epoch, **_epoch_stats(run, tick, seen)}
            _save_and_stop(run)
    bar.close()
    return _epoch_stats(run, tick, seen)


def _epoch_stats(run: Run, tick: float, seen: int) -> dict[str, float]:
    mean = run.epoch_loss_sum / run.epoch_loss_count if run.epoch_loss_count else float("nan")
    return {"train_loss": mean, "seconds": time.perf_counter() - tick, "images": seen}


def finish_pending_epoch(run: Run) -> None:
    """Do the end-of-epoch work of an epoch a stop cut off after its last step (a resume starts here),
    so the resumed run's rows, figures and curve are an uninterrupted run's."""
    if run.pending_epoch is not None:
        stats = dict(run.pending_epoch)
        end_of_epoch(run, int(stats.pop("epoch")), stats)


def _nan_advice(run: Run) -> str:
    """What to do after a NaN, naming the checkpoint only when one exists."""
    causes = ("Likely causes: a learning rate too high for this batch (a lower --blr, a longer --warmup-epochs, "
              "--clip-grad 1.0), fp16 overflow (--amp bf16 or none), or inputs that are not normalised. ")
    if run.saved_step is None:
        return causes + (f"No checkpoint was saved before it (the first comes at step {run.args.ckpt_every_steps} "
                         f"or at the end of epoch 1): fix the cause and start again with --overwrite.")
    return causes + (f"The last good checkpoint, {run.ckpt_path} (step {run.saved_step}), is intact: start again "
                     f"with a fix and --overwrite, or continue it with --resume and --clip-grad 1.0 or --amp bf16.")


def _stop_requested(run: Run) -> bool:
    """Whether any process got a stop signal (all processes stop after the same step)."""
    stop = run.stop.signum is not None
    if run.world > 1:
        flag = torch.tensor([run.stop.signum or 0], device=run.device if run.device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        # A signal handled just after the reduction (its handler runs when the call returns) is kept for the next.
        stop, run.stop.signum = bool(flag.item()), int(flag.item()) or run.stop.signum
    return stop


def _save_and_stop(run: Run) -> None:
    """Save ``checkpoint.pt`` at the current step and raise :class:`TrainingInterrupted` with the resume command."""
    save_state(run)
    if run.world > 1:
        dist.barrier()
    name = signal.Signals(run.stop.signum).name
    raise TrainingInterrupted(
        f"stopped by {name} at step {run.step} of {run.total_steps}; saved {run.ckpt_path}. Continue with:\n"
        f"  {resume_command(run.args)}", run.stop.signum)


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
                                 f"from them. " + _nan_advice(run))


def save_state(run: Run) -> None:
    """Atomically write ``checkpoint.pt``: everything :func:`setup_run` needs to resume exactly.

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


# -------------------------------------------------------------------------------------- CLI
def build_parser(recipe: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The command line of ``python -m mae_lesson.pretrain``: a flag per :class:`PretrainArgs` field."""
    parser = argparse.ArgumentParser(
        prog="python -m mae_lesson.pretrain", description=__doc__.split("\n")[0],
        epilog=f"Ctrl-C or SIGTERM saves checkpoint.pt after the current step and prints the command that "
               f"continues the run (exit code {EXIT_SIGINT} / {EXIT_SIGTERM}); an expected failure prints one "
               f"error line (exit code 2).")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="NAME_OR_YAML",
                        help="training recipe whose values are the defaults of the flags below "
                             "(bundled: pretrain_cpu) (default: %(default)s)")
    add_dataclass_flags(parser, PretrainArgs, defaults=recipe, skip=("overrides",))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a model config key (a YAML value), e.g. --set mask_ratio=0.5 "
                             "--set norm_pix_loss=true (default: none, the config's values)")
    parser.add_argument("--quick", action="store_true",
                        help="a few-minute run: 1 epoch capped at 150 steps, 0.2 warm-up epochs (default: off)")
    return parser


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (YAML values) -> ``{key: value}``; refuses a malformed item."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r} needs KEY=VALUE, e.g. --set mask_ratio=0.5")
        try:
            overrides[key.strip()] = _number_or_text(value, yaml.safe_load(value))
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise ValueError(f"--set {item}: {value!r} is not a valid value ({problem}); write a number, "
                             f"true/false, a word or a list such as [28, 28]") from None
    return overrides


def _number_or_text(raw: str, parsed: Any) -> Any:
    """A number YAML 1.1 reads as text (``1e-1``: no dot) is the number; quoted text stays text."""
    if isinstance(parsed, str) and parsed == raw.strip():
        try:
            number = float(parsed)
        except ValueError:
            return parsed
        if math.isfinite(number):
            return int(parsed) if parsed.lstrip("+-").isdigit() else number
    return parsed


def parse_args(argv: list[str] | None = None) -> PretrainArgs:
    """Command-line flags mirror :class:`PretrainArgs` (``--batch-size``, ``--set key=value``)."""
    recipe_parser = argparse.ArgumentParser(add_help=False)
    recipe_parser.add_argument("--recipe", default=DEFAULT_RECIPE)
    recipe_name = recipe_parser.parse_known_args(argv)[0].recipe
    recipe = load_recipe(recipe_name)
    check_recipe(PretrainArgs, recipe, recipe_name)
    ns = build_parser(recipe).parse_args(argv)
    args = PretrainArgs(**dataclass_values(PretrainArgs, ns), overrides=parse_overrides(ns.set))
    if ns.quick:
        args = dataclasses.replace(args, epochs=1, max_steps=args.max_steps or 150, warmup_epochs=0.2)
    model_config(args)  # a bad --config or --set fails here, before anything is loaded
    return args


def _stopped_at_once(args: PretrainArgs | None) -> str:
    """What a Ctrl-C that stopped at once (before training, or a second one) left: the checkpoint if there is one."""
    ckpt = Path(args.out) / "checkpoint.pt" if args is not None else None
    if ckpt is None or not ckpt.is_file():
        return "stopped at once; no checkpoint was saved in this folder, so there is nothing to resume"
    return (f"stopped at once, without saving; {ckpt} holds the run as of its last save. Continue with:\n"
            f"  {resume_command(args)}")


def main(argv: list[str] | None = None) -> None:
    """``python -m mae_lesson.pretrain``: expected failures exit with code 2 and one message, no traceback."""
    args = None
    try:
        with command_line_errors():
            args = parse_args(argv)
            out = pretrain(args)
    except TrainingInterrupted as stop:
        if int(os.environ.get("RANK", "0")) == 0:
            print(str(stop), file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            print(_stopped_at_once(args), file=sys.stderr)
        raise SystemExit(EXIT_SIGINT) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: run folder {out} (model.pt, metrics.jsonl, loss_curve.png, recon_epoch*.png)")


if __name__ == "__main__":
    main()
