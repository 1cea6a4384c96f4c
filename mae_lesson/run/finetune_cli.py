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
from ..finetuning import FinetuneArgs, finetune
from ..loader import check_seed
from ..model import MAE
from ..pretrained import pretrained_path
from ..results import evaluate_checkpoint, load_splits, results_table
from ..runfolder import RESULT_FILES, check_out_path, claim_results_folder, release_lock

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
                             "finetune / scratch: fine-tune the checkpoint / the same ViT from random weights "
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
    mae = MAE.from_checkpoint(ns.checkpoint).float()
    train, test = load_splits(mae.config, ns.data_root)
    for seed in ns.seeds:
        args = FinetuneArgs(**{**asdict(ft_args), "seed": seed})
        res = finetune(None if ns.mode == "scratch" else mae, train, test, args, config=mae.config)
        print(f"{ns.mode} seed {seed}: accuracy {res['accuracy']:.2%} in {res['seconds']:.0f} s ({res['steps']} steps)")


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

