"""The command line of fine-tuning, ``python -m mae_lesson.finetune``: the results table, a probe, or fine-tunes.

``--mode table`` runs :func:`mae_lesson.results.results_table`; ``--mode probe`` scores frozen features with
:func:`mae_lesson.results.evaluate_checkpoint`; ``--mode finetune`` / ``scratch`` run
:func:`mae_lesson.finetune.finetune` once per seed. Defaults are the ``finetune_table`` recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..cli import add_dataclass_flags, check_device, dataclass_values, parse_with_recipe
from ..bundled import load_recipe
from ..errors import EXIT_SIGINT, command_line_errors
from ..finetune_state import run_settings
from ..finetuning import FinetuneArgs, finetune
from ..loader import check_seed
from ..model import MAE
from ..pretrained import pretrained_path
from ..results import evaluate_checkpoint, load_splits, results_table
from ..runfolder import RESULT_FILES, acquire_lock, check_out_path, claim_results_folder, release_lock

DESCRIPTION = "The README's results table: frozen-feature scores and fine-tuning against the same ViT from scratch."
TABLE_RECIPE = "finetune_table"


def build_parser(recipe: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The command line of ``python -m mae_lesson.finetune``; its defaults are the ``finetune_table`` recipe."""
    parser = argparse.ArgumentParser(prog="python -m mae_lesson.finetune", description=DESCRIPTION,
                                     epilog="An expected failure (a bad value, a missing or unreadable checkpoint, "
                                            "a folder that cannot be written) prints one error line, exit code 2.")
    parser.add_argument("--recipe", default=TABLE_RECIPE, metavar="NAME_OR_YAML",
                        help="fine-tuning recipe whose values are the defaults of the flags below "
                             "(bundled: finetune_table, finetune_short) (default: %(default)s)")
    parser.add_argument("--checkpoint", default=str(pretrained_path()),
                        metavar="PATH", help="an MAE checkpoint with its config, read before the data "
                                             "(default: the shipped default, %(default)s)")
    parser.add_argument("--out", default="runs/eval", metavar="FOLDER",
                        help="folder for the results, created if missing (default: %(default)s)")
    parser.add_argument("--mode", choices=["table", "probe", "finetune", "scratch"], default="table",
                        help="table: the README's results table; probe: linear probe and kNN on frozen features; "
                             "finetune / scratch: fine-tune the checkpoint / the same ViT from random weights, each seed "
                             "recorded in --out/<mode>.json, a stopped run continued when the command is run again "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in an --out that holds this mode's results (results.json, results.md and "
                             "figures for table, probe.json for probe): delete them first (default: refuse)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        metavar="SEED", help="one fine-tune per seed, each a whole run (default: %(default)s)")
    parser.add_argument("--probe-epochs", type=int, default=30, metavar="EPOCHS",
                        help="passes of the linear probe over the cached features, in epochs (default: %(default)s)")
    parser.add_argument("--pool", choices=["cls", "mean", "both"], nargs="+", default=["cls"],
                        help="features for --mode probe, one or more: the cls token (the paper's probe), the mean of "
                             "the patch tokens, or both concatenated (default: %(default)s)")
    parser.add_argument("--data-root", default="data", metavar="FOLDER",
                        help="folder that holds the datasets (default: %(default)s)")
    add_dataclass_flags(parser, FinetuneArgs, defaults=load_recipe(TABLE_RECIPE) if recipe is None else recipe,
                        skip=("seed",))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line, with the defaults of the recipe it names (``--recipe``)."""
    return parse_with_recipe(argv, FinetuneArgs, TABLE_RECIPE, build_parser)


def main(argv: list[str] | None = None) -> None:
    """``python -m mae_lesson.finetune``: expected failures exit with code 2 and one message, no traceback."""
    try:
        with command_line_errors():
            run_command_line(parse_args(argv))
    except KeyboardInterrupt:
        print("interrupted; results.json holds every number measured so far", file=sys.stderr)
        raise SystemExit(EXIT_SIGINT) from None


def run_command_line(ns: argparse.Namespace) -> None:
    """The work of :func:`main`: checks the values, the checkpoint and ``--out`` before loading any data."""
    ft_args = FinetuneArgs(**dataclass_values(FinetuneArgs, ns))
    if ns.probe_epochs < 1:
        raise ValueError(f"--probe-epochs must be at least 1, got {ns.probe_epochs}")
    check_device(ft_args.device)
    for seed in ns.seeds:
        check_seed(seed, "--seeds")
    if ns.mode == "table":
        print(results_table(ns.checkpoint, ns.out, ns.seeds, ft_args, ns.data_root, ns.probe_epochs, ns.overwrite))
        return
    if ns.mode == "probe":
        _probe(ns, ft_args)
        return
    _finetune_seeds(ns, ft_args)


def _finetune_seeds(ns: argparse.Namespace, ft_args: FinetuneArgs) -> None:
    """``--mode finetune`` / ``scratch``: one whole run per seed, each recorded in ``--out``/<mode>.json when it
    ends. Run again, the command skips the seeds recorded with these settings and continues a stopped run
    from the state it saved every 200 steps (``<mode>_seed<N>_state.pt``); ``--overwrite`` starts over."""
    folder = check_out_path(ns.out)
    mae = MAE.from_checkpoint(ns.checkpoint).float()  # --out and the checkpoint are checked before the data
    folder.mkdir(parents=True, exist_ok=True)
    lock, path = acquire_lock(folder), folder / f"{ns.mode}.json"
    try:
        if ns.overwrite:
            for old in [path, *folder.glob(f"{ns.mode}_seed*_state.pt")]:
                old.unlink(missing_ok=True)
        runs = json.loads(path.read_text())["runs"] if path.is_file() else []
        train, test = load_splits(mae.config, ns.data_root)
        for seed in ns.seeds:
            args = FinetuneArgs(**{**asdict(ft_args), "seed": seed})
            settings = run_settings(args, checkpoint=str(ns.checkpoint))
            if any(run["settings"] == settings for run in runs):
                print(f"{ns.mode} seed {seed}: already in {path}")
                continue
            res = finetune(None if ns.mode == "scratch" else mae, train, test, args, config=mae.config,
                           state_file=folder / f"{ns.mode}_seed{seed}_state.pt")
            runs.append({"seed": seed, "accuracy": res["accuracy"], "seconds": round(res["seconds"], 1),
                         "steps": res["steps"], "settings": settings})
            partial = path.with_name(path.name + ".part")  # a crash mid-write keeps the runs recorded before
            partial.write_text(json.dumps({"runs": runs}, indent=2))
            partial.replace(path)
            print(f"{ns.mode} seed {seed}: accuracy {res['accuracy']:.2%} in {res['seconds']:.0f} s "
                  f"({res['steps']} steps), recorded in {path}", flush=True)
    finally:
        release_lock(lock)


def _probe(ns: argparse.Namespace, ft_args: FinetuneArgs) -> None:
    """``--mode probe``: linear probe and kNN per ``--pool``, recorded in ``--out``/probe.json."""
    check_out_path(ns.out)
    mae = MAE.from_checkpoint(ns.checkpoint).float()  # --out and the checkpoint are checked before the data
    lock = claim_results_folder(ns.out, RESULT_FILES["probe"], ns.overwrite)
    try:
        train, test = load_splits(mae.config, ns.data_root)
        scores = {}
        for pool in ns.pool:
            ev = evaluate_checkpoint(mae, train, test, ns.probe_epochs, progress=ft_args.progress, pool=pool)
            scores[pool] = {"linear_probe": ev["linear_probe"], "knn": ev["knn"]}
            print(f"{pool} features: linear probe {ev['linear_probe']:.2%}, kNN {ev['knn']:.2%}", flush=True)
        record = {"checkpoint": str(ns.checkpoint), "probe_epochs": ns.probe_epochs, "scores": scores}
        (Path(ns.out) / "probe.json").write_text(json.dumps(record, indent=2))
    finally:
        release_lock(lock)

