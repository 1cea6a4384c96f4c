"""Analytic FLOPs of MAE: the one formula the benchmark and notebook 08's checker use.

A matrix product ``[m, k] @ [k, n]`` costs ``2*m*k*n`` FLOPs (what
``torch.utils.flop_counter.FlopCounterMode`` counts); LayerNorm, GELU, softmax, masking, the
loss and the optimizer are left out. A training step is 3 forward passes (backward = 2 x forward).
"""

from __future__ import annotations

from typing import Callable

from .config import Config
from .masking import num_kept

FLOP_FORMULA = (
    "train step = 3 x forward (backward = 2 x forward); forward per image, counting 2*M*N*K per matmul: "
    "patch_embed 2*L*(p*p*C)*D; encoder on T_e = 1 + L_keep tokens, per block "
    "2*T_e*D^2*(3 + 1 + 2r) (qkv, proj, fc1, fc2) + 2*2*T_e^2*D (q k^T and attn v); decoder_embed 2*T_e*D*Dd; "
    "decoder on T_d = 1 + L tokens, per block 2*T_d*Dd^2*(4 + 2r) + 4*T_d^2*Dd; decoder_pred 2*L*Dd*(p*p*C). "
    "LayerNorm, GELU, softmax, loss and AdamW are not counted."
)


def block_flops_by_part(tokens: int, dim: int, mlp_ratio: float) -> dict[str, int]:
    """One transformer block on ``tokens`` tokens of width ``dim``, by matrix product."""
    hidden = int(dim * mlp_ratio)
    return {
        "qkv": 2 * tokens * dim * 3 * dim,
        "scores": 2 * tokens * tokens * dim,  # q k^T, every head together
        "weighted_values": 2 * tokens * tokens * dim,  # attn v
        "proj": 2 * tokens * dim * dim,
        "mlp": 2 * 2 * tokens * dim * hidden,  # fc1 and fc2
    }


def block_flops(tokens: int, dim: int, mlp_ratio: float) -> int:
    """One transformer block: ``24 T D^2 + 4 T^2 D`` for ``mlp_ratio`` 4 (see :func:`block_flops_by_part`)."""
    return sum(block_flops_by_part(tokens, dim, mlp_ratio).values())


def flops_by_part(
    cfg: Config, embedded: int, encoder_tokens: int, decoder_tokens: int,
    block: Callable[[int, int, float], int] = block_flops,
) -> dict[str, int]:
    """Matmul FLOPs of one image's forward pass for given token counts, by part.

    Args:
        cfg: the model's config. embedded: patches the patch embedding projects (``L``).
        encoder_tokens: tokens in the encoder blocks (``1 + L_keep``: cls + visible).
        decoder_tokens: tokens in the decoder blocks (``1 + L``: cls + every position).
        block: the count of one block (``block_flops``; notebook 08's checker swaps in a wrong one).
    """
    grid_h, grid_w = cfg.grid_size
    length = grid_h * grid_w
    d, dd, r = cfg.embed_dim, cfg.decoder_embed_dim, cfg.mlp_ratio
    patch = cfg.patch_size**2 * cfg.in_chans
    return {
        "patch_embed": 2 * embedded * patch * d,
        "encoder": cfg.encoder_depth * block(encoder_tokens, d, r),
        "decoder_embed": 2 * encoder_tokens * d * dd,
        "decoder": cfg.decoder_depth * block(decoder_tokens, dd, r),
        "decoder_pred": 2 * length * dd * patch,
    }


def forward_flops_by_part(cfg: Config, batch: int = 1, mask_ratio: float | None = None) -> dict[str, int]:
    """Matmul FLOPs of one forward pass of ``batch`` images at ``cfg.img_size``, by part."""
    grid_h, grid_w = cfg.grid_size
    length = grid_h * grid_w
    ratio = cfg.mask_ratio if mask_ratio is None else mask_ratio
    # Every patch is embedded; the encoder sees cls + the visible patches, the decoder cls + every patch.
    parts = flops_by_part(cfg, length, 1 + num_kept(length, ratio), 1 + length)
    return {k: int(v * batch) for k, v in parts.items()}


def forward_flops(cfg: Config, batch: int = 1, mask_ratio: float | None = None) -> int:
    """Total matmul FLOPs of one forward pass (see :func:`forward_flops_by_part`)."""
    return sum(forward_flops_by_part(cfg, batch, mask_ratio).values())


def train_step_flops(cfg: Config, batch: int) -> int:
    """Forward + backward of ``batch`` images: three forward passes."""
    return 3 * forward_flops(cfg, batch)


def encoder_flops(cfg: Config, batch: int, tokens: int) -> int:
    """Forward + backward matmul FLOPs of the encoder blocks on ``tokens`` tokens per image."""
    return 3 * cfg.encoder_depth * block_flops(tokens, cfg.embed_dim, cfg.mlp_ratio) * batch
