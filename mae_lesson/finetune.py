"""Fine-tuning and evaluation: ``python -m mae_lesson.finetune`` or the functions below.

Full fine-tuning follows the official ``main_finetune.py``: the pretrained encoder, average
pool over patch tokens + ``fc_norm``, layer-wise lr decay, drop path, label smoothing, optional
mixup, AdamW with warm-up and cosine. ``from_scratch=True`` trains the same ViT from random
weights with the same budget, the comparison learners ask for.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import Config
from .data import BatchLoader, ImageData, load_dataset
from .evaluate import (confusion_figure, extract_features, feature_map_figure, knn_classify, linear_probe,
                       pixel_features, summarize)
from .model import MAE
from .optim import WarmupCosine, param_groups, scaled_lr
from .pretrained import pretrained_path
from .transformer import Block, LayerNorm
from .utils import get_device, set_seed


class ViTClassifier(nn.Module):
    """The MAE encoder as a classifier (official ``models_vit.VisionTransformer``, global pool).

    ``[N, C, H, W]`` -> logits ``[N, num_classes]``: patches + table + cls, blocks (with drop
    path), mean over patch tokens, ``fc_norm``, ``head``.
    """

    def __init__(self, config: Config, num_classes: int, drop_path: float = 0.1) -> None:
        super().__init__()
        encoder = MAE(config)  # build with the official init, then keep the encoder half
        self.patch_embed, self.cls_token, self.pos_embed = encoder.patch_embed, encoder.cls_token, encoder.pos_embed
        rates = torch.linspace(0, drop_path, config.encoder_depth).tolist()
        self.blocks = nn.ModuleList(
            [Block(config.embed_dim, config.encoder_num_heads, config.mlp_ratio, r) for r in rates])
        self.blocks.load_state_dict(encoder.blocks.state_dict())
        self.fc_norm = LayerNorm(config.embed_dim)
        self.head = nn.Linear(config.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # official: tiny head init
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_mae(cls, mae: MAE, num_classes: int, drop_path: float = 0.1) -> "ViTClassifier":
        """Copy the pretrained encoder (patch_embed, cls_token, pos_embed, blocks) into a classifier."""
        model = cls(mae.config, num_classes, drop_path)
        own = model.state_dict()
        own.update({k: v for k, v in mae.state_dict().items() if k in own and not k.startswith(("head", "fc_norm"))})
        model.load_state_dict(own)
        return model

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x[:, 1:, :].mean(dim=1)))


def layer_decay_scales(model: ViTClassifier, decay: float) -> dict[str, float]:
    """lr multiplier per parameter: ``decay ** (depth + 1 - layer_id)``; embeddings are layer 0."""
    depth = len(model.blocks)
    scales = {}
    for name, _ in model.named_parameters():
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            layer = 0
        elif name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        else:
            layer = depth + 1
        scales[name] = decay ** (depth + 1 - layer)
    return scales


@dataclass
class FinetuneArgs:
    epochs: int = 5
    max_steps: int | None = None
    batch_size: int = 256
    blr: float = 1e-3
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    drop_path: float = 0.1
    label_smoothing: float = 0.1
    mixup: float = 0.0            # Beta(alpha, alpha) mixing; 0 turns it off
    warmup_epochs: float = 1.0
    crop_scale: float = 0.5       # RandomResizedCrop scale lower bound for fine-tuning
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    eval_every_epoch: bool = False  # test accuracy after each epoch, for a learning curve (not for selection)


def finetune(mae: MAE | None, train: ImageData, test: ImageData, args: FinetuneArgs | None = None,
             config: Config | None = None) -> dict[str, Any]:
    """Fine-tune a pretrained MAE encoder (or, with ``mae=None``, train ``config`` from scratch).

    Returns ``{"accuracy", "predictions", "seconds", "steps", "model", "history"}``; ``history`` lists
    ``(epoch, test accuracy)`` after each epoch when ``args.eval_every_epoch`` (else only the end).
    """
    args = args or FinetuneArgs()
    set_seed(args.seed)
    device = get_device(args.device)
    classes = len(train.classes)
    if mae is None:
        model = ViTClassifier(config, classes, args.drop_path)
        decay = 1.0  # layer decay only makes sense on top of pretrained layers
    else:
        model, config, decay = ViTClassifier.from_mae(mae, classes, args.drop_path), mae.config, args.layer_decay
    model.to(device)
    loader = BatchLoader(train, args.batch_size, config.img_size, train=True, seed=args.seed,
                         crop_scale=(args.crop_scale, 1.0))
    total = args.epochs * len(loader) if args.max_steps is None else min(args.max_steps, args.epochs * len(loader))
    lr = scaled_lr(args.blr, args.batch_size)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, layer_decay_scales(model, decay)), lr=lr)
    schedule = WarmupCosine(optimizer, lr, total, int(args.warmup_epochs * len(loader)))
    mix_gen = torch.Generator().manual_seed(args.seed + 7)
    step, tick, eval_seconds, history = 0, time.perf_counter(), 0.0, []
    bar = tqdm(total=total, desc="fine-tune" if mae is not None else "from scratch", disable=not args.progress)
    model.train()
    while step < total:
        loader.set_epoch(step // len(loader))
        imgs, labels, _ = loader.batch(step % len(loader))
        imgs, labels = imgs.to(device), labels.to(device)
        target = F.one_hot(labels, classes).float() * (1 - args.label_smoothing) + args.label_smoothing / classes
        if args.mixup > 0:
            lam = float(torch.distributions.Beta(args.mixup, args.mixup).sample())
            perm = torch.randperm(imgs.shape[0], generator=mix_gen).to(device)
            imgs, target = lam * imgs + (1 - lam) * imgs[perm], lam * target + (1 - lam) * target[perm]
        loss = torch.sum(-target * F.log_softmax(model(imgs), dim=1), dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if args.eval_every_epoch and step % len(loader) == 0 and step < total:
            start = time.perf_counter()
            history.append((step / len(loader), accuracy(predict(model, test, config.img_size, device), test)))
            eval_seconds += time.perf_counter() - start
            bar.write(f"epoch {history[-1][0]:g}: test accuracy {history[-1][1]:.2%}")
            model.train()
    bar.close()
    seconds = time.perf_counter() - tick - eval_seconds  # training time only
    predictions = predict(model, test, config.img_size, device)
    history.append((step / len(loader), accuracy(predictions, test)))
    return {"accuracy": history[-1][1], "predictions": predictions, "seconds": seconds, "steps": step,
            "model": model, "history": history}


def accuracy(predictions: torch.Tensor, data: ImageData) -> float:
    """Fraction of ``predictions`` ``[N]`` equal to ``data.labels``."""
    return float((predictions == data.labels).float().mean())


@torch.no_grad()
def predict(model: nn.Module, data: ImageData, img_size: int, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    model.eval()
    loader = BatchLoader(data, batch_size, img_size, train=False)
    return torch.cat([model(x.to(device)).argmax(dim=1).cpu() for x, _, _ in loader])


# -------------------------------------------------------------------------------- results
def evaluate_checkpoint(mae: MAE, train: ImageData, test: ImageData, probe_epochs: int = 30,
                        device: str = "auto", progress: bool = True, pool: str = "cls") -> dict[str, Any]:
    """Linear probe and kNN on frozen features (``pool``: ``cls`` as the paper, ``mean`` or ``both``)."""
    dev = get_device(device)
    train_x = extract_features(mae, train, pool, device=dev, progress=progress)
    test_x = extract_features(mae, test, pool, device=dev, progress=progress)
    probe = linear_probe(train_x, train.labels, test_x, test.labels, epochs=probe_epochs)
    knn = knn_classify(train_x, train.labels, test_x, test.labels)
    return {"linear_probe": probe["accuracy"], "knn": knn["accuracy"], "probe_predictions": probe["predictions"],
            "test_features": test_x}


def results_table(checkpoint: str | Path, out: str | Path, seeds: list[int], finetune_args: FinetuneArgs,
                  data_root: str = "data", probe_epochs: int = 30) -> str:
    """The README's table: shipped checkpoint vs random init vs raw pixels vs from-scratch ViT.

    Writes ``results.json``, ``results.md``, a confusion matrix and a feature map to ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_dataset("fashion_mnist", data_root, "train"), load_dataset("fashion_mnist", data_root, "test")
    pretrained = MAE.from_checkpoint(checkpoint).float()
    from .pretrain import evaluate_loss

    rows: dict[str, dict[str, list[float]]] = {}
    histories: dict[str, list[list[tuple[float, float]]]] = {}
    seconds: dict[str, list[float]] = {}  # training time of each fine-tune, without the evaluations

    def save() -> None:  # after every number, so a long table that is stopped keeps what it measured
        (out / "results.json").write_text(json.dumps({"rows": rows, "finetune_histories": histories,
                                                      "finetune_seconds": seconds,
                                                      "finetune_args": asdict(finetune_args), "probe_epochs": probe_epochs,
                                                      "checkpoint": str(checkpoint)}, indent=2))

    def add(name: str, metric: str, value: float) -> None:
        rows.setdefault(name, {}).setdefault(metric, []).append(value)
        print(f"{name}: {metric} {value:.4f}", flush=True)
        save()

    def add_finetune(name: str, result: dict[str, Any]) -> None:
        histories.setdefault(name, []).append(result["history"])
        seconds.setdefault(name, []).append(result["seconds"])
        add(name, "finetune", result["accuracy"])

    cfg = pretrained.config
    add("MAE pretrained (shipped)", "recon_loss", evaluate_loss(pretrained, test, cfg, torch.device("cpu"), max_images=10_000))
    ev = evaluate_checkpoint(pretrained, train, test, probe_epochs, progress=finetune_args.progress)
    add("MAE pretrained (shipped)", "linear_probe", ev["linear_probe"])
    add("MAE pretrained (shipped)", "knn", ev["knn"])
    fig = feature_map_figure(ev["test_features"], test.labels, test.classes, "PCA of the shipped encoder's cls features")
    fig.savefig(out / "feature_map.png", dpi=110)
    plt.close(fig)
    # A random encoder's probe varies little with its seed; one seed keeps the table's CPU cost down.
    torch.manual_seed(seeds[0])
    random_mae = MAE(cfg)
    add("random-init encoder", "recon_loss", evaluate_loss(random_mae, test, cfg, torch.device("cpu"), max_images=10_000))
    ev_rand = evaluate_checkpoint(random_mae, train, test, probe_epochs, progress=finetune_args.progress)
    add("random-init encoder", "linear_probe", ev_rand["linear_probe"])
    add("random-init encoder", "knn", ev_rand["knn"])
    px_train, px_test = pixel_features(train), pixel_features(test)
    add("raw pixels (784)", "linear_probe", linear_probe(px_train, train.labels, px_test, test.labels, epochs=probe_epochs)["accuracy"])
    add("raw pixels (784)", "knn", knn_classify(px_train, train.labels, px_test, test.labels)["accuracy"])
    for seed in seeds:
        args = FinetuneArgs(**{**asdict(finetune_args), "seed": seed})
        ft = finetune(pretrained, train, test, args)
        add_finetune("MAE pretrained (shipped)", ft)
        add_finetune("ViT from scratch, same budget", finetune(None, train, test, args, config=cfg))
        if seed == seeds[0]:
            fig = confusion_figure(ft["predictions"], test.labels, test.classes,
                                   f"fine-tuned shipped MAE, seed {seed}: {ft['accuracy']:.1%}")
            fig.savefig(out / "confusion_finetune.png", dpi=110)
            plt.close(fig)
    fig = finetune_curve_figure(histories)
    fig.savefig(out / "finetune_curve.png", dpi=110)
    plt.close(fig)
    metrics = ["recon_loss", "linear_probe", "knn", "finetune"]
    lines = ["| model | test recon. loss | linear probe % | kNN (k=20) % | fine-tune % |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        cells = []
        for m in metrics:
            vals = row.get(m)
            cells.append("–" if not vals else (f"{vals[0]:.4f}" if m == "recon_loss" else summarize(vals)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    return table


def finetune_curve_figure(histories: dict[str, list[list[tuple[float, float]]]]) -> plt.Figure:
    """Test accuracy against fine-tuning epochs, one line per run (``histories[name][seed]``)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for color, (name, runs) in zip(["tab:blue", "tab:orange", "tab:green", "tab:red"], histories.items()):
        for i, run in enumerate(runs):
            epochs, accs = zip(*run)
            ax.plot(epochs, [100 * a for a in accs], "o-", color=color, alpha=0.8, label=name if i == 0 else None)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("fine-tuning epoch")
    ax.set_ylabel("test accuracy %")
    ax.set_title("Fine-tuning: pretrained MAE vs the same ViT from scratch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


# The README results table's fine-tuning recipe ("Choosing the fine-tuning recipe"), the command line's
# defaults: `python -m mae_lesson.finetune --mode table` alone reproduces the README's table. FinetuneArgs
# keeps the drop path and crops of the official recipe, which the notebooks and the ablation sweep use.
TABLE_RECIPE = {"epochs": 10, "blr": 2e-3, "warmup_epochs": 0.3, "crop_scale": 1.0, "drop_path": 0.0,
                "eval_every_epoch": True}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m mae_lesson.finetune``; its defaults are the README table's recipe."""
    parser = argparse.ArgumentParser(prog="python -m mae_lesson.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(pretrained_path()),
                        help="an MAE checkpoint with its config (default: the shipped default checkpoint)")
    parser.add_argument("--out", default="runs/eval")
    parser.add_argument("--mode", choices=["table", "probe", "finetune", "scratch"], default="table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--pool", choices=["cls", "mean", "both"], nargs="+", default=["cls"],
                        help="features for --mode probe, one or more: the cls token (the paper's probe), the mean of "
                             "the patch tokens, or both concatenated")
    parser.add_argument("--data-root", default="data")
    for field, default in asdict(FinetuneArgs()).items():
        if field in ("seed",):
            continue
        default = TABLE_RECIPE.get(field, default)
        flag = "--" + field.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=int if field == "max_steps" else type(default), default=default)
    return parser


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    ft_args = FinetuneArgs(**{k: getattr(ns, k) for k in asdict(FinetuneArgs()) if k != "seed"})
    if ns.mode == "table":
        print(results_table(ns.checkpoint, ns.out, ns.seeds, ft_args, ns.data_root, ns.probe_epochs))
        return
    train, test = load_dataset("fashion_mnist", ns.data_root, "train"), load_dataset("fashion_mnist", ns.data_root, "test")
    mae = MAE.from_checkpoint(ns.checkpoint).float()
    if ns.mode == "probe":
        scores = {}
        for pool in ns.pool:
            ev = evaluate_checkpoint(mae, train, test, ns.probe_epochs, progress=ft_args.progress, pool=pool)
            scores[pool] = {"linear_probe": ev["linear_probe"], "knn": ev["knn"]}
            print(f"{pool} features: linear probe {ev['linear_probe']:.2%}, kNN {ev['knn']:.2%}", flush=True)
        Path(ns.out).mkdir(parents=True, exist_ok=True)
        record = {"checkpoint": str(ns.checkpoint), "probe_epochs": ns.probe_epochs, "scores": scores}
        (Path(ns.out) / "probe.json").write_text(json.dumps(record, indent=2))
        return
    for seed in ns.seeds:
        args = FinetuneArgs(**{**asdict(ft_args), "seed": seed})
        res = finetune(None if ns.mode == "scratch" else mae, train, test, args, config=mae.config)
        print(f"{ns.mode} seed {seed}: accuracy {res['accuracy']:.2%} in {res['seconds']:.0f} s ({res['steps']} steps)")


if __name__ == "__main__":
    main()
