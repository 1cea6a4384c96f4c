"""Checkers for notebook 02 (masking): ``random_masking`` and greying out removed patches.

Mask convention everywhere (official code): 0 = keep, 1 = removed.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..masking import num_kept, random_masking
from ..patch_embed import unpatchify
from ._feedback import (
    ExerciseError,
    call_learner,
    checker,
    expect_close,
    expect_shape,
    passed,
    same,
)

# Masks, indices and gathered values are exact: compare tightly.
_TOL = {"atol": 1e-6, "rtol": 1e-6}


def _row(t: torch.Tensor, k: int = 12) -> str:
    """The first row of a 2-D tensor, short, for messages."""
    values = t[0].flatten().tolist()
    text = ", ".join(f"{v:g}" for v in values[:k])
    return f"[{text}{', ...' if len(values) > k else ''}]"


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
        x_got, mask_got, restore_got = out

        # Shapes: the kept count is the first thing to get right.
        if isinstance(x_got, torch.Tensor) and x_got.dim() == 3 and x_got.shape[1] != len_keep:
            raise ExerciseError(
                f"{where}: expected x_masked of shape {[n, len_keep, dim]}, got {list(x_got.shape)}: keep "
                f"len_keep = int(L * (1 - mask_ratio)) = int({length} * {1 - ratio:g}) = {len_keep} tokens"
                + (" (you kept the number to remove)" if x_got.shape[1] == length - len_keep else "")
            )
        expect_shape(f"{where}: x_masked", x_got, [n, len_keep, dim])
        expect_shape(f"{where}: mask", mask_got, [n, length], hint="one 0/1 entry per patch, in image order")
        expect_shape(f"{where}: ids_restore", restore_got, [n, length])

        # mask: 0 keep, 1 removed, in image order.
        if not same(mask_got, mask_exp, **_TOL):
            if same(mask_got, 1 - mask_exp, **_TOL):
                raise ExerciseError(
                    f"{where}: mask is inverted: expected 0 for the {len_keep} kept patches and 1 for the "
                    f"{length - len_keep} removed ones, got 1 for kept and 0 for removed "
                    f"(expected mask[0] = {_row(mask_exp)}, got {_row(mask_got)})"
                )
            shuffled = torch.ones(n, length)
            shuffled[:, :len_keep] = 0
            if same(mask_got, shuffled, **_TOL):
                raise ExerciseError(
                    f"{where}: mask is still in shuffled order (expected mask[0] = {_row(mask_exp)}, got "
                    f"{_row(mask_got)}): un-shuffle it with torch.gather(mask, 1, ids_restore) so entry l "
                    f"belongs to patch l"
                )
            descending = (torch.argsort(torch.argsort(-noise, dim=1), dim=1) >= len_keep).float()
            if same(mask_got, descending, **_TOL):
                raise ExerciseError(
                    f"{where}: expected the patches with the smallest noise kept (mask 0), got the largest "
                    f"kept (expected mask[0] = {_row(mask_exp)}, got {_row(mask_got)}): sort ascending, "
                    f"small is keep, large is remove"
                )
            expect_close(f"{where}: mask", mask_got, mask_exp,
                         hint="mask = 1 where the patch's rank in argsort(noise) is >= len_keep")

        # ids_restore: the inverse permutation of ids_shuffle.
        ids_shuffle = torch.argsort(noise, dim=1)
        if not same(restore_got, restore_exp, **_TOL):
            if same(restore_got, ids_shuffle, **_TOL):
                raise ExerciseError(
                    f"{where}: ids_restore: expected argsort(ids_shuffle) = {_row(restore_exp)}, got "
                    f"ids_shuffle itself = {_row(restore_got)}: ids_restore is the inverse permutation, "
                    f"argsort applied a second time"
                )
            raise ExerciseError(
                f"{where}: ids_restore: expected {_row(restore_exp)}, got {_row(restore_got)}: "
                f"ids_shuffle = argsort(noise, dim=1), ids_restore = argsort(ids_shuffle, dim=1)"
            )

        # x_masked: the kept tokens in shuffled order (smallest noise first).
        if not same(x_got, x_exp, **_TOL):
            if same(x_got, x[:, :len_keep], **_TOL):
                raise ExerciseError(
                    f"{where}: x_masked: expected the tokens with the smallest noise, got the first "
                    f"{len_keep} tokens in image order: gather with ids_keep = ids_shuffle[:, :len_keep]"
                )
            in_image_order = torch.gather(x, 1, ids_shuffle[:, :len_keep].sort(dim=1).values.unsqueeze(-1).expand(-1, -1, dim))
            if same(x_got, in_image_order, **_TOL):
                raise ExerciseError(
                    f"{where}: x_masked: expected the kept tokens in shuffled order (smallest noise first), "
                    f"got the right tokens in image order: the decoder un-shuffles with ids_restore, which "
                    f"assumes x_masked = gather(x, 1, ids_shuffle[:, :len_keep])"
                )
            expect_close(f"{where}: x_masked", x_got, x_exp,
                         hint="x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))")
    return passed("random_masking", "exact kept count, 0 = keep / 1 = removed, ids_restore un-shuffles")


@checker("masked_images")
def check_masked_images(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> bool:
    """Check ``fn(imgs, mask, p)``: pixels of removed patches (mask 1) set to 0, the rest unchanged."""
    gen = torch.Generator().manual_seed(0)
    for shape, p, ratio in (((2, 3, 8, 12), 4, 0.5), ((3, 1, 28, 28), 4, 0.75)):
        n, c, h, w = shape
        imgs = torch.rand(shape, generator=gen) + 0.5  # strictly positive, so zeros can only be masking
        length = (h // p) * (w // p)
        _, mask, _ = random_masking(torch.zeros(n, length, 1), ratio, torch.rand(n, length, generator=gen))
        pixel_mask = unpatchify(mask[:, :, None].expand(n, length, p * p * c), p, c, (h, w))
        expected = imgs * (1 - pixel_mask)
        where = f"masked_images(imgs {list(shape)}, mask {[n, length]}, p={p})"
        got = call_learner(fn, "masked_images", imgs.clone(), mask.clone(), p)
        expect_shape(where, got, expected.shape, hint="return images of the same shape as imgs")
        if same(got, expected, **_TOL):
            continue
        if same(got, imgs * pixel_mask, **_TOL):
            raise ExerciseError(
                f"{where}: expected the removed patches (mask 1) zeroed, got the kept ones zeroed: "
                f"the convention is 0 = keep, 1 = removed, so multiply by (1 - mask)"
            )
        if same(got, imgs, **_TOL):
            raise ExerciseError(f"{where}: expected {int(mask[0].sum())} patches of image 0 zeroed, got the images unchanged")
        if h == w:  # a transposed grid only fits a square image
            transposed = mask.reshape(n, w // p, h // p).transpose(1, 2).reshape(n, length)
            t_pixels = unpatchify(transposed[:, :, None].expand(n, length, p * p * c), p, c, (h, w))
            if same(got, imgs * (1 - t_pixels), **_TOL):
                raise ExerciseError(
                    f"{where}: expected mask entry l = row*(W/p) + col to cover patch (row, col), got the "
                    f"grid transposed: reshape the mask to [N, H/p, W/p] (rows first)"
                )
        expect_close(f"{where}", got, expected,
                     hint="reshape mask to [N, H/p, W/p], repeat each entry p times along both axes, multiply by (1 - mask)")
    return passed("masked_images", "removed patches zeroed, kept patches untouched")
