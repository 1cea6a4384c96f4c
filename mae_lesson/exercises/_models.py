"""The tiny test models the checkers build, made by one factory so that every checker runs in seconds on a CPU.

All of them see 16x16 grey images cut into 4x4 patches (16 patches); a checker overrides only what its
exercise needs (widths, depths, mask ratio, channels). Weights are seeded, so a check is deterministic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..classifier import ViTClassifier
from ..config import Config
from ..model import MAE
from ..optim import WarmupCosine, param_groups
from ..transformer import Block

TINY = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "encoder_depth": 1, "encoder_num_heads": 2,
        "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}

# Notebook 07's encoder: wider and deeper, with the normalisation a classifier's data carries.
CHECK_CONFIG = {**TINY, "embed_dim": 32, "encoder_depth": 2, "norm_mean": [0.5], "norm_std": [0.25]}


def tiny_config(**overrides: Any) -> Config:
    """:data:`TINY` with ``overrides`` (any :class:`~mae_lesson.config.Config` key)."""
    return Config({**TINY, **overrides})


def _randomise(model: MAE) -> None:
    """Random cls and mask tokens and LayerNorm affines, so a skipped token or norm changes the output."""
    with torch.no_grad():
        model.cls_token.normal_(std=1.0)
        model.mask_token.normal_(std=1.0)
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn(p.shape) * 0.3)


def tiny_mae(seed: int = 0, *, eval: bool = True, randomise: bool = False, keep_rng: bool = True,
             **overrides: Any) -> MAE:
    """A tiny seeded :class:`~mae_lesson.model.MAE`.

    Args:
        seed: ``torch.manual_seed`` before the weights are drawn.
        eval: return the model in eval mode (a training check keeps it in train mode).
        randomise: random tokens and LayerNorm affines (see :func:`_randomise`).
        keep_rng: leave the global random state as it was (``False`` consumes it, as a training run does).
        overrides: :func:`tiny_config` keys.
    """
    with torch.random.fork_rng(devices=[], enabled=keep_rng):
        torch.manual_seed(seed)
        model = MAE(tiny_config(**overrides))
        if eval:
            model.eval()
        if randomise:
            _randomise(model)
    return model


def tiny_training(seed: int = 0, total_steps: int = 6) -> tuple[MAE, torch.optim.Optimizer, WarmupCosine]:
    """A tiny seeded MAE in train mode with the engine's optimiser (AdamW, betas 0.9/0.95, decay groups) and
    schedule (warm-up 2 steps); consumes the global random state, as a training run does."""
    model = tiny_mae(seed, eval=False, keep_rng=False, mask_ratio=0.75)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-2, betas=(0.9, 0.95))
    return model, optimizer, WarmupCosine(optimizer, 1e-2, total_steps=total_steps, warmup_steps=2)


def tiny_classifier(seed: int = 0, num_classes: int = 3, **overrides: Any) -> ViTClassifier:
    """A tiny seeded :class:`~mae_lesson.classifier.ViTClassifier` (no drop-path), in train mode."""
    torch.manual_seed(seed)
    return ViTClassifier(tiny_config(**overrides), num_classes=num_classes, drop_path=0.0)


def random_block(dim: int = 16, heads: int = 2, seed: int = 0) -> Block:
    """A transformer block in eval mode whose every parameter (LayerNorm ones included) is random, so each
    mistake in a block's forward shows; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        block = Block(dim, heads).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 and p.shape[0] == dim else 0.0))
    return block


def parameters_of(model: nn.Module) -> torch.Tensor:
    """Every parameter of ``model``, detached and flattened into one vector (to compare two trained copies)."""
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the checkers' small training loops on one thread: tensors of a few hundred numbers gain
    nothing from more, and on a busy machine extra threads spin waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
