"""Is pretraining worth it here? MAE pretraining + fine-tuning against the same ViT from scratch, compute-matched.

A budget is one shipped checkpoint's pretraining (its run folder's ``metrics.jsonl`` holds the
measured seconds of each epoch) plus arm (a)'s fine-tune. Arm (b), the same ViT from random weights
with the ``scratch_deit`` recipe, trains for the number of steps whose analytic training FLOPs
(``mae_lesson.flops``) equal that budget's; the wall-clock of both arms is measured and written
beside. One CSV row per finished run (budget, arm, seed, ...), test accuracy on all 10,000 test
images; a row already in the CSV is not redone (delete it to redo it), so the study resumes, and a run
stopped midway continues from the state it saved in ``--state-dir`` every 200 steps.

    python -m experiments.compute_matched --seeds 0 1 2                    # both budgets (50 and 150 epochs)
    python -m experiments.compute_matched --seeds 0 --search blr=1e-3,2e-3,4e-3   # tune both arms first
    python -m experiments.compute_matched --figures-only                   # figure, table, one sentence

``--search KEY=V1,V2 ...`` trains every combination for both arms at each budget given (seed
``--search-seed``) on the training images but the last ``--val-images``, scores them on those,
and the final runs use each arm's best (a budget without a search takes the nearest searched
budget's); its rows go to ``<csv stem>_search.csv``. ``--plan`` prints each budget, trains nothing.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from mae_lesson.bundled import load_recipe
from mae_lesson.config import Config
from mae_lesson.data import ImageData, load_fashion_mnist
from mae_lesson.errors import command_line_errors
from mae_lesson.finetune import FinetuneArgs, finetune
from mae_lesson.flops import forward_flops_by_part, train_step_flops
from mae_lesson.model import MAE

HERE = Path(__file__).resolve().parent
CHECKPOINTS = ["data/mae_fashion_mnist_p7.pt", "data/mae_fashion_mnist_p7_e150.pt"]
ARMS = {"finetune": "MAE pretraining + fine-tuning", "scratch": "same ViT from scratch (DeiT-style recipe)"}
COLUMNS = ["budget", "arm", "seed", "epochs", "steps", "seconds", "pretrain_seconds", "flops", "accuracy",
           "train_images", "test_images", "settings"]
KEY = ("budget", "arm", "seed", "train_images", "test_images")


def run_folder(checkpoint: str | Path) -> Path:
    """Where the run that made ``checkpoint`` logged: a shipped checkpoint's ``<name>_run/`` beside it, or
    the folder of a ``model.pt`` that ``python -m mae_lesson.pretrain`` wrote (notebook 07's small budget)."""
    checkpoint = Path(checkpoint)
    for folder in (checkpoint.with_name(checkpoint.stem + "_run"), checkpoint.parent):
        if (folder / "metrics.jsonl").is_file() and (folder / "args.json").is_file():
            return folder
    raise FileNotFoundError(f"no metrics.jsonl and args.json in {checkpoint.stem}_run/ beside {checkpoint} or in its "
                            f"folder: give a checkpoint shipped with its run folder (one of {', '.join(CHECKPOINTS)}) "
                            f"or the model.pt of a pretraining run folder")


def pretraining_cost(checkpoint: str | Path) -> dict[str, int | float]:
    """``{"epochs", "steps", "batch_size", "seconds"}`` of the run that made ``checkpoint``, from its run
    folder (``run_folder``): the last record of each epoch in ``metrics.jsonl``, its ``args.json``."""
    folder = run_folder(checkpoint)
    epochs: dict[int, dict[str, Any]] = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "epoch":
            epochs[record["epoch"]] = record  # a resumed run repeats an epoch: its last record counts
    if not epochs:
        raise ValueError(f"{folder / 'metrics.jsonl'} records no finished epoch")
    last = epochs[max(epochs)]
    return {"epochs": max(epochs), "steps": last["step"], "seconds": sum(r["seconds"] for r in epochs.values()),
            "batch_size": json.loads((folder / "args.json").read_text())["batch_size"]}


def finetune_step_flops(cfg: Config, batch: int) -> int:
    """Training FLOPs of one classifier step: patch embedding and encoder on every patch (no mask),
    three forward passes; the decoder is not used and the 10-way head is left out like LayerNorm."""
    parts = forward_flops_by_part(cfg, batch, mask_ratio=0.0)
    return 3 * (parts["patch_embed"] + parts["encoder"])


def budget_flops(cfg: Config, pretrain_steps: int, pretrain_batch: int, finetune_steps: int, batch: int) -> int:
    """Analytic training FLOPs of pretraining for ``pretrain_steps`` then fine-tuning for ``finetune_steps``."""
    return pretrain_steps * train_step_flops(cfg, pretrain_batch) + finetune_steps * finetune_step_flops(cfg, batch)


def matched_steps(flops: int, cfg: Config, batch: int) -> int:
    """Classifier steps of ``batch`` images whose training FLOPs come nearest to ``flops``."""
    return max(1, round(flops / finetune_step_flops(cfg, batch)))


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Add one finished run (the header first in a new file), so a stopped study keeps every row."""
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def key_of(row: dict[str, Any], columns: tuple[str, ...] = KEY) -> tuple[str, ...]:
    return tuple(str(row[c]) for c in columns)


def parse_search(items: list[str]) -> list[dict[str, Any]]:
    """``["blr=1e-3,2e-3", "drop_path=0,0.1"]`` -> every combination as FinetuneArgs overrides."""
    types = {f.name: f.type for f in fields(FinetuneArgs)}
    grid = []
    for item in items:
        name, _, values = item.partition("=")
        if name not in types or not values:
            raise ValueError(f"--search {item!r} must be NAME=V1,V2 with NAME a FinetuneArgs field, e.g. blr=1e-3,2e-3")
        kind = {"float": float, "int": int, "bool": lambda v: v.lower() in ("1", "true", "yes")}.get(
            str(types[name]).split(" ")[0], str)
        grid.append([(name, kind(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*grid)]


def arm_recipe(arm: str, ns: argparse.Namespace) -> dict[str, Any]:
    """The arm's recipe file with the command line's ``--batch-size`` (toy runs) and ``--finetune-epochs``."""
    recipe = load_recipe(ns.finetune_recipe if arm == "finetune" else ns.scratch_recipe)
    if ns.batch_size:
        recipe["batch_size"] = ns.batch_size
    if arm == "finetune" and ns.finetune_epochs:
        recipe["epochs"] = ns.finetune_epochs
    return recipe


def plan(checkpoint: str, ns: argparse.Namespace, train_images: int) -> dict[str, Any]:
    """Both arms' run lengths at one budget: the fine-tune's steps from its recipe, the scratch arm's from FLOPs."""
    mae = MAE.from_checkpoint(checkpoint).float()
    cost = pretraining_cost(checkpoint)
    recipe = arm_recipe("finetune", ns)
    ft_steps = recipe["epochs"] * (train_images // recipe["batch_size"])
    flops = budget_flops(mae.config, cost["steps"], cost["batch_size"], ft_steps, recipe["batch_size"])
    return {"mae": mae, "cost": cost, "flops": flops, "finetune": ft_steps,
            "scratch": matched_steps(flops, mae.config, arm_recipe("scratch", ns)["batch_size"])}


def run_arm(arm: str, budget: dict[str, Any], settings: dict[str, Any], seed: int, train: ImageData, test: ImageData,
            ns: argparse.Namespace, fraction: float = 1.0) -> dict[str, Any]:
    """Train one arm at one budget and return its CSV row (accuracy on ``test``)."""
    recipe = {**arm_recipe(arm, ns), **settings}
    steps = max(1, round(budget[arm] * fraction))
    per_epoch = len(train) // recipe["batch_size"]  # fewer images (the search): more epochs, same steps
    # A warm-up longer than half the run (DeiT's 5 epochs in a budget of a few) is cut to half of it,
    # so that a short budget still reaches its peak rate; the studied budgets are all long enough.
    warmup = min(recipe["warmup_epochs"], steps / per_epoch / 2)
    args = FinetuneArgs(**{**recipe, "epochs": math.ceil(steps / per_epoch), "max_steps": steps, "seed": seed,
                           "warmup_epochs": warmup, "progress": ns.progress, "eval_every_epoch": False})
    mae = budget["mae"]
    name = (f"budget{budget['cost']['epochs']}_{arm}_seed{seed}_{len(train)}_{len(test)}_"
            f"{json.dumps(settings, sort_keys=True)}")
    state = Path(ns.state_dir) / (re.sub(r"[^A-Za-z0-9_.=-]+", "_", name) + ".pt")  # a stopped run continues here
    result = finetune(mae if arm == "finetune" else None, train, test, args, config=mae.config, state_file=state)
    pretrain = budget["cost"]["seconds"] if arm == "finetune" else 0.0
    flops = (budget_flops(mae.config, budget["cost"]["steps"], budget["cost"]["batch_size"], steps, args.batch_size)
             if arm == "finetune" else steps * finetune_step_flops(mae.config, args.batch_size))
    return {"budget": budget["cost"]["epochs"], "arm": arm, "seed": seed, "epochs": round(steps / per_epoch, 2),
            "steps": steps, "seconds": round(pretrain + result["seconds"], 1), "pretrain_seconds": round(pretrain, 1),
            "flops": flops, "accuracy": round(result["accuracy"], 4), "train_images": len(train),
            "test_images": len(test), "settings": json.dumps(settings, sort_keys=True)}


def best_settings(rows: list[dict[str, str]], budget: int, arm: str) -> dict[str, Any]:
    """The arm's best settings by validation accuracy in the search of this budget, or else of the nearest
    searched budget (a search at the small budget can serve both); ``{}`` (the recipe) without a search."""
    mine = [r for r in rows if r["arm"] == arm]
    if not mine:
        return {}
    nearest = min({int(r["budget"]) for r in mine}, key=lambda b: abs(b - budget))
    best = max((r for r in mine if int(r["budget"]) == nearest), key=lambda r: float(r["accuracy"]))
    return json.loads(best["settings"])


def print_plan(ns: argparse.Namespace) -> None:
    """Each budget's analytic FLOPs and both arms' steps, without training (``--plan``)."""
    images = len(load_fashion_mnist(ns.data_root, "train").subset(ns.train_images))
    for checkpoint in ns.checkpoints:
        budget = plan(checkpoint, ns, images)
        cost, batch = budget["cost"], {arm: arm_recipe(arm, ns)["batch_size"] for arm in ARMS}
        print(f"{checkpoint}: pretraining {cost['epochs']} epochs, {cost['steps']} steps, {cost['seconds'] / 3600:.2f} h "
              f"measured; budget {budget['flops'] / 1e15:.3g} PFLOP; fine-tune {budget['finetune']} steps "
              f"({budget['finetune'] / (images // batch['finetune']):g} epochs); from scratch {budget['scratch']} steps "
              f"({budget['scratch'] / (images // batch['scratch']):.1f} epochs)")


def split_off(data: ImageData, count: int) -> tuple[ImageData, ImageData]:
    """``(all but the last count images, the last count)``: the search's training and validation images."""
    if not 0 < count < len(data):
        raise ValueError(f"--val-images must be between 1 and {len(data) - 1} (the training images), got {count}")
    keep = len(data) - count
    return tuple(ImageData(data.images[part], data.labels[part], data.classes, data.mean, data.std)
                 for part in (slice(None, keep), slice(keep, None)))


def run_once(path: Path, key: tuple[str, ...], arm: str, budget: dict[str, Any], settings: dict[str, Any], seed: int,
             train: ImageData, test: ImageData, ns: argparse.Namespace, fraction: float = 1.0) -> None:
    """Train one arm and append its row to ``path``, unless a row with the same ``key`` is there already."""
    wanted = {"budget": budget["cost"]["epochs"], "arm": arm, "seed": seed, "train_images": len(train),
              "test_images": len(test), "settings": json.dumps(settings, sort_keys=True)}
    if key_of(wanted, key) in {key_of(r, key) for r in read_rows(path)}:
        return
    row = run_arm(arm, budget, settings, seed, train, test, ns, fraction)
    append_row(path, row)
    print(f"{path.name}: budget {row['budget']} {arm} seed {seed} {row['settings']}: accuracy {row['accuracy']} "
          f"on {len(test)} images after {row['epochs']} epochs, {row['seconds']} s", flush=True)


def run_study(ns: argparse.Namespace) -> None:
    """Every missing row: first the search's (if ``--search``), then both arms seed by seed, per budget."""
    grid = parse_search(ns.search) if ns.search else []  # a typo is refused before any data is read
    full_train = load_fashion_mnist(ns.data_root, "train").subset(ns.train_images)
    test = load_fashion_mnist(ns.data_root, "test").subset(ns.test_images)
    search_csv = search_csv_of(ns)
    search_train, val = split_off(full_train, ns.val_images) if grid else (full_train, test)
    for checkpoint in ns.checkpoints:
        budget = plan(checkpoint, ns, len(full_train))
        for settings, arm in itertools.product(grid, ARMS):
            run_once(search_csv, KEY + ("settings",), arm, budget, settings, ns.search_seed, search_train, val, ns,
                     ns.search_fraction)
        for seed, arm in itertools.product(ns.seeds, ARMS):  # seed by seed: a stopped study leaves pairs
            settings = best_settings(read_rows(search_csv), budget["cost"]["epochs"], arm)
            run_once(ns.csv, KEY, arm, budget, settings, seed, full_train, test, ns)


def search_csv_of(ns: argparse.Namespace) -> Path:
    """The search's rows: ``--search-csv``, else ``<csv stem>_search.csv`` beside the CSV."""
    return ns.search_csv or ns.csv.with_name(ns.csv.stem + "_search.csv")


def summary(rows: list[dict[str, str]]) -> dict[tuple[int, str], dict[str, float]]:
    """Per (budget, arm): mean and sample std of the accuracy, seeds, mean FLOPs and seconds."""
    groups: dict[tuple[int, str], list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault((int(r["budget"]), r["arm"]), []).append(r)
    out = {}
    for key, group in sorted(groups.items()):
        acc = np.array([float(r["accuracy"]) for r in group]) * 100
        out[key] = {"mean": acc.mean(), "std": acc.std(ddof=1) if len(acc) > 1 else 0.0, "n": len(acc),
                    "flops": np.mean([float(r["flops"]) for r in group]),
                    "minutes": np.mean([float(r["seconds"]) for r in group]) / 60,
                    "epochs": float(group[0]["epochs"]), "seeds": " ".join(r["seed"] for r in group)}
    return out


def answer(stats: dict[tuple[int, str], dict[str, float]]) -> str:
    """The one sentence: which arm is ahead at each budget, a tie when the means are within one std of each;
    with one seed in an arm there is no spread, and the sentence says so."""
    parts, signs, single = [], set(), False
    for budget in sorted({b for b, _ in stats}):
        a, b = stats.get((budget, "finetune")), stats.get((budget, "scratch"))
        if a is None or b is None:
            continue
        diff, single = a["mean"] - b["mean"], single or min(a["n"], b["n"]) < 2
        signs.add(0 if abs(diff) <= a["std"] + b["std"] else int(np.sign(diff)))
        parts.append(f"{a['mean']:.1f}% against {b['mean']:.1f}% at the compute of {budget} pretraining "
                     f"epoch{'s' if budget != 1 else ''} ({a['flops'] / 1e15:.3g} PFLOP)")
    if not parts:
        return "No budget has rows for both arms yet."
    verdict = {frozenset({1}): "Yes: MAE pretraining then fine-tuning beats spending the same compute on "
                                "supervised training from scratch",
               frozenset({-1}): "No: spending the same compute on supervised training from scratch does better than "
                                 "MAE pretraining then fine-tuning",
               frozenset({0}): "Not measurably: MAE pretraining then fine-tuning and the same compute spent on "
                                "supervised training from scratch are within their seeds' spread"}
    caveat = " One seed: no spread to weigh the gap against, so this is one measurement, not yet an answer." \
        if single else ""
    return f"{verdict.get(frozenset(signs), 'It depends on the budget')} ({'; '.join(parts)}).{caveat}"


def draw(stats: dict[tuple[int, str], dict[str, float]]) -> plt.Figure:
    """Accuracy against budget FLOPs: one line per arm, error bars of one std over seeds."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for arm, label in ARMS.items():
        # Both arms of a budget sit at its FLOPs (matched to a step, so rounded to the PFLOP shown).
        points = sorted((round(s["flops"] / 1e15, 3), s["mean"], s["std"]) for (b, a), s in stats.items() if a == arm)
        if points:
            x, y, err = zip(*points)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=label)
    budgets = sorted({round(s["flops"] / 1e15, 3) for s in stats.values()})
    ax.set_xticks(budgets)
    ax.set_xlim(0, 1.2 * max(budgets, default=1))
    ax.margins(y=0.15)
    ax.set_xlabel("training budget (analytic PFLOP, pretraining included)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Compute-matched: is MAE pretraining worth it?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def table(stats: dict[tuple[int, str], dict[str, float]]) -> str:
    """The Markdown table of ``summary`` (one row per budget and arm) and the one-sentence answer."""
    lines = ["| budget (pretraining epochs) | arm | epochs of this run | PFLOP | minutes here | test accuracy % | seeds |",
             "|---|---|---|---|---|---|---|"]
    for (budget, arm), s in stats.items():
        lines.append(f"| {budget} | {ARMS[arm]} | {s['epochs']:g} | {s['flops'] / 1e15:.3g} | {s['minutes']:.1f} | "
                     f"{s['mean']:.2f} ± {s['std']:.2f} (n={s['n']}) | {s['seeds']} |")
    return "\n".join(lines) + "\n\n" + answer(stats)


def readme_lines(stats: dict[tuple[int, str], dict[str, float]]) -> list[str]:
    """What the README quotes for each budget with both arms: the results table's row for the scratch arm
    and the sentence that compares the arms (``tests/test_compute_matched.py`` holds the README to them)."""
    lines = []
    for budget in sorted({b for b, _ in stats}):
        a, b = stats.get((budget, "finetune")), stats.get((budget, "scratch"))
        if a is None or b is None:
            continue
        lines.append(f"| ViT from scratch, same compute as {budget} pretraining epoch{'s' if budget != 1 else ''} + fine-tuning (DeiT-style "
                     f"recipe, {b['epochs']:g} epochs) | – | – | – | {b['mean']:.1f} ± {b['std']:.1f} (n={b['n']}) |")
        lines.append(f"at the compute of {budget} pretraining epoch{'s' if budget != 1 else ''} and the fine-tune ({a['flops'] / 1e15:.3g} PFLOP), "
                     f"MAE pretraining then fine-tuning reaches {a['mean']:.1f} ± {a['std']:.1f}% (n={a['n']}) and the "
                     f"same ViT from scratch {b['mean']:.1f} ± {b['std']:.1f}% (n={b['n']})")
    return lines


def figures(csv_path: Path, png: Path) -> str:
    """Draw the figure of ``csv_path``'s rows to ``png``; return the table and the answer."""
    rows = read_rows(csv_path)
    if not rows:
        raise FileNotFoundError(f"{csv_path} has no rows yet: run the study first (without --figures-only)")
    stats = summary(rows)
    fig = draw(stats)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return table(stats)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", nargs="+", default=CHECKPOINTS, metavar="PT",
                        help="one budget per shipped checkpoint with its run folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="final runs per arm and budget; none with --search: only the search (default: %(default)s)")
    parser.add_argument("--csv", type=Path, default=HERE / "compute_matched.csv", help="(default: %(default)s)")
    parser.add_argument("--search-csv", type=Path, default=None,
                        help="the search's rows (default: the CSV's name with _search.csv)")
    parser.add_argument("--figure", type=Path, default=None, help="PNG (default: the CSV's name with .png)")
    parser.add_argument("--figures-only", action="store_true", help="draw the figure, print the table and the answer")
    parser.add_argument("--plan", action="store_true", help="print each budget's FLOPs and both arms' steps, train nothing")
    parser.add_argument("--finetune-recipe", default="finetune_table", help="arm (a)'s recipe (default: %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=None, help="replace arm (a)'s recipe epochs")
    parser.add_argument("--scratch-recipe", default="scratch_deit", help="arm (b)'s recipe; its epochs are "
                        "replaced by the budget's (default: %(default)s)")
    parser.add_argument("--search", nargs="*", default=[], metavar="NAME=V1,V2", help="grid tried for both arms")
    parser.add_argument("--search-seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--search-fraction", type=float, default=1.0,
                        help="search runs take this fraction of the budget's steps (default: %(default)s)")
    parser.add_argument("--val-images", type=int, default=10_000, help="held out for the search (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="replace both recipes' batch size (toy runs)")
    parser.add_argument("--train-images", type=int, default=None, help="first N training images (toy runs)")
    parser.add_argument("--test-images", type=int, default=None, help="first N test images (default: all 10,000)")
    parser.add_argument("--data-root", default="data", help="(default: %(default)s)")
    parser.add_argument("--state-dir", default="runs/compute_matched_state", help="where a run saves its state every "
                        "200 steps, so a stopped study continues mid-run (default: %(default)s)")
    parser.add_argument("--progress", action="store_true", help="a progress bar for each run")
    return parser


def main(argv: list[str] | None = None) -> None:
    """The command line; an expected failure prints one line and exits with code 2."""
    ns = build_parser().parse_args(argv)
    with command_line_errors():
        if ns.plan:
            print_plan(ns)
            return
        if not ns.figures_only:
            run_study(ns)
            if not read_rows(ns.csv):  # only a search ran
                print(f"{ns.csv} has no final rows yet: the search is in {search_csv_of(ns)}")
                return
        print(figures(ns.csv, ns.figure or ns.csv.with_suffix(".png")))
        if ns.figures_only:  # what a maintainer pastes into the README
            print("\nFor the README:", *readme_lines(summary(read_rows(ns.csv))), sep="\n")


if __name__ == "__main__":
    main()
