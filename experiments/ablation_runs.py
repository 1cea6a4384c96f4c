"""One ablation run: pretrain a setting (or reuse its finished folder), measure it, and estimate its cost.

``experiments/ablations.py`` decides which runs a study needs and keeps its CSV; this module knows
how a single run is trained, where it lives and what it costs on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mae_lesson.classifier import ViTClassifier
from mae_lesson.bundled import load_recipe
from mae_lesson.config import Config
from mae_lesson.evaluate import evaluate_encoder, evaluate_loss, extract_features
from mae_lesson.finetune import FinetuneArgs, finetune, predict
from mae_lesson.flops import forward_flops
from mae_lesson.model import MAE
from mae_lesson.patch_embed import patch_tokens, prepend_cls
from mae_lesson.pretrain import PretrainArgs, pretrain
from mae_lesson.utils import log  # noqa: F401 - ablations.py imports it from here
from mae_lesson.viz import read_metrics

ROOT = Path(__file__).resolve().parents[1]

RECIPE = load_recipe("pretrain_cpu")  # the main job's recipe: lr, batch, weight decay, warm-up share


@dataclass(frozen=True)
class Sweep:
    """One sweep's model, settings, seeds, budget and file names: the defaults of every flag."""

    config: str
    settings: list
    seeds: tuple[int, ...]
    csv: str                     # in --out; the table and figure share its stem
    tag: str                     # names the budget and norm-pix files and the run folders
    steps: int | None            # a fixed budget in optimizer steps; None: --epochs or the budget probe's
    warmup_fraction: float       # of the run's steps
    test_images: int | None      # None: all 10,000
    claims: list | None          # the paper's claims to judge; None: the one-seed figure only


# Wall-time estimate, in default p7 pretraining epochs (about 50 s at batch 256 on 2 quiet cores;
# data/mae_fashion_mnist_p7_run: 39-48 s). A setting's epoch costs 0.3 + 0.7 x its FLOPs ratio to
# the default (the 0.3 of per-step overhead fits the patch-4 sweep's measured seconds to 15%).
# Evaluation parts, as fractions of that epoch: CPU seconds measured with one thread against one
# pretraining step of the default (0.33 s for 256 images). Outside its steps a pretraining run spends
# about 3 s setting up and 2 s at each epoch's end (test loss, figures, checkpoint; smoke runs, one thread).
EPOCH_SECONDS = 50.0
RUN_OVERHEAD_SECONDS, EPOCH_END_SECONDS = 3.0, 2.0
EVAL_COST = {"feature_image": 1.4e-5, "recon_image": 5.5e-6, "finetune_step": 0.0101, "probe_knn": 0.016}


class EncoderWithMaskTokens(MAE):
    """The ablation the paper argues against: the encoder also processes mask tokens.

    Removed patches are replaced by a learned token *before* the encoder (as BEiT/SimMIM), so
    the encoder runs on all 1 + L tokens; the decoder then needs no extra mask tokens.
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        self.encoder_mask_token = torch.nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        torch.nn.init.normal_(self.encoder_mask_token, std=0.02)

    def forward_encoder(self, imgs, mask_ratio, noise=None):
        grid_hw = self.check_images(imgs)
        pos_embed, _ = self.position_tables(grid_hw)
        x = patch_tokens(self.patch_embed, pos_embed, imgs)  # [N, L, D]
        if noise is None:
            noise = self.mask_noise(x.shape[0], grid_hw, mask_ratio, device=x.device)
        _, mask, ids_restore = self.random_masking(x, mask_ratio, noise=noise)
        x = torch.where(mask.bool().unsqueeze(-1), self.encoder_mask_token + pos_embed[:, 1:, :], x)
        x = prepend_cls(self.cls_token, pos_embed, x)  # [N, 1 + L, D]: every position, in patch order
        return self.norm(self.run_blocks(self.blocks, x)), mask, ids_restore

    def forward(self, imgs, mask_ratio=None, noise=None):
        mask_ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        # The latent keeps patch order, so the decoder un-shuffles with the identity.
        identity = torch.arange(latent.shape[1] - 1, device=latent.device).expand(latent.shape[0], -1)
        pred = self.forward_decoder(latent, identity, self.check_images(imgs))
        return {"loss": self.forward_loss(imgs, pred, mask), "pred": pred, "mask": mask, "latent": latent,
                "ids_restore": ids_restore}


def run_name(config: str, overrides: dict, options: dict) -> str:
    """A folder name from what differs from ``config``, so equal settings share a run."""
    base = Config.from_file(config)
    changed = {k: v for k, v in overrides.items() if base.get(k) != v}
    changed.update({k: v for k, v in options.items() if not (k == "steps_multiplier" and v == 1)})
    parts = [f"{k}={v}" for k, v in sorted(changed.items())]
    return "default" if not parts else "_".join(parts).replace("/", "-")


# ------------------------------------------------------------------------------ pretraining and evaluation
def pretrain_args(args: argparse.Namespace, sweep: Sweep, overrides: dict, seed: int, steps: int,
                  folder: Path) -> PretrainArgs:
    """The main job's recipe with the cosine schedule (and warm-up share) over this run's ``steps``.

    Overrides equal to the config's own values are dropped, so equal settings have equal arguments
    (``target=pixels`` is the default run) and share one finished run.
    """
    base = Config.from_file(sweep.config)
    overrides = {k: v for k, v in overrides.items() if base.get(k) != v}
    steps_per_epoch = max(1, len(args.train) // args.batch_size)
    return PretrainArgs(config=sweep.config, overrides=overrides, dataset=args.dataset, epochs=10**6,
                        train_images=args.train_images, max_steps=steps, schedule_steps=steps,
                        batch_size=args.batch_size, blr=args.blr,
                        warmup_epochs=sweep.warmup_fraction * steps / steps_per_epoch,
                        weight_decay=RECIPE["weight_decay"], min_lr=RECIPE["min_lr"], out=str(folder),
                        progress=False, seed=seed, ckpt_every_steps=10**9, log_every_steps=max(1, steps // 20),
                        data_root=args.data_root, num_figure_images=8,
                        overwrite=True)  # an unfinished run in the folder starts over


def finished(folder: Path, wanted: PretrainArgs) -> bool:
    """Whether ``folder`` holds a finished run (``model.pt``) of exactly these arguments."""
    try:
        done = json.loads((folder / "args.json").read_text())
    except (OSError, ValueError):
        return False
    same = json.loads(json.dumps(dataclasses.asdict(wanted)))  # as args.json spells it: lists, not tuples
    return (folder / "model.pt").is_file() and all(done.get(k) == v for k, v in same.items())


def run_dir(args: argparse.Namespace, sweep: Sweep, label: str, overrides: dict, options: dict, seed: int) -> Path:
    """``OUT/runs/<tag>/<budget>/<setting>/seed<k>``: the sweep, budget probe and norm-pix study share runs."""
    return Path(args.out) / "runs" / sweep.tag / label / run_name(sweep.config, overrides, options) / f"seed{seed}"


def needs_pretraining(args: argparse.Namespace, sweep: Sweep, overrides: dict, options: dict, seed: int, steps: int,
                      folder: Path) -> bool:
    """Whether this run must be pretrained: not random init, not the shipped checkpoint, not finished in ``folder``."""
    if steps == 0 or "checkpoint" in options:
        return False
    return not finished(folder, pretrain_args(args, sweep, overrides, seed, steps, folder))


def pretrain_setting(args: argparse.Namespace, sweep: Sweep, overrides: dict, options: dict, seed: int,
                     steps: int, folder: Path) -> tuple[MAE, dict]:
    """One setting's encoder: pretrained for ``steps`` (or reused), the shipped checkpoint, or random init.

    Returns the model and ``{"steps", "epochs", "pretrain_seconds", "epoch_seconds"}`` (seconds per
    60,000 images).
    """
    model_cls = EncoderWithMaskTokens if options.get("encoder_mask_tokens") else MAE
    if "checkpoint" in options:
        path = ROOT / options["checkpoint"]
        epochs = [m for m in read_metrics(path.with_name(path.stem + "_run") / "metrics.jsonl") if m["kind"] == "epoch"]
        # Its fastest epoch: the shipped run shared the CPU at times, which only slows an epoch down.
        return MAE.from_checkpoint(path).float(), {
            "steps": max(m["step"] for m in epochs), "epochs": max(m["epoch"] for m in epochs),
            "pretrain_seconds": sum(m["seconds"] for m in epochs), "epoch_seconds": min(m["seconds"] for m in epochs)}
    if steps == 0:  # the random-init encoder
        torch.manual_seed(seed)
        model = model_cls(Config({**Config.from_file(sweep.config), **overrides}))
        return model, {"steps": 0, "epochs": 0.0, "pretrain_seconds": 0.0, "epoch_seconds": 0.0}
    wanted = pretrain_args(args, sweep, overrides, seed, steps, folder)
    if not finished(folder, wanted):
        pretrain(wanted, model_class=model_cls)
        (folder / "checkpoint.pt").unlink(missing_ok=True)  # 3x model.pt (optimizer state); runs restart, never resume
    seconds = sum(m["seconds"] for m in read_metrics(folder / "metrics.jsonl") if m["kind"] == "epoch")
    model = model_cls.from_checkpoint(folder / "model.pt")
    images = steps * args.batch_size
    return model, {"steps": steps, "epochs": images / len(args.train), "pretrain_seconds": seconds,
                   "epoch_seconds": seconds / images * 60000}


def finetune_accuracy(model: MAE, args: argparse.Namespace, seed: int, steps: int, blr: float) -> float:
    """Test accuracy after ``steps`` fine-tuning steps: ``finetune_short``'s recipe (batch 256, layer
    decay, drop path), warm-up 0.05 epochs, then a cosine over the steps, milder crops."""
    batch = FinetuneArgs.batch_size
    ft_args = FinetuneArgs(epochs=-(-steps * batch // len(args.train)), max_steps=steps, seed=seed, progress=False,
                           warmup_epochs=0.05, blr=blr, crop_scale=args.finetune_crop)
    return finetune(model, args.train, args.test, ft_args)["accuracy"]


def evaluate_run(model: MAE, args: argparse.Namespace, seed: int) -> dict:
    """Reconstruction loss, linear probe and kNN (fitted on ``--probe-images``), a short fine-tune."""
    tick = time.perf_counter()
    model.eval()
    frozen = evaluate_encoder(model, args.train.subset(args.probe_images), args.test, "cls", probe_epochs=20, seed=seed,
                              progress=False)
    scores = {
        "recon_loss": evaluate_loss(model, args.test, model.config, torch.device("cpu"), max_images=len(args.test)),
        "linear_probe": frozen["linear_probe"],
        "knn": frozen["knn"],
        "finetune": finetune_accuracy(model, args, seed, args.finetune_steps, args.finetune_blr),
    }
    return {**scores, "eval_seconds": time.perf_counter() - tick}


@torch.no_grad()
def feature_scales(model: MAE, test) -> dict[str, float]:
    """Scale of the frozen features on ``test``: the cls feature (the probe's) and the patch mean the
    fine-tune's ``fc_norm`` receives at its first step. ``*_l2_norm``: mean L2 norm of a vector;
    ``*_dim_std``: mean over dimensions of each dimension's std over images."""
    cls = extract_features(model, test, "cls", progress=False)  # [N, D], after the encoder's norm
    classifier = ViTClassifier.from_mae(model, len(test.classes), drop_path=0.0)
    pooled = []
    hook = classifier.fc_norm.register_forward_hook(lambda module, inputs, output: pooled.append(inputs[0]))
    predict(classifier, test, model.config.img_size, torch.device("cpu"))
    hook.remove()
    pool = torch.cat(pooled)  # [N, D]
    return {"cls_l2_norm": float(cls.norm(dim=1).mean()), "cls_dim_std": float(cls.std(dim=0).mean()),
            "pool_l2_norm": float(pool.norm(dim=1).mean()), "pool_dim_std": float(pool.std(dim=0).mean())}


# ------------------------------------------------------------------------------ budget and plan
def steps_for(args: argparse.Namespace, epochs: float) -> int:
    """Optimizer steps of ``epochs`` passes over the training images (whole batches)."""
    return round(epochs * (len(args.train) // args.batch_size))


def pretrain_cost(sweep: Sweep, overrides: dict, options: dict, steps: int, args: argparse.Namespace) -> float:
    """Estimated pretraining seconds of one run on 2 quiet cores (see EPOCH_SECONDS)."""
    if steps == 0 or "checkpoint" in options:
        return 0.0
    default = Config.from_file("fashion_mnist_p7")
    cfg = Config.from_file(sweep.config).replace(**overrides)
    ratio = forward_flops(cfg, mask_ratio=0.0 if options.get("encoder_mask_tokens") else None) / forward_flops(default)
    epochs = steps * options.get("steps_multiplier", 1) * args.batch_size / 60000
    return RUN_OVERHEAD_SECONDS + epochs * (EPOCH_END_SECONDS + EPOCH_SECONDS * (0.3 + 0.7 * ratio))


def eval_cost(args: argparse.Namespace, finetune_steps: int | None = None, probe: bool = True) -> float:
    """Estimated evaluation seconds of one run on 2 quiet cores (see EVAL_COST)."""
    steps = args.finetune_steps if finetune_steps is None else finetune_steps
    n_test, n_probe = len(args.test), min(args.probe_images or len(args.train), len(args.train))
    parts = EVAL_COST["feature_image"] * n_test + EVAL_COST["finetune_step"] * steps  # fine-tune, then predict
    if probe:
        parts += (EVAL_COST["feature_image"] * (n_probe + n_test) + EVAL_COST["recon_image"] * n_test
                  + EVAL_COST["probe_knn"])
    return EPOCH_SECONDS * parts


def print_plan(what: str, runs: int, to_pretrain: int, seconds: float) -> None:
    wall = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
    log(f"plan: {what}: {runs} run(s) to evaluate, {to_pretrain} to pretrain; estimated wall time {wall} on 2 quiet "
        f"cores. An estimate: about {EPOCH_SECONDS:.0f} s per default pretraining epoch at batch 256, scaled by each "
        f"setting's FLOPs, plus evaluation measured against it; other jobs on the CPU make it longer.")
