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
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .checkpoint import atomic_save, safe_load
from .config import Config
from .data import BatchLoader, ImageData, eval_transform, load_dataset
from .evaluate import evaluate_loss
from .masking import masking_noise
from .model import MAE
from .optim import WarmupCosine, param_groups, scaled_lr
from .utils import get_device, set_seed
from .viz import loss_curve_figure, reconstruction_figure


@dataclass
class PretrainArgs:
    """Everything a pretraining run needs; saved in the run folder as ``args.json``."""

    config: str = "fashion_mnist_p7"       # bundled config name or YAML path (the default CPU model)
    overrides: dict[str, Any] = field(default_factory=dict)  # model config keys to change
    dataset: str = "fashion_mnist"         # fashion_mnist, cifar10, or an image folder
    data_root: str = "data"
    download: bool = False
    train_images: int | None = None        # use only the first N training images (quick runs, tests)
    epochs: int = 50
    max_steps: int | None = None           # stop early after this many optimizer steps (quick runs)
    schedule_steps: int | None = None      # cosine length in optimizer steps (default: epochs x steps per epoch)
    batch_size: int = 256                  # global images per micro-step, over all processes
    accum_iter: int = 1                    # micro-steps per optimizer step
    blr: float = 1.5e-4                    # base lr; lr = blr * batch_size * accum_iter / 256
    lr: float | None = None                # absolute lr (overrides blr)
    min_lr: float = 0.0
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    clip_grad: float | None = None
    amp: str = "auto"                      # auto (bf16, else fp16, on CUDA), bf16, fp16, none
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    out: str = "runs/pretrain"
    resume: bool = False
    ckpt_every_steps: int = 200            # also checkpoint every this many optimizer steps
    log_every_steps: int = 10
    num_figure_images: int = 8
    progress: bool = True


# ------------------------------------------------------------------------------ distributed
def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """Join the torchrun process group when launched by torchrun; returns (rank, world, device)."""
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


def autocast_for(device: torch.device, amp: str) -> tuple[Any, torch.amp.GradScaler | None]:
    """(autocast context, GradScaler or None): bf16 or fp16 on CUDA, fp32 elsewhere."""
    if device.type != "cuda" or amp == "none":
        return nullcontext(), None
    dtype = torch.bfloat16 if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()) else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is left untouched."""


# --------------------------------------------------------------------------------- training
def build_model(args: PretrainArgs, data: ImageData, model_class: type[MAE] = MAE) -> MAE:
    """The model of ``args.config`` with overrides, recording the data's normalisation."""
    cfg = Config.from_file(args.config).replace(**args.overrides)
    cfg = cfg.replace(norm_mean=list(data.mean), norm_std=list(data.std), dataset=args.dataset)
    if cfg.in_chans != data.images.shape[1]:
        raise ValueError(f"config {args.config} expects {cfg.in_chans} channels but {args.dataset} has "
                         f"{data.images.shape[1]}; pick a config for this dataset")
    return model_class(cfg)


def pretrain(args: PretrainArgs | None = None, model_class: type[MAE] = MAE, **kwargs: Any) -> Path:
    """Run (or resume) pretraining; returns the run folder.

    The folder holds ``args.json``, ``config.yaml``, ``metrics.jsonl``, ``loss_curve.png``,
    ``recon_epochNNN.png`` after each epoch, ``checkpoint.pt`` (full state, for ``resume``)
    and ``model.pt`` (weights + config, for ``MAE.from_checkpoint``). ``model_class`` trains a
    subclass of ``MAE`` (the ablations use one).
    """
    args = dataclasses.replace(args or PretrainArgs(), **kwargs)
    rank, world, device = init_distributed(args.device)
    out = Path(args.out)
    set_seed(args.seed)

    train_data = load_dataset(args.dataset, args.data_root, "train", args.download).subset(args.train_images)
    test_data = load_dataset(args.dataset, args.data_root, "test", args.download)
    model = build_model(args, train_data, model_class).to(device)
    cfg = model.config
    loader = BatchLoader(train_data, args.batch_size, cfg.img_size, train=True, seed=args.seed,
                         rank=rank, world_size=world)
    steps_per_epoch = len(loader) // args.accum_iter
    total_steps = args.epochs * steps_per_epoch
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    effective_batch = args.batch_size * args.accum_iter
    base_lr = args.lr if args.lr is not None else scaled_lr(args.blr, effective_batch)
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=base_lr, betas=(0.9, 0.95),
                                  **({"fused": True} if fused else {}))
    schedule = WarmupCosine(optimizer, base_lr, args.schedule_steps or args.epochs * steps_per_epoch,
                            int(args.warmup_epochs * steps_per_epoch), args.min_lr)
    autocast, scaler = autocast_for(device, args.amp)

    step, metrics_path, ckpt_path = 0, out / "metrics.jsonl", out / "checkpoint.pt"
    if args.resume and ckpt_path.is_file():
        state = safe_load(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        step = int(state["step"])
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path.unlink(missing_ok=True)
        (out / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
        (out / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.to_dict().items()))
    if rank == 0 and args.resume:
        _truncate_metrics(metrics_path, step)

    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        train_model = torch.compile(train_model)

    # Fixed test images and masks for figures and the per-epoch test loss.
    fig_imgs = eval_transform(test_data.images[: args.num_figure_images], test_data, cfg.img_size).to(device)
    grid_hw = model.patch_embed.grid_size
    fig_noise = masking_noise(cfg.mask_type, fig_imgs.shape[0], grid_hw, cfg.mask_ratio, "cpu",
                              torch.Generator().manual_seed(1234)).to(device)

    def save(kind_step: int) -> None:
        if rank != 0:
            return
        atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": schedule.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                     "rng": rng_state(), "step": kind_step, "epoch": kind_step // max(1, steps_per_epoch),
                     "config": cfg.to_dict(), "args": dataclasses.asdict(args)}, ckpt_path)

    def log(row: dict[str, Any]) -> None:
        if rank == 0:
            with open(metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")

    model.train()
    while step < total_steps:
        epoch, step_in_epoch = divmod(step, steps_per_epoch)
        loader.set_epoch(epoch)
        end_of_epoch = min((epoch + 1) * steps_per_epoch, total_steps)
        bar = tqdm(total=end_of_epoch - epoch * steps_per_epoch, initial=step_in_epoch, leave=True,
                   desc=f"epoch {epoch + 1}/{args.epochs}", disable=rank != 0 or not args.progress,
                   dynamic_ncols=True)
        seen, tick, epoch_losses = 0, time.perf_counter(), []
        while step < end_of_epoch:
            loss_value = 0.0
            for micro in range(args.accum_iter):
                imgs, _, seed = loader.batch((step - epoch * steps_per_epoch) * args.accum_iter + micro)
                noise = masking_noise(cfg.mask_type, args.batch_size, grid_hw, cfg.mask_ratio, "cpu",
                                      torch.Generator().manual_seed(seed + 1))[rank::world]
                imgs, noise = imgs.to(device, non_blocking=True), noise.to(device, non_blocking=True)
                sync = nullcontext() if world == 1 or micro == args.accum_iter - 1 else train_model.no_sync()
                with sync:
                    with autocast:
                        loss = train_model(imgs, noise=noise)["loss"] / args.accum_iter
                    (scaler.scale(loss) if scaler else loss).backward()
                loss_value += float(loss.detach())
                seen += imgs.shape[0] * world
            if not np.isfinite(loss_value):
                bar.close()
                raise NonFiniteLossError(
                    f"loss is {loss_value} at optimizer step {step + 1} (epoch {epoch + 1}). Likely causes: "
                    f"a learning rate too high for this batch (lower --blr, lengthen --warmup-epochs, add "
                    f"--clip-grad 1.0), fp16 overflow (use --amp bf16 or none), or inputs that are not "
                    f"normalised. The last good checkpoint, {ckpt_path}, is intact: fix and --resume.")
            if scaler:
                scaler.unscale_(optimizer)
            if args.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step += 1
            epoch_losses.append(loss_value)
            rate = seen / max(1e-9, time.perf_counter() - tick)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{schedule.lr:.2e}", img_s=f"{rate:.0f}")
            if step % args.log_every_steps == 0:
                log({"kind": "train", "step": step, "epoch": epoch + 1, "loss": loss_value,
                     "lr": schedule.lr, "img_per_s": rate})
            if step % args.ckpt_every_steps == 0 and step < end_of_epoch:
                save(step)
        bar.close()
        seconds = time.perf_counter() - tick
        model.eval()
        test_loss = evaluate_loss(model, test_data, cfg, device) if rank == 0 else float("nan")
        if rank == 0:
            fig = reconstruction_figure(model, fig_imgs, test_data.mean, test_data.std, fig_noise,
                                        title=f"test images, epoch {epoch + 1}, step {step}")
            fig.savefig(out / f"recon_epoch{epoch + 1:03d}.png", dpi=110)
            plt.close(fig)
        model.train()
        log({"kind": "epoch", "step": step, "epoch": epoch + 1, "train_loss": float(np.mean(epoch_losses or [np.nan])),
             "test_loss": test_loss, "seconds": seconds, "img_per_s": seen / max(1e-9, seconds)})
        save(step)
        if rank == 0:
            fig = loss_curve_figure(metrics_path, title=f"MAE pretraining: {cfg.model_name}")
            fig.savefig(out / "loss_curve.png", dpi=110)
            plt.close(fig)
    if rank == 0:
        model.save_checkpoint(out / "model.pt", step=step, args=dataclasses.asdict(args))
    if world > 1:
        dist.barrier()
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, so the log matches the weights."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(r + "\n" for r in rows))


# -------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> PretrainArgs:
    """Command-line flags mirror :class:`PretrainArgs` (``--batch-size``, ``--set key=value``)."""
    parser = argparse.ArgumentParser(prog="python -m mae_lesson.pretrain", description=__doc__.split("\n")[0])
    defaults = PretrainArgs()
    for f in dataclasses.fields(PretrainArgs):
        if f.name == "overrides":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = {"max_steps": int, "schedule_steps": int, "lr": float, "clip_grad": float, "train_images": int}.get(f.name, type(default))
            parser.add_argument(flag, type=kind, default=default)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a model config key, e.g. --set mask_ratio=0.5 --set norm_pix_loss=true")
    parser.add_argument("--quick", action="store_true", help="a few-minute run: 1 epoch capped at 150 steps")
    ns = parser.parse_args(argv)
    overrides = {}
    import yaml

    for item in ns.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    values = {k: v for k, v in vars(ns).items() if k not in ("set", "quick")}
    args = PretrainArgs(**values, overrides=overrides)
    if ns.quick:
        args = dataclasses.replace(args, epochs=1, max_steps=args.max_steps or 150, warmup_epochs=0.2)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        out = pretrain(args)
    except (FileNotFoundError, ValueError, NonFiniteLossError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: run folder {out} (model.pt, metrics.jsonl, loss_curve.png, recon_epoch*.png)")


if __name__ == "__main__":
    main()
