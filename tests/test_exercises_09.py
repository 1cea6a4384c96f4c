"""The checkers of notebook 09 accept the reference and reject the usual mistakes; the noise helpers."""

from __future__ import annotations

import math
import statistics

import pytest

from mae_lesson.exercises import ExerciseError
from mae_lesson.exercises.ablations import (accuracy_standard_error, check_difference_se,
                                           check_standard_error, difference_standard_error, differ)

from conftest import accepts, not_attempted, raising, rejects


def reference(p: float, n: int) -> float:  # written from the binomial variance p(1-p)/n
    return (p * (1 - p) / n) ** 0.5


def reference_difference_se(a, b):  # written from the variance of a mean, var / n, added over independent sides
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1)
    return math.sqrt(var_a / len(a) + var_b / len(b))


CHECKERS = [(check_standard_error, reference, "standard_error"),
            (check_difference_se, reference_difference_se, "difference_se")]


@pytest.mark.parametrize("check, solution, name", CHECKERS)
def test_accepts_reference(check, solution, name, capsys):
    accepts(check, solution, capsys)


@pytest.mark.parametrize("check, solution, name", CHECKERS)
def test_reports_the_stub_as_not_attempted(check, solution, name, capsys):
    not_attempted(check, raising, capsys, name)
    rejects(check, lambda *args: None, "returned None: did you forget `return`?")


@pytest.mark.parametrize("wrong, phrase", [
    (lambda p, n: p * (1 - p) / n, "variance"),
    (lambda p, n: math.sqrt(p / n), "p(1-p)"),
    (lambda p, n: math.sqrt(p * (1 - p)), "without dividing by n"),
    (lambda p, n: 100 * math.sqrt(p * (1 - p) / n), "percentage"),
    (lambda p, n: math.sqrt(p * (1 - p) / (n + 1)), "sqrt(p * (1 - p) / n)"),
    (lambda p, n: [0.01], "expected a number"),
])
def test_rejects_mistakes(wrong, phrase):
    rejects(check_standard_error, wrong, phrase)


def test_rejects_a_crash():
    rejects(check_standard_error, lambda p, n: 1 / 0, "ZeroDivisionError")


def test_standard_error_and_differ():
    assert accuracy_standard_error(0.5, 100) == pytest.approx(0.05)
    assert accuracy_standard_error(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="divide a percentage by 100"):
        accuracy_standard_error(82.0, 2000)
    with pytest.raises(ValueError, match="positive number"):
        accuracy_standard_error(0.5, 0)
    # 2,000 images: one standard error of a difference near 80% is about 1.3 points.
    assert not differ(0.80, 0.81, 2000) and differ(0.80, 0.84, 2000)


# ------------------------------------------------------------------- the standard error of a difference over seeds
@pytest.mark.parametrize("wrong, phrase", [
    (lambda a, b: math.sqrt(statistics.pvariance(a) / len(a) + statistics.pvariance(b) / len(b)), "population sd"),
    (lambda a, b: math.sqrt(statistics.variance(a) + statistics.variance(b)), "without dividing by n"),
    (lambda a, b: statistics.variance(a) / len(a) + statistics.variance(b) / len(b), "square root"),
    (lambda a, b: statistics.stdev(a) / len(a) ** 0.5 + statistics.stdev(b) / len(b) ** 0.5, "add as variances"),
    (lambda a, b: 2 * reference_difference_se(a, b), "sqrt(sd_a**2 / n_a + sd_b**2 / n_b)"),
    (lambda a, b: "small", "expected a number"),
])
def test_difference_se_rejects_mistakes(wrong, phrase):
    rejects(check_difference_se, wrong, phrase)


def test_difference_standard_error():
    # Two seeds a side: sample variances (0.02**2 / 2 = 0.0002 and 0.04**2 / 2 = 0.0008), each over n = 2.
    assert difference_standard_error([0.70, 0.72], [0.60, 0.64]) == pytest.approx(math.sqrt(0.0002 / 2 + 0.0008 / 2))
    with pytest.raises(ValueError, match="at least two seeds"):
        difference_standard_error([0.7], [0.6, 0.62])
