"""What the committed notebooks may hold: no machine's paths, progress bars, stderr or warnings,
each file under 350 KB; and 00's list of shipped checkpoints is the one in ``data/``.

Run ``python -m tools.notebooks --clean notebooks/NN_name.ipynb`` after executing a notebook.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import mae_lesson
from tools.notebooks import PROGRESS_RE, notebook_paths, repo_root

MAX_BYTES = 350 * 1024
NOTEBOOKS = notebook_paths()
# An absolute path of some machine: a home, a temp folder, a workspace, Colab's folder, an
# installed Python, a Windows user folder. /usr/share/datasets (Debian's data) is public, not a leak.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|root|tmp|home|Users|content|private/var|var/folders)/"
                           r"|site-packages|dist-packages|[A-Za-z]:\\\\?Users")


def _machine_paths() -> list[str]:
    """This machine's own folders, which must not appear in any output."""
    paths = {str(repo_root(Path(__file__).parent)), str(Path.home()), sys.prefix}
    return sorted(p for p in paths if p not in ("/", "/usr", "/usr/local", "/opt") and len(p) > 4)


def _output_texts(path: Path) -> list[tuple[str, dict, str]]:
    """(cell label, output, its text) for every output of the notebook (images excluded)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    texts = []
    for index, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            label = f"{path.name} cell {index}"
            if out["output_type"] == "stream":
                texts.append((label, out, "".join(out["text"])))
            elif out["output_type"] == "error":
                texts.append((label, out, "\n".join(out.get("traceback", []))))
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") or mime.endswith("json"):
                    texts.append((label, out, "".join(value) if isinstance(value, list) else json.dumps(value)))
    return texts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_absolute_path(path):
    leaks = []
    for label, _, text in _output_texts(path):
        for match in ABSOLUTE_PATH.finditer(text):
            leaks.append(f"{label}: ...{text[max(0, match.start() - 40):match.end() + 40]!r}...")
        leaks += [f"{label}: {p}" for p in _machine_paths() if p in text]
    assert not leaks, "absolute paths in outputs (python -m tools.notebooks --clean FILE):\n" + "\n".join(leaks[:10])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_progress_bar_or_stderr(path):
    problems = []
    for label, out, text in _output_texts(path):
        if out["output_type"] == "stream" and out["name"] == "stderr":
            problems.append(f"{label}: a stderr stream: {text[:80]!r}")
        elif "\r" in text:
            problems.append(f"{label}: carriage returns (a redrawn line): {text[:80]!r}")
        elif PROGRESS_RE.search(text):
            problems.append(f"{label}: a progress bar: {PROGRESS_RE.search(text).group(0)!r}")
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
            problems.append(f"{label}: a widget output")
    assert not problems, "python -m tools.notebooks --clean FILE removes these:\n" + "\n".join(problems[:10])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_hold_no_warning(path):
    warnings = [f"{label}: {line.strip()[:120]}" for label, _, text in _output_texts(path)
                for line in text.splitlines() if re.search(r"\w*Warning:", line)]
    assert not warnings, "warnings in outputs (fix the cause, or clean the file):\n" + "\n".join(warnings[:10])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_file_is_under_350_kb(path):
    size = path.stat().st_size
    assert size < MAX_BYTES, (f"{path.name} is {size / 1024:.0f} KB (limit {MAX_BYTES // 1024} KB): lower the "
                              "figures' dpi or the number of figures, and clean the outputs")


def test_welcome_lists_exactly_the_shipped_checkpoints():
    """The cell tagged ``shipped-checkpoints`` in 00 prints ``shipped checkpoints: a, b, c``: those in ``data/``."""
    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "00_welcome.ipynb").read_text())
    tagged = [c for c in nb["cells"] if "shipped-checkpoints" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "00_welcome.ipynb needs exactly one cell tagged shipped-checkpoints"
    text = "".join("".join(o.get("text", "")) for o in tagged[0].get("outputs", []) if o["output_type"] == "stream")
    lines = [line for line in text.splitlines() if line.startswith("shipped checkpoints:")]
    assert len(lines) == 1, f"no line 'shipped checkpoints: a, b, c' in the tagged cell's output: {text!r}"
    listed = [name.strip() for name in lines[0].split(":", 1)[1].split(",") if name.strip()]
    assert sorted(listed) == mae_lesson.available_pretrained()
