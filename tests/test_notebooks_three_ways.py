"""Run All on notebooks 00-09 as three learners would, in quick mode, each run to the end.

- ``stub``: every exercise left untouched: every check says "Not attempted yet", the notebook goes on
  with the references;
- ``right``: every exercise answered right in a style other than the reference
  (:mod:`notebook_answers`): every check says "Correct", and a counter in each answer proves the
  cells after the exercise ran the learner's code;
- ``wrong``: every exercise answered wrong in a way no checker lists (the right answer, its result
  nudged): every check says "Not correct", never "Correct", and the notebook goes on with the references.

One kernel per notebook and way, quick mode. The three ways run side by side, at most
``MAE_LESSON_THREE_WAYS_JOBS`` kernels at once (default 2, one torch thread each); each way's notebooks
run in order (05 assembles the MAE from what 01-04 of the same way kept), and two ways never run one
notebook at once (they would share its run folders). The first test to ask for a result starts them
all. Marked ``slow``, still run in CI. ``MAE_LESSON_THREE_WAYS=01,05`` limits a local run to some
notebooks (05's check of the assembled MAE expects 01, 03 and 04 run first).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

import notebook_answers  # tests/, which pytest puts on the path beside conftest.py

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[0-9]_*.ipynb"))
ONLY = [n for n in os.environ.get("MAE_LESSON_THREE_WAYS", "").split(",") if n]
VERDICT = re.compile(r"^(Correct:|Not attempted yet|Not correct:)", re.M)
REPORT = "THREE-WAYS-REPORT "
EXPECTED = {"stub": "Not attempted yet", "right": "Correct:", "wrong": "Not correct:"}
# Each way keeps its passed functions in its own my_mae/ folder, shared by its notebooks in order.
MY_MAE = Path(tempfile.mkdtemp(prefix="three_ways_my_mae_"))
RAN: set[tuple[str, str]] = set()  # (notebook number, way) already run in this session
PIECES = ["patchify", "forward_encoder", "forward_decoder", "mae_loss"]  # 05 assembles these


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def exercise_name(cell) -> str:
    return re.search(r"^def my_(\w+)\(", cell.source, re.M).group(1)


def prepare(path: Path, way: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook as the learner of ``way`` leaves it, with a last cell that reports what ran."""
    nb = nbformat.read(path, as_version=4)
    names = []
    for cell in nb.cells:
        if "exercise-stub" in tags(cell):
            name = exercise_name(cell)
            names.append(name)
            if way != "stub":
                cell.source = getattr(notebook_answers, way)(name)
        elif "exercise-check" in tags(cell) and names:
            # How often the learner's function ran up to its check: the calls after it are the later cells'.
            cell.source += (f'\nCALLS_AT_CHECK = globals().setdefault("CALLS_AT_CHECK", {{}})\n'
                            f'CALLS_AT_CHECK["{names[-1]}"] = globals().get("LEARNER_CALLS", {{}}).get("{names[-1]}", 0)')
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\nfrom mae_lesson.exercises import CHOSEN, RESULTS\n"
        f'print("{REPORT}" + json.dumps({{"results": RESULTS, "chosen": CHOSEN, '
        '"calls": globals().get("LEARNER_CALLS", {}), "at_check": globals().get("CALLS_AT_CHECK", {}), '
        '"assembled": getattr(globals().get("your_mae_forward"), "yours", None)}))'))
    return nb, names


def run_notebook(path: Path, way: str) -> tuple[nbformat.NotebookNode, list[str], dict]:
    nb, names = prepare(path, way)
    # The kernel's own environment (not os.environ: two kernels start at once from two threads).
    env = {**os.environ, "MAE_LESSON_QUICK": "1", "MPLBACKEND": "Agg", "MAE_LESSON_MY_MAE": str(MY_MAE / way)}
    if JOBS > 1:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # two kernels on two cores, not four threads
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)  # raises CellExecutionError if any cell fails: Run All would stop there
    text = "".join(out.get("text", "") for out in nb.cells[-1].outputs if out.get("output_type") == "stream")
    report = json.loads(text.split(REPORT, 1)[1])
    RAN.add((path.name[:2], way))
    return nb, names, report


JOBS = int(os.environ.get("MAE_LESSON_THREE_WAYS_JOBS", "2"))
_RUNS: dict[tuple[str, str], Future] = {}
_START = threading.Lock()


def result(path: Path, way: str) -> tuple[nbformat.NotebookNode, list[str], dict]:
    """The run of ``path`` the ``way`` learner's way; the first call starts every case's run."""
    with _START:
        if not _RUNS:
            _start_all()
    return _RUNS[(path.name, way)].result()


def _start_all() -> None:
    """``JOBS`` threads take the cases in order (the three ways interleaved, notebook by notebook). A case
    waits for its way's previous notebook (05 assembles what 01-04 kept) and never runs beside the same
    notebook of another way: both would claim its run folder (06's runs/06_pretrain)."""
    todo = sorted(CASES, key=lambda case: (NOTEBOOKS.index(case[0]), case[1]))
    for path, way in todo:
        _RUNS[(path.name, way)] = Future()
    previous: dict[tuple[str, str], str | None] = {}
    last: dict[str, str] = {}
    for path, way in todo:
        previous[(path.name, way)] = last.get(way)
        last[way] = path.name
    running: set[str] = set()
    ready = threading.Condition()

    def can_start(path: Path, way: str) -> bool:
        before = previous[(path.name, way)]
        return path.name not in running and (before is None or _RUNS[(before, way)].done())

    def worker() -> None:
        while True:
            with ready:
                while True:
                    pending = [case for case in todo if not _RUNS[(case[0].name, case[1])].running()
                               and not _RUNS[(case[0].name, case[1])].done()]
                    if not pending:
                        return
                    startable = [case for case in pending if can_start(*case)]
                    if startable:
                        path, way = startable[0]
                        future = _RUNS[(path.name, way)]
                        future.set_running_or_notify_cancel()
                        running.add(path.name)
                        break
                    ready.wait()
            try:
                future.set_result(run_notebook(path, way))
            except BaseException as exc:  # noqa: BLE001 - the failure belongs to that case's test
                future.set_exception(exc)
            with ready:
                running.discard(path.name)
                ready.notify_all()

    for number in range(JOBS):
        threading.Thread(target=worker, name=f"three-ways-{number}", daemon=True).start()


def verdicts(nb: nbformat.NotebookNode) -> dict[str, list[str]]:
    """The verdict lines each exercise's check cell printed."""
    found, name = {}, None
    for cell in nb.cells:
        if "exercise-stub" in tags(cell):
            name = exercise_name(cell)
        if "exercise-check" in tags(cell):
            text = "".join(out.get("text", "") for out in cell.outputs if out.get("output_type") == "stream")
            found[name] = [line for line in text.splitlines() if VERDICT.match(line)]
    return found


CASES = [(path, way) for path in NOTEBOOKS for way in ("stub", "right", "wrong")
         if not ONLY or path.name[:2] in ONLY]


@pytest.mark.slow
@pytest.mark.parametrize("path, way", CASES, ids=[f"{p.name[:2]}-{w}" for p, w in CASES])
def test_run_all_goes_to_the_end(path: Path, way: str) -> None:
    nb, names, report = result(path, way)
    lines = verdicts(nb)
    assert names, f"{path.name}: no exercise found"
    for name in names:
        assert len(lines[name]) == 1 and lines[name][0].startswith(EXPECTED[way]), \
            f"{path.name} {way}: my_{name}'s check printed {lines[name]}, expected one line starting {EXPECTED[way]!r}"
        assert report["chosen"].get(name) is (way == "right"), \
            f"{path.name} {way}: the use cell of {name} picked {'yours' if report['chosen'].get(name) else 'the reference'}"
        if way == "right":
            later = report["calls"].get(name, 0) - report["at_check"].get(name, 0)
            assert later > 0, f"{path.name}: no cell after the check of {name} ran the learner's my_{name}"
    if path.name.startswith("05_"):  # "put it together" assembled the MAE it trains from my_mae/
        earlier_right = way == "right" and all((n, "right") in RAN for n in ("01", "03", "04"))
        assert report["assembled"] == (PIECES if earlier_right else ["mae_loss"] if way == "right" else []), \
            f"05 {way}: the assembled MAE used the learner's {report['assembled']}"
        if earlier_right:  # 01's patchify, loaded back from my_mae/, ran in 05's kernel
            assert report["calls"].get("patchify", 0) > 0, "05 right: the learner's patchify never ran in 05"
    for cell in nb.cells:  # a wrong answer never reads as passed, anywhere
        if way == "wrong" and cell.cell_type == "code":
            text = "".join(out.get("text", "") for out in cell.outputs if out.get("output_type") == "stream")
            assert not re.search(r"^Correct:", text, re.M), f"{path.name} wrong: a cell printed {text[:200]!r}"


def test_prepare_replaces_stubs_and_counts(tmp_path):
    """The runner itself: answers replace the stubs, the check cells record the calls, the report cell comes last."""
    path = NOTEBOOKS[0]
    nb, names = prepare(path, "right")
    stubs = [c for c in nb.cells if "exercise-stub" in tags(c)]
    assert names == ["encoder_tokens"] and "_count(\"encoder_tokens\")" in stubs[0].source
    assert REPORT in nb.cells[-1].source
    wrong_nb, _ = prepare(path, "wrong")
    assert "_nudge(_right_encoder_tokens(" in [c for c in wrong_nb.cells if "exercise-stub" in tags(c)][0].source
    stub_nb, _ = prepare(path, "stub")
    assert [c.source for c in stub_nb.cells if "exercise-stub" in tags(c)][0].rstrip().endswith("...")
