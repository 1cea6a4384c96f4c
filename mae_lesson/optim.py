"""The official optimisation recipe: AdamW without decay on biases/norms/tables, warm-up + cosine."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# Position tables and tokens are not decayed (official: skip 1-D params and these names).
NO_DECAY_NAMES = ("pos_embed", "decoder_pos_embed", "cls_token", "mask_token")


def param_groups(model: nn.Module, weight_decay: float, layer_scales: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Parameter groups: weight decay on matrices only; optional per-parameter lr scale.

    Args:
        weight_decay: applied to weights of linear/conv layers (``ndim > 1``).
        layer_scales: parameter name -> lr multiplier (layer-wise lr decay in fine-tuning).
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = 0.0 if param.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES else weight_decay
        scale = (layer_scales or {}).get(name, 1.0)
        groups.setdefault((decay, scale), []).append(param)
    return [{"params": ps, "weight_decay": wd, "lr_scale": sc} for (wd, sc), ps in groups.items()]


def adamw(groups: list[dict[str, Any]], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over ``groups`` (from :func:`param_groups`), fused into one kernel where torch has one.

    The fused kernel (CUDA, and the CPU since torch 2.4) computes the same update as the default
    per-tensor loop to float rounding (tests/test_optim.py), 3-4x faster on the CPU
    (benchmarks/cpu_kernels.md). Older torch builds without it get the default loop.
    """
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except RuntimeError:  # "fused=True requires ... supported devices": no fused kernel here
        return torch.optim.AdamW(groups, lr=lr, betas=betas)


def scaled_lr(blr: float, effective_batch: int) -> float:
    """The linear scaling rule: ``lr = blr * effective_batch / 256``."""
    return blr * effective_batch / 256


class WarmupCosine:
    """Per-step linear warm-up, then a half-cycle cosine from ``base_lr`` down to ``min_lr``.

    Keeps its own step so it checkpoints as plain data (``state_dict``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int,
                 warmup_steps: int, min_lr: float = 0.0) -> None:
        self.optimizer, self.base_lr, self.min_lr = optimizer, base_lr, min_lr
        self.total_steps, self.warmup_steps = max(1, total_steps), warmup_steps
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _apply(self) -> None:
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        return self.lr_at(self.step_count)

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "base_lr": self.base_lr, "min_lr": self.min_lr,
                "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self._apply()
