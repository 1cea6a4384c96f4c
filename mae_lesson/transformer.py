"""The pre-norm ViT block: multi-head self-attention and an MLP, each with a residual.

Parameter names match timm's ``Block`` (``norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
mlp.fc2``), which the official MAE uses, so official checkpoints load unchanged.
"""

from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Every LayerNorm in MAE uses eps 1e-6 (the official models pass this norm_layer).
LayerNorm = partial(nn.LayerNorm, eps=1e-6)


# On the CPU, whether PyTorch's fused attention kernel (SDPA) or the three plain ops are faster
# depends on the sequence length, the head width and the batch. benchmarks/cpu_kernels.py
# measures both per shape into this table; a CPU call takes the path that was faster at the
# nearest measured shape. A table, not a timing at run time, so that two runs with one seed
# take the same path and give the same numbers. MAE_LESSON_ATTENTION=plain|sdpa forces a path.
CPU_ATTENTION_TABLE = Path(__file__).resolve().parent / "configs" / "cpu_attention.json"
ATTENTION_PATHS = ("auto", "plain", "sdpa")


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` as three plain ops; ``[N, heads, T, d]`` tensors."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # [N, heads, T, T]
    return scores.softmax(dim=-1) @ v


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same through PyTorch's fused kernel."""
    return F.scaled_dot_product_attention(q, k, v)


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


def attention_path() -> str:
    """``auto`` (the measured table), or the path forced by ``MAE_LESSON_ATTENTION``."""
    path = os.environ.get("MAE_LESSON_ATTENTION", "auto").lower()
    if path not in ATTENTION_PATHS:
        raise ValueError(f"MAE_LESSON_ATTENTION={path!r}: choose one of {', '.join(ATTENTION_PATHS)}")
    return path


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``[N, heads, T, d]`` tensors, by the faster path.

    CUDA and non-fp32 inputs always use SDPA; fp32 on the CPU uses the measured table.
    """
    path = attention_path()
    if path == "auto":
        on_cpu = q.device.type == "cpu" and q.dtype == torch.float32
        n, heads, tokens, head_dim = q.shape
        path = "plain" if on_cpu and cpu_plain_is_faster(n * heads, tokens, head_dim) else "sdpa"
    return plain_attention(q, k, v) if path == "plain" else sdpa_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (attention path: see ``attention``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, D]`` -> ``[N, T, D]``."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [N, heads, T, D/heads]
        x = attention(q, k, v)  # softmax(q k^T / sqrt(D/heads)) v, [N, heads, T, D/heads]
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """Two linear layers with GELU between: ``D -> mlp_ratio * D -> D``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training (fine-tuning)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        survive = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * survive / keep


class Block(nn.Module):
    """``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, D]`` -> ``[N, T, D]``."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
