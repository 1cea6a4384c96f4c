"""The README's results table: frozen-feature scores and fine-tuning against the same ViT from scratch.

``python -m mae_lesson.finetune --mode table`` (:mod:`mae_lesson.run.finetune_cli`) runs :func:`results_table`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import torch

from .checkpoint import nonfinite_weights
from .data import load_dataset
from .evaluate import evaluate_encoder, evaluate_features, evaluate_loss, pixel_features, summarize
from .finetuning import FinetuneArgs, finetune
from .loader import ImageData
from .model import MAE
from .pretrained import DATA_DIR, available_pretrained
from .runfolder import RESULT_FILES, check_out_path, claim_results_folder, release_lock
from .utils import get_device
from .viz import confusion_figure, feature_map_figure, finetune_curve_figure


def evaluate_checkpoint(mae: MAE, train: ImageData, test: ImageData, probe_epochs: int = 30,
                        device: str = "auto", progress: bool = True, pool: str = "cls") -> dict[str, Any]:
    """Linear probe and kNN on frozen features (``pool``: ``cls`` as the paper, ``mean`` or ``both``):
    :func:`~mae_lesson.evaluate.evaluate_encoder` on ``device`` (``auto``: the best available).

    Refuses a model with NaN or Inf weights (its features would score chance, 10%, and look like a result).
    """
    bad = nonfinite_weights(mae.state_dict())
    if bad:
        raise ValueError(f"the model's weights hold {bad}: it comes from a run that diverged; evaluate an earlier "
                         f"checkpoint")
    return evaluate_encoder(mae, train, test, pool, probe_epochs, device=get_device(device), progress=progress)


def load_splits(config: Mapping[str, Any], data_root: str | Path) -> tuple[ImageData, ImageData]:
    """The train and test splits of the dataset a model was pretrained on: its config's ``dataset``
    (pretraining records it; Fashion-MNIST for a config without one), at the config's size and channels."""
    name = config.get("dataset") or "fashion_mnist"
    at = {"img_size": config["img_size"], "in_chans": config["in_chans"]}
    return load_dataset(name, data_root, "train", **at), load_dataset(name, data_root, "test", **at)


def results_table(checkpoint: str | Path, out: str | Path, seeds: list[int], finetune_args: FinetuneArgs,
                  data_root: str = "data", probe_epochs: int = 30, overwrite: bool = False) -> str:
    """The README's table: shipped checkpoint vs random init vs raw pixels vs from-scratch ViT.

    Writes ``results.json``, ``results.md``, a confusion matrix and a feature map to ``out``; an
    ``out`` that holds an earlier table is refused unless ``overwrite`` (which deletes that table first).
    """
    out = check_out_path(out)
    pretrained = MAE.from_checkpoint(checkpoint).float()  # a bad checkpoint fails before the data is loaded
    lock = claim_results_folder(out, RESULT_FILES["table"], overwrite)
    try:
        return _results_table(pretrained, checkpoint, out, seeds, finetune_args, data_root, probe_epochs)
    finally:
        release_lock(lock)


@dataclass
class _Table:
    """The table's numbers as they are measured, written to ``results.json`` after each one."""

    out: Path
    meta: dict[str, Any]  # the fine-tuning arguments, probe epochs and checkpoint, saved with the numbers
    rows: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    histories: dict[str, list[list[tuple[float, float]]]] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)  # training time of each fine-tune, without the evaluations

    def save(self) -> None:  # after every number, so a long table that is stopped keeps what it measured
        (self.out / "results.json").write_text(json.dumps({"rows": self.rows, "finetune_histories": self.histories,
                                                           "finetune_seconds": self.seconds, **self.meta}, indent=2))

    def add(self, name: str, metric: str, value: float) -> None:
        self.rows.setdefault(name, {}).setdefault(metric, []).append(value)
        print(f"{name}: {metric} {value:.4f}", flush=True)
        self.save()

    def add_finetune(self, name: str, result: dict[str, Any]) -> None:
        self.histories.setdefault(name, []).append(result["history"])
        self.seconds.setdefault(name, []).append(result["seconds"])
        self.add(name, "finetune", result["accuracy"])

    def markdown(self) -> str:
        lines = ["| model | test recon. loss | linear probe % | kNN (k=20) % | fine-tune % |", "|---|---|---|---|---|"]
        for name, row in self.rows.items():
            cells = []
            for m in ("recon_loss", "linear_probe", "knn", "finetune"):
                vals = row.get(m)
                cells.append("–" if not vals else (f"{vals[0]:.4f}" if m == "recon_loss" else summarize(vals)))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _save_figure(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _add_encoder(table: _Table, name: str, mae: MAE, train: ImageData, test: ImageData, probe_epochs: int,
                 progress: bool) -> dict[str, Any]:
    """An encoder's rows: reconstruction loss on the test images, then linear probe and kNN (returned)."""
    table.add(name, "recon_loss", evaluate_loss(mae, test, mae.config, torch.device("cpu"), max_images=10_000))
    scores = evaluate_checkpoint(mae, train, test, probe_epochs, progress=progress)
    table.add(name, "linear_probe", scores["linear_probe"])
    table.add(name, "knn", scores["knn"])
    return scores


def _which(checkpoint: str | Path) -> str:
    """``"shipped"`` for a checkpoint the course ships in ``data/``, else the file's name (a learner's own run)."""
    path = Path(checkpoint).resolve()
    return "shipped" if path.parent == DATA_DIR.resolve() and path.stem in available_pretrained() else path.name


def _results_table(pretrained: MAE, checkpoint: str | Path, out: Path, seeds: list[int], finetune_args: FinetuneArgs,
                   data_root: str, probe_epochs: int) -> str:
    train, test = load_splits(pretrained.config, data_root)
    table = _Table(out, {"finetune_args": asdict(finetune_args), "probe_epochs": probe_epochs,
                         "checkpoint": str(checkpoint)})
    cfg, progress, which = pretrained.config, finetune_args.progress, _which(checkpoint)
    shipped = f"MAE pretrained ({which})"
    ev = _add_encoder(table, shipped, pretrained, train, test, probe_epochs, progress)
    _save_figure(feature_map_figure(ev["test_features"], test.labels, test.classes,
                                    f"PCA of the {which} encoder's cls features"), out / "feature_map.png")
    # A random encoder's probe varies little with its seed; one seed keeps the table's CPU cost down.
    torch.manual_seed(seeds[0])
    _add_encoder(table, "random-init encoder", MAE(cfg), train, test, probe_epochs, progress)
    px_train, px_test = pixel_features(train), pixel_features(test)
    pixels = f"raw pixels ({px_train.shape[1]})"  # C*H*W: 784 for Fashion-MNIST
    ev_px = evaluate_features(px_train, train.labels, px_test, test.labels, probe_epochs)
    table.add(pixels, "linear_probe", ev_px["linear_probe"])
    table.add(pixels, "knn", ev_px["knn"])
    for seed in seeds:
        args = FinetuneArgs(**{**asdict(finetune_args), "seed": seed})
        ft = finetune(pretrained, train, test, args)
        table.add_finetune(shipped, ft)
        table.add_finetune("ViT from scratch, same budget", finetune(None, train, test, args, config=cfg))
        if seed == seeds[0]:
            _save_figure(confusion_figure(ft["predictions"], test.labels, test.classes,
                                          f"fine-tuned {which} MAE, seed {seed}: {ft['accuracy']:.1%}"),
                         out / "confusion_finetune.png")
    _save_figure(finetune_curve_figure(table.histories), out / "finetune_curve.png")
    markdown = table.markdown()
    (out / "results.md").write_text(markdown + "\n")
    return markdown
