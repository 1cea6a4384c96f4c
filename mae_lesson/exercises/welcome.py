"""Checker for notebook 00 (welcome): how many tokens the encoder processes."""

from __future__ import annotations

from typing import Callable

from ..masking import num_kept
from ._feedback import ExerciseError, as_int, call_learner, checker, passed


@checker("encoder_tokens")
def check_encoder_tokens(fn: Callable[[int, int, float], int]) -> bool:
    """Check ``fn(img_size, patch_size, mask_ratio)`` -> ``1 + int(L * (1 - mask_ratio))``.

    L = (img_size // patch_size) ** 2 patches; the 1 is the cls token.
    """
    for img_size, patch_size, ratio in ((28, 4, 0.75), (224, 16, 0.75), (224, 14, 0.75), (32, 4, 0.5), (28, 7, 0.9)):
        length = (img_size // patch_size) ** 2
        keep = num_kept(length, ratio)
        expected = 1 + keep
        where = f"encoder_tokens({img_size}, {patch_size}, {ratio})"
        got = as_int(call_learner(fn, "encoder_tokens", img_size, patch_size, ratio), where,
                     hint="int(L * (1 - mask_ratio)) rounds down")
        if got == expected:
            continue
        mistakes = {
            1 + round(length * (1 - ratio)): "the visible count is rounded to nearest; the official code rounds down, "
                                             "int(L * (1 - mask_ratio))",
            keep: "the cls token is missing: the encoder gets 1 cls token + the visible patches",
            1 + length: "that is every patch: the encoder sees only the visible ones, int(L * (1 - mask_ratio))",
            1 + length - keep: "that counts the removed patches; the visible ones are int(L * (1 - mask_ratio))",
            length - keep: "that counts the removed patches and no cls token",
            1 + img_size // patch_size: "L is the number of patches in the whole grid, (img_size // patch_size) ** 2",
        }
        why = mistakes.get(got, f"L = ({img_size} // {patch_size})**2 = {length} patches, "
                                f"int({length} * {1 - ratio:g}) = {keep} visible, plus 1 cls token")
        raise ExerciseError(f"{where}: expected {expected}, got {got}: {why}")
    return passed("encoder_tokens", "1 cls token + int(L * (1 - mask_ratio)) visible patches")
