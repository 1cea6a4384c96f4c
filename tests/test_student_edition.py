"""tools/student_edition.py: no solution left, every use() has its reference, and two notebooks run under nbval."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools import student_edition

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def tagged(nb_cells: list[dict], tag: str) -> list[dict]:
    return [c for c in nb_cells if tag in c.get("metadata", {}).get("tags", [])]


def test_every_solution_is_replaced_by_the_package_reference(tmp_path):
    counts = student_edition.build(NOTEBOOKS, tmp_path)
    assert sum(counts.values()) >= 26
    for path in sorted(tmp_path.glob("*.ipynb")):
        original, student = cells(NOTEBOOKS / path.name), cells(path)
        assert len(student) == len(original), "cells were dropped or added"
        assert not tagged(student, "exercise-solution")
        assert len(tagged(student, "exercise-reference")) == len(tagged(original, "exercise-solution")) == counts[path.name]
        assert "def reference_" not in path.read_text()
        assert all(c["outputs"] == [] for c in student if c["cell_type"] == "code")
        defined = set()
        for cell in student:
            source = "".join(cell["source"])
            defined |= set(re.findall(r"^(reference_\w+) = reference\(\"\w+\"\)", source, re.M))
            for name in re.findall(r"use\(\"\w+\", my_\w+, (reference_\w+),", source):
                assert name in defined, f"{path.name}: use() needs {name} before this cell"


def test_an_unknown_notebook_and_the_source_folder_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        student_edition.main(["99_nothing", "--out", str(tmp_path)])
    assert "no notebook 99_nothing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        student_edition.main(["--out", str(NOTEBOOKS)])
    assert "overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_student_edition_runs_top_to_bottom_under_nbval(tmp_path):
    """Two notebooks of the student edition, quick mode, every cell (outputs not compared: they were cleared)."""
    out = tmp_path / "student" / "notebooks"
    student_edition.build(NOTEBOOKS, out, ["00_welcome", "02_masking"])
    env = {**os.environ, "MAE_LESSON_QUICK": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             "--nbval-current-env", "00_welcome.ipynb", "02_masking.ipynb"],
                            cwd=out, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\d+ passed", result.stdout) and "failed" not in result.stdout
