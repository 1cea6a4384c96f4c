"""No import cycle in the package: every module imports, and the import graph read from the source has no loop.

The graph counts every import a module can run (those inside functions and the ``if __name__ == "__main__"``
block too), but not ``if TYPE_CHECKING:`` imports, which never run.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mae_lesson"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """``{"mae_lesson.run.finetune_cli": path, ...}`` for every ``.py`` file of the package."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that ``name`` (at ``path``) imports, relative imports resolved."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # ``from . import data``
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    # A submodule's own packages are imported before it runs (``from . import x`` reads one), not by it.
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in known and m != name and m not in ancestors}


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imported_modules(name, path, set(names)) for name, path in names.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``.

    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def _subgraph(graph: dict[str, set[str]], inside: bool) -> dict[str, set[str]]:
    """The modules of ``mae_lesson.exercises`` (``inside``) or all others, with the edges among them."""
    keep = {m for m in graph if m.startswith("mae_lesson.exercises") == inside}
    return {m: graph[m] & keep for m in keep}


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "mae_lesson.results" in graph["mae_lesson.run.finetune_cli"]  # the walk sees relative imports
    cycle = find_cycle(_subgraph(graph, inside=False))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_exercise_checkers_have_no_import_cycle():
    cycle = find_cycle(_subgraph(import_graph(), inside=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_a_cycle_through_a_main_block(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import run\n")
    (package / "b.py").write_text("def run():\n    pass\n\nif __name__ == '__main__':\n    from .a import run\n")
    names = module_names(package)
    graph = {name: imported_modules(name, path, set(names)) for name, path in names.items()}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


@pytest.mark.parametrize("name", sorted(module_names()))
def test_every_module_imports(name):
    importlib.import_module(name)
