"""Every exercise has a package reference that passes its own checker (the student edition relies on it)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import mae_lesson.exercises as exercises
from mae_lesson.exercises.references import REFERENCES, reference


def all_checkers() -> dict[str, object]:
    """``{exercise name: check_<name>}`` of every checker module."""
    found = {}
    for info in pkgutil.iter_modules(exercises.__path__):
        module = importlib.import_module(f"mae_lesson.exercises.{info.name}")
        for attr, value in vars(module).items():
            if attr.startswith("check_") and callable(value) and hasattr(value, "__wrapped__"):
                found[attr.removeprefix("check_")] = value
    return found


def test_every_checker_has_a_reference():
    assert sorted(all_checkers()) == sorted(REFERENCES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes_its_checker(name, capsys):
    ok = all_checkers()[name](reference(name))  # judged as a learner's answer would be
    out = capsys.readouterr().out
    assert ok is True and out.startswith("Correct:"), out


def test_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="the exercises are: .*patchify"):
        reference("patchfy")
