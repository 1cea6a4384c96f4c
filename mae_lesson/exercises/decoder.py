"""Checkers for notebook 04 (decoder): un-shuffling with ``ids_restore`` and ``forward_decoder``."""

from __future__ import annotations

from typing import Callable

import torch

from ..masking import random_masking
from ..model import MAE
from ._feedback import call_learner, checker, passed
from ._judge import Mistake, judge
from ._models import tiny_mae


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# ------------------------------------------------------------------------------ un-shuffle
def _tokens(c: dict, mask_first: bool = False) -> torch.Tensor:
    """The case's visible tokens and mask tokens concatenated, in shuffled order (or mask tokens first)."""
    x, ids_restore = c["x"], c["ids_restore"]
    tokens = c["token"].expand(x.shape[0], ids_restore.shape[1] - x.shape[1], -1)
    return torch.cat([tokens, x] if mask_first else [x, tokens], dim=1)


# The case: x_visible ``x``, the mask ``token`` and ``ids_restore``.
UNSHUFFLE_MISTAKES = (
    Mistake("still_shuffled", _tokens, "the tokens are still in shuffled order (visible first, then mask tokens): "
            "un-shuffle with torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, D)) so token l sits at patch l"),
    Mistake("ids_shuffle", lambda c: _gather(_tokens(c), torch.argsort(c["ids_restore"], dim=1)),
            "you gathered with ids_shuffle = argsort(ids_restore); gathering with ids_restore is what undoes the shuffle"),
    Mistake("mask_first", lambda c: _gather(_tokens(c, mask_first=True), c["ids_restore"]),
            "the mask tokens come first: the shuffled order is the kept tokens first, then the removed ones, so "
            "concatenate [x_visible, mask tokens]"),
)


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
    judge(where, got, expected, UNSHUFFLE_MISTAKES, {"x": x_visible, "token": mask_token, "ids_restore": ids_restore},
          atol=1e-5, rtol=1e-4, shape_hint=f"{keep} visible tokens + {length - keep} copies of the mask token = L = {length} tokens",
          hint="x_ = cat([x_visible, mask tokens]); gather(x_, 1, ids_restore[..., None].expand(-1, -1, D))")
    return passed("unshuffle", f"{keep} visible tokens back at their patches, mask tokens at the other {length - keep}")


# ------------------------------------------------------------------------------ decoder
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


def _decoder(**change: str | bool) -> Callable[[dict], torch.Tensor]:
    """A table row's wrong answer: :func:`_decoder_variant` with ``change`` on the case's model and inputs."""
    return lambda c: _decoder_variant(c["model"], c["latent"], c["ids_restore"], **change)


# The case: the model, its latent [N, 1 + L_keep, D] and ids_restore [N, L].
DECODER_MISTAKES = (
    Mistake("cls_kept", lambda c: [c["latent"].shape[0], c["ids_restore"].shape[1] + 1, c["model"].decoder_pred.out_features],
            "drop the cls token's prediction, return pred[:, 1:, :]", shape=True),
    Mistake("no_unshuffle", _decoder(unshuffle=False), "the tokens were not un-shuffled with ids_restore: each token got "
            "the position embedding (and the prediction slot) of the wrong patch"),
    Mistake("no_pos", _decoder(pos="none"), "decoder_pos_embed is missing: the mask tokens are all identical, only the "
            "position embedding tells each one which patch to predict"),
    Mistake("no_norm", _decoder(norm=False), "decoder_norm is missing: apply it after the decoder blocks, before decoder_pred"),
    Mistake("cls_dropped", _decoder(keep_cls=False), "the cls token was dropped before the decoder blocks: keep it "
            "through the blocks (the official decoder does) and drop it only from the prediction"),
)


@checker("forward_decoder")
def check_forward_decoder(fn: Callable[[MAE, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(model, latent, ids_restore)`` -> ``pred [N, L, p*p*C]`` as ``MAE.forward_decoder``."""
    model = tiny_mae(embed_dim=32, encoder_num_heads=4, decoder_depth=2, norm_pix_loss=False, randomise=True)
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randn(2, 1, 16, 16, generator=gen)
    noise = torch.rand(2, 16, generator=gen)
    with torch.no_grad():
        latent, _, ids_restore = model.forward_encoder(imgs, 0.75, noise)
        expected = model.forward_decoder(latent, ids_restore)
    n, length, out_dim = expected.shape
    where = f"forward_decoder(model, latent {list(latent.shape)}, ids_restore {list(ids_restore.shape)})"
    got = call_learner(fn, "forward_decoder", model, latent.clone(), ids_restore.clone())
    with torch.no_grad():
        judge(f"{where}: pred", got, expected, DECODER_MISTAKES, {"model": model, "latent": latent, "ids_restore": ids_restore},
              atol=1e-5, rtol=1e-4, found_shape=lambda m: f"{where}: expected pred of shape {[n, length, out_dim]}, got "
                                                          f"{list(got.shape)}: {m}",
              shape_hint=f"one prediction of p*p*C = {out_dim} pixel values for each of the L = {length} patches",
              hint="decoder_embed -> append mask tokens -> un-shuffle -> re-attach cls -> + decoder_pos_embed "
                   "-> decoder_blocks -> decoder_norm -> decoder_pred -> drop cls")
    return passed("forward_decoder", f"pred {[n, length, out_dim]} equals MAE.forward_decoder")
