"""The learner's passed functions kept as files: :func:`save` writes one to ``my_mae/<name>.py``, :func:`mine` loads it back.

The file half of :mod:`.carry`, apart so that ``use()`` (in :mod:`._feedback`) can save without importing the
checkers that :mod:`.carry` falls back to.
"""

from __future__ import annotations

import importlib.util
import inspect
import linecache
import os
from pathlib import Path
from typing import Any, Callable

# The pieces notebook 05 composes (carry.REFERENCES holds the reference of each); inside a saved file each
# other piece's name is the learner's own piece where one is saved.
PIECES = ("patchify", "random_masking", "forward_encoder", "unshuffle", "forward_decoder", "normalize_patches",
          "mae_loss")

# What a saved cell may use without importing it: the notebooks' usual imports.
PREAMBLE = '''"""my_{name}: the last version that passed its checker, saved by mae_lesson (edit the notebook, not this file)."""
import math
import statistics

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import mae_lesson
from mae_lesson import MAE, Config
from mae_lesson.exercises.carry import lazy_piece as _piece

# the learner's own earlier pieces where they exist, else the references
{pieces}

# ---- the notebook cell that defined my_{name} ----
'''


def folder() -> Path:
    """Where the learner's passed functions live: ``$MAE_LESSON_MY_MAE``, else ``my_mae`` beside the notebooks."""
    return Path(os.environ.get("MAE_LESSON_MY_MAE", "my_mae"))


def _cell_source(fn: Callable[..., Any]) -> str | None:
    """The whole cell (or file) that defined ``fn``: its helpers and imports come along."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    lines = linecache.getlines(code.co_filename)
    if lines:
        return "".join(lines)
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return None


def save(name: str, fn: Callable[..., Any]) -> Path | None:
    """Write the cell that defined ``my_<name>`` to ``my_mae/<name>.py``; None when its source is not readable."""
    source = _cell_source(fn)
    if source is None or f"def my_{name}(" not in source:
        return None
    others = "\n".join(f'{other} = _piece("{other}")' for other in PIECES if other != name)
    path = folder() / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PREAMBLE.format(name=name, pieces=others) + source, encoding="utf-8")
    return path


_LOADING: set[str] = set()  # pieces being loaded now: a saved file that asks for itself gets the reference


def mine(name: str) -> Callable[..., Any] | None:
    """The learner's saved ``my_<name>``, or None (none saved, or the file no longer imports)."""
    path = folder() / f"{name}.py"
    if not path.is_file() or name in _LOADING:
        return None
    _LOADING.add(name)
    try:
        spec = importlib.util.spec_from_file_location(f"my_mae_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return getattr(module, f"my_{name}", None)
    except Exception:  # noqa: BLE001 - a saved cell that no longer runs falls back to the reference
        return None
    finally:
        _LOADING.discard(name)
