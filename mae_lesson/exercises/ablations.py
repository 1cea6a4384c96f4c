"""Checker for notebook 09 (the paper in miniature): how much of a measured difference is noise.

An accuracy measured on ``n`` test images is a mean of ``n`` right/wrong outcomes, so even with
the model fixed it carries sampling noise: its standard error is ``sqrt(p * (1 - p) / n)`` for
an accuracy ``p`` (a fraction). Two settings whose accuracies differ by less than about two
standard errors of the difference (``sqrt(se_a**2 + se_b**2)``) have not been told apart.

Seeds add noise of their own: another seed draws other masks, batches and initial weights. With
several seeds per setting, the difference of two settings' means has the standard error
``sqrt(sd_a**2 / n_a + sd_b**2 / n_b)`` (sample standard deviations over seeds), the rule the
seeded sweep's verdicts use (``experiments/ablation_report.py``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Callable

from ._feedback import ExerciseError, call_learner, checker, passed
from ._judge import Mistake, close, fail, judge


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


def _number(call: str, got: object) -> float:
    """The learner's answer as a float, or a message saying it is not a number."""
    try:
        return float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ExerciseError(f"{call}: expected a number, got {type(got).__name__}") from None


def _judge_number(call: str, got: object, expected: float, formula: str, mistakes: tuple[Mistake, ...], case: tuple) -> None:
    """:func:`judge` on a number: a known mistake is named with ``looks like``, any other with the formula."""
    got = _number(call, got)
    judge(call, got, expected, mistakes, case, matches=lambda a, b: close(a, b, atol=1e-12, rtol=1e-6),
          found=lambda m: f"{call}: expected {expected:.6g}, got {got:.6g}; looks like {m}",
          differs=lambda: fail(f"{call}: expected {formula} = {expected:.6g}, got {got:.6g}"))


# The case: (p, n), an accuracy and a test-set size.
MISTAKES = (
    Mistake("variance", lambda c: c[0] * (1 - c[0]) / c[1], "the variance p(1-p)/n instead of its square root"),
    Mistake("sqrt_p_over_n", lambda c: math.sqrt(c[0] / c[1]), "sqrt(p/n): the spread of a right/wrong outcome is p(1-p), not p"),
    Mistake("no_division", lambda c: math.sqrt(c[0] * (1 - c[0])), "sqrt(p(1-p)) without dividing by n"),
    Mistake("percentage", lambda c: 100 * math.sqrt(c[0] * (1 - c[0]) / c[1]), "a percentage: work with fractions (0.82, not 82)"),
)


@checker("standard_error")
def check_standard_error(fn: Callable[[float, int], float]) -> bool:
    """Check ``fn(accuracy, n) -> standard error`` on a few accuracies and test-set sizes."""
    for p, n in ((0.82, 2000), (0.5, 100), (0.91, 10_000), (0.99, 500), (0.0, 50)):
        _judge_number(f"standard_error({p}, {n})", call_learner(fn, "standard_error", p, n), accuracy_standard_error(p, n),
                      "sqrt(p * (1 - p) / n)", MISTAKES, (p, n))
    se = accuracy_standard_error(0.82, 2000)
    return passed("standard_error", f"82% on 2,000 test images is 82 +- {100 * se:.1f} points (one standard error)")


# ------------------------------------------------------------------- over seeds
def difference_standard_error(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of ``mean(a) - mean(b)`` from each setting's per-seed values (independent seeds):
    ``sqrt(sd_a**2 / n_a + sd_b**2 / n_b)`` with sample standard deviations (divisor ``n - 1``)."""
    if min(len(a), len(b)) < 2:
        raise ValueError(f"needs at least two seeds a side (got {len(a)} and {len(b)}): one value has no spread")
    return math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))


def _var_over_n(a: Sequence[float], b: Sequence[float], variance: Callable[[Sequence[float]], float]) -> float:
    return variance(a) / len(a) + variance(b) / len(b)


# The case: (a, b), the two settings' per-seed values.
SEED_MISTAKES = (
    Mistake("population_sd", lambda c: math.sqrt(_var_over_n(*c, statistics.pvariance)),
            "the population sd (divisor n): with 2-3 seeds use the sample sd, divisor n - 1 (statistics.stdev)"),
    Mistake("not_divided_by_n", lambda c: math.sqrt(statistics.variance(c[0]) + statistics.variance(c[1])),
            "the sds without dividing by n: that is the spread of one seed, not of a mean over n seeds"),
    Mistake("variance", lambda c: _var_over_n(*c, statistics.variance), "the variance of the difference: take its square root"),
    Mistake("standard_errors_added",
            lambda c: sum(statistics.stdev(v) / math.sqrt(len(v)) for v in c),
            "the two standard errors added: independent noises add as variances, sqrt(se_a**2 + se_b**2)"),
)


@checker("difference_se")
def check_difference_se(fn: Callable[[Sequence[float], Sequence[float]], float]) -> bool:
    """Check ``fn(a, b) -> standard error of mean(a) - mean(b)`` on per-seed accuracies (fractions)."""
    cases = (([0.694, 0.688, 0.702], [0.641, 0.652, 0.633]), ([0.70, 0.72], [0.66, 0.67, 0.69, 0.64]),
             ([0.735, 0.735, 0.735], [0.722, 0.716, 0.727]))
    for a, b in cases:
        _judge_number(f"difference_se({list(a)}, {list(b)})", call_learner(fn, "difference_se", list(a), list(b)),
                      difference_standard_error(a, b), "sqrt(sd_a**2 / n_a + sd_b**2 / n_b)", SEED_MISTAKES, (a, b))
    a, b = cases[0]
    diff, se = statistics.fmean(a) - statistics.fmean(b), difference_standard_error(a, b)
    return passed("difference_se", f"{100 * diff:+.1f} +- {100 * se:.1f} points: {diff / se:.1f} standard errors apart")
