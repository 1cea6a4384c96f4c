"""Fine-tuning a pretrained encoder, the lesson of notebook 07: :func:`finetune` and its state, :class:`FinetuneRun`.

Full fine-tuning follows the official ``main_finetune.py``: the pretrained encoder, average
pool over patch tokens + ``fc_norm``, layer-wise lr decay, drop path, label smoothing, optional
RandAugment, mixup and CutMix (:mod:`mae_lesson.augment`), AdamW with warm-up and cosine.
``from_scratch=True`` trains the same ViT from random weights with the same budget, the
comparison learners ask for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import AUTO_AUGMENT_HELP, augment_batch, auto_augment, batch_mixer, soft_targets
from .classifier import ViTClassifier, layer_decay_scales
from .cli import arg_field, check_fields, check_recipe
from .bundled import load_recipe
from . import finetune_state
from .config import Config
from .loader import BatchLoader, ImageData
from .model import MAE
from .optim import WarmupCosine, adamw, param_groups, scaled_lr
from .utils import get_device, model_device, set_seed

DEFAULT_RECIPE = "finetune_short"
_RECIPE = load_recipe(DEFAULT_RECIPE)


@dataclass
class FinetuneArgs:
    """A fine-tuning run; defaults are the ``finetune_short`` recipe (``configs/recipes/finetune_short.yaml``)."""

    epochs: int = arg_field(_RECIPE["epochs"], "passes over the training images, in epochs", at_least=1)
    max_steps: int | None = arg_field(None, "stop after this many optimizer steps; None: no cap", metavar="STEPS",
                                      at_least=1)
    batch_size: int = arg_field(_RECIPE["batch_size"], "images per step", metavar="IMAGES", at_least=1)
    blr: float = arg_field(_RECIPE["blr"], "base learning rate; lr = blr x batch_size / 256", positive=True)
    layer_decay: float = arg_field(_RECIPE["layer_decay"], "lr multiplier per block from the top, a factor "
                                   "in (0, 1] (1 = none)", interval="(0, 1]")
    weight_decay: float = arg_field(_RECIPE["weight_decay"], "AdamW weight decay", non_negative=True)
    drop_path: float = arg_field(_RECIPE["drop_path"], "stochastic depth rate of the last block, a probability "
                                 "in [0, 1)", interval="[0, 1)")
    label_smoothing: float = arg_field(_RECIPE["label_smoothing"], "label smoothing of the cross-entropy, a "
                                       "fraction in [0, 1)", interval="[0, 1)")
    mixup: float = arg_field(_RECIPE["mixup"], "alpha of Beta(alpha, alpha) mixup (torchvision's MixUp); 0 "
                             "turns it off", non_negative=True)
    cutmix: float = arg_field(0.0, "alpha of Beta(alpha, alpha) CutMix; 0 turns it off", non_negative=True)
    mix_switch_prob: float = arg_field(0.5, "with mixup and CutMix both on, the chance that a batch gets CutMix, "
                                       "a probability in [0, 1]", interval="[0, 1]")
    auto_augment: str = arg_field("none", AUTO_AUGMENT_HELP)
    warmup_epochs: float = arg_field(_RECIPE["warmup_epochs"], "linear warm-up length, in epochs", non_negative=True)
    crop_scale: float = arg_field(_RECIPE["crop_scale"], "RandomResizedCrop's smallest area, a fraction of the "
                                  "image in (0, 1] (1 = no crops)", interval="(0, 1]")
    seed: int = arg_field(0, "seed of initialisation, batches and augmentation")
    device: str = arg_field("auto", "auto (cuda, then mps, then cpu), cuda, mps or cpu")
    progress: bool = arg_field(True, "show a progress bar")
    eval_every_epoch: bool = arg_field(_RECIPE["eval_every_epoch"], "test accuracy after each epoch, for a "
                                  "learning curve (not for selection)")

    def __post_init__(self) -> None:
        """Refuse a value the run cannot use, naming the flag and a valid range."""
        check_fields(self)  # types and the ranges given to arg_field
        auto_augment(self.auto_augment)  # refuses a name it does not know


check_recipe(FinetuneArgs, _RECIPE, DEFAULT_RECIPE)


@dataclass
class FinetuneRun:
    """What a fine-tuning run builds before its first step (pretraining's counterpart is ``Run``)."""

    model: ViTClassifier       # the classifier being trained, on the CPU until :func:`finetune` moves it
    loader: BatchLoader        # training batches, seeded per epoch
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    total_steps: int           # optimizer steps of the whole run (epochs x batches, capped by max_steps)
    config: Config             # the model config (the pretrained model's, or the from-scratch one)


def finetune_setup(mae: MAE | None, train: ImageData, args: FinetuneArgs, config: Config | None = None) -> FinetuneRun:
    """What :func:`finetune` builds before its first step: model, loader, optimizer, schedule, steps.

    Seeded first, so the same ``args.seed`` gives the same weights and batches (notebook 07's
    hand-written loop starts from here too).
    """
    wanted = mae.config if mae is not None else config
    if wanted is not None and wanted.in_chans != train.images.shape[1]:
        raise ValueError(f"the model takes {wanted.in_chans}-channel images but the training images have "
                         f"{train.images.shape[1]}: fine-tune a model pretrained on this kind of images")
    if args.batch_size > len(train):
        raise ValueError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images: lower "
                         f"--batch-size (or use more images)")
    set_seed(args.seed)
    if mae is None:  # from scratch: layer decay only makes sense on top of pretrained layers
        model, decay = ViTClassifier(config, len(train.classes), args.drop_path), 1.0
    else:
        model, config, decay = ViTClassifier.from_mae(mae, len(train.classes), args.drop_path), mae.config, args.layer_decay
    loader = BatchLoader(train, args.batch_size, config.img_size, train=True, seed=args.seed,
                         crop_scale=(args.crop_scale, 1.0))
    total = args.epochs * len(loader) if args.max_steps is None else min(args.max_steps, args.epochs * len(loader))
    lr = scaled_lr(args.blr, args.batch_size)
    optimizer = adamw(param_groups(model, args.weight_decay, layer_decay_scales(model, decay)), lr)
    schedule = WarmupCosine(optimizer, lr, total, int(args.warmup_epochs * len(loader)))
    return FinetuneRun(model, loader, optimizer, schedule, total, config)


def finetune(mae: MAE | None, train: ImageData, test: ImageData, args: FinetuneArgs | None = None,
             config: Config | None = None, state_file: str | Path | None = None,
             save_every_steps: int = 200) -> dict[str, Any]:
    """Fine-tune a pretrained MAE encoder (or, with ``mae=None``, train ``config`` from scratch).

    Returns ``{"accuracy", "predictions", "seconds", "steps", "model", "history"}``; ``history`` lists
    ``(epoch, test accuracy)`` after each epoch when ``args.eval_every_epoch`` (else only the end).
    Training runs on ``args.device``; the returned ``model`` comes back on the device ``mae`` is on
    (the CPU for ``mae=None``), so the caller's tensors fit it. ``mae`` itself is never moved.
    With ``state_file``, the run saves its state there every ``save_every_steps`` steps and, started
    again with the same arguments, continues from it (:mod:`mae_lesson.finetune_state`); the file is
    deleted when the run ends.
    """
    args = args or FinetuneArgs()
    device = get_device(args.device)
    run = finetune_setup(mae, train, args, config)
    run.model.to(device)
    augment = auto_augment(args.auto_augment)
    mixer = batch_mixer(args.mixup, args.cutmix, args.mix_switch_prob, len(train.classes))
    settings = finetune_state.run_settings(args, from_scratch=mae is None)
    done = finetune_state.restore(state_file, run.model, run.optimizer, run.schedule, settings)
    tick, per_epoch = time.perf_counter() - done.seconds, len(run.loader)
    bar = tqdm(total=run.total_steps, initial=done.step, desc="fine-tune" if mae is not None else "from scratch",
               disable=not args.progress)
    run.model.train()
    while done.step < run.total_steps:
        loss = finetune_step(run, train, done.step, args.label_smoothing, device, augment, mixer)
        done.step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if args.eval_every_epoch and done.step % per_epoch == 0 and done.step < run.total_steps:
            start = time.perf_counter()
            score = accuracy(predict(run.model, test, run.config.img_size, device), test)
            done.history.append((done.step / per_epoch, score))
            tick += time.perf_counter() - start  # training time only
            bar.write(f"epoch {done.history[-1][0]:g}: test accuracy {done.history[-1][1]:.2%}")
            run.model.train()
        if state_file is not None and done.step % save_every_steps == 0 and done.step < run.total_steps:
            done.seconds = time.perf_counter() - tick
            finetune_state.save(Path(state_file), run.model, run.optimizer, run.schedule, done, settings)
    bar.close()
    seconds = time.perf_counter() - tick
    predictions = predict(run.model, test, run.config.img_size, device)
    done.history.append((done.step / per_epoch, accuracy(predictions, test)))
    run.model.to(model_device(mae) if mae is not None else torch.device("cpu"))
    if state_file is not None:
        Path(state_file).unlink(missing_ok=True)
    return {"accuracy": done.history[-1][1], "predictions": predictions, "seconds": seconds, "steps": done.step,
            "model": run.model, "history": done.history}


def finetune_step(run: FinetuneRun, train: ImageData, step: int, label_smoothing: float, device: torch.device,
                  augment: Any = None, mixer: Any = None) -> float:
    """One optimizer step on batch ``step`` of the run (its epoch from ``step``); returns the loss.

    The images ``[N, C, H, W]`` get the loader's crop and flip, then ``augment`` per image (on the CPU,
    timm's order), then mixup/CutMix with ``mixer``; the loss is the cross-entropy against the soft targets.
    """
    run.loader.set_epoch(step // len(run.loader))
    imgs, labels, batch_seed = run.loader.batch(step % len(run.loader))
    if augment is not None:
        imgs = augment_batch(imgs, augment, train.mean, train.std, batch_seed)
    imgs, labels = imgs.to(device), labels.to(device)
    imgs, target = soft_targets(imgs, labels, len(train.classes), label_smoothing, mixer, batch_seed + 1)
    loss = torch.sum(-target * F.log_softmax(run.model(imgs), dim=1), dim=1).mean()
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.schedule.step()
    return loss.item()


def accuracy(predictions: torch.Tensor, data: ImageData) -> float:
    """Fraction of ``predictions`` ``[N]`` equal to ``data.labels``."""
    return float((predictions == data.labels).float().mean())


@torch.no_grad()
def predict(model: nn.Module, data: ImageData, img_size: int, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    model.eval()
    loader = BatchLoader(data, batch_size, img_size, train=False)
    return torch.cat([model(x.to(device)).argmax(dim=1).cpu() for x, _, _ in loader])
