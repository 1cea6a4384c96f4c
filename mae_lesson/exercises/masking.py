"""Checkers for notebook 02 (masking): ``random_masking`` and greying out removed patches.

Mask convention everywhere (official code): 0 = keep, 1 = removed.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..masking import num_kept, random_masking
from ..patch_embed import unpatchify
from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import Mistake, expect_shape, fail, judge, judge_shape

# Masks, indices and gathered values are exact: compare tightly.
_TOL = {"atol": 1e-6, "rtol": 1e-6}


def _row(t: torch.Tensor, k: int = 12) -> str:
    """The first row of a 2-D tensor, short, for messages."""
    values = t[0].flatten().tolist()
    text = ", ".join(f"{v:g}" for v in values[:k])
    return f"[{text}{', ...' if len(values) > k else ''}]"


def _shown(c: dict) -> str:
    return f"expected mask[0] = {_row(c['mask_exp'])}, got {_row(c['mask_got'])}"


def _gather(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# The case: x [N, L, D], noise [N, L], len_keep, the reference's mask / ids_restore and the learner's (``*_got``).
MASKING_MISTAKES = (
    Mistake("removed_count_kept", lambda c: [c["n"], c["length"] - c["keep"], c["dim"]], shape=True, message=lambda c: (
        f"keep len_keep = int(L * (1 - mask_ratio)) = int({c['length']} * {1 - c['ratio']:g}) = {c['keep']} tokens "
        f"(you kept the number to remove)")),
    Mistake("mask_inverted", lambda c: 1 - c["mask_exp"], lambda c: (
        f"mask is inverted: expected 0 for the {c['keep']} kept patches and 1 for the {c['length'] - c['keep']} removed "
        f"ones, got 1 for kept and 0 for removed ({_shown(c)})")),
    Mistake("mask_shuffled", lambda c: (torch.arange(c["length"]) >= c["keep"]).float().expand(c["n"], -1), lambda c: (
        f"mask is still in shuffled order ({_shown(c)}): un-shuffle it with torch.gather(mask, 1, ids_restore) so "
        f"entry l belongs to patch l")),
    Mistake("largest_kept", lambda c: (torch.argsort(torch.argsort(-c["noise"], dim=1), dim=1) >= c["keep"]).float(),
            lambda c: f"expected the patches with the smallest noise kept (mask 0), got the largest kept ({_shown(c)}): "
                      f"sort ascending, small is keep, large is remove"),
    Mistake("ids_shuffle", lambda c: torch.argsort(c["noise"], dim=1), lambda c: (
        f"ids_restore: expected argsort(ids_shuffle) = {_row(c['restore_exp'])}, got ids_shuffle itself = "
        f"{_row(c['restore_got'])}: ids_restore is the inverse permutation, argsort applied a second time")),
    Mistake("first_tokens", lambda c: c["x"][:, :c["keep"]], lambda c: (
        f"x_masked: expected the tokens with the smallest noise, got the first {c['keep']} tokens in image order: "
        f"gather with ids_keep = ids_shuffle[:, :len_keep]")),
    Mistake("image_order", lambda c: _gather(c["x"], torch.argsort(c["noise"], dim=1)[:, :c["keep"]].sort(dim=1).values),
            "x_masked: expected the kept tokens in shuffled order (smallest noise first), got the right tokens in image "
            "order: the decoder un-shuffles with ids_restore, which assumes x_masked = gather(x, 1, ids_shuffle[:, :len_keep])"),
)
_MASK_ROWS = ("mask_inverted", "mask_shuffled", "largest_kept")


def _rows(*names: str) -> tuple[Mistake, ...]:
    """The rows of :data:`MASKING_MISTAKES` that concern one output (read at call time, so the table is the one used)."""
    return tuple(row for row in MASKING_MISTAKES if row.name in names)


@checker("random_masking")
def check_random_masking(fn: Callable[[torch.Tensor, float, torch.Tensor], tuple]) -> bool:
    """Check ``fn(x, mask_ratio, noise)`` -> ``(x_masked, mask, ids_restore)`` against the official recipe."""
    gen = torch.Generator().manual_seed(0)
    for n, length, dim, ratio in ((2, 49, 8, 0.75), (3, 14, 4, 0.75), (2, 10, 3, 0.6)):
        x = torch.randn(n, length, dim, generator=gen)
        noise = torch.rand(n, length, generator=gen)
        len_keep = num_kept(length, ratio)
        x_exp, mask_exp, restore_exp = random_masking(x, ratio, noise)
        where = f"random_masking(x {[n, length, dim]}, mask_ratio={ratio}, noise)"
        out = call_learner(fn, "random_masking", x.clone(), ratio, noise.clone())
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise ExerciseError(f"{where}: expected a tuple (x_masked, mask, ids_restore), got {type(out).__name__}"
                                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
        case = {"x": x, "noise": noise, "n": n, "length": length, "dim": dim, "ratio": ratio, "keep": len_keep,
                "mask_exp": mask_exp, "restore_exp": restore_exp}
        case.update(zip(("x_got", "mask_got", "restore_got"), out))
        _judge_masking(where, case, x_exp)
    return passed("random_masking", "exact kept count, 0 = keep / 1 = removed, ids_restore un-shuffles")


def _judge_masking(where: str, c: dict, x_exp: torch.Tensor) -> None:
    """Judge the three outputs of random_masking: the shapes first (the kept count above all), then mask,
    ids_restore and x_masked in that order."""
    n, length, dim, keep = c["n"], c["length"], c["dim"], c["keep"]

    def kept_count(shape: list[int]) -> None:
        if len(shape) == 3 and shape[1] != keep:
            fail(f"{where}: expected x_masked of shape {[n, keep, dim]}, got {shape}: keep len_keep = int(L * (1 - "
                 f"mask_ratio)) = int({length} * {1 - c['ratio']:g}) = {keep} tokens")

    judge_shape(f"{where}: x_masked", c["x_got"], [n, keep, dim], _rows("removed_count_kept"), c, otherwise=kept_count,
                found=lambda m: f"{where}: expected x_masked of shape {[n, keep, dim]}, got {list(c['x_got'].shape)}: {m}")
    expect_shape(f"{where}: mask", c["mask_got"], [n, length], hint="one 0/1 entry per patch, in image order")
    expect_shape(f"{where}: ids_restore", c["restore_got"], [n, length])
    found = (lambda m: f"{where}: {m}")
    judge(f"{where}: mask", c["mask_got"], c["mask_exp"], _rows(*_MASK_ROWS), c, found=found, **_TOL,
          hint="mask = 1 where the patch's rank in argsort(noise) is >= len_keep")
    judge(f"{where}: ids_restore", c["restore_got"], c["restore_exp"], _rows("ids_shuffle"), c, found=found, **_TOL,
          differs=lambda: fail(f"{where}: ids_restore: expected {_row(c['restore_exp'])}, got {_row(c['restore_got'])}: "
                               f"ids_shuffle = argsort(noise, dim=1), ids_restore = argsort(ids_shuffle, dim=1)"))
    judge(f"{where}: x_masked", c["x_got"], x_exp, _rows("first_tokens", "image_order"), c, found=found, **_TOL,
          hint="x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))")


def _pixels(mask: torch.Tensor, imgs: torch.Tensor, p: int) -> torch.Tensor:
    """The patch mask ``[N, L]`` spread over the pixels of ``imgs`` ``[N, C, H, W]``."""
    n, c, h, w = imgs.shape
    return unpatchify(mask[:, :, None].expand(n, mask.shape[1], p * p * c), p, c, (h, w))


def _transposed(c: dict) -> torch.Tensor | None:
    """The images masked with the patch grid transposed (a transposed grid only fits a square image)."""
    n, _, h, w = c["imgs"].shape
    if h != w:
        return None
    grid = c["mask"].reshape(n, w // c["p"], h // c["p"]).transpose(1, 2).reshape(n, -1)
    return c["imgs"] * (1 - _pixels(grid, c["imgs"], c["p"]))


# The case: imgs [N, C, H, W], mask [N, L] and p.
MASKED_IMAGES_MISTAKES = (
    Mistake("kept_zeroed", lambda c: c["imgs"] * _pixels(c["mask"], c["imgs"], c["p"]),
            "expected the removed patches (mask 1) zeroed, got the kept ones zeroed: the convention is 0 = keep, "
            "1 = removed, so multiply by (1 - mask)"),
    Mistake("unchanged", lambda c: c["imgs"],
            lambda c: f"expected {int(c['mask'][0].sum())} patches of image 0 zeroed, got the images unchanged"),
    Mistake("grid_transposed", _transposed, "expected mask entry l = row*(W/p) + col to cover patch (row, col), got the "
            "grid transposed: reshape the mask to [N, H/p, W/p] (rows first)"),
)


@checker("masked_images")
def check_masked_images(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(imgs, mask, p)``: pixels of removed patches (mask 1) set to 0, the rest unchanged."""
    gen = torch.Generator().manual_seed(0)
    for shape, p, ratio in (((2, 3, 8, 12), 4, 0.5), ((3, 1, 28, 28), 4, 0.75)):
        n, _, h, w = shape
        imgs = torch.rand(shape, generator=gen) + 0.5  # strictly positive, so zeros can only be masking
        length = (h // p) * (w // p)
        _, mask, _ = random_masking(torch.zeros(n, length, 1), ratio, torch.rand(n, length, generator=gen))
        expected = imgs * (1 - _pixels(mask, imgs, p))
        where = f"masked_images(imgs {list(shape)}, mask {[n, length]}, p={p})"
        got = call_learner(fn, "masked_images", imgs.clone(), mask.clone(), p)
        judge(where, got, expected, MASKED_IMAGES_MISTAKES, {"imgs": imgs, "mask": mask, "p": p}, **_TOL,
              shape_hint="return images of the same shape as imgs", found=lambda m: f"{where}: {m}",
              hint="reshape mask to [N, H/p, W/p], repeat each entry p times along both axes, multiply by (1 - mask)")
    return passed("masked_images", "removed patches zeroed, kept patches untouched")
