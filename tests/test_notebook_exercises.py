"""Every exercise in every notebook follows the course's exercise convention, and its checker works.

An exercise is a run of tagged cells: ``exercise-task`` (markdown), ``exercise-stub`` (the
function the learner writes), ``exercise-check``, one or more collapsed ``exercise-hint``
cells, a collapsed ``exercise-solution`` and an ``exercise-use`` cell. For each one this test
executes the notebook's import cells, the untouched stub and the check (the checker must report
"not attempted" and return False without raising), then the solution and the check again with
``my_<name>`` bound to ``reference_<name>`` (the checker must return True).

One test case per notebook, so a notebook that breaks the convention fails on its own.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ROLES = ("exercise-task", "exercise-stub", "exercise-check", "exercise-hint", "exercise-solution", "exercise-use")
NOT_ATTEMPTED = "Not attempted yet: write my_{name} above, or open the reference solution below."
HINT = re.compile(r"^<details>\s*<summary>Hint \d+: .+</summary>\n\n.+\n\n</details>\s*$", re.S)


def source(cell: dict) -> str:
    return "".join(cell["source"])


def role(cell: dict) -> str | None:
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t in ROLES]
    assert len(tags) <= 1, f"a cell has two exercise tags {tags}: {source(cell)[:80]!r}"
    return tags[0] if tags else None


def python_of(cell_source: str) -> str:
    """A code cell's source without IPython magics (``%matplotlib inline``), so ``exec`` can run it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell_source.splitlines())


def is_import_cell(cell: dict) -> bool:
    """A code cell made only of imports (and seeding): what a stub or solution cell may rely on."""
    if cell["cell_type"] != "code":
        return False
    try:
        tree = ast.parse(python_of(source(cell)))
    except SyntaxError:
        return False
    if not tree.body:
        return False
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr in ("set_seed", "manual_seed", "quick_mode")):
            continue  # seeding, and reading quick mode into a constant
        return False
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body)


def exercises(cells: list[dict]) -> list[list[tuple[str, dict]]]:
    """The tagged cells grouped per exercise: each group starts at an ``exercise-task`` cell."""
    groups: list[list[tuple[str, dict]]] = []
    for cell in cells:
        r = role(cell)
        if r is None:
            continue
        assert r == "exercise-task" or groups, f"a {r} cell comes before any exercise-task: {source(cell)[:80]!r}"
        if r == "exercise-task":
            groups.append([])
        groups[-1].append((r, cell))
    return groups


def run(code: str, namespace: dict) -> str:
    """Execute ``code`` in ``namespace`` and return what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<notebook cell>", "exec"), namespace)  # noqa: S102 - the notebook's own cells
    return out.getvalue()


def check_exercise(group: list[tuple[str, dict]], imports: list[str], where: str) -> str:
    """Assert one exercise's cells follow the convention and its checker behaves; return its name."""
    roles = [r for r, _ in group]
    order = [r for r in ROLES if r in roles]
    assert [r for r in roles if r != "exercise-hint"] == [r for r in order if r != "exercise-hint"], \
        f"{where}: cells must come task, stub, check, hints, solution, use; found {roles}"
    for needed in ROLES:
        assert roles.count(needed) >= 1, f"{where}: no {needed} cell (found {roles})"
        if needed != "exercise-hint":
            assert roles.count(needed) == 1, f"{where}: {roles.count(needed)} {needed} cells, expected one"
    first_hint, last_hint = roles.index("exercise-hint"), len(roles) - 1 - roles[::-1].index("exercise-hint")
    assert roles.index("exercise-check") < first_hint and last_hint < roles.index("exercise-solution"), \
        f"{where}: the hints go between the check and the solution; found {roles}"
    cell = dict(group)
    task, stub, check, solution, use = (cell[r] for r in ("exercise-task", "exercise-stub", "exercise-check",
                                                          "exercise-solution", "exercise-use"))

    assert task["cell_type"] == "markdown" and re.match(r"## Exercise \d+: ", source(task)), \
        f"{where}: the task cell must be markdown starting '## Exercise k: <title>'"
    match = re.search(r"^def my_(\w+)\(", source(stub), re.M)
    assert stub["cell_type"] == "code" and match, f"{where}: the stub cell must define my_<name>(...)"
    name = match.group(1)
    where = f"{where} ({name})"
    assert "# your code here" in source(stub), f"{where}: the stub must hold '# your code here'"
    tree = ast.parse(source(stub))
    assert [type(n) for n in tree.body] == [ast.FunctionDef], f"{where}: the stub cell holds only the function"
    body = tree.body[0].body
    assert ast.get_docstring(tree.body[0]), f"{where}: the stub needs a docstring with shapes"
    assert (len(body) == 2 and isinstance(body[1], ast.Expr) and isinstance(body[1].value, ast.Constant)
            and body[1].value.value is Ellipsis), f"{where}: the stub's body is '# your code here' then '...'"
    assert re.search(rf"^ok_{name} = check_{name}\(my_{name}\)\s*$", source(check), re.M), \
        f"{where}: the check cell must run 'ok_{name} = check_{name}(my_{name})'"
    for r, hint in group:
        if r == "exercise-hint":
            assert hint["cell_type"] == "markdown" and HINT.match(source(hint)), \
                f"{where}: a hint is one collapsed '<details><summary>Hint k: ...</summary>' block: " \
                f"{source(hint)[:80]!r}"
    meta = solution.get("metadata", {})
    assert meta.get("jupyter", {}).get("source_hidden") is True, f"{where}: the solution needs jupyter.source_hidden"
    assert meta.get("cellView") == "form", f"{where}: the solution needs cellView: form (Colab)"
    assert source(solution).startswith("#@title Reference solution"), \
        f"{where}: the solution starts '#@title Reference solution'"
    assert re.search(rf"^def reference_{name}\(", source(solution), re.M), \
        f"{where}: the solution defines reference_{name}"
    assert re.search(rf"^check_{name}\(reference_{name}, reference=True\)\s*$", source(solution), re.M), \
        f"{where}: the solution checks itself with check_{name}(reference_{name}, reference=True), so that " \
        f"its line cannot be read as the learner's result"
    assert source(use).strip() == f'{name}_fn = use("{name}", my_{name}, reference_{name}, ok_{name})', \
        f"{where}: the use cell must be exactly {name}_fn = use(\"{name}\", my_{name}, reference_{name}, ok_{name})"

    # The untouched stub: "not attempted", False, no exception; the notebook then uses the reference.
    ns: dict = {}
    for code in imports:
        run(code, ns)
    run(source(stub), ns)
    try:
        printed = run(source(check), ns)
    except Exception as exc:
        raise AssertionError(f"{where}: the checker raised on the untouched stub: {type(exc).__name__}: {exc}") from exc
    assert ns[f"ok_{name}"] is False, f"{where}: the checker returned {ns[f'ok_{name}']!r} on the untouched stub"
    assert NOT_ATTEMPTED.format(name=name) in printed, f"{where}: the checker printed {printed!r} on the stub"
    run(source(solution), ns)
    printed = run(source(use), ns)
    assert ns[f"{name}_fn"] is ns[f"reference_{name}"] and "Using the reference solution" in printed, \
        f"{where}: with the stub untouched, the use cell must pick the reference: {printed!r}"

    # The reference solution, handed in as the learner's answer, passes the checker.
    ns[f"my_{name}"] = ns[f"reference_{name}"]
    try:
        printed = run(source(check), ns)
    except Exception as exc:
        raise AssertionError(f"{where}: the checker rejected the reference solution: {exc}") from exc
    assert ns[f"ok_{name}"] is True, f"{where}: the checker rejected the reference solution: {printed!r}"
    printed = run(source(use), ns)
    assert f"Using your my_{name} from here on." in printed, f"{where}: the use cell printed {printed!r}"
    return name


def check_notebook(cells: list[dict], label: str) -> list[str]:
    """Assert every exercise in ``cells`` follows the convention; return the exercises' names."""
    groups = exercises(cells)
    # An untagged checker call is an exercise outside the convention (a notebook without any
    # checker, such as a question-and-answer notebook, has no exercise to check).
    for c in cells:
        if c["cell_type"] == "code" and role(c) not in ("exercise-check", "exercise-solution"):
            assert not re.search(r"^\s*(ok_\w+ = )?check_\w+\(", source(c), re.M), \
                f"{label}: a checker runs outside an exercise's check/solution cell: {source(c)[:120]!r}"
    if not groups:
        return []
    imports = [python_of(source(c)) for c in cells if is_import_cell(c)]
    assert imports, f"{label}: no import cell (a code cell of imports only) for the exercises to rely on"
    names = [check_exercise(group, imports, f"{label} exercise {k}") for k, group in enumerate(groups, 1)]
    assert len(set(names)) == len(names), f"{label}: two exercises share a name: {names}"
    later = "".join(source(c) for c in cells if role(c) is None and c["cell_type"] == "code")
    for name in names:
        assert not re.search(rf"\bmy_{name}\(", later), \
            f"{label}: a cell outside the exercise calls my_{name}(...); call {name}_fn (the use cell's choice)"
    return names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_exercise_follows_the_convention(path: Path) -> None:
    check_notebook(json.loads(path.read_text())["cells"], path.name)


# ----------------------------------------------------------------------------- the test can fail
def _cell(kind: str, text: str, tag: str | None = None, **metadata) -> dict:
    meta = dict(metadata)
    if tag:
        meta["tags"] = [tag]
    return {"cell_type": kind, "metadata": meta, "source": text.splitlines(keepends=True), "outputs": []}


def _notebook() -> list[dict]:
    """A small notebook with one exercise that follows the convention (notebook 00's)."""
    return [
        _cell("code", "%matplotlib inline\nimport torch\n\nimport mae_lesson\nfrom mae_lesson.exercises import use\n\n"
                      "mae_lesson.set_seed(0)"),
        _cell("markdown", "## Exercise 1: tokens\n\nCount the encoder's tokens.", "exercise-task"),
        _cell("code", 'def my_encoder_tokens(img_size: int, patch_size: int, mask_ratio: float) -> int:\n'
                      '    """1 cls token + int(L * (1 - mask_ratio)) visible patches."""\n'
                      "    # your code here\n    ...", "exercise-stub"),
        _cell("code", "from mae_lesson.exercises.welcome import check_encoder_tokens\n\n"
                      "ok_encoder_tokens = check_encoder_tokens(my_encoder_tokens)", "exercise-check"),
        _cell("markdown", "<details><summary>Hint 1: patches</summary>\n\nL = (img_size // patch_size) ** 2.\n\n"
                          "</details>", "exercise-hint"),
        _cell("code", "#@title Reference solution\n"
                      "def reference_encoder_tokens(img_size: int, patch_size: int, mask_ratio: float) -> int:\n"
                      "    return 1 + int((img_size // patch_size) ** 2 * (1 - mask_ratio))\n\n\n"
                      "check_encoder_tokens(reference_encoder_tokens, reference=True)", "exercise-solution",
              cellView="form", jupyter={"source_hidden": True}),
        _cell("code", 'encoder_tokens_fn = use("encoder_tokens", my_encoder_tokens, reference_encoder_tokens, '
                      "ok_encoder_tokens)", "exercise-use"),
        _cell("code", "print(encoder_tokens_fn(28, 4, 0.75))"),
    ]


def test_a_notebook_that_follows_the_convention_passes(capsys):
    assert check_notebook(_notebook(), "example") == ["encoder_tokens"]


def _replace(index: int, old: str, new: str):
    def change(cells: list[dict]) -> None:
        text = source(cells[index])
        assert old in text
        cells[index]["source"] = [text.replace(old, new)]
    return change


def _drop(index: int):
    return lambda cells: cells.pop(index)


def _metadata(index: int, key: str):
    return lambda cells: cells[index]["metadata"].pop(key)


BROKEN = {
    "solution not hidden in JupyterLab": _metadata(5, "jupyter"),
    "solution not a Colab form": _metadata(5, "cellView"),
    "solution without #@title": _replace(5, "#@title Reference solution\n", ""),
    "stub holds an answer": _replace(2, "    ...", "    return 13"),
    "stub without 'your code here'": _replace(2, "    # your code here\n", "    # TODO\n"),
    "no hint": _drop(4),
    "hint not collapsed": _replace(4, "<details><summary>Hint 1: patches</summary>", "**Hint 1: patches**"),
    "hint after the solution": lambda cells: cells.insert(5, cells.pop(4)),
    "wrong reference solution": _replace(5, "return 1 + int(", "return int("),
    "checker raises on the stub": _replace(3, "\n\nok_",
                                           "\ncheck_encoder_tokens = check_encoder_tokens.__wrapped__\n\nok_"),
    "checker accepts the stub": _replace(3, "\n\nok_", "\ncheck_encoder_tokens = lambda fn: True\n\nok_"),
    "checker silent on the stub": _replace(3, "\n\nok_", "\ncheck_encoder_tokens = lambda fn: False\n\nok_"),
    "check cell keeps no result": _replace(3, "ok_encoder_tokens = check_encoder_tokens(my_encoder_tokens)",
                                           "check_encoder_tokens(my_encoder_tokens)\nok_encoder_tokens = False"),
    "wrong solution, not self-checked": lambda cells: (
        _replace(5, "\n\n\ncheck_encoder_tokens(reference_encoder_tokens, reference=True)", "")(cells),
        _replace(5, "return 1 + int(", "return 2 + int(")(cells)),
    "use cell ignores the checker": _replace(6, 'use("encoder_tokens", my_encoder_tokens, reference_encoder_tokens, '
                                                "ok_encoder_tokens)", "reference_encoder_tokens"),
    "no use cell": _drop(6),
    "later cell calls my_": _replace(7, "encoder_tokens_fn(", "my_encoder_tokens("),
    "checker outside an exercise": lambda cells: cells.append(
        _cell("code", "check_encoder_tokens(reference_encoder_tokens, reference=True)")),
    "no exercise-task": _drop(1),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_exercise_fails(name, capsys):
    cells = _notebook()
    BROKEN[name](cells)
    with pytest.raises(AssertionError):
        check_notebook(cells, "example")


# ------------------------------------------------------------------------- outputs say what ran
SHOWN = re.compile(r"print\(|set_title\(|suptitle\(|label=|set_[xy]label\(|\.text\(")


def said_as_yours(cells: list[dict]) -> list[str]:
    """Lines outside the exercises that print or title a result as the learner's ("your ...") without asking
    ``whose(...)`` (or an assembled forward's ``.whose``) which function ran: they would say "your" for the reference too."""
    found = []
    for cell in cells:
        if cell["cell_type"] != "code" or role(cell) is not None:
            continue
        for line in source(cell).splitlines():
            if SHOWN.search(line) and re.search(r"\byours?\b", line, re.I) and "whose" not in line:
                found.append(line.strip())
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_outputs_say_what_ran(path: Path) -> None:
    assert said_as_yours(json.loads(path.read_text())["cells"]) == []


def test_a_title_that_says_your_for_the_reference_is_found():
    cells = [_cell("code", 'ax.set_title("your training loop")'), _cell("code", 'print(f"{whose(\'x\', \'loop\')}")'),
             _cell("code", "# your code here\nx = 1")]
    assert said_as_yours(cells) == ['ax.set_title("your training loop")']


def test_whose_names_what_ran(capsys):
    from mae_lesson.exercises import use, whose
    use("w_loop", print, print, False)
    use("w_step", print, print, True)
    assert whose("w_loop", "loop") == "the reference loop"
    assert whose("w_step", "step") == "your step"
    assert whose(["w_step", "w_loop"], "training loop") == "your training loop (with the reference w_loop)"
    assert whose("never_used", "loop") == "the reference loop"
