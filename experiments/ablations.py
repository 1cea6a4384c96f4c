"""The paper in miniature: MAE's key ablations (Table 1, Table 2, Figure 5) on Fashion-MNIST.

Each setting pretrains the default CPU config with the same budget (``--steps`` optimizer steps
of ``--batch-size`` images), then measures test reconstruction loss, a linear probe and kNN on
frozen cls features, and a short fine-tune. One CSV row per run; finished runs are not redone
(delete a row to redo it). Figures are drawn from the CSV.

    python experiments/ablations.py                 # the committed sweep
    python experiments/ablations.py --only mask_ratio --steps 50   # one ablation, quickly
    python experiments/ablations.py --only target --values norm_pix --out runs/mine   # one setting
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mae_lesson.config import Config  # noqa: E402
from mae_lesson.data import load_fashion_mnist  # noqa: E402
from mae_lesson.evaluate import evaluate_loss, extract_features, knn_classify, linear_probe  # noqa: E402
from mae_lesson.finetune import FinetuneArgs, finetune  # noqa: E402
from mae_lesson.model import MAE  # noqa: E402
from mae_lesson.patch_embed import patch_tokens, prepend_cls  # noqa: E402
from mae_lesson.pretrain import PretrainArgs, pretrain  # noqa: E402

SHIPPED_CHECKPOINT = "data/mae_fashion_mnist_tiny.pt"
# The sweep's base model: the patch-4 teaching model its committed runs were trained on (patch 7,
# now the default CPU config, is one of its rows).
BASE_CONFIG = "fashion_mnist_tiny"
COLUMNS = ["ablation", "value", "recon_loss", "linear_probe", "knn", "finetune", "epoch_seconds",
           "steps", "epochs", "overrides"]

# (ablation, value, model overrides, run options); the default setting is repeated where the
# paper's table would show it, but trained only once (same overrides -> same run folder).
SETTINGS: list[tuple[str, str, dict, dict]] = (
    [("mask_ratio", str(r), {"mask_ratio": r}, {}) for r in (0.1, 0.25, 0.5, 0.75, 0.9)]
    + [("target", "pixels", {"norm_pix_loss": False}, {}), ("target", "norm_pix", {"norm_pix_loss": True}, {})]
    + [("encoder_mask_tokens", "no (MAE)", {}, {}), ("encoder_mask_tokens", "yes", {}, {"encoder_mask_tokens": True})]
    # x0 is the random-init encoder (no pretraining); "shipped" evaluates data/'s 20-epoch checkpoint
    # with this script's protocol, so the schedule curve reaches the checkpoint the course ships.
    + [("schedule", f"x{m}", {}, {"steps_multiplier": m}) for m in (0, 1, 2)]
    + [("schedule", "shipped", {}, {"checkpoint": SHIPPED_CHECKPOINT})]
    + [("decoder_depth", str(d), {"decoder_depth": d}, {}) for d in (1, 2, 4, 8)]
    + [("decoder_width", str(w), {"decoder_embed_dim": w}, {}) for w in (32, 64, 128)]
    # Not in the paper: the encoder shape, for choosing the default CPU config (probe per CPU minute).
    + [("encoder", "w128 p4", {}, {}), ("encoder", "w64 p4", {"embed_dim": 64}, {}),
       ("encoder", "w128 p7", {"patch_size": 7}, {})]
    # Grid sampling needs an even patch grid: this ablation resizes images to 32x32 (8x8 patches).
    + [("mask_type", t, {"mask_type": t, "img_size": 32}, {}) for t in ("random", "block", "grid")]
    # The most expensive settings last, so a sweep cut short still has every ablation.
    + [("schedule", "x4", {}, {"steps_multiplier": 4}), ("encoder", "w192 p4", {"embed_dim": 192}, {})]
)
ORDER = {(a, v): i for i, (a, v, _, _) in enumerate(SETTINGS)}


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


def run_name(overrides: dict, options: dict) -> str:
    """A folder name from what differs from the default config, so equal settings share a run."""
    base = Config.from_file(BASE_CONFIG)
    changed = {k: v for k, v in overrides.items() if base.get(k) != v}
    changed.update({k: v for k, v in options.items() if not (k == "steps_multiplier" and v == 1)})
    parts = [f"{k}={v}" for k, v in sorted(changed.items())]
    return "default" if not parts else "_".join(parts).replace("/", "-")


def read_rows(csv_path: Path) -> list[dict]:
    if not csv_path.is_file():
        return []
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def evaluate_run(model: MAE, train, test, args: argparse.Namespace) -> dict:
    """Reconstruction loss, probe, kNN (on the first ``--probe-images`` train images), short fine-tune."""
    model.eval()
    sub_train = train.subset(args.probe_images)
    train_x = extract_features(model, sub_train, "cls", progress=False)
    test_x = extract_features(model, test, "cls", progress=False)
    ft = finetune(model, train, test, FinetuneArgs(epochs=1, max_steps=args.finetune_steps, seed=args.seed,
                                                   progress=False, warmup_epochs=0.05, blr=args.finetune_blr,
                                                   crop_scale=args.finetune_crop))
    return {
        "recon_loss": evaluate_loss(model, test, model.config, torch.device("cpu"), max_images=len(test)),
        "linear_probe": linear_probe(train_x, sub_train.labels, test_x, test.labels, epochs=20)["accuracy"],
        "knn": knn_classify(train_x, sub_train.labels, test_x, test.labels)["accuracy"],
        "finetune": ft["accuracy"],
    }


def train_or_load(overrides: dict, options: dict, key: str, train, args: argparse.Namespace) -> tuple[MAE, float, int, float]:
    """Pretrain one setting (or load the shipped checkpoint, or build a random-init model).

    Returns the model, the pretraining seconds per 60,000-image epoch, the optimizer steps and
    the epochs of pretraining.
    """
    if "checkpoint" in options:
        path = ROOT / options["checkpoint"]
        metrics_path = path.with_name(path.stem + "_run") / "metrics.jsonl"
        epochs = [json.loads(line) for line in metrics_path.read_text().splitlines()]
        epochs = [m for m in epochs if m["kind"] == "epoch"]
        # The fastest epoch: the shipped run shared the CPU with other jobs for part of the time
        # (data/README.md), which only ever slows an epoch down.
        steps = max(m["step"] for m in epochs)
        seconds = min(m["seconds"] for m in epochs)
        return MAE.from_checkpoint(path).float(), seconds, steps, max(m["epoch"] for m in epochs)
    steps = args.steps * options.get("steps_multiplier", 1)
    model_cls = EncoderWithMaskTokens if options.get("encoder_mask_tokens") else MAE
    if steps == 0:  # the random-init encoder: the schedule curve's starting point
        torch.manual_seed(args.seed)
        return model_cls(Config({**Config.from_file(BASE_CONFIG), **overrides})), 0.0, 0, 0.0
    run_dir = Path(args.out) / "runs" / key
    pretrain_args = PretrainArgs(config=BASE_CONFIG, overrides=overrides, train_images=args.train_images, epochs=10**6,
                                 max_steps=steps, schedule_steps=steps, warmup_epochs=0, batch_size=args.batch_size,
                                 blr=args.blr, out=str(run_dir), progress=False, seed=args.seed,
                                 ckpt_every_steps=10**9, log_every_steps=max(1, steps // 20),
                                 data_root=args.data_root, num_figure_images=8,
                                 overwrite=True)  # each variant reruns into its own folder on purpose
    # Warm-up of 5% of the steps, as a fraction of an epoch of the (sub)set.
    pretrain_args.warmup_epochs = 0.05 * steps * args.batch_size / len(train)
    pretrain(pretrain_args, model_class=model_cls)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(m["seconds"] for m in metrics if m["kind"] == "epoch")
    ckpt = torch.load(run_dir / "model.pt", weights_only=True)
    model = model_cls(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    images = steps * args.batch_size
    return model, seconds / images * 60000, steps, images / len(train)


def run_sweep(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "ablations.csv"
    done = {(r["ablation"], r["value"]) for r in read_rows(csv_path)}
    cache: dict[str, dict] = {r["overrides"]: r for r in read_rows(csv_path)}
    train = load_fashion_mnist(args.data_root, "train").subset(args.train_images)
    test = load_fashion_mnist(args.data_root, "test").subset(args.test_images)
    for ablation, value, overrides, options in SETTINGS:
        if (args.only and ablation not in args.only) or (args.values and value not in args.values):
            continue
        if (ablation, value) in done:
            print(f"{ablation}={value}: already in {csv_path}, not redone (delete its row to redo it)", flush=True)
            continue
        key = run_name(overrides, options)
        if key in cache:  # the same setting already trained for another ablation
            row = {**cache[key], "ablation": ablation, "value": value}
        else:
            model, seconds_per_epoch, steps, epochs = train_or_load(overrides, options, key, train, args)
            scores = evaluate_run(model, train, test, args)
            row = {"ablation": ablation, "value": value, **{k: f"{v:.4f}" for k, v in scores.items()},
                   "epoch_seconds": f"{seconds_per_epoch:.1f}", "steps": steps, "overrides": key,
                   "epochs": f"{epochs:.2f}"}
            cache[key] = row
        write_header = not csv_path.is_file()
        with open(csv_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            if write_header:
                writer.writeheader()
            writer.writerow({k: row[k] for k in COLUMNS})
        print(f"{ablation}={value}: " + ", ".join(f"{k} {row[k]}" for k in COLUMNS[2:7]), flush=True)
    draw_figures(csv_path, out)
    return csv_path


def panel_order(row: dict) -> tuple[float, int]:
    """Plot order within a panel: by pretraining epochs for the schedule, else as listed in SETTINGS."""
    if row["ablation"] == "schedule":
        return float(row["epochs"]), 0
    return 0.0, ORDER.get((row["ablation"], row["value"]), len(ORDER))


def tick_label(row: dict) -> str:
    """The setting, plus what the panel is about: epochs for the schedule, time for cost ablations."""
    if row["ablation"] == "schedule":
        return f"{row['value']}\n{float(row['epochs']):.1f} ep"
    if row["ablation"] in ("encoder_mask_tokens", "encoder"):
        return f"{row['value']}\n{float(row['epoch_seconds']):.0f} s/ep"
    return row["value"]


LEGEND = {"linear_probe": "linear probe", "knn": "kNN", "finetune": "fine-tune"}


def draw_figures(csv_path: Path, out: Path, n_test: int = 2000) -> list[Path]:
    """One panel per ablation: probe, kNN and fine-tune accuracy against the setting.

    Every point carries an error bar of one standard error of an accuracy measured on ``n_test``
    test images, ``sqrt(p * (1 - p) / n_test)``, and every panel shares one accuracy axis, so
    heights and gaps compare across panels.
    """
    rows = read_rows(csv_path)
    ablations = list(dict.fromkeys(r["ablation"] for r in rows))
    if not ablations:
        return []
    metrics = (("linear_probe", "o"), ("knn", "s"), ("finetune", "^"))
    values = [float(r[m]) for r in rows for m, _ in metrics]
    margin = 2 * max((v * (1 - v) / n_test) ** 0.5 for v in values)
    low, high = 100 * (min(values) - margin), 100 * (max(values) + margin)
    cols = 3
    n_rows = (len(ablations) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.6 * cols, 2.9 * n_rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, ablations):
        sel = sorted((r for r in rows if r["ablation"] == name), key=panel_order)
        xs = range(len(sel))
        for offset, (metric, marker) in zip((-0.08, 0.0, 0.08), metrics):
            acc = [float(r[metric]) for r in sel]
            se = [100 * (a * (1 - a) / n_test) ** 0.5 for a in acc]
            # A small sideways offset per measure keeps the error bars of close points apart.
            ax.errorbar([x + offset for x in xs], [100 * a for a in acc], yerr=se, marker=marker, ms=4, capsize=2,
                        lw=1, label=LEGEND[metric])
        ax.set_xticks(list(xs), [tick_label(r) for r in sel], fontsize=7)
        ax.set_xlim(-0.5, len(sel) - 0.5)
        ax.set_ylim(low, high)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy %", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[len(ablations):]:
        ax.axis("off")
    fig.suptitle(f"MAE ablations on Fashion-MNIST (same pretraining budget per run; bars: one standard error "
                 f"on {n_test:,} test images)", fontsize=10)
    fig.tight_layout()
    path = out / "ablations.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "experiments"))
    parser.add_argument("--steps", type=int, default=250, help="pretraining optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--blr", type=float, default=1e-3)
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--probe-images", type=int, default=10000)
    parser.add_argument("--finetune-steps", type=int, default=60)
    # A short fine-tune needs a bolder lr and milder crops than FinetuneArgs' defaults (notebook 07).
    parser.add_argument("--finetune-blr", type=float, default=4e-3)
    parser.add_argument("--finetune-crop", type=float, default=0.8, help="RandomResizedCrop scale lower bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=str(ROOT / "data"))
    parser.add_argument("--only", nargs="*", default=None, help="run only these ablations")
    parser.add_argument("--values", nargs="*", default=None, help="run only these values (e.g. --only target --values norm_pix)")
    parser.add_argument("--figures-only", action="store_true", help="redraw figures from the CSV")
    args = parser.parse_args(argv)
    known = {a: [v for a2, v, _, _ in SETTINGS if a2 == a] for a, _, _, _ in SETTINGS}
    for name in args.only or []:
        if name not in known:
            parser.error(f"unknown ablation {name!r}; choose from {', '.join(known)}")
    chosen = [v for a in (args.only or known) for v in known[a]]
    for value in args.values or []:
        if value not in chosen:
            parser.error(f"no setting {value!r} in {', '.join(args.only or known)}; its values are {', '.join(chosen)}")
    if args.figures_only:
        print(draw_figures(Path(args.out) / "ablations.csv", Path(args.out)))
        return
    start = time.perf_counter()
    path = run_sweep(args)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
