"""Checkers for notebook 03 (encoder): attention by hand, the pre-norm block, ``forward_encoder``."""

from __future__ import annotations

from typing import Callable

import torch

from ..masking import random_masking
from ..model import MAE
from ..transformer import Block
from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import Mistake, expect_close, fail, judge, judge_shape
from ._models import random_block, tiny_mae


# ------------------------------------------------------------------------------ attention
def _softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                       dim: int = -1, causal: bool = False) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) * scale
    if causal:
        t = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(dim=dim) @ v


# The case: q, k, v [N, heads, T, d] and d.
ATTENTION_MISTAKES = (
    Mistake("weights", lambda c: list(c["q"].shape[:-1]) + [c["q"].shape[-2]],
            "the attention weights: multiply them by v to mix the values", shape=True),
    Mistake("unscaled", lambda c: _softmax_attention(c["q"], c["k"], c["v"], 1.0),
            lambda c: f"the scores are not scaled: divide q @ k^T by sqrt(d) = sqrt({c['d']}) = {c['d'] ** 0.5:g} "
                      f"before the softmax, or it saturates as d grows"),
    Mistake("divided_by_d", lambda c: _softmax_attention(c["q"], c["k"], c["v"], 1.0 / c["d"]),
            lambda c: f"the scores are divided by d = {c['d']}; divide by sqrt(d) = {c['d'] ** 0.5:g}"),
    Mistake("softmax_over_queries", lambda c: _softmax_attention(c["q"], c["k"], c["v"], c["d"] ** -0.5, dim=-2),
            "the softmax runs over the queries (dim=-2); each query's weights over the keys must sum "
            "to 1: softmax(dim=-1)"),
    Mistake("causal", lambda c: _softmax_attention(c["q"], c["k"], c["v"], c["d"] ** -0.5, causal=True),
            "a causal mask is applied; MAE's encoder and decoder attend in both directions, no mask"),
    Mistake("k_q_swapped", lambda c: _softmax_attention(c["k"], c["q"], c["v"], c["d"] ** -0.5),
            "the scores are k @ q^T (keys as rows); use q @ k.transpose(-2, -1)"),
)


@checker("attention")
def check_attention(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(q, k, v)`` = ``softmax(q k^T / sqrt(d)) v`` for ``[N, heads, T, d]`` inputs."""
    gen = torch.Generator().manual_seed(0)
    n, heads, t, d = 2, 3, 5, 16
    q, k, v = (torch.randn(n, heads, t, d, generator=gen) for _ in range(3))
    expected = _softmax_attention(q, k, v, d**-0.5)
    where = f"attention(q, k, v each {[n, heads, t, d]})"
    got = call_learner(fn, "attention", q.clone(), k.clone(), v.clone())
    judge(where, got, expected, ATTENTION_MISTAKES, {"q": q, "k": k, "v": v, "d": d}, atol=1e-5, rtol=1e-4,
          hint="softmax(q @ k.transpose(-2, -1) / sqrt(d), dim=-1) @ v",
          shape_hint="scores [N, heads, T, T] = q @ k.transpose(-2, -1); output = weights @ v",
          found_shape=lambda m: f"{where}: expected shape {[n, heads, t, d]}, got {list(got.shape)}, {m}")
    return passed("attention", "softmax(q k^T / sqrt(d)) v, matches F.scaled_dot_product_attention")


# ------------------------------------------------------------------------------ block
def _pre(b: Block, x: torch.Tensor) -> torch.Tensor:
    """The attention step of the pre-norm block."""
    return x + b.attn(b.norm1(x))


def _post_norm(b: Block, x: torch.Tensor) -> torch.Tensor:
    y = b.norm1(x + b.attn(x))
    return b.norm2(y + b.mlp(y))


# The case: the block ``b`` and its input ``x``.
BLOCK_MISTAKES = (
    Mistake("post_norm", lambda c: _post_norm(c["b"], c["x"]),
            "this is the post-norm block norm(x + f(x)); MAE (like ViT) normalises the input of "
            "each branch and leaves the residual path untouched: x + f(norm(x))"),
    Mistake("no_residuals", lambda c: (lambda b, x: b.attn(b.norm1(x)) + b.mlp(b.norm2(b.attn(b.norm1(x)))))(c["b"], c["x"]),
            "the residual connections are missing: add each branch's output to its input, x = x + attn(...)"),
    Mistake("no_mlp_residual", lambda c: c["b"].mlp(c["b"].norm2(_pre(c["b"], c["x"]))),
            "the MLP's residual connection is missing: return a + mlp(norm2(a))"),
    Mistake("parallel", lambda c: _pre(c["b"], c["x"]) + c["b"].mlp(c["b"].norm2(c["x"])),
            "the MLP sees the block's input x; it must see the output of the attention step"),
    Mistake("norms_swapped", lambda c: (lambda b, x: x + b.attn(b.norm2(x)) + b.mlp(b.norm1(x + b.attn(b.norm2(x)))))(
        c["b"], c["x"]), "norm1 and norm2 are swapped: norm1 belongs to the attention branch, norm2 to the MLP"),
    Mistake("no_norms", lambda c: (lambda b, y: y + b.mlp(y))(c["b"], c["x"] + c["b"].attn(c["x"])),
            "the LayerNorms are missing: attn(norm1(x)) and mlp(norm2(x))"),
)


@checker("block_forward")
def check_block_forward(fn: Callable[[Block, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(block, x)`` is the pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""
    block = random_block()
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = _pre(block, x)
        expected = a + block.mlp(block.norm2(a))
    where = "block_forward(block, x [2, 5, 16])"
    got = call_learner(fn, "block_forward", block, x.clone())
    with torch.no_grad():
        judge(where, got, expected, BLOCK_MISTAKES, {"b": block, "x": x}, atol=1e-5, rtol=1e-4,
              shape_hint="a block keeps the shape [N, T, D]",
              hint="x = x + block.attn(block.norm1(x)); return x + block.mlp(block.norm2(x))")
    return passed("block_forward", "pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))")


# ------------------------------------------------------------------------------ encoder
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


def _encoder(**change: str | bool) -> Callable[[dict], torch.Tensor]:
    """A table row's wrong answer: :func:`_encoder_variant` with ``change`` on the case's model and inputs."""
    return lambda c: _encoder_variant(c["model"], c["imgs"], c["ratio"], c["noise"], **change)


# The case: the model, imgs, ratio, noise; and (for the shape rows) N, D, L and the visible count ``keep``.
ENCODER_MISTAKES = (
    Mistake("no_masking", lambda c: [c["n"], c["length"] + 1, c["d"]], shape=True, message=(
        "all patches went through the blocks: mask first, so the encoder sees only the visible patches "
        "(that is where MAE's speed comes from)")),
    Mistake("no_masking_no_cls", lambda c: [c["n"], c["length"], c["d"]], shape=True,
            message="all patches and no cls token went through the blocks: mask first, then prepend cls"),
    Mistake("no_cls", lambda c: [c["n"], c["keep"], c["d"]], shape=True,
            message="the cls token is missing: prepend model.cls_token + model.pos_embed[:, :1, :]"),
    Mistake("no_pos", _encoder(pos="none"), "the position embeddings are missing: add model.pos_embed[:, 1:, :] to the "
            "patch tokens before masking, or the encoder cannot tell where a patch came from"),
    Mistake("pos_after_masking", _encoder(pos="after"), "the position embeddings were added after masking, to the first "
            "L_keep rows of the table: add them before masking, so each kept patch carries its own position"),
    Mistake("pos_off_by_one", _encoder(pos="off_by_one"), "the patch tokens got pos_embed[:, :-1] (row 0 is the cls row): "
            "use model.pos_embed[:, 1:, :]"),
    Mistake("cls_last", _encoder(cls="last"), "the cls token is appended at the end: prepend it, latent[:, 0] is the cls output"),
    Mistake("no_norm", _encoder(norm=False), "the final LayerNorm is missing: return model.norm(x) after the blocks"),
)


@checker("forward_encoder")
def check_forward_encoder(fn: Callable[[MAE, torch.Tensor, float, torch.Tensor], tuple]) -> bool:
    """Check ``fn(model, imgs, mask_ratio, noise)`` -> ``(latent, mask, ids_restore)`` as ``MAE.forward_encoder``."""
    model = tiny_mae(embed_dim=32, encoder_depth=2, encoder_num_heads=4, norm_pix_loss=False, randomise=True)
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
    case = {"model": model, "imgs": imgs, "ratio": ratio, "noise": noise, "n": n, "d": d, "length": length, "keep": keep}

    def token_count(shape: list[int]) -> None:
        if len(shape) == 3:
            fail(f"{where}: expected latent of shape {[n, t, d]}, got {shape}: 1 cls token + {keep} visible patches = {t} tokens")

    judge_shape(f"{where}: latent", latent, [n, t, d], ENCODER_MISTAKES, case, otherwise=token_count,
                found=lambda m: f"{where}: expected latent of shape {[n, t, d]}, got {list(latent.shape)}: {m}")
    expect_close(f"{where}: mask", mask, mask_exp, hint="return the mask from random_masking unchanged")
    expect_close(f"{where}: ids_restore", ids_restore, restore_exp, hint="return ids_restore from random_masking")
    with torch.no_grad():
        judge(f"{where}: latent", latent, latent_exp, ENCODER_MISTAKES, case, atol=1e-5, rtol=1e-4,
              hint="patch_embed -> + pos_embed[:, 1:] -> random_masking -> prepend cls -> blocks -> norm")
    return passed("forward_encoder", f"latent {[n, t, d]}: cls + {keep} visible patches only")
