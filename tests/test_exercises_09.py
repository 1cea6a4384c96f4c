"""The checker of notebook 09 accepts the reference and rejects the usual mistakes; the noise helpers."""

from __future__ import annotations

import math

import pytest

from mae_lesson.exercises import ExerciseError
from mae_lesson.exercises.ablations import accuracy_standard_error, check_standard_error, differ

from conftest import accepts, not_attempted, raising, rejects


def reference(p: float, n: int) -> float:  # written from the binomial variance p(1-p)/n
    return (p * (1 - p) / n) ** 0.5


def test_accepts_reference(capsys):
    accepts(check_standard_error, reference, capsys)


def test_reports_the_stub_as_not_attempted(capsys):
    not_attempted(check_standard_error, raising, capsys, "standard_error")
    not_attempted(check_standard_error, lambda p, n: None, capsys, "standard_error")


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
    with pytest.raises(ExerciseError, match="ZeroDivisionError"):
        check_standard_error(lambda p, n: 1 / 0)


def test_standard_error_and_differ():
    assert accuracy_standard_error(0.5, 100) == pytest.approx(0.05)
    assert accuracy_standard_error(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="divide a percentage by 100"):
        accuracy_standard_error(82.0, 2000)
    with pytest.raises(ValueError, match="positive number"):
        accuracy_standard_error(0.5, 0)
    # 2,000 images: one standard error of a difference near 80% is about 1.3 points.
    assert not differ(0.80, 0.81, 2000) and differ(0.80, 0.84, 2000)
