"""Setting up a pretraining run: the run folder (checked and locked first), data, model, optimizer,
schedule and mixed precision, then the state a resume continues from. The result is one :class:`Run`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..amp import autocast_for
from ..checkpoint import safe_load
from ..data import load_dataset
from ..errors import RunError
from ..loader import BatchLoader, ImageData, eval_transform
from ..model import MAE
from ..optim import WarmupCosine, adamw, param_groups, scaled_lr
from ..runfolder import check_resume, check_resume_data, claim_folder, clear_run_files, release_lock, truncate_metrics
from ..utils import set_seed
from .args import PretrainArgs, model_config
from .distributed import init_distributed, set_rng_state, share_outcome
from .state import Run

# Seed of the fixed test images' masks in every reconstruction figure.
FIGURE_MASK_SEED = 1234


def fingerprint(data: ImageData) -> str:
    """A short hash of every pixel and label: tells the images a run was trained on from any others."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(tuple(data.images.shape)).encode())
    digest.update(data.images.contiguous().numpy().tobytes())
    digest.update(data.labels.numpy().astype(np.int64).tobytes())
    return digest.hexdigest()


def build_model(args: PretrainArgs, data: ImageData, model_class: type[MAE] = MAE) -> MAE:
    """The model of ``args.config`` with overrides, recording the data's normalisation."""
    cfg = model_config(args)
    cfg = cfg.replace(norm_mean=list(data.mean), norm_std=list(data.std), dataset=args.dataset)
    if cfg.in_chans != data.images.shape[1]:
        raise ValueError(f"config {args.config} expects {cfg.in_chans} channels but {args.dataset} has "
                         f"{data.images.shape[1]}; pick a config for this dataset")
    return model_class(cfg)


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
            share_outcome(f"rank 0 could not start: {exc}", rank, world)
            raise
    share_outcome(None, rank, world)
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
    train_data, test_data = _load_data(args)
    model = build_model(args, train_data, model_class).to(device)
    loader = BatchLoader(train_data, args.batch_size, model.config.img_size, train=True, seed=args.seed,
                         rank=rank, world_size=world)
    steps_per_epoch, total_steps = _run_length(args, len(loader), len(train_data))
    data = {"images": len(train_data), "fingerprint": fingerprint(train_data), "steps_per_epoch": steps_per_epoch}
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
        _restore(run, state)
    _prepare_training(run)
    # The folder changes only now, when everything above has passed (a failure before leaves it as it was).
    if rank == 0:
        _write_run_files(run, state is not None, changed)
    return run


def _load_data(args: PretrainArgs) -> tuple[ImageData, ImageData]:
    """The training images (the first ``args.train_images``) and the test images, at the config's size."""
    wanted = model_config(args)
    train_data = load_dataset(args.dataset, args.data_root, "train", args.download, wanted.img_size,
                              wanted.in_chans, args.strict_images).subset(args.train_images)
    test_data = load_dataset(args.dataset, args.data_root, "test", args.download, wanted.img_size,
                             wanted.in_chans, args.strict_images)
    return train_data, test_data


def _run_length(args: PretrainArgs, batches: int, images: int) -> tuple[int, int]:
    """``(steps_per_epoch, total_steps)`` for a loader of ``batches`` micro-batches per epoch."""
    steps_per_epoch = batches // args.accum_iter
    if steps_per_epoch == 0:
        raise RunError(
            f"one optimizer step takes batch_size x accum_iter = {args.batch_size * args.accum_iter} images but the "
            f"training set has {images}: lower --batch-size or --accum-iter, or use more --train-images")
    total_steps = args.epochs * steps_per_epoch
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    return steps_per_epoch, total_steps


def _restore(run: Run, state: dict[str, Any]) -> None:
    """Load the checkpoint's model, optimizer, schedule, scaler, RNGs and epoch progress into ``run``."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["scheduler"])  # the run keeps its schedule, whatever --epochs says now
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    run.step = run.saved_step = int(state["step"])
    run.epoch_loss_sum, run.epoch_loss_count = state.get("epoch_loss", (0.0, 0))
    run.pending_epoch = state.get("pending_epoch")


def _prepare_training(run: Run) -> None:
    """Wrap the model for the step (DDP across processes, ``torch.compile``) and fix the figures' images and masks."""
    if run.world > 1:
        run.train_model = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    if run.args.compile:
        run.train_model = torch.compile(run.train_model)
    imgs = run.test_data.images[: run.args.num_figure_images]
    run.fig_imgs = eval_transform(imgs, run.test_data, run.model.config.img_size).to(run.device)
    run.fig_noise = run.model.mask_noise(run.fig_imgs.shape[0], device="cpu",
                                         generator=torch.Generator().manual_seed(FIGURE_MASK_SEED)).to(run.device)


def _write_run_files(run: Run, resumed: bool, changed: dict[str, list[Any]]) -> None:
    """A resumed run's metrics cut back to its checkpoint and the resume recorded; a new run's ``args.json``
    and ``config.yaml`` (after clearing what ``--overwrite`` replaces)."""
    if resumed:
        truncate_metrics(run.metrics_path, run.step)
        _record_resume(run, changed)
        return
    clear_run_files(run.out)  # empty unless overwrite (claim_folder refused it otherwise)
    (run.out / "args.json").write_text(json.dumps(dataclasses.asdict(run.args), indent=2))
    (run.out / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in run.model.config.to_dict().items()))


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
