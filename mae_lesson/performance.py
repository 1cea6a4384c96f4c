"""Speed choices kept out of the lesson's modules: which attention kernel a call takes.

``transformer.attention`` computes ``softmax(q k^T / sqrt(d)) v`` either through PyTorch's fused
kernel (``F.scaled_dot_product_attention``, SDPA) or as three plain ops; both give the same result
(tests/test_transformer.py holds them equal). :func:`use_fused_attn` picks one per call, in the
spirit of timm's ``use_fused_attn`` flag:

- ``set_attention_path("plain" | "sdpa")``, or the environment variable
  ``MAE_LESSON_ATTENTION=plain|sdpa``, forces a path (the call wins over the variable);
- ``auto`` (the default): SDPA on a GPU and for any dtype but fp32; fp32 on the CPU takes the path
  that was faster at the nearest shape in ``configs/cpu_attention.json``, which
  ``benchmarks/cpu_kernels.py`` measures. On the CPU the winner depends on the sequence length, the
  head width and the batch. A table, not a timing at run time, so that two runs with one seed take
  the same path and give the same numbers.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

CPU_ATTENTION_TABLE = Path(__file__).resolve().parent / "configs" / "cpu_attention.json"
ATTENTION_PATHS = ("auto", "plain", "sdpa")

_forced_path: str | None = None  # set_attention_path's choice; None: the environment variable decides


def set_attention_path(path: str | None) -> None:
    """Force ``"plain"`` or ``"sdpa"`` attention for every later call, ``"auto"`` for the table; ``None`` undoes it."""
    global _forced_path
    if path is not None and path not in ATTENTION_PATHS:
        raise ValueError(f"attention path {path!r}: choose one of {', '.join(ATTENTION_PATHS)}")
    _forced_path = path


def attention_path() -> str:
    """``auto``, or the path forced by :func:`set_attention_path` or ``MAE_LESSON_ATTENTION``."""
    if _forced_path is not None:
        return _forced_path
    path = os.environ.get("MAE_LESSON_ATTENTION", "auto").lower()
    if path not in ATTENTION_PATHS:
        raise ValueError(f"MAE_LESSON_ATTENTION={path!r}: choose one of {', '.join(ATTENTION_PATHS)}")
    return path


def _measured_shapes() -> tuple[tuple[float, float, float, bool], ...]:
    """``(log2 batch*heads, log2 tokens, log2 head width, plain was faster)`` per measured shape."""
    table = json.loads(CPU_ATTENTION_TABLE.read_text(encoding="utf-8"))
    return tuple((math.log2(row["batch_heads"]), math.log2(row["tokens"]), math.log2(row["head_dim"]),
                  row["faster"] == "plain") for row in table["shapes"])


_MEASURED_SHAPES = _measured_shapes()
_PLAIN_IS_FASTER: dict[tuple[int, int, int], bool] = {}  # the lookup's answers, by shape


def cpu_plain_is_faster(batch_heads: int, tokens: int, head_dim: int) -> bool:
    """Whether the plain ops beat SDPA at the nearest shape measured on the CPU.

    Distance in octaves; the batch counts a quarter as much as tokens and head width (it
    scales both paths alike, so it moves the balance least).
    """
    shape = (batch_heads, tokens, head_dim)
    if shape not in _PLAIN_IS_FASTER:
        point = (math.log2(batch_heads), math.log2(tokens), math.log2(head_dim))
        nearest = min(_MEASURED_SHAPES, key=lambda row: 0.25 * (row[0] - point[0]) ** 2
                      + (row[1] - point[1]) ** 2 + (row[2] - point[2]) ** 2)
        _PLAIN_IS_FASTER[shape] = nearest[3]
    return _PLAIN_IS_FASTER[shape]


def use_fused_attn(q: torch.Tensor) -> bool:
    """Whether attention on queries ``q`` ``[N, heads, T, d]`` takes SDPA (else the plain ops)."""
    path = attention_path()
    if path != "auto":
        return path == "sdpa"
    if q.device.type != "cpu" or q.dtype != torch.float32:
        return True
    n, heads, tokens, head_dim = q.shape
    return not cpu_plain_is_faster(n * heads, tokens, head_dim)
