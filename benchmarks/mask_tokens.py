"""The paper's efficiency claim, timed: the encoder on every token (with mask tokens) against visible ones only.

Forward+backward of the encoder of one ``EncoderWithMaskTokens`` (``experiments/ablation_runs.py``,
the model the ablation sweep trains for "mask tokens in the encoder": removed patches replaced by a
learned token, as BEiT/SimMIM) on 1 + L tokens, against the same weights' ``MAE.forward_encoder``
on the 1 + L_keep visible tokens, interleaved over rounds; speedup = time(all) / time(visible).
``benchmarks.train_step`` runs it at each fully treated configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from benchmarks.common import encoder_flops, make_inputs, ratio_spread, summary, time_interleaved
from experiments.ablation_runs import EncoderWithMaskTokens
from mae_lesson import MAE, Config
from mae_lesson.masking import num_kept


@dataclass
class MaskTokenResult:
    """One configuration and batch: seconds per pass of each encoder, and their ratio over rounds."""

    config: str
    batch: int
    tokens_all: int  # 1 + L
    tokens_visible: int  # 1 + L_keep
    with_mask_tokens: dict[str, float]  # common.summary of the seconds per pass
    visible_only: dict[str, float]
    speedup_paired: float  # median over rounds of time(all) / time(visible)
    speedup_spread: dict[str, float]
    flop_ratio: float  # the analytic encoder FLOPs of all tokens over visible ones


def encoder_pass_fns(model: EncoderWithMaskTokens, imgs: torch.Tensor, noise: torch.Tensor,
                     mask_ratio: float) -> dict[str, Callable[[], None]]:
    """Forward+backward of the encoder on visible tokens only, and on every token with mask tokens.

    Args:
        imgs: ``[N, C, H, W]``; noise: ``[N, L]``, the same mask for both passes.
    """

    def visible() -> None:
        model.zero_grad(set_to_none=True)
        latent, _, _ = MAE.forward_encoder(model, imgs, mask_ratio, noise)  # [N, 1 + L_keep, D]
        latent.mean().backward()

    def with_mask_tokens() -> None:
        model.zero_grad(set_to_none=True)
        latent, _, _ = model.forward_encoder(imgs, mask_ratio, noise)  # [N, 1 + L, D]
        latent.mean().backward()

    return {"visible_only": visible, "with_mask_tokens": with_mask_tokens}


def measure(name: str, cfg: Config, batch: int, rounds: int, device: torch.device) -> MaskTokenResult:
    """Time both encoder passes of ``cfg`` at ``batch`` for ``rounds`` interleaved rounds (one untimed first)."""
    torch.manual_seed(0)
    model = EncoderWithMaskTokens(cfg).to(device).train()
    imgs, noise = make_inputs(cfg, batch, device)
    fns = encoder_pass_fns(model, imgs, noise, cfg.mask_ratio)
    for fn in fns.values():
        fn()
    times = time_interleaved(fns, rounds, device)
    gh, gw = cfg.grid_size
    length = gh * gw
    keep = num_kept(length, cfg.mask_ratio)
    speedup = ratio_spread(times["with_mask_tokens"], times["visible_only"])
    return MaskTokenResult(
        config=name, batch=batch, tokens_all=1 + length, tokens_visible=1 + keep,
        with_mask_tokens=summary(times["with_mask_tokens"], batch), visible_only=summary(times["visible_only"], batch),
        speedup_paired=speedup["median"], speedup_spread=speedup,
        flop_ratio=encoder_flops(cfg, 1, 1 + length) / encoder_flops(cfg, 1, 1 + keep))
