"""The notebook tools: cleaning committed outputs, the Colab set-up cell, rewriting for a fork."""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

import pytest

from mae_lesson import notebook as nbtool

REPO = Path(__file__).resolve().parents[1]


def _stream(name: str, text: str | list[str]) -> dict:
    return {"name": name, "output_type": "stream", "text": text}


def _code(outputs: list[dict], source: str = "print(1)") -> dict:
    return {"cell_type": "code", "execution_count": 1, "id": "c0ffee",
            "metadata": {"execution": {"iopub.status.busy": "2026-01-01T00:00:00.000Z"}},
            "outputs": outputs, "source": source.splitlines(keepends=True)}


def _notebook(cells: list[dict], widgets: bool = True) -> dict:
    metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python", "version": "3.11.7"}}
    if widgets:
        metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}


def _write(path: Path, nb: dict) -> None:
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------- cleaning
def test_clean_strips_progress_stderr_warnings_widgets_and_paths(tmp_path):
    repo = tmp_path / "course"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    home, tmp = str(Path.home()), tempfile.gettempdir()
    image = {"image/png": "iVBORw0KGgo=\n", "text/plain": ["<Figure size 640x480 with 2 Axes>"]}
    kept_plain = _stream("stdout", ["epoch 1: loss 0.5123\n", "accuracy 91.2%\n"])
    cells = [
        {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": ["# Title with /work/main in prose\n"]},
        _code([
            _stream("stderr", "TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.\n"),
            _stream("stderr", "\r  0%|          | 0/10 [00:00<?, ?it/s]"),
            _stream("stdout", f"run folder: {repo}/runs/06_pretrain\nshipped checkpoints in {repo}/data: ['a']\n"),
            _stream("stdout", "\r 50%|#####     | 5/10 [00:01<00:01, 4.8it/s]\r100%|##########| 10/10 [00:02<00:00, 4.9it/s]\n"),
            _stream("stdout", "step 1\rstep 2\rdone: 10 steps\n"),
            _stream("stdout", f"{sys.prefix}/lib/python3.11/site-packages/x.py:3: UserWarning: careful\n"
                              "  warnings.warn(\n"
                              "kept line\n"),
            kept_plain,
        ]),
        _code([
            {"output_type": "display_data", "metadata": {},
             "data": {nbtool.WIDGET_MIME: {"model_id": "abc", "version_major": 2}, "text/plain": ["HBox()"]}},
            {"output_type": "execute_result", "execution_count": 3, "metadata": {},
             "data": {"text/plain": [f"PosixPath('{repo}/notebooks/figs/x.png')"]}},
            {"output_type": "display_data", "metadata": {}, "data": image},
            _stream("stdout", f"wrote {tmp}/abc/out.csv; home {home}/data; /work/other/runs/r1; /root/.cache/x\n"),
        ]),
    ]
    original = _notebook(cells)
    path = repo / "notebooks" / "00_x.ipynb"
    _write(path, original)

    assert nbtool.main(["--clean", str(path)]) == 0
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"] and nb["metadata"]["kernelspec"] == original["metadata"]["kernelspec"]
    assert nb["cells"][0] == original["cells"][0]  # sources are never touched
    outs = nb["cells"][1]["outputs"]
    texts = ["".join(o["text"]) for o in outs]
    assert all(o["name"] == "stdout" for o in outs)
    assert texts == ["run folder: ../runs/06_pretrain\nshipped checkpoints in ../data: ['a']\n",
                     "done: 10 steps\n", "kept line\n", "epoch 1: loss 0.5123\naccuracy 91.2%\n"]
    assert outs[-1] == kept_plain  # untouched outputs stay exactly as they were
    assert nb["cells"][1]["metadata"] == original["cells"][1]["metadata"]
    outs = nb["cells"][2]["outputs"]
    assert [o["output_type"] for o in outs] == ["execute_result", "display_data", "stream"]
    assert outs[0]["data"]["text/plain"] == ["PosixPath('figs/x.png')"]
    assert outs[1]["data"] == image
    assert "".join(outs[2]["text"]) == "wrote abc/out.csv; home ~/data; runs/r1; ~/.cache/x\n"

    text = path.read_text()
    for leaked in (str(repo), tmp + "/", "/work/other", "/root/", "\r", "Warning:", "it/s"):
        assert leaked not in text.replace("/work/main in prose", ""), leaked
    assert text.endswith("}\n") and '\n "cells": [\n  {\n   "cell_type"' in text  # Jupyter's layout

    before = path.read_bytes()
    assert nbtool.clean_notebook(path) is False and path.read_bytes() == before  # idempotent


def test_clean_leaves_a_clean_notebook_byte_identical(tmp_path):
    path = tmp_path / "01_y.ipynb"
    nb = _notebook([_code([_stream("stdout", ["a\n", "b"])]), _code([], "x = 1")], widgets=False)
    # a file in a layout other than ours must not be reformatted when there is nothing to clean
    path.write_text(json.dumps(nb, indent=2) + "\n")
    before = path.read_bytes()
    assert nbtool.clean_notebook(path) is False
    assert path.read_bytes() == before


def test_clean_reports_a_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        nbtool.main(["--clean", str(tmp_path / "nope.ipynb")])
    assert "no such notebook" in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("45%|####5     | 9/20 [00:01<00:02, 4.5it/s]", True),
    ("Epoch 3:  12%|#2  | 3/25 [00:00<00:05]", True),
    ("[00:01<00:02, 4.5it/s]", True),
    ("epoch 3 | loss 0.51 | 48.2 s", False),
    ("accuracy 91.2% | kNN 86.2%", False),
])
def test_progress_bar_pattern(text, expected):
    assert bool(nbtool.PROGRESS_RE.search(text)) is expected
