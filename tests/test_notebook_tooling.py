"""The notebook tools: cleaning committed outputs, the Colab set-up cell, rewriting for a fork."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from tools import notebooks as nbtool

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
    # print(2) can be saved as two streams, "2" and "\n": the newline alone is output too
    nb = _notebook([_code([_stream("stdout", ["a\n", "b"])]), _code([_stream("stdout", "2"), _stream("stdout", "\n")]),
                    _code([], "x = 1")], widgets=False)
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


# ----------------------------------------------------------------------------- Colab set-up cell
DRIVER = '''
import json, os, re, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")  # what the set-up cell looks for
sys.executable = sys.argv[2]  # a stand-in for pip: the test must not install into this environment
cell = open(sys.argv[1]).read()
namespace = {}
for run in range(2):  # a learner runs the cell twice in one kernel
    exec(compile(cell, "setup-cell", "exec"), namespace)
import mae_lesson
# Then the notebook's next cells as Colab shows them, from the clone at the tag: imports, data
# loading, the exercises up to train_step (stubs not attempted, checkers run on the references).
nb = json.load(open("06_pretraining.ipynb"))  # the set-up cell moved into the clone's notebooks/
code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
first = next(i for i, src in enumerate(code) if src.startswith("# mae-lesson setup")) + 1
last = next(i for i, src in enumerate(code) if "train_step_fn = use(" in src)
for src in code[first:last + 1]:
    exec(compile(re.sub(r"^%.*$", "", src, flags=re.M), "cell", "exec"), namespace)
# One training step of the course's model on the notebook's data, with the notebook's train step.
exec(compile(\'\'\'
step_model = MAE(mae_lesson.Config.from_file("fashion_mnist_tiny")).to(device)
step_optimizer = torch.optim.AdamW(step_model.parameters(), lr=1e-3)
step_schedule = WarmupCosine(step_optimizer, 1e-3, 10, 0)
step_imgs = eval_transform(train.images[:32], train, 28).to(device)
step_loss = train_step_fn(step_model, step_optimizer, step_schedule, step_imgs, step_model.mask_noise(32).to(device))
\'\'\', "step", "exec"), namespace)
print(json.dumps({"mae_lesson": mae_lesson.__file__, "cwd": os.getcwd(), "device": str(namespace["device"]),
                  "train": len(namespace["train"]), "loss": namespace["step_loss"],
                  "checked": namespace["ok_train_step"]}))
'''


def _git(*args: str, cwd: Path | None = None) -> str:
    import subprocess
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.slow
def test_setup_cell_under_simulated_colab_clones_the_tag_and_the_notebook_runs(tmp_path):
    """As on Colab: a shallow clone of a tag into the absolute folder, installed once, the cell run
    twice; then notebook 06's next cells from that clone (data, checkers) and one training step."""
    import os
    import shutil
    import subprocess

    from mae_lesson.data import fashion_mnist_sources

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of the course")
    if not any((p / "train-images-idx3-ubyte.gz").exists() or (p / "train-images-idx3-ubyte").exists()
               for p in fashion_mnist_sources(REPO / "data")):
        pytest.skip("needs Fashion-MNIST on this machine (the test must not download)")
    origin = tmp_path / "origin"  # the "GitHub" the cell clones from: a full clone of this repository
    _git("clone", "-q", "--no-local", str(REPO), str(origin))
    _git("tag", "workshop-test", cwd=origin)  # what the instructor pins with --tag
    # main moves on after the tag, as it does mid-workshop: the clone must still be the tag's commit
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "later", cwd=origin)
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    pip_log = tmp_path / "pip.log"
    fake_python = tmp_path / "fake-python"
    fake_python.write_text(f'#!/bin/sh\necho "$@" >> "{pip_log}"\n')
    fake_python.chmod(0o755)
    cell = tmp_path / "cell.py"
    cell.write_text(nbtool.setup_cell_source(f"file://{origin}", "workshop-test"))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    clone = content / "mae-lesson"
    env = {**os.environ, nbtool.COLAB_DIR_ENV: str(clone), "MAE_LESSON_QUICK": "1", "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, str(driver), str(cell), str(fake_python)], cwd=content, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert (clone / ".git").is_dir() and (clone / "mae_lesson" / "__init__.py").is_file()
    clones = [p.parent for p in content.rglob(".git")]
    assert clones == [clone], f"nested or extra clones: {clones}"
    assert _git("rev-list", "--count", "HEAD", cwd=clone) == "1", "not a shallow (--depth 1) clone"
    assert _git("rev-parse", "HEAD", cwd=clone) == _git("rev-parse", "workshop-test^{commit}", cwd=origin)
    assert Path(report["mae_lesson"]).resolve() == (clone / "mae_lesson" / "__init__.py").resolve()
    assert Path(report["cwd"]).resolve() == (clone / "notebooks").resolve()
    assert report["device"] in ("cpu", "cuda", "mps")
    installs = pip_log.read_text().splitlines()
    assert installs == [f"-m pip install -q -e {clone}"], installs  # installed once, from the clone
    assert "mode: quick" in result.stdout
    assert report["train"] == 60_000 and 0 < report["loss"] < 10
    assert report["checked"] is False and "Not attempted yet" in result.stdout  # the stub, checked
    assert "reference solution passes the train_step checker" in result.stdout  # its self-check ran


def test_setup_cell_outside_colab_only_reports(capsys):
    namespace: dict = {}
    exec(nbtool.setup_cell_source(), namespace)
    out = capsys.readouterr().out
    assert "torch" in out and "device:" in out and "mode:" in out
    assert isinstance(namespace["device"], __import__("torch").device)


# ------------------------------------------------------------------------------ fork or mirror
def _course_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the module file and two notebooks shaped like the course's (badge, set-up cell)."""
    module = tmp_path / "notebook.py"
    module.write_text(Path(nbtool.__file__).read_text())
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("00_a.ipynb", "01_b.ipynb"):
        intro = {"cell_type": "markdown", "id": "m", "metadata": {},
                 "source": ["# Title\n", "\n", nbtool.badge_markdown(name) + "\n", "\n", "Text. Next: [01 · B](01_b.ipynb)"]}
        setup = _code([_stream("stdout", "python 3.11\n")], nbtool.setup_cell_source())
        _write(folder / name, _notebook([intro, setup, _code([])], widgets=False))
    return module, folder


def test_repo_url_rewrites_badges_setup_cells_and_the_one_stored_url(tmp_path):
    module, folder = _course_copy(tmp_path)
    originals = {p.name: json.loads(p.read_text()) for p in folder.iterdir()}
    fork = "https://github.com/someone/mae-fork"
    assert nbtool.main(["--repo-url", fork, "--tag", "v1.0", "--notebooks", str(folder)], module) == 0

    assert 'REPO_URL = "https://github.com/someone/mae-fork"' in module.read_text()
    assert 'BRANCH = "v1.0"' in module.read_text()
    for path in folder.iterdir():
        nb = json.loads(path.read_text())
        intro, setup = "".join(nb["cells"][0]["source"]), "".join(nb["cells"][1]["source"])
        assert nbtool.badge_markdown(path.name, fork, "v1.0") in intro
        assert "/someone/mae-fork/blob/v1.0/notebooks/" + path.name in intro
        assert intro.startswith("# Title\n\n") and intro.endswith(
            "\n\nText. Next: [01 · B](01_b.ipynb) "
            "([Colab](https://colab.research.google.com/github/someone/mae-fork/blob/v1.0/notebooks/01_b.ipynb))")
        assert setup == nbtool.setup_cell_source(fork, "v1.0") and fork in setup
        assert '"--depth", "1", "--branch", "v1.0"' in setup  # a shallow clone of the tag
        original = originals[path.name]
        assert nb["cells"][1]["outputs"] == original["cells"][1]["outputs"]
        assert nb["cells"][2] == original["cells"][2] and nb["metadata"] == original["metadata"]
    # run again: nothing left to change
    assert nbtool.sync_notebooks(folder, fork, "v1.0") == []
    # another tag replaces the Colab link beside the relative one instead of adding a second
    nbtool.sync_notebooks(folder, fork, "v1.1")
    intro = "".join(json.loads((folder / "00_a.ipynb").read_text())["cells"][0]["source"])
    assert intro.count("[Colab](") == 1 and "/blob/v1.1/notebooks/01_b.ipynb" in intro


def test_tag_and_branch_together_are_refused(tmp_path, capsys):
    module, folder = _course_copy(tmp_path)
    with pytest.raises(SystemExit):
        nbtool.main(["--branch", "main", "--tag", "v1.0", "--notebooks", str(folder)], module)
    assert "give one" in capsys.readouterr().err
    assert 'BRANCH = "main"' in module.read_text()


def test_colab_links_leave_other_links_alone():
    text = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://x/00_a.ipynb) "
            "[faq](../docs/faq.md) [06 · Pretraining](06_pretraining.ipynb)")
    out = nbtool.colab_links(text, "https://github.com/a/b", "v2")
    assert out == text + " ([Colab](https://colab.research.google.com/github/a/b/blob/v2/notebooks/06_pretraining.ipynb))"
    assert nbtool.colab_links(out, "https://github.com/a/b", "v2") == out


def test_repo_url_on_a_mirror_keeps_the_badges(tmp_path):
    module, folder = _course_copy(tmp_path)
    mirror = "https://git.example.org/course/mae-lesson.git"
    assert nbtool.sync_notebooks(folder, mirror, "main") == ["00_a.ipynb", "01_b.ipynb"]
    nb = json.loads((folder / "00_a.ipynb").read_text())
    assert nbtool.badge_markdown("00_a.ipynb") in "".join(nb["cells"][0]["source"])
    assert mirror in "".join(nb["cells"][1]["source"])
    with pytest.raises(ValueError, match="GitHub only"):
        nbtool.badge_markdown("00_a.ipynb", mirror)
    with pytest.raises(ValueError, match="spaces or quotes"):
        nbtool.set_repo_url('https://x/y"; rm -rf', "main", module)


@pytest.mark.parametrize("url, path", [
    ("https://github.com/mae-lesson/mae-lesson", "mae-lesson/mae-lesson"),
    ("https://github.com/a/b.git", "a/b"), ("git@github.com:a/b.c.git", "a/b.c"),
    ("https://gitlab.com/a/b", None),
])
def test_github_path(url, path):
    assert nbtool.github_path(url) == path


@pytest.mark.parametrize("path", nbtool.notebook_paths(), ids=lambda p: p.name)
def test_each_notebook_has_the_generated_badge_and_setup_cell(path):
    """The committed notebooks hold what the generator writes (`python -m tools.notebooks` re-syncs)."""
    nb = json.loads(path.read_text())
    setups = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(nbtool.SETUP_MARK)]
    assert len(setups) == 1 and "".join(setups[0]["source"]) == nbtool.setup_cell_source(), \
        f"{path.name}: set-up cell differs from the generator's; run python -m tools.notebooks"
    assert nbtool.badge_markdown(path.name) in "".join(nb["cells"][0]["source"])
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            assert nbtool.colab_links(text) == text, \
                f"{path.name}: a link to a notebook without its Colab twin; run python -m tools.notebooks"


def test_run_minutes_from_cell_timestamps(tmp_path, capsys):
    def timed(start: str, end: str) -> dict:
        cell = _code([])
        cell["metadata"] = {"execution": {"iopub.execute_input": start, "shell.execute_reply": end}}
        return cell

    first = timed("2026-01-01T10:00:00.000000Z", "2026-01-01T10:00:30.000000Z")
    last = timed("2026-01-01T10:01:00.000000Z", "2026-01-01T10:04:30.000000Z")
    # a cell rerun a day later counts its own 60 s, not the day in between
    rerun = timed("2026-01-02T09:00:00.000000Z", "2026-01-02T09:01:00.000000Z")
    _write(tmp_path / "00_a.ipynb", _notebook([first, _code([]), last, rerun]))
    _write(tmp_path / "01_b.ipynb", _notebook([_code([])]))
    assert nbtool.run_minutes(tmp_path / "00_a.ipynb") == pytest.approx(5.0)
    assert nbtool.run_minutes(tmp_path / "01_b.ipynb") is None
    assert nbtool.main(["--timings", "--notebooks", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "00_a.ipynb: 5.0 min\n01_b.ipynb: no cell timestamps\n"
