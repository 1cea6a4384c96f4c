"""The package in layers (docs/architecture.md), checked on the parsed source (ast), not by a text search.

- The lesson core (the modules notebooks 01-07 teach, and the engine's step and loop) is under
  ``MAX_CORE_LINES`` lines all together and imports only the core, the support modules, the standard
  library and third-party packages: never the run layer, the checkers or the tools. Every import
  counts, those inside functions and under ``if TYPE_CHECKING:`` too.
- The support modules (speed choices, seeding and devices) import nothing of the package but each other.
- No module of the package imports the maintainer tools, the experiments, the benchmarks or the tests.
- No module of the package is over ``MAX_MODULE`` lines and no function over ``MAX_FUNCTION``, checkers included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mae_lesson"
# The lesson core, in lesson order.
CORE = ("patch_embed", "pos_embed", "masking", "transformer", "loss", "model", "config", "loader", "optim",
        "engine", "evaluate", "classifier")
# What the core may import besides itself.
SUPPORT = ("bundled", "performance", "utils")
# Top-level folders of the repository that are above the package.
ABOVE = ("tools", "experiments", "benchmarks", "scripts", "tests")
MAX_CORE_LINES, MAX_MODULE, MAX_FUNCTION = 1600, 350, 50


def package_sources(root: Path = PACKAGE) -> dict[str, str]:
    """``{"mae_lesson.run.setup": source, ...}`` for every ``.py`` file of the package."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts[-1] = "__init__"  # kept: relative imports of a package resolve from the package itself
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def imports(name: str, source: str, known: set[str]) -> set[str]:
    """Every module ``name`` imports, anywhere in its source, relative imports resolved: ``from a import b`` is
    ``a.b`` when that is a module of ``known``, else ``a``."""
    package = name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            modules = {f"{target}.{alias.name}" for alias in node.names} & known
            found |= modules if len(modules) == len(node.names) else modules | {target}
    return found


def dynamic_imports(source: str) -> list[str]:
    """Calls that import by a string (``importlib.import_module``, ``__import__``): the import check cannot see them."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                calls.append(f"line {node.lineno}: {name}")
    return calls


def layer_violations(sources: dict[str, str], core: tuple[str, ...] = CORE,
                     support: tuple[str, ...] = SUPPORT, root: str = "mae_lesson") -> list[str]:
    """``"importer -> imported (why)"`` for each import against the layers' direction."""
    known = {name.removesuffix(".__init__") for name in sources}
    allowed_for = {"core": set(core) | set(support), "support": set(support)}
    found = []
    for name, source in sources.items():
        short = name[len(root) + 1:]
        layer = "core" if short in core else "support" if short in support else None
        for target in sorted(imports(name, source, known)):
            if target.split(".")[0] in ABOVE:
                found.append(f"{name} -> {target} (above the package)")
            elif layer and target.split(".")[0] == root and target[len(root) + 1:] not in allowed_for[layer]:
                found.append(f"{name} -> {target} ({layer} may import only {', '.join(sorted(allowed_for[layer]))})")
    return found


def too_long(source: str, limit: int = MAX_FUNCTION) -> list[str]:
    """``name (lines)`` of every function (methods and nested ones included) longer than ``limit`` lines,
    counted from its first decorator to its last line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - start + 1
            if length > limit:
                found.append(f"{node.name} ({length})")
    return found


SOURCES = package_sources()


# ------------------------------------------------------------------------------- the core
def test_every_core_and_support_module_exists():
    missing = [m for m in CORE + SUPPORT if f"mae_lesson.{m}" not in SOURCES]
    assert missing == [], f"listed as core or support but not in the package: {missing}; update the lists"


def test_the_lesson_core_reads_in_one_sitting():
    lines = {m: len(SOURCES[f"mae_lesson.{m}"].splitlines()) for m in CORE}
    assert sum(lines.values()) < MAX_CORE_LINES, f"the core has {sum(lines.values())} lines: {lines}"


def test_imports_follow_the_layers():
    assert layer_violations(SOURCES) == []


@pytest.mark.parametrize("module", CORE + SUPPORT)
def test_the_core_imports_nothing_by_name(module):
    assert dynamic_imports(SOURCES[f"mae_lesson.{module}"]) == []


def test_the_layer_check_sees_each_wrong_direction():
    sources = {
        "pkg.__init__": "from . import core\nfrom .runner import go\n",
        "pkg.core": "import torch\nfrom .helper import x\nfrom . import helper, core2\n\n"
                    "def f():\n    from .run.state import Run\n",  # a function-level import counts too
        "pkg.core2": "from pkg import go\n",  # the package's __init__ imports the layers above
        "pkg.other": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.runner\n",
        "pkg.helper": "from .core import y\n",
        "pkg.runner": "from pkg.core import f\nfrom tools.notebooks import clean\n",
        "pkg.run.__init__": "",
        "pkg.run.state": "from ..core import f\nimport experiments.ablations\n",
    }
    found = layer_violations(sources, core=("core", "core2", "other"), support=("helper",), root="pkg")
    only = "(core may import only core, core2, helper, other)"
    assert found == [
        f"pkg.core -> pkg.run.state {only}",
        f"pkg.core2 -> pkg {only}",
        f"pkg.other -> pkg.runner {only}",
        "pkg.helper -> pkg.core (support may import only helper)",
        "pkg.runner -> tools.notebooks (above the package)",
        "pkg.run.state -> experiments.ablations (above the package)",
    ], found
    assert dynamic_imports("import importlib\nm = importlib.import_module('pkg.runner')\n") == ["line 2: import_module"]


# ------------------------------------------------------------------------------- sizes
def test_the_size_rule_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    assert too_long(f"def short():\n    return 1\n\n\ndef long():\n{body}\n    return x0\n") == ["long (62)"]
    assert too_long(f"class A:\n    def method(self):\n{body.replace('    ', '        ')}\n") == ["method (61)"]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_no_function_over_50_lines_and_no_module_over_350(name):
    source = SOURCES[name]
    assert too_long(source) == [], f"{name}: functions over {MAX_FUNCTION} lines"
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE, f"{name} has {lines} lines (at most {MAX_MODULE})"
