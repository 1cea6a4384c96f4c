"""Attention maps of the encoder: where the cls token looks, per head, and rolled out across blocks.

``Attention`` computes ``softmax(q k^T / sqrt(d)) v`` in one fused call (SDPA) and never returns
the weights, so :func:`attention_weights` recomputes them from the module's own ``qkv``
projection; :func:`attention_output` finishes the computation so a test can prove the
recomputed weights are the ones the block used. :func:`encoder_attention` collects them from
every block with forward pre-hooks, so the model runs its own, unchanged forward pass.

Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020)
follows attention through the blocks: each block's head-averaged weights are mixed half and
half with the identity (the residual connection carries a token's own state forward),
re-normalised, and multiplied from the first block to the last.

Attention says which tokens a token mixes in; it is not an explanation of the prediction (the
MLPs, the residual stream and the value vectors all change the result too).
"""

from __future__ import annotations

import torch
from torch import nn

from .model import MAE
from .transformer import Attention


def attention_weights(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """The weights an ``Attention`` module applies to its input.

    Args:
        attn: the module (``block.attn``).
        x: its input ``[N, T, D]`` (the block's input after ``norm1``).
    Returns:
        ``[N, heads, T, T]``; row ``i`` is how token ``i`` spreads its attention, each row sums to 1.
    """
    q, k, _ = attn.split_qkv(x)  # each [N, heads, T, D/heads]
    return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1)


def attention_output(attn: Attention, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``attn``'s output from given weights ``[N, heads, T, T]``: ``proj(weights @ v)``, ``[N, T, D]``.

    With ``weights = attention_weights(attn, x)`` this equals ``attn(x)``.
    """
    n, t, d = x.shape
    _, _, v = attn.split_qkv(x)  # [N, heads, T, D/heads]
    return attn.proj((weights @ v).transpose(1, 2).reshape(n, t, d))


@torch.no_grad()
def encoder_attention(model: nn.Module, imgs: torch.Tensor) -> list[torch.Tensor]:
    """Every encoder block's attention weights for whole (unmasked) images.

    Args:
        model: an :class:`MAE` (its encoder runs with nothing removed) or any model with
            ``blocks`` whose forward takes ``imgs`` (a ``ViTClassifier``).
        imgs: ``[N, C, H, W]``, normalised as the model expects.
    Returns:
        one ``[N, heads, 1 + L, 1 + L]`` tensor per block, first block first; token 0 is the cls
        token, tokens ``1..L`` the patches in image order (row by row).
    """
    if not hasattr(model, "blocks"):
        raise TypeError(f"encoder_attention needs a model with encoder blocks (an MAE or a ViTClassifier), "
                        f"got {type(model).__name__}")
    captured: list[torch.Tensor] = []
    hooks = [blk.attn.register_forward_pre_hook(lambda module, args: captured.append(attention_weights(module, args[0])))
             for blk in model.blocks]
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, MAE):
            grid_h, grid_w = model.check_images(imgs)
            length = grid_h * grid_w
            # Ascending noise keeps every patch in image order (nothing is removed at ratio 0).
            noise = torch.arange(length, dtype=torch.float32, device=imgs.device).expand(imgs.shape[0], length)
            model.forward_encoder(imgs, 0.0, noise=noise)
        else:
            model(imgs)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return captured


def cls_attention(weights: torch.Tensor) -> torch.Tensor:
    """The cls token's attention to each patch: ``[N, heads, 1 + L, 1 + L]`` -> ``[N, heads, L]``.

    The L values sum to less than 1: the rest is the cls token's attention to itself.
    """
    if weights.dim() != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"expected attention weights [N, heads, T, T], got shape {list(weights.shape)}")
    return weights[:, :, 0, 1:]


def attention_rollout(weights: list[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout across blocks (Abnar & Zuidema 2020).

    Args:
        weights: one ``[N, heads, T, T]`` per block, first block first (``encoder_attention``).
        head_fusion: how heads become one matrix: ``mean`` (the paper), ``max`` or ``min``.
    Returns:
        ``[N, T, T]``: row ``i`` is how much of token ``i``'s final state traces back to each input
        token; every row sums to 1.
    """
    if not weights:
        raise ValueError("attention_rollout needs the weights of at least one block")
    fuse = {"mean": lambda w: w.mean(dim=1), "max": lambda w: w.amax(dim=1), "min": lambda w: w.amin(dim=1)}
    if head_fusion not in fuse:
        raise ValueError(f"head_fusion must be one of {sorted(fuse)}, got {head_fusion!r}")
    n, _, t, _ = weights[0].shape
    eye = torch.eye(t, dtype=weights[0].dtype, device=weights[0].device)
    rollout = eye.expand(n, t, t)
    for w in weights:
        mixed = 0.5 * fuse[head_fusion](w) + 0.5 * eye  # the residual keeps half of each token's own state
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed @ rollout  # a later block reads the mixture the earlier ones made
    return rollout
