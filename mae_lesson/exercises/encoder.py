"""Checkers for notebook 03 (encoder): attention by hand, the pre-norm block, ``forward_encoder``."""

from __future__ import annotations

from typing import Callable

import torch

from ..config import Config
from ..masking import random_masking
from ..model import MAE
from ..transformer import Block
from ._feedback import (
    ExerciseError,
    call_learner,
    checker,
    diagnose,
    expect_close,
    expect_shape,
    passed,
)


# ------------------------------------------------------------------------------ attention
def _softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                       dim: int = -1, causal: bool = False) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) * scale
    if causal:
        t = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(dim=dim) @ v


@checker("attention")
def check_attention(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(q, k, v)`` = ``softmax(q k^T / sqrt(d)) v`` for ``[N, heads, T, d]`` inputs."""
    gen = torch.Generator().manual_seed(0)
    n, heads, t, d = 2, 3, 5, 16
    q, k, v = (torch.randn(n, heads, t, d, generator=gen) for _ in range(3))
    expected = _softmax_attention(q, k, v, d**-0.5)
    where = f"attention(q, k, v each {[n, heads, t, d]})"
    got = call_learner(fn, "attention", q.clone(), k.clone(), v.clone())
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (n, heads, t, t):
        raise ExerciseError(
            f"{where}: expected shape {[n, heads, t, d]}, got {list(got.shape)}, the attention weights: "
            f"multiply them by v to mix the values"
        )
    expect_shape(where, got, expected.shape, hint="scores [N, heads, T, T] = q @ k.transpose(-2, -1); output = weights @ v")
    diagnose(where, got, expected, [
        (_softmax_attention(q, k, v, 1.0),
         f"the scores are not scaled: divide q @ k^T by sqrt(d) = sqrt({d}) = {d ** 0.5:g} before the "
         f"softmax, or it saturates as d grows"),
        (_softmax_attention(q, k, v, 1.0 / d),
         f"the scores are divided by d = {d}; divide by sqrt(d) = {d ** 0.5:g}"),
        (_softmax_attention(q, k, v, d**-0.5, dim=-2),
         "the softmax runs over the queries (dim=-2); each query's weights over the keys must sum "
         "to 1: softmax(dim=-1)"),
        (_softmax_attention(q, k, v, d**-0.5, causal=True),
         "a causal mask is applied; MAE's encoder and decoder attend in both directions, no mask"),
        (_softmax_attention(k, q, v, d**-0.5),
         "the scores are k @ q^T (keys as rows); use q @ k.transpose(-2, -1)"),
    ], hint="softmax(q @ k.transpose(-2, -1) / sqrt(d), dim=-1) @ v")
    return passed("attention", "softmax(q k^T / sqrt(d)) v, matches F.scaled_dot_product_attention")


# ------------------------------------------------------------------------------ block
def _test_block(dim: int = 16, heads: int = 2) -> Block:
    """A block whose every parameter (LayerNorm ones included) is random, so each mistake shows."""
    block = Block(dim, heads).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 and p.shape[0] == dim else 0.0))
    return block


@checker("block_forward")
def check_block_forward(fn: Callable[[Block, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(block, x)`` is the pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""
    with torch.random.fork_rng(devices=[]):
        block = _test_block()
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    b = block
    with torch.no_grad():
        a = x + b.attn(b.norm1(x))
        expected = a + b.mlp(b.norm2(a))
        post = b.norm1(x + b.attn(x))
        post = b.norm2(post + b.mlp(post))
        mistakes = [
            (post, "this is the post-norm block norm(x + f(x)); MAE (like ViT) normalises the input of "
                   "each branch and leaves the residual path untouched: x + f(norm(x))"),
            (b.attn(b.norm1(x)) + b.mlp(b.norm2(b.attn(b.norm1(x)))),
             "the residual connections are missing: add each branch's output to its input, x = x + attn(...)"),
            (b.mlp(b.norm2(a)), "the MLP's residual connection is missing: return a + mlp(norm2(a))"),
            (x + b.attn(b.norm1(x)) + b.mlp(b.norm2(x)),
             "the MLP sees the block's input x; it must see the output of the attention step"),
            (x + b.attn(b.norm2(x)) + b.mlp(b.norm1(x + b.attn(b.norm2(x)))),
             "norm1 and norm2 are swapped: norm1 belongs to the attention branch, norm2 to the MLP"),
            ((lambda y: y + b.mlp(y))(x + b.attn(x)), "the LayerNorms are missing: attn(norm1(x)) and mlp(norm2(x))"),
        ]
    where = "block_forward(block, x [2, 5, 16])"
    got = call_learner(fn, "block_forward", block, x.clone())
    expect_shape(where, got, expected.shape, hint="a block keeps the shape [N, T, D]")
    diagnose(where, got, expected, mistakes, hint="x = x + block.attn(block.norm1(x)); return x + block.mlp(block.norm2(x))")
    return passed("block_forward", "pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))")


# ------------------------------------------------------------------------------ encoder
def _test_model() -> MAE:
    """A small MAE with a non-zero cls token: 16x16 grey images, 4x4 patches, 16 patches."""
    cfg = Config(img_size=16, patch_size=4, in_chans=1, embed_dim=32, encoder_depth=2, encoder_num_heads=4,
                 decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, norm_pix_loss=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MAE(cfg).eval()
        with torch.no_grad():
            model.cls_token.normal_(std=1.0)
            model.mask_token.normal_(std=1.0)
            for name, p in model.named_parameters():
                if "norm" in name:  # random LayerNorm affine, so a skipped norm shows
                    p.add_(torch.randn(p.shape) * 0.3)
    return model


def _encoder_variant(model: MAE, imgs: torch.Tensor, ratio: float, noise: torch.Tensor, *, pos: str = "before",
                     cls: str = "first", norm: bool = True, mask: bool = True) -> torch.Tensor:
    """forward_encoder with one step changed, to recognise a learner's mistake."""
    x = model.patch_embed(imgs)
    table = model.pos_embed
    if pos == "before":
        x = x + table[:, 1:, :]
    elif pos == "off_by_one":
        x = x + table[:, :-1, :]
    if mask:
        x, _, _ = random_masking(x, ratio, noise)
    if pos == "after":
        x = x + table[:, 1:1 + x.shape[1], :]
    cls_tok = (model.cls_token + table[:, :1, :]).expand(x.shape[0], -1, -1)
    if cls == "first":
        x = torch.cat([cls_tok, x], dim=1)
    elif cls == "last":
        x = torch.cat([x, cls_tok], dim=1)
    for blk in model.blocks:
        x = blk(x)
    return model.norm(x) if norm else x


@checker("forward_encoder")
def check_forward_encoder(fn: Callable[[MAE, torch.Tensor, float, torch.Tensor], tuple]) -> bool:
    """Check ``fn(model, imgs, mask_ratio, noise)`` -> ``(latent, mask, ids_restore)`` as ``MAE.forward_encoder``."""
    model = _test_model()
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randn(2, 1, 16, 16, generator=gen)
    noise = torch.rand(2, 16, generator=gen)
    ratio = 0.75
    with torch.no_grad():
        latent_exp, mask_exp, restore_exp = model.forward_encoder(imgs, ratio, noise)
    n, t, d = latent_exp.shape
    length, keep = 16, t - 1
    where = f"forward_encoder(model, imgs {list(imgs.shape)}, mask_ratio={ratio}, noise)"
    out = call_learner(fn, "forward_encoder", model, imgs.clone(), ratio, noise.clone())
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise ExerciseError(f"{where}: expected a tuple (latent, mask, ids_restore), got {type(out).__name__}")
    latent, mask, ids_restore = out
    if isinstance(latent, torch.Tensor) and latent.dim() == 3 and latent.shape[1] != t:
        tokens = latent.shape[1]
        why = {
            length + 1: "all patches went through the blocks: mask first, so the encoder sees only the "
                        "visible patches (that is where MAE's speed comes from)",
            length: "all patches and no cls token went through the blocks: mask first, then prepend cls",
            keep: "the cls token is missing: prepend model.cls_token + model.pos_embed[:, :1, :]",
        }.get(tokens, f"1 cls token + {keep} visible patches = {t} tokens")
        raise ExerciseError(f"{where}: expected latent of shape {[n, t, d]}, got {list(latent.shape)}: {why}")
    expect_shape(f"{where}: latent", latent, [n, t, d])
    expect_close(f"{where}: mask", mask, mask_exp, hint="return the mask from random_masking unchanged")
    expect_close(f"{where}: ids_restore", ids_restore, restore_exp, hint="return ids_restore from random_masking")
    with torch.no_grad():
        v = lambda **kw: _encoder_variant(model, imgs, ratio, noise, **kw)  # noqa: E731
        mistakes = [
            (v(pos="none"), "the position embeddings are missing: add model.pos_embed[:, 1:, :] to the patch "
                            "tokens before masking, or the encoder cannot tell where a patch came from"),
            (v(pos="after"), "the position embeddings were added after masking, to the first L_keep rows of the "
                             "table: add them before masking, so each kept patch carries its own position"),
            (v(pos="off_by_one"), "the patch tokens got pos_embed[:, :-1] (row 0 is the cls row): use "
                                  "model.pos_embed[:, 1:, :]"),
            (v(cls="last"), "the cls token is appended at the end: prepend it, latent[:, 0] is the cls output"),
            (v(norm=False), "the final LayerNorm is missing: return model.norm(x) after the blocks"),
        ]
    diagnose(f"{where}: latent", latent, latent_exp, mistakes,
              hint="patch_embed -> + pos_embed[:, 1:] -> random_masking -> prepend cls -> blocks -> norm")
    return passed("forward_encoder", f"latent {[n, t, d]}: cls + {keep} visible patches only")
