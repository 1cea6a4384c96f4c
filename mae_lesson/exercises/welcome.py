"""Checker for notebook 00 (welcome): how many tokens the encoder processes."""

from __future__ import annotations

from typing import Callable

from ..masking import num_kept
from ._feedback import as_int, call_learner, checker, passed
from ._judge import Mistake, fail, judge


# Known wrong counts, computed from the case: L patches (``length``), ``keep`` visible, a ``grid``-wide grid.
MISTAKES = (
    Mistake("rounded", lambda c: 1 + round(c["length"] * (1 - c["ratio"])),
            "the visible count is rounded to nearest; the official code rounds down, int(L * (1 - mask_ratio))"),
    Mistake("no_cls", lambda c: c["keep"], "the cls token is missing: the encoder gets 1 cls token + the visible patches"),
    Mistake("every_patch", lambda c: 1 + c["length"],
            "that is every patch: the encoder sees only the visible ones, int(L * (1 - mask_ratio))"),
    Mistake("removed", lambda c: 1 + c["length"] - c["keep"],
            "that counts the removed patches; the visible ones are int(L * (1 - mask_ratio))"),
    Mistake("removed_no_cls", lambda c: c["length"] - c["keep"], "that counts the removed patches and no cls token"),
    Mistake("one_row", lambda c: 1 + c["grid"],
            "L is the number of patches in the whole grid, (img_size // patch_size) ** 2"),
)


@checker("encoder_tokens")
def check_encoder_tokens(fn: Callable[[int, int, float], int]) -> bool:
    """Check ``fn(img_size, patch_size, mask_ratio)`` -> ``1 + int(L * (1 - mask_ratio))``.

    L = (img_size // patch_size) ** 2 patches; the 1 is the cls token.
    """
    for img_size, patch_size, ratio in ((28, 4, 0.75), (224, 16, 0.75), (224, 14, 0.75), (32, 4, 0.5), (28, 7, 0.9)):
        length = (img_size // patch_size) ** 2
        keep = num_kept(length, ratio)
        case = {"length": length, "keep": keep, "ratio": ratio, "grid": img_size // patch_size}
        where = f"encoder_tokens({img_size}, {patch_size}, {ratio})"
        got = as_int(call_learner(fn, "encoder_tokens", img_size, patch_size, ratio), where,
                     hint="int(L * (1 - mask_ratio)) rounds down")
        judge(where, got, 1 + keep, MISTAKES, case, matches=lambda a, b: a == b,
              found=lambda m: f"{where}: expected {1 + keep}, got {got}: {m}",
              differs=lambda: fail(f"{where}: expected {1 + keep}, got {got}: L = ({img_size} // {patch_size})**2 = "
                                    f"{length} patches, int({length} * {1 - ratio:g}) = {keep} visible, plus 1 cls token"))
    return passed("encoder_tokens", "1 cls token + int(L * (1 - mask_ratio)) visible patches")
