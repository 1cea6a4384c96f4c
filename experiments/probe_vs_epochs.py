"""Frozen-feature accuracy against pretraining epochs: the runs in docs/results/probe_features, drawn.

Each run folder holds the ``probe.json`` written by
``python -m mae_lesson.finetune --mode probe --pool cls mean both --out <folder>``. This draws linear
probe and kNN accuracy against pretraining epochs, one line per kind of feature, with the raw-pixel
baselines of the results table (``docs/results/results.json``) as dashed lines.

    python -m experiments.probe_vs_epochs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
PROBE_DIR = ROOT / "docs" / "results" / "probe_features"
# run folder -> pretraining epochs of its checkpoint (all patch-7 runs of the main job's recipe)
RUN_EPOCHS = {"random_init": 0, "p7_e20": 20, "p7_e50": 50, "p7_e150": 150}
METRICS = {"linear_probe": "linear probe", "knn": "kNN (k=20)"}


def load_points(folder: Path, run_epochs: dict[str, int]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{metric: {pool: [(epochs, accuracy %), ...]}}`` sorted by epochs, from the runs that exist."""
    points: dict[str, dict[str, list[tuple[int, float]]]] = {metric: {} for metric in METRICS}
    for run, epochs in sorted(run_epochs.items(), key=lambda item: item[1]):
        path = folder / run / "probe.json"
        if not path.is_file():
            continue
        for pool, scores in json.loads(path.read_text())["scores"].items():
            for metric in METRICS:
                points[metric].setdefault(pool, []).append((epochs, 100 * scores[metric]))
    return points


def draw(points: dict[str, dict[str, list[tuple[int, float]]]], baselines: dict[str, float]) -> plt.Figure:
    """One panel per metric; ``baselines`` are the raw-pixel accuracies in % (dashed)."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(10, 3.8), sharey=True)
    for ax, (metric, title) in zip(axes, METRICS.items()):
        for pool, curve in points[metric].items():
            ax.plot(*zip(*curve), marker="o", label=f"{pool} features")
        ax.axhline(baselines[metric], color="black", linestyle="--", label=f"raw pixels ({baselines[metric]:.1f}%)")
        ax.set(title=title, xlabel="pretraining epochs (0 = random init)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("test accuracy %")
    fig.suptitle("Frozen patch-7 encoder on Fashion-MNIST: accuracy against pretraining")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=PROBE_DIR)
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results" / "results.json",
                        help="the results table's results.json, for the raw-pixel baselines")
    args = parser.parse_args(argv)
    pixels = json.loads(args.results.read_text())["rows"]["raw pixels (784)"]
    fig = draw(load_points(args.folder, RUN_EPOCHS), {metric: 100 * pixels[metric][0] for metric in METRICS})
    out = args.folder / "probe_vs_epochs.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
