"""Which learner finished which exercise, read from the learners' executed notebooks.

Collect the notebooks as one folder per learner (``SUBMISSIONS/<learner>/NN_name.ipynb``; a
notebook directly in ``SUBMISSIONS/`` counts as the learner named by its file), then::

    python tools/progress.py SUBMISSIONS/                      # a table, learners x exercises
    python tools/progress.py SUBMISSIONS/ --sort passed        # most exercises passed first
    python tools/progress.py SUBMISSIONS/ --csv progress.csv   # one row per learner and exercise

Each exercise's check cell (``ok_<name> = check_<name>(my_<name>)``) prints one verdict, and its
last one counts: ``Correct:`` is *passed*; ``Not correct:``, or an error traceback in the cell's
output, is *attempted*; ``Not attempted yet``, or a check cell that never ran, is *not attempted*.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

PASSED, ATTEMPTED, NOT_ATTEMPTED = "passed", "attempted", "not attempted"
SYMBOL = {PASSED: "+", ATTEMPTED: "~", NOT_ATTEMPTED: "."}
CHECK_RE = re.compile(r"^\s*ok_(\w+)\s*=\s*check_\w+\(", re.M)  # the check cell's assignment names the exercise
# English, and the Chinese that notebooks/zh kernels print (mae_lesson/exercises/locale/zh.po)
VERDICTS = (("Correct:", PASSED), ("Not correct:", ATTEMPTED), ("Not attempted yet", NOT_ATTEMPTED),
            ("正确：", PASSED), ("不正确：", ATTEMPTED), ("尚未作答", NOT_ATTEMPTED))


def cell_status(outputs: list[dict]) -> str:
    """The status a check cell's outputs show: its last verdict line, or an error output."""
    status = NOT_ATTEMPTED
    for output in outputs:
        if output.get("output_type") == "error":
            status = ATTEMPTED if status != PASSED else status
            continue
        text = output.get("text") or output.get("data", {}).get("text/plain", "")
        for line in ("".join(text) if isinstance(text, list) else text).splitlines():
            for prefix, verdict in VERDICTS:
                if line.startswith(prefix):
                    status = verdict
    return status


def notebook_progress(path: Path) -> dict[str, str]:
    """``{"06:train_step": status, ...}`` for every check cell of one executed notebook."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    number = Path(path).name[:2]
    found = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        match = CHECK_RE.search("".join(cell.get("source", "")))
        if match:
            found[f"{number}:{match.group(1)}"] = cell_status(cell.get("outputs", []))
    return found


def collect(root: Path) -> dict[str, dict[str, str]]:
    """``{learner: {exercise: status}}`` for every notebook under ``root``."""
    progress: dict[str, dict[str, str]] = {}
    for path in sorted(Path(root).rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        relative = path.relative_to(root)
        learner = relative.parts[0] if len(relative.parts) > 1 else path.stem
        try:
            progress.setdefault(learner, {}).update(notebook_progress(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            print(f"skipped {path}: not a notebook ({err})", file=sys.stderr)
    return progress


def exercise_order(progress: dict[str, dict[str, str]]) -> list[str]:
    """Every exercise any learner has, in notebook order, then as the notebooks list them."""
    order: dict[str, None] = {}
    for statuses in progress.values():
        order.update(dict.fromkeys(statuses))
    return sorted(order, key=lambda name: name[:2])  # a stable sort keeps each notebook's own order


def sort_learners(progress: dict[str, dict[str, str]], key: str) -> list[str]:
    """Learner names by ``learner`` (A-Z), ``passed`` (most first) or ``attempted`` (most tried first)."""
    def count(learner: str, *states: str) -> int:
        return sum(s in states for s in progress[learner].values())
    keys = {"learner": lambda n: n.lower(), "passed": lambda n: (-count(n, PASSED), n.lower()),
            "attempted": lambda n: (-count(n, PASSED, ATTEMPTED), n.lower())}
    return sorted(progress, key=keys[key])


def table(progress: dict[str, dict[str, str]], sort: str = "learner") -> str:
    """Learners as rows, exercises as columns (``+`` passed, ``~`` attempted, ``.`` not attempted)."""
    exercises = exercise_order(progress)
    learners = sort_learners(progress, sort)
    width = max([len("learner"), *map(len, learners)])
    lines = [f"{'learner':<{width}}  passed attempted  " + " ".join(f"{i + 1:>2}" for i in range(len(exercises)))]
    for learner in learners:
        statuses = [progress[learner].get(name, NOT_ATTEMPTED) for name in exercises]
        lines.append(f"{learner:<{width}}  {statuses.count(PASSED):>6} {statuses.count(ATTEMPTED):>9}  "
                     + " ".join(f"{SYMBOL[s]:>2}" for s in statuses))
    lines.append("\n+ passed   ~ attempted (wrong answer or an error)   . not attempted")
    lines += [f"{i + 1:>3}  {name}" for i, name in enumerate(exercises)]
    return "\n".join(lines)


def write_csv(progress: dict[str, dict[str, str]], path: Path | None) -> None:
    """One row per learner and exercise, for a spreadsheet's sort and filter (stdout when ``path`` is None)."""
    handle = open(path, "w", newline="", encoding="utf-8") if path else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(["learner", "notebook", "exercise", "status"])
        for learner in sort_learners(progress, "learner"):
            for name in exercise_order(progress):
                writer.writerow([learner, name[:2], name[3:], progress[learner].get(name, NOT_ATTEMPTED)])
    finally:
        if path:
            handle.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/progress.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder of the learners' executed notebooks, one subfolder each")
    parser.add_argument("--sort", choices=("learner", "passed", "attempted"), default="learner",
                        help="row order of the table (default: %(default)s)")
    parser.add_argument("--csv", nargs="?", const="-", metavar="FILE",
                        help="write one row per learner and exercise as CSV (to FILE, or stdout without one)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a folder: pass the folder that holds one subfolder of notebooks per learner")
    progress = collect(args.root)
    if not any(progress.values()):
        parser.error(f"no check cells found in the notebooks under {args.root}: expected executed course notebooks")
    if args.csv:
        write_csv(progress, None if args.csv == "-" else Path(args.csv))
    else:
        print(table(progress, args.sort))
    return 0


if __name__ == "__main__":
    sys.exit(main())
