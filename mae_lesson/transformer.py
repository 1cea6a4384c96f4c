"""The pre-norm ViT block: multi-head self-attention and an MLP, each with a residual.

Parameter names match timm's ``Block`` (``norm1, attn.qkv, attn.proj, norm2, mlp.fc1,
mlp.fc2``), which the official MAE uses, so official checkpoints load unchanged.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .performance import use_fused_attn

# Every LayerNorm in MAE uses eps 1e-6 (the official models pass this norm_layer).
LayerNorm = partial(nn.LayerNorm, eps=1e-6)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` as three plain ops; ``[N, heads, T, d]`` tensors."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # [N, heads, T, T]
    return scores.softmax(dim=-1) @ v


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``[N, heads, T, d]`` tensors.

    PyTorch's fused kernel (SDPA) and :func:`plain_attention` give the same result; which one is
    faster depends on the device and the shape, and :func:`mae_lesson.performance.use_fused_attn` says.
    """
    if use_fused_attn(q):
        return F.scaled_dot_product_attention(q, k, v)
    return plain_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def split_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[N, T, D]`` -> q, k, v, each ``[N, heads, T, D/heads]``, from the one fused projection."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, D]`` -> ``[N, T, D]``."""
        n, t, d = x.shape
        q, k, v = self.split_qkv(x)  # each [N, heads, T, D/heads]
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
