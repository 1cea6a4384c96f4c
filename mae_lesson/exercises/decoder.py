"""Checkers for notebook 04 (decoder): un-shuffling with ``ids_restore`` and ``forward_decoder``."""

from __future__ import annotations

from typing import Callable

import torch

from ..config import Config
from ..masking import random_masking
from ..model import MAE
from ._feedback import (
    ExerciseError,
    call_learner,
    checker,
    diagnose,
    expect_shape,
    passed,
)


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# ------------------------------------------------------------------------------ un-shuffle
@checker("unshuffle")
def check_unshuffle(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(x_visible, mask_token, ids_restore)`` -> ``[N, L, D]`` tokens back in image order.

    ``x_visible`` ``[N, L_keep, D]`` are the kept tokens in shuffled order (no cls token);
    ``mask_token`` is ``[1, 1, D]``.
    """
    gen = torch.Generator().manual_seed(0)
    n, length, dim, ratio = 2, 16, 6, 0.75
    x = torch.randn(n, length, dim, generator=gen)
    x_visible, _, ids_restore = random_masking(x, ratio, torch.rand(n, length, generator=gen))
    keep = x_visible.shape[1]
    mask_token = torch.randn(1, 1, dim, generator=gen)
    shuffled = torch.cat([x_visible, mask_token.expand(n, length - keep, -1)], dim=1)
    expected = _gather(shuffled, ids_restore)
    where = f"unshuffle(x_visible {[n, keep, dim]}, mask_token {[1, 1, dim]}, ids_restore {[n, length]})"
    got = call_learner(fn, "unshuffle", x_visible.clone(), mask_token.clone(), ids_restore.clone())
    expect_shape(where, got, expected.shape,
                 hint=f"{keep} visible tokens + {length - keep} copies of the mask token = L = {length} tokens")
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    swapped = torch.cat([mask_token.expand(n, length - keep, -1), x_visible], dim=1)
    diagnose(where, got, expected, [
        (shuffled, "the tokens are still in shuffled order (visible first, then mask tokens): un-shuffle "
                   "with torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, D)) so token l sits at patch l"),
        (_gather(shuffled, ids_shuffle), "you gathered with ids_shuffle = argsort(ids_restore); gathering "
                                         "with ids_restore is what undoes the shuffle"),
        (_gather(swapped, ids_restore), "the mask tokens come first: the shuffled order is the kept tokens "
                                        "first, then the removed ones, so concatenate [x_visible, mask tokens]"),
    ], hint="x_ = cat([x_visible, mask tokens]); gather(x_, 1, ids_restore[..., None].expand(-1, -1, D))")
    return passed("unshuffle", f"{keep} visible tokens back at their patches, mask tokens at the other {length - keep}")


# ------------------------------------------------------------------------------ decoder
def _test_model() -> MAE:
    """A small MAE with random tokens and LayerNorm affines, so every skipped step shows."""
    cfg = Config(img_size=16, patch_size=4, in_chans=1, embed_dim=32, encoder_depth=1, encoder_num_heads=4,
                 decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2, norm_pix_loss=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MAE(cfg).eval()
        with torch.no_grad():
            model.cls_token.normal_(std=1.0)
            model.mask_token.normal_(std=1.0)
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.add_(torch.randn(p.shape) * 0.3)
    return model


def _decoder_variant(model: MAE, latent: torch.Tensor, ids_restore: torch.Tensor, *, unshuffle: bool = True,
                     pos: str = "decoder", norm: bool = True, keep_cls: bool = True) -> torch.Tensor:
    """forward_decoder with one step changed, to recognise a learner's mistake."""
    x = model.decoder_embed(latent)
    n, t, dim = x.shape
    length = ids_restore.shape[1]
    x_ = torch.cat([x[:, 1:, :], model.mask_token.expand(n, length + 1 - t, -1)], dim=1)
    if unshuffle:
        x_ = _gather(x_, ids_restore)
    if keep_cls:
        x = torch.cat([x[:, :1, :], x_], dim=1)
        if pos == "decoder":
            x = x + model.decoder_pos_embed
    else:
        x = x_ + model.decoder_pos_embed[:, 1:, :]
    for blk in model.decoder_blocks:
        x = blk(x)
    if norm:
        x = model.decoder_norm(x)
    x = model.decoder_pred(x)
    return x[:, 1:, :] if keep_cls else x


@checker("forward_decoder")
def check_forward_decoder(fn: Callable[[MAE, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(model, latent, ids_restore)`` -> ``pred [N, L, p*p*C]`` as ``MAE.forward_decoder``."""
    model = _test_model()
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randn(2, 1, 16, 16, generator=gen)
    noise = torch.rand(2, 16, generator=gen)
    with torch.no_grad():
        latent, _, ids_restore = model.forward_encoder(imgs, 0.75, noise)
        expected = model.forward_decoder(latent, ids_restore)
    n, length, out_dim = expected.shape
    where = f"forward_decoder(model, latent {list(latent.shape)}, ids_restore {list(ids_restore.shape)})"
    got = call_learner(fn, "forward_decoder", model, latent.clone(), ids_restore.clone())
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (n, length + 1, out_dim):
        raise ExerciseError(
            f"{where}: expected pred of shape {[n, length, out_dim]}, got {list(got.shape)}: drop the cls "
            f"token's prediction, return pred[:, 1:, :]"
        )
    expect_shape(f"{where}: pred", got, expected.shape,
                 hint=f"one prediction of p*p*C = {out_dim} pixel values for each of the L = {length} patches")
    with torch.no_grad():
        v = lambda **kw: _decoder_variant(model, latent, ids_restore, **kw)  # noqa: E731
        mistakes = [
            (v(unshuffle=False), "the tokens were not un-shuffled with ids_restore: each token got the position "
                                 "embedding (and the prediction slot) of the wrong patch"),
            (v(pos="none"), "decoder_pos_embed is missing: the mask tokens are all identical, only the position "
                            "embedding tells each one which patch to predict"),
            (v(norm=False), "decoder_norm is missing: apply it after the decoder blocks, before decoder_pred"),
            (v(keep_cls=False), "the cls token was dropped before the decoder blocks: keep it through the blocks "
                                "(the official decoder does) and drop it only from the prediction"),
        ]
    diagnose(f"{where}: pred", got, expected, mistakes,
              hint="decoder_embed -> append mask tokens -> un-shuffle -> re-attach cls -> + decoder_pos_embed "
                   "-> decoder_blocks -> decoder_norm -> decoder_pred -> drop cls")
    return passed("forward_decoder", f"pred {[n, length, out_dim]} equals MAE.forward_decoder")
