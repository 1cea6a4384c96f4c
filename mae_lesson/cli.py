"""Command lines from dataclasses: one flag per field, with its help text, default and unit.

``PretrainArgs`` and ``FinetuneArgs`` describe a run; their command lines are generated here, so
a new field is a new flag with no second list to keep in step.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Callable, Iterable, Mapping

import torch

from .bundled import load_recipe


def arg_field(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field whose command-line flag gets ``help`` (and ``metavar=...`` if given).

    Range keywords, checked by :func:`check_fields`: ``at_least=N``, ``at_most=N``, ``positive=True``,
    ``non_negative=True``, ``interval="(0, 1]"`` (brackets as in maths) and ``choices=(...)``;
    ``why={"at_most": "..."}`` adds a reason to one rule's message. ``None`` (an optional flag left
    off) is not checked.
    """
    unknown = set(metadata) - {"metavar", "why", *_RULES}
    if unknown:
        raise TypeError(f"arg_field got {', '.join(sorted(unknown))}; its keywords are metavar, why, "
                        f"{', '.join(_RULES)}")
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _flag_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; plain types pass through."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, defaults: Mapping[str, Any] | None = None,
                        skip: Iterable[str] = ()) -> None:
    """Add ``--field-name`` for every field of the dataclass ``cls``.

    Booleans become ``--name/--no-name``; ``defaults`` replaces the dataclass defaults (a recipe);
    the help text is the field's ``metadata["help"]`` followed by its default.
    """
    hints = typing.get_type_hints(cls)
    defaults = {**{f.name: f.default for f in dataclasses.fields(cls)
                   if f.default is not dataclasses.MISSING}, **(defaults or {})}
    skipped = set(skip)
    for f in dataclasses.fields(cls):
        if f.name in skipped or f.name not in defaults:
            continue
        flag, default = "--" + f.name.replace("_", "-"), defaults[f.name]
        text = f"{f.metadata.get('help', '')} (default: %(default)s)".strip()
        if _flag_type(hints[f.name]) is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            parser.add_argument(flag, type=_flag_type(hints[f.name]), default=default, help=text,
                                metavar=f.metadata.get("metavar"))


def _type_name(kind: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string",
            dict: "a mapping"}.get(kind, getattr(kind, "__name__", str(kind)))


def _in_interval(value: float, interval: str) -> bool:
    """``0.5`` is in ``"(0, 1]"``: a round bracket leaves its end out, a square one keeps it."""
    low, high = (float(end) for end in interval[1:-1].split(","))
    above = value > low if interval[0] == "(" else value >= low
    below = value < high if interval[-1] == ")" else value <= high
    return above and below


# The range keywords of arg_field: (does value pass the bound?, what "--flag must be ..." says).
_RULES: dict[str, tuple[Callable[[Any, Any], bool], Callable[[Any], str]]] = {
    "at_least": (lambda value, bound: value >= bound, lambda bound: f"at least {bound}"),
    "at_most": (lambda value, bound: value <= bound, lambda bound: f"at most {bound}"),
    "positive": (lambda value, _: value > 0, lambda _: "positive"),
    "non_negative": (lambda value, _: value >= 0, lambda _: "0 or more"),
    "interval": (_in_interval, lambda interval: f"in {interval}"),
    "choices": (lambda value, choices: value in choices, lambda choices: f"one of {', '.join(choices)}"),
}


def check_field_types(obj: Any) -> None:
    """Refuse a dataclass field whose value has the wrong type (a bool is not a number, a string no bool).

    An ``int`` is accepted where a ``float`` is declared; nothing is converted from a string.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, annotation = getattr(obj, f.name), hints[f.name]
        optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)
        if value is None and optional:
            continue
        kind = _flag_type(annotation)
        kind = typing.get_origin(kind) or kind
        if kind is float:  # inf or nan is never a usable rate, length or norm
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(kind, type):
            ok = isinstance(value, kind)
        else:
            continue
        if not ok:
            raise ValueError(f"{type(obj).__name__}.{f.name} (--{f.name.replace('_', '-')}) must be "
                             f"{_type_name(kind)}{' or None' if optional else ''}, got {value!r}")


def check_fields(obj: Any) -> None:
    """Refuse a dataclass whose fields break their types or the range keywords of their :func:`arg_field`.

    Types first (every field), then ranges in field order; the message names the flag and what it
    must be, e.g. ``--batch-size must be at least 1, got 0``. A new field is checked by its metadata alone.
    """
    check_field_types(obj)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        for rule, bound in f.metadata.items():
            if rule not in _RULES:  # help, metavar, why
                continue
            passes, phrase = _RULES[rule]
            if not passes(value, bound):
                why = f" ({f.metadata['why'][rule]})" if rule in f.metadata.get("why", {}) else ""
                raise ValueError(f"--{f.name.replace('_', '-')} must be {phrase(bound)}{why}, got {value!r}")


def check_device(name: str, flag: str = "--device") -> None:
    """Refuse a device name torch does not know, or one this machine does not have, before anything is loaded."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"{flag} {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{flag} {name}: no CUDA GPU is available here (torch.cuda.is_available() is False); "
                         f"use {flag} cpu, or auto to take the best device there is")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"{flag} mps: Apple's MPS backend is not available here; use {flag} cpu, or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{flag} {name}: the course runs on cpu, cuda or mps")


def dataclass_values(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The parsed values of ``cls``'s fields (those the parser defines)."""
    return {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}


def check_recipe(cls: type, recipe: Mapping[str, Any], source: str) -> None:
    """Refuse a recipe that names a field ``cls`` does not have (a typo would otherwise be ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(recipe) - names)
    if unknown:
        raise ValueError(f"recipe {source} sets {', '.join(unknown)}, which {cls.__name__} does not have; "
                         f"valid names: {', '.join(sorted(names))}")


def parse_with_recipe(argv: list[str] | None, cls: type, default_recipe: str,
                      build_parser: Callable[[dict[str, Any]], argparse.ArgumentParser]) -> argparse.Namespace:
    """Parse ``argv`` in two passes: ``--recipe`` first, then every flag with that recipe's values as defaults.

    The recipe is checked against ``cls``'s fields before the flags are parsed, so a recipe with a
    misspelt name fails with the valid names rather than being ignored.
    """
    recipe_parser = argparse.ArgumentParser(add_help=False)
    recipe_parser.add_argument("--recipe", default=default_recipe)
    recipe_name = recipe_parser.parse_known_args(argv)[0].recipe
    recipe = load_recipe(recipe_name)
    check_recipe(cls, recipe, recipe_name)
    return build_parser(recipe).parse_args(argv)
