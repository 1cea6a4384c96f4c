"""Checker for notebook 08 (going further): the analytic FLOPs of one MAE forward pass.

Convention (what ``torch.utils.flop_counter.FlopCounterMode`` counts): a matrix product of
``[m, k] @ [k, n]`` costs ``2 * m * k * n`` FLOPs (a multiply-add is two); LayerNorm, GELU,
softmax, masking and the loss are left out. For one image with ``L`` patches of ``P = p*p*C``
values, ``L_keep = int(L * (1 - mask_ratio))`` visible, and a block of width ``D`` on ``T`` tokens::

    block(T, D) = 2*T*D*3D (qkv) + 2*T*T*D (q k^T) + 2*T*T*D (attn v) + 2*T*D*D (proj)
                  + 2 * 2*T*D*(r*D) (MLP, hidden r*D)
    forward     = 2*L*P*D                          patch_embed (on every patch, before masking)
                + depth * block(1 + L_keep, D)     encoder: cls + visible patches
                + 2*(1 + L_keep)*D*Dd              decoder_embed
                + decoder_depth * block(1 + L, Dd) decoder: cls + every patch
                + 2*L*Dd*P                         decoder_pred (cls dropped)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .. import flops
from ..config import Config
from ..masking import num_kept
from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import Mistake, fail, judge


def forward_flops(config: Mapping[str, Any], mask_ratio: float | None = None, *, _variant: str = "") -> int:
    """FLOPs of ``MAE(config)(imgs)`` for one image (``mae_lesson.flops``), or, with ``_variant``,
    the count a learner gets with that classic mistake (the names of ``MISTAKES``' rows)."""
    cfg = config if isinstance(config, Config) else Config(dict(config))
    if not _variant:
        return flops.forward_flops(cfg, 1, mask_ratio)
    return _mistaken_flops(cfg, mask_ratio, _variant)


def _mistaken_flops(cfg: Config, mask_ratio: float | None, _variant: str) -> int:
    """``mae_lesson.flops``'s count with one mistake switched on: wrong token counts or a block missing a part."""
    ratio = cfg.mask_ratio if mask_ratio is None else mask_ratio
    grid_h, grid_w = cfg.grid_size
    length = grid_h * grid_w
    keep = num_kept(length, ratio)
    cls = 0 if _variant == "no_cls" else 1
    left_out = {"no_attention": ("scores", "weighted_values"), "attention_once": ("weighted_values",),
                "no_mlp": ("mlp",)}.get(_variant, ())

    def block(tokens: int, dim: int, mlp_ratio: float) -> int:
        parts = flops.block_flops_by_part(tokens, dim, mlp_ratio)
        return sum(v for k, v in parts.items() if k not in left_out)

    parts = flops.flops_by_part(
        cfg,
        embedded=keep if _variant == "embed_visible" else length,
        encoder_tokens=(length if _variant == "no_masking" else keep) + cls,
        decoder_tokens=(keep if _variant == "decoder_visible" else length) + cls,
        block=block,
    )
    if _variant == "blocks_only":
        return parts["encoder"] + parts["decoder"]
    total = sum(parts.values())
    return total // 2 if _variant == "macs" else total


def _counted(variant: str, message: str) -> Mistake:
    """A row: the count with ``variant`` switched on, for the case (config, mask_ratio)."""
    return Mistake(variant, lambda c: forward_flops(c[0], c[1], _variant=variant), message)


# The case: (config, mask_ratio).
MISTAKES = (
    _counted("macs", "multiply-adds (MACs): a multiply-add is 2 FLOPs, so [m, k] @ [k, n] costs 2*m*k*n"),
    _counted("no_masking", "the encoder on all L patches: it sees only the 1 + L_keep tokens left after masking"),
    _counted("no_cls", "no cls token: the encoder runs on 1 + L_keep tokens and the decoder on 1 + L"),
    _counted("no_attention", "no attention products: q k^T and attn v cost 2*T*T*D each per block"),
    _counted("attention_once", "only one of the two attention products: q k^T and attn v cost 2*T*T*D each"),
    _counted("no_mlp", "no MLP: each block also has fc1 (D -> r*D) and fc2 (r*D -> D), 2 * 2*T*D*r*D"),
    _counted("decoder_visible", "the decoder on the visible tokens only: it runs on cls + every patch (mask tokens included)"),
    _counted("embed_visible", "patch_embed on the visible patches only: the official model embeds all L patches, then masks"),
    _counted("blocks_only", "the blocks only: add patch_embed (2*L*P*D), decoder_embed (2*(1 + L_keep)*D*Dd) and "
             "decoder_pred (2*L*Dd*P)"),
)


@checker("forward_flops")
def check_forward_flops(fn: Callable[[Config, float], float]) -> bool:
    """Check ``fn(config, mask_ratio)`` -> FLOPs of one image's forward (see the module docstring)."""
    cases = [("fashion_mnist_tiny", 0.75), ("mae_base", 0.75), ("mae_large", 0.75), ("mae_huge", 0.75),
             ("mae_base", 0.0), ("fashion_mnist_tiny", 0.5)]
    for name, ratio in cases:
        cfg = Config.from_file(name)
        where = f"forward_flops(Config.from_file({name!r}), mask_ratio={ratio})"
        got = call_learner(fn, "my_forward_flops", cfg, ratio)
        if hasattr(got, "item"):
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise ExerciseError(f"{where}: expected a number of FLOPs, got {type(got).__name__}")
        expected = forward_flops(cfg, ratio)
        said = f"{where}: expected {expected:,} ({expected / 1e9:.3f} GFLOPs), got {got:,.0f} ({got / 1e9:.3f} GFLOPs)"
        judge(where, got, expected, MISTAKES, (cfg, ratio), matches=lambda a, b: abs(a - b) <= 1e-9 * expected,
              found=lambda m: f"{said}. You counted {m}", differs=lambda: fail(f"{said}; ratio got/expected = {got / expected:.4f}"))
    return passed("forward_flops", "patch_embed + encoder on visible tokens + decoder on all tokens")
