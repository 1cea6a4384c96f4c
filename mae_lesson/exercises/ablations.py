"""Checker for notebook 09 (the paper in miniature): how much of a measured difference is noise.

An accuracy measured on ``n`` test images is a mean of ``n`` right/wrong outcomes, so even with
the model fixed it carries sampling noise: its standard error is ``sqrt(p * (1 - p) / n)`` for
an accuracy ``p`` (a fraction). Two settings whose accuracies differ by less than about two
standard errors of the difference (``sqrt(se_a**2 + se_b**2)``) have not been told apart.
"""

from __future__ import annotations

import math
from typing import Callable

from ._feedback import ExerciseError, call_learner, checker, passed


def accuracy_standard_error(accuracy: float, n: int) -> float:
    """Standard error of an accuracy ``accuracy`` (a fraction in [0, 1]) measured on ``n`` images."""
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy}; divide a percentage by 100")
    if n < 1:
        raise ValueError(f"n must be a positive number of test images, got {n}")
    return math.sqrt(accuracy * (1 - accuracy) / n)


def differ(acc_a: float, acc_b: float, n: int, z: float = 2.0) -> bool:
    """True when two accuracies on ``n`` (independent) test images differ by more than ``z`` standard errors."""
    se = math.hypot(accuracy_standard_error(acc_a, n), accuracy_standard_error(acc_b, n))
    return abs(acc_a - acc_b) > z * se


_MISTAKES: dict[str, Callable[[float, int], float]] = {
    "the variance p(1-p)/n instead of its square root": lambda p, n: p * (1 - p) / n,
    "sqrt(p/n): the spread of a right/wrong outcome is p(1-p), not p": lambda p, n: math.sqrt(p / n),
    "sqrt(p(1-p)) without dividing by n": lambda p, n: math.sqrt(p * (1 - p)),
    "a percentage: work with fractions (0.82, not 82)": lambda p, n: 100 * math.sqrt(p * (1 - p) / n),
}


@checker("standard_error")
def check_standard_error(fn: Callable[[float, int], float]) -> bool:
    """Check ``fn(accuracy, n) -> standard error`` on a few accuracies and test-set sizes."""
    for p, n in ((0.82, 2000), (0.5, 100), (0.91, 10_000), (0.99, 500), (0.0, 50)):
        got = call_learner(fn, "standard_error", p, n)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"standard_error({p}, {n}): expected a number, got {type(got).__name__}") from None
        expected = accuracy_standard_error(p, n)
        if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
            continue
        for what, mistake in _MISTAKES.items():
            if math.isclose(got, mistake(p, n), rel_tol=1e-6, abs_tol=1e-12):
                raise ExerciseError(f"standard_error({p}, {n}): expected {expected:.6g}, got {got:.6g}; looks like {what}")
        raise ExerciseError(f"standard_error({p}, {n}): expected sqrt(p * (1 - p) / n) = {expected:.6g}, got {got:.6g}")
    se = accuracy_standard_error(0.82, 2000)
    return passed("standard_error", f"82% on 2,000 test images is 82 +- {100 * se:.1f} points (one standard error)")
