"""Notebook 05's "put it together": the reference pieces of notebooks 01-05 and the whole-forward checker.

Each notebook runs in its own kernel, so the functions a learner wrote in notebooks 01-04 are not
there in notebook 05. This module holds the reference solutions of those exercises, written out
from the official code (not by calling :mod:`mae_lesson`), so notebook 05 can compose them:

- :func:`patchify` (notebook 01), :func:`random_masking` (02), :func:`forward_encoder` (03),
  :func:`unshuffle` and :func:`forward_decoder` (04), :func:`normalize_patches` and
  :func:`mae_loss` (05).

:func:`check_mae_forward` checks a learner's ``my_mae_forward(model, imgs, noise) -> (loss, pred,
mask)`` against ``MAE.forward`` with the same weights and noise.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..model import MAE
from ._feedback import call_learner, checker, passed
from ._judge import Contract, Mistake, fail, judge, same
from ._models import tiny_mae


# ------------------------------------------------------------------- the pieces of 01-05
def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, L, p*p*C]``: patches row by row, each patch's values channel fastest."""
    n, c, hh, ww = imgs.shape
    h, w = hh // p, ww // p
    x = imgs.reshape(n, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def random_masking(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x [N, L, D]``, ``noise [N, L]`` -> ``x_masked [N, L_keep, D]``, ``mask [N, L]`` (1 = removed), ``ids_restore [N, L]``."""
    n, length, dim = x.shape
    len_keep = int(length * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)  # smallest noise first: those are kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    mask = torch.ones(n, length, device=x.device, dtype=x.dtype)
    mask[:, :len_keep] = 0
    return x_masked, torch.gather(mask, 1, ids_restore), ids_restore


def forward_encoder(model: MAE, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``imgs [N, C, H, W]`` -> ``latent [N, 1 + L_keep, D]``, ``mask [N, L]``, ``ids_restore [N, L]``."""
    x = model.patch_embed(imgs) + model.pos_embed[:, 1:, :]  # positions are added before masking
    x, mask, ids_restore = random_masking(x, mask_ratio, noise)
    cls = (model.cls_token + model.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    for blk in model.blocks:
        x = blk(x)
    return model.norm(x), mask, ids_restore


def unshuffle(x_visible: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """``x_visible [N, L_keep, D]``, ``mask_token [1, 1, D]`` -> ``[N, L, D]`` in image order."""
    n, keep, dim = x_visible.shape
    tokens = torch.cat([x_visible, mask_token.expand(n, ids_restore.shape[1] - keep, -1)], dim=1)
    return torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))


def forward_decoder(model: MAE, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """``latent [N, 1 + L_keep, D]``, ``ids_restore [N, L]`` -> ``pred [N, L, p*p*C]``."""
    x = model.decoder_embed(latent)
    x = torch.cat([x[:, :1, :], unshuffle(x[:, 1:, :], model.mask_token, ids_restore)], dim=1)
    x = x + model.decoder_pos_embed
    for blk in model.decoder_blocks:
        x = blk(x)
    return model.decoder_pred(model.decoder_norm(x))[:, 1:, :]  # drop the cls position


def normalize_patches(target: torch.Tensor) -> torch.Tensor:
    """``[N, L, p*p*C]`` -> each patch minus its mean, over sqrt(unbiased variance + 1e-6)."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + 1.0e-6) ** 0.5


def mae_loss(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool) -> torch.Tensor:
    """``target, pred [N, L, p*p*C]``, ``mask [N, L]`` (1 = removed) -> the scalar loss."""
    if norm_pix_loss:
        target = normalize_patches(target)
    loss = ((pred - target) ** 2).mean(dim=-1)  # [N, L]
    return (loss * mask).sum() / mask.sum()


# --------------------------------------------------------------------------- mae_forward
def _switched_off(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"model.{name} is switched off in this check: compose the forward from the pieces "
            f"(patchify, forward_encoder, forward_decoder, your loss) instead of calling the package's")
    return refuse


def _test_models() -> list[MAE]:
    """Two small models with different channels, mask ratios and loss targets (seeded weights)."""
    return [tiny_mae(seed, keep_rng=False, in_chans=chans, encoder_depth=2, mask_ratio=ratio, norm_pix_loss=norm)
            for seed, (chans, ratio, norm) in enumerate(((1, 0.6, True), (3, 0.75, False)))]


# The case: the model, imgs and MAE.forward's output (loss, pred, mask).
MAE_FORWARD_MISTAKES = (
    Mistake("norm_pix_loss_flipped",
            lambda c: mae_loss(patchify(c["imgs"], c["model"].patch_size), c["expected"]["pred"], c["expected"]["mask"],
                               not c["model"].config.norm_pix_loss),
            lambda c: f"use the model's setting, model.norm_pix_loss = {c['model'].config.norm_pix_loss}"),
)
_GRAD = ("expected a loss that requires grad (the model's weights do), got one with requires_grad=False: the forward "
         "pass runs under torch.no_grad() or the loss is detached; notebook 05 trains with loss.backward(), so build "
         "the loss with gradients on")


@checker("mae_forward")
def check_mae_forward(fn: Callable[[MAE, torch.Tensor, torch.Tensor], tuple]) -> bool:
    """Check ``fn(model, imgs, noise) -> (loss, pred, mask)`` equals ``MAE.forward`` (same weights and noise).

    The model handed to ``fn`` has ``forward``, ``forward_encoder``, ``forward_decoder`` and
    ``forward_loss`` switched off, so the answer has to be built from the pieces.
    """
    for model in _test_models():
        cfg = model.config
        gen = torch.Generator().manual_seed(7)
        imgs = torch.randn(3, cfg.in_chans, cfg.img_size, cfg.img_size, generator=gen)
        noise = torch.rand(3, model.patch_embed.num_patches, generator=gen)
        with torch.no_grad():
            expected = model(imgs, noise=noise)
        blocked = copy.deepcopy(model)
        for name in ("forward", "forward_encoder", "forward_decoder", "forward_loss"):
            setattr(blocked, name, _switched_off(name))
        where = (f"my_mae_forward(model with in_chans={cfg.in_chans}, mask_ratio={cfg.mask_ratio}, "
                 f"norm_pix_loss={cfg.norm_pix_loss}; imgs {list(imgs.shape)}, noise {list(noise.shape)})")
        got = call_learner(fn, "my_mae_forward", blocked, imgs.clone(), noise.clone())
        loss, pred, mask = _outputs(where, got, expected)
        _judge_mask(where, mask, expected["mask"], cfg.mask_ratio, _shapes(got)[2])
        if not same(pred, expected["pred"]):
            fail(f"{where}: expected pred {list(expected['pred'].shape)} equal to MAE.forward's, got "
                 + (f"shape {_shapes(got)[1]}" if not (isinstance(pred, torch.Tensor) and pred.shape == expected["pred"].shape)
                    else f"values off by up to {(pred.float() - expected['pred']).abs().max().item():.3g}")
                 + ". Hint: pred = forward_decoder(model, latent, ids_restore), with latent and ids_restore from "
                   "forward_encoder(model, imgs, model.mask_ratio, noise); their checkers in notebooks 03 and 04 "
                   "say which step differs")
        said = f"{where}: expected loss {expected['loss'].item():.6g} (MAE.forward's), got {loss.item():.6g}. Hint: "
        judge(where, loss, expected["loss"], MAE_FORWARD_MISTAKES, {"model": model, "imgs": imgs, "expected": expected},
              matches=same, found=lambda m: said + m, differs=lambda: fail(
                  said + "loss = your mae_loss(patchify(imgs, model.patch_size), pred, mask, model.norm_pix_loss)"))
    return passed("mae_forward", "loss, pred and mask equal MAE.forward with the same weights and noise")


def _shapes(got: tuple) -> list:
    return [list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in got]


def _outputs(where: str, got: Any, expected: dict) -> tuple:
    """The contract of the answer: a tuple (loss [], pred, mask) in that order, the loss with gradients on."""
    if isinstance(got, dict):
        fail(f"{where}: expected a tuple (loss, pred, mask), got a dict with keys {sorted(got)}: return loss, pred, mask")
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        fail(f"{where}: expected a tuple (loss, pred, mask), got {type(got).__name__}"
             + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
    loss = got[0]
    if not (isinstance(loss, torch.Tensor) and loss.dim() == 0):
        fail(f"{where}: expected (loss [], pred {list(expected['pred'].shape)}, mask "
             f"{list(expected['mask'].shape)}) in that order, got {_shapes(got)}")
    Contract(requires_grad=(True, f"{where}: {_GRAD}")).check(loss)
    return tuple(got)


def _judge_mask(where: str, mask: Any, want: torch.Tensor, ratio: float, shape: Any) -> None:
    """The mask must be MAE.forward's; the hint says what the number of removed patches gives away."""
    if same(mask, want, atol=0, rtol=0):
        return
    removed, length = int(want[0].sum()), want.shape[1]
    got_removed = int(mask[0].sum()) if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    if got_removed == length - removed:
        hint = "the mask is inverted: 1 marks a removed patch, 0 a visible one"
    elif got_removed not in (None, removed):
        hint = (f"the mask ratio is the model's own, model.mask_ratio = {ratio} ({removed} of "
                f"{length} patches removed), not a fixed 0.75")
    else:
        hint = "the mask comes from random_masking with the given noise (1 = removed)"
    fail(f"{where}: expected mask {list(want.shape)} with {removed} removed per image, got {shape}"
         + (f" with {got_removed} removed" if got_removed is not None else "") + f". Hint: {hint}")
