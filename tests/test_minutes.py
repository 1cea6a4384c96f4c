"""The minutes the README and the workshop guide quote are the recorded measurements.

docs/minutes.json is written by `python -m tools.run_notebooks --mode full` and `--mode quick`
(one notebook at a time, a fresh kernel each, idle cores); the tables must say the same numbers,
and every notebook must have both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINUTES = json.loads((ROOT / "docs" / "minutes.json").read_text())["notebooks"]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def fmt(minutes: float) -> str:
    return f"{minutes:.1f}"


def test_every_notebook_was_measured_in_both_modes() -> None:
    assert sorted(MINUTES) == NOTEBOOKS
    for name, entry in MINUTES.items():
        assert isinstance(entry.get("quick"), (int, float)) and isinstance(entry.get("full"), (int, float)), name


def test_readme_course_table_quotes_the_measured_minutes() -> None:
    text = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| \[`(\d\d_\w+)`\]\([^)]*\) \|[^|]*\| ([\d.]+ / [\d.]+) \|$", text, re.M))
    assert sorted(rows) == NOTEBOOKS
    for name in NOTEBOOKS:
        assert rows[name] == f"{fmt(MINUTES[name]['quick'])} / {fmt(MINUTES[name]['full'])}", name


def test_workshop_table_quotes_the_measured_minutes() -> None:
    text = (ROOT / "docs" / "workshop.md").read_text()
    rows = {name: (quick, full) for name, quick, full in
            re.findall(r"^\| `(\d\d_\w+)` \| ([\d.]+) \| ([\d.]+) \|", text, re.M)}
    assert sorted(rows) == NOTEBOOKS
    for name in NOTEBOOKS:
        assert rows[name] == (fmt(MINUTES[name]["quick"]), fmt(MINUTES[name]["full"])), name
