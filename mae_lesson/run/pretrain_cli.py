"""The command line of pretraining, ``python -m mae_lesson.pretrain``: a flag per :class:`PretrainArgs` field.

``--recipe`` names the recipe whose values are the flags' defaults, ``--set key=value`` changes a model
config key, and :func:`main` turns an expected failure into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist
import yaml

from ..cli import add_dataclass_flags, dataclass_values, parse_with_recipe
from ..errors import EXIT_SIGINT, EXIT_SIGTERM, command_line_errors
from ..stopping import TrainingInterrupted
from .args import DEFAULT_RECIPE, PretrainArgs, model_config, resume_command
from .pretraining import pretrain

DESCRIPTION = "Self-supervised pretraining: ``python -m mae_lesson.pretrain`` or :func:`pretrain`."

def build_parser(recipe: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The command line of ``python -m mae_lesson.pretrain``: a flag per :class:`PretrainArgs` field."""
    parser = argparse.ArgumentParser(
        prog="python -m mae_lesson.pretrain", description=DESCRIPTION,
        epilog=f"Ctrl-C or SIGTERM saves checkpoint.pt after the current step and prints the command that "
               f"continues the run (exit code {EXIT_SIGINT} / {EXIT_SIGTERM}); an expected failure prints one "
               f"error line (exit code 2).")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="NAME_OR_YAML",
                        help="training recipe whose values are the defaults of the flags below "
                             "(bundled: pretrain_cpu) (default: %(default)s)")
    add_dataclass_flags(parser, PretrainArgs, defaults=recipe, skip=("overrides",))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a model config key (a YAML value), e.g. --set mask_ratio=0.5 "
                             "--set norm_pix_loss=true (default: none, the config's values)")
    parser.add_argument("--quick", action="store_true",
                        help="a few-minute run: 1 epoch capped at 150 steps, 0.2 warm-up epochs (default: off)")
    return parser


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (YAML values) -> ``{key: value}``; refuses a malformed item."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r} needs KEY=VALUE, e.g. --set mask_ratio=0.5")
        try:
            overrides[key.strip()] = _number_or_text(value, yaml.safe_load(value))
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise ValueError(f"--set {item}: {value!r} is not a valid value ({problem}); write a number, "
                             f"true/false, a word or a list such as [28, 28]") from None
    return overrides


def _number_or_text(raw: str, parsed: Any) -> Any:
    """A number YAML 1.1 reads as text (``1e-1``: no dot) is the number; quoted text stays text."""
    if isinstance(parsed, str) and parsed == raw.strip():
        try:
            number = float(parsed)
        except ValueError:
            return parsed
        if math.isfinite(number):
            return int(parsed) if parsed.lstrip("+-").isdigit() else number
    return parsed


def parse_args(argv: list[str] | None = None) -> PretrainArgs:
    """Command-line flags mirror :class:`PretrainArgs` (``--batch-size``, ``--set key=value``)."""
    ns = parse_with_recipe(argv, PretrainArgs, DEFAULT_RECIPE, build_parser)
    args = PretrainArgs(**dataclass_values(PretrainArgs, ns), overrides=parse_overrides(ns.set))
    if ns.quick:
        args = dataclasses.replace(args, epochs=1, max_steps=args.max_steps or 150, warmup_epochs=0.2)
    model_config(args)  # a bad --config or --set fails here, before anything is loaded
    return args


def _stopped_at_once(args: PretrainArgs | None) -> str:
    """What a Ctrl-C that stopped at once (before training, or a second one) left: the checkpoint if there is one."""
    ckpt = Path(args.out) / "checkpoint.pt" if args is not None else None
    if ckpt is None or not ckpt.is_file():
        return "stopped at once; no checkpoint was saved in this folder, so there is nothing to resume"
    return (f"stopped at once, without saving; {ckpt} holds the run as of its last save. Continue with:\n"
            f"  {resume_command(args)}")


def main(argv: list[str] | None = None) -> None:
    """``python -m mae_lesson.pretrain``: expected failures exit with code 2 and one message, no traceback.

    Under torchrun each process leaves with ``os._exit`` once the process group is destroyed and its
    output flushed: CI once saw rank 0 abort while the interpreter shut down ("terminate called without
    an active exception", SIGABRT) after a run had finished and printed ``done``, and torchrun then
    reported the finished run as failed. Nothing is left to write at that point, so skipping Python's
    shutdown loses nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        _main(argv)
        return
    try:
        _main(argv)
        code = 0
    except SystemExit as leaving:
        code = _exit_code(leaving)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(leaving: SystemExit) -> int:
    """The status a ``SystemExit`` asks for: ``None`` is 0, a message is printed and gives 1 (as Python does)."""
    if leaving.code is None or isinstance(leaving.code, int):
        return leaving.code or 0
    print(leaving.code, file=sys.stderr)
    return 1


def _main(argv: list[str] | None) -> None:
    """Parse, pretrain, and turn a stop or an expected failure into its exit code."""
    args = None
    try:
        with command_line_errors():
            args = parse_args(argv)
            out = pretrain(args)
    except TrainingInterrupted as stop:
        if int(os.environ.get("RANK", "0")) == 0:
            print(str(stop), file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            print(_stopped_at_once(args), file=sys.stderr)
        raise SystemExit(EXIT_SIGINT) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: run folder {out} (model.pt, metrics.jsonl, loss_curve.png, recon_epoch*.png)")

