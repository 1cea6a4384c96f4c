"""tools/progress.py on synthetic executed notebooks: stubs, wrong and right answers, errors, unrun cells.

The check cells' outputs are what the real checker prints for each answer, so a change in the
checkers' verdict lines makes this fail.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mae_lesson.exercises.welcome import check_encoder_tokens
from tools import progress

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def stub(img_size, patch_size, mask_ratio):
    """Tokens the encoder processes."""
    ...


def wrong(img_size, patch_size, mask_ratio):
    return (img_size // patch_size) ** 2  # every patch, no cls token


def right(img_size, patch_size, mask_ratio):
    return 1 + int((img_size // patch_size) ** 2 * (1 - mask_ratio))


def printed(fn) -> list[dict]:
    """The outputs of the check cell after running the real checker on ``fn``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check_encoder_tokens(fn)
    return [{"output_type": "stream", "name": "stdout", "text": out.getvalue().splitlines(keepends=True)}]


ERROR = [{"output_type": "error", "ename": "NameError", "evalue": "name 'my_encoder_tokens' is not defined",
          "traceback": ["NameError: name 'my_encoder_tokens' is not defined"]}]


def executed(folder: Path, learner: str, outputs_by_exercise: dict[str, list[dict] | None]) -> None:
    """Notebook 00 as a learner saved it: each check cell with the given outputs (None: never run)."""
    nb = json.loads((NOTEBOOKS / "00_welcome.ipynb").read_text())
    source = "ok_encoder_tokens = check_encoder_tokens(my_encoder_tokens)"
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and source in "".join(c["source"])]
    assert len(cells) == 1, "notebook 00 no longer has its encoder_tokens check cell"
    second = json.loads(json.dumps(cells[0]))  # a second exercise, as a later notebook section would have
    second["source"] = ["ok_second = check_second(my_second)\n"]
    nb["cells"].append(second)
    for cell, name in ((cells[0], "encoder_tokens"), (second, "second")):
        cell["outputs"] = outputs_by_exercise.get(name) or []
        cell["execution_count"] = 1 if outputs_by_exercise.get(name) is not None else None
    (folder / learner).mkdir(parents=True, exist_ok=True)
    (folder / learner / "00_welcome.ipynb").write_text(json.dumps(nb))


@pytest.fixture
def room(tmp_path) -> Path:
    executed(tmp_path, "ada", {"encoder_tokens": printed(right), "second": printed(right)})
    executed(tmp_path, "bob", {"encoder_tokens": printed(wrong), "second": printed(stub)})
    executed(tmp_path, "cy", {"encoder_tokens": printed(stub), "second": None})
    executed(tmp_path, "dee", {"encoder_tokens": ERROR, "second": printed(wrong) + printed(right)})  # fixed on retry
    (tmp_path / "dee" / "notes.ipynb").write_text("not json")
    return tmp_path


def test_progress_per_learner_and_exercise(room):
    assert progress.collect(room) == {
        "ada": {"00:encoder_tokens": "passed", "00:second": "passed"},
        "bob": {"00:encoder_tokens": "attempted", "00:second": "not attempted"},
        "cy": {"00:encoder_tokens": "not attempted", "00:second": "not attempted"},
        "dee": {"00:encoder_tokens": "attempted", "00:second": "passed"},
    }


def test_table_sorts_by_passed_and_lists_the_exercises(room, capsys):
    assert progress.main([str(room), "--sort", "passed"]) == 0
    out = capsys.readouterr()
    rows = [line.split() for line in out.out.splitlines()[1:5]]
    assert rows == [["ada", "2", "0", "+", "+"], ["dee", "1", "1", "~", "+"], ["bob", "0", "1", "~", "."],
                    ["cy", "0", "0", ".", "."]]
    assert "1  00:encoder_tokens" in out.out and "2  00:second" in out.out
    assert "skipped" in out.err and "notes.ipynb" in out.err


def test_csv_rows_for_a_spreadsheet(room, tmp_path):
    target = tmp_path / "progress.csv"
    assert progress.main([str(room), "--csv", str(target)]) == 0
    rows = target.read_text().splitlines()
    assert rows[0] == "learner,notebook,exercise,status"
    assert "bob,00,encoder_tokens,attempted" in rows and "cy,00,second,not attempted" in rows and len(rows) == 9


def test_a_folder_without_notebooks_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        progress.main([str(tmp_path)])
    assert "no check cells" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        progress.main([str(tmp_path / "absent")])
