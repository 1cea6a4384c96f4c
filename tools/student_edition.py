"""The student edition of the notebooks: no solution cells, and still runnable top to bottom.

    python tools/student_edition.py                       # notebooks/ -> build/student/notebooks/
    python tools/student_edition.py --out /tmp/room 00_welcome 02_masking

Each ``exercise-solution`` cell (the hidden ``reference_<name>`` and its self-check) becomes one
line that takes the reference from the package, ``reference_<name> = reference("<name>")``
(``mae_lesson/exercises/references.py``), so ``use()`` still falls back to a working answer. Imports
the solution cell made stay. Outputs and execution counts are cleared. Links such as
``../docs/faq.md`` resolve once the files are a checkout's ``notebooks/`` (a student branch or fork:
copy them over its ``notebooks/`` and commit).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTION, REFERENCE_TAG = "exercise-solution", "exercise-reference"
REFERENCE_IMPORT = "from mae_lesson.exercises.references import reference"


def reference_cell_source(solution: str) -> str:
    """The cell that replaces a solution: its imports, then ``reference_<name> = reference("<name>")``."""
    tree = ast.parse(solution)
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("reference_")]
    if not names:
        raise ValueError(f"a solution cell without a reference_<name> function:\n{solution[:200]}")
    imports = [ast.get_source_segment(solution, node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    lines = ["# The reference solution lives in the package (mae_lesson/exercises/references.py).", *imports,
             REFERENCE_IMPORT, ""]
    lines += [f'{name} = reference("{name.removeprefix("reference_")}")' for name in names]
    return "\n".join(lines)


def student_notebook(nb: dict) -> tuple[dict, int]:
    """``nb`` with every solution cell replaced and all outputs cleared; and how many were replaced."""
    replaced = 0
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and SOLUTION in tags:
            cell["source"] = reference_cell_source("".join(cell["source"])).splitlines(keepends=True)
            cell["metadata"] = {"tags": [REFERENCE_TAG]}
            replaced += 1
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"].pop("execution", None)
    nb.get("metadata", {}).pop("widgets", None)
    return nb, replaced


def build(source: Path, out: Path, names: list[str] | None = None) -> dict[str, int]:
    """Write the student edition of the notebooks in ``source`` (or only ``names``) to ``out``."""
    paths = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if names:
        wanted = {n.removesuffix(".ipynb") for n in names}
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            raise ValueError(f"no notebook {', '.join(sorted(unknown))} in {source}; "
                             f"choose from {', '.join(p.stem for p in paths)}")
        paths = [p for p in paths if p.stem in wanted]
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in paths:
        nb, counts[path.name] = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if "def reference_" in text:
            raise RuntimeError(f"{path.name}: a reference solution survived outside a solution cell")
        (out / path.name).write_text(text, encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/student_edition.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="only these notebooks (e.g. 00_welcome); default: all")
    parser.add_argument("--source", type=Path, default=ROOT / "notebooks", help="the instructor's notebooks")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "student" / "notebooks", help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.out.resolve() == args.source.resolve():
        parser.error("--out is the source folder: the student edition would overwrite the instructor's notebooks")
    try:
        counts = build(args.source, args.out, args.notebooks)
    except ValueError as err:
        parser.error(str(err))
    for name, count in counts.items():
        print(f"{args.out / name}: {count} solution cells replaced by the package's reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
