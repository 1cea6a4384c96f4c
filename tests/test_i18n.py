"""The Chinese edition's sync tool (tools/i18n_sync.py) on a temporary copy of one notebook and its store.

The last test runs ``check`` on the committed tree; it is skipped until every store exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tools import i18n_sync
from mae_lesson.exercises._i18n import translate
from tools.i18n_sync import main, rewrite_links, sha256, source_text, split_segments

ROOT = Path(__file__).resolve().parents[1]
STEM = "04_decoder"


def _write_json(path: Path, obj: dict, nb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1, sort_keys=nb, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of one English notebook with a complete store (each zh = a tag + the English), built."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / f"{STEM}.ipynb", tmp_path / "notebooks")
    nb = json.loads((tmp_path / "notebooks" / f"{STEM}.ipynb").read_text(encoding="utf-8"))
    store = {c["id"]: {"en_sha256": sha256(source_text(c)), "zh": "【中文】" + source_text(c)}
             for c in nb["cells"] if c["cell_type"] == "markdown"}
    _write_json(tmp_path / "i18n" / "zh" / "notebooks" / f"{STEM}.json", store)
    assert main(["build", "--root", str(tmp_path)]) == 0
    return tmp_path


def _check(root: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["check", "--root", str(root)])
    return rc, capsys.readouterr().out


def _zh(root: Path) -> dict:
    return json.loads((root / "notebooks" / "zh" / f"{STEM}.ipynb").read_text(encoding="utf-8"))


def _edit(path: Path, change) -> None:
    obj = json.loads(path.read_text(encoding="utf-8"))
    change(obj)
    _write_json(path, obj, nb=path.suffix == ".ipynb")


def test_built_notebook_shares_code_outputs_ids_and_passes_check(repo, capsys):
    en = json.loads((repo / "notebooks" / f"{STEM}.ipynb").read_text(encoding="utf-8"))
    zh = _zh(repo)
    assert [c["id"] for c in zh["cells"]] == [c["id"] for c in en["cells"]]
    assert zh["metadata"] == en["metadata"]
    checker_cells = 0
    for a, b in zip(en["cells"], zh["cells"]):
        if a["cell_type"] == "code":
            # checker cells print in the learner's language: their outputs are the catalogue's Chinese
            if {"exercise-check", "exercise-use", "exercise-solution"} & set(a["metadata"].get("tags", [])):
                checker_cells += 1
                english, chinese = ("".join("".join(o["text"]) for o in c["outputs"] if o.get("name") == "stdout") for c in (a, b))
                assert chinese == translate(english, "zh") != english
                a, b = ({**c, "outputs": []} for c in (a, b))
            assert a == b
        else:
            assert source_text(b).startswith("【中文】") and b["metadata"] == a["metadata"]
    assert checker_cells >= 3
    assert _check(repo, capsys) == (0, "i18n check: everything translated and in sync\n")


def test_check_fails_when_zh_code_differs(repo, capsys):
    def change(nb):
        code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        code["source"] = ["print('edited by hand')\n"]

    _edit(repo / "notebooks" / "zh" / f"{STEM}.ipynb", change)
    rc, out = _check(repo, capsys)
    assert rc == 1 and f"notebooks/zh/{STEM}.ipynb: differs from what build writes" in out


def test_missing_cell_fails_check_and_builds_english_with_marker(repo, capsys):
    store_path = repo / "i18n" / "zh" / "notebooks" / f"{STEM}.json"
    cell_id = next(iter(json.loads(store_path.read_text(encoding="utf-8"))))
    _edit(store_path, lambda store: store.pop(cell_id))
    rc, out = _check(repo, capsys)
    assert rc == 1 and f"missing translation for {cell_id!r}" in out
    main(["build", "--root", str(repo)])
    cell = next(c for c in _zh(repo)["cells"] if c["id"] == cell_id)
    assert source_text(cell).startswith(i18n_sync.MARKER_MISSING)
    rc, out = _check(repo, capsys)  # still reported after a build: the marker is not a translation
    assert rc == 1 and f"missing translation for {cell_id!r}" in out


def test_edited_english_markdown_is_reported_stale(repo, capsys):
    en_path = repo / "notebooks" / f"{STEM}.ipynb"
    nb = json.loads(en_path.read_text(encoding="utf-8"))
    cell_id = [c["id"] for c in nb["cells"] if c["cell_type"] == "markdown"][1]

    def change(nb):
        cell = next(c for c in nb["cells"] if c["id"] == cell_id)
        cell["source"] = source_text(cell) + "\nOne more English sentence.\n"

    _edit(en_path, change)
    rc, out = _check(repo, capsys)
    assert rc == 1 and f"stale translation for {cell_id!r}" in out
    capsys.readouterr()
    main(["todo", "--root", str(repo)])
    assert "One more English sentence." in capsys.readouterr().out
    main(["build", "--root", str(repo)])
    text = source_text(next(c for c in _zh(repo)["cells"] if c["id"] == cell_id))
    assert text.startswith(i18n_sync.MARKER_STALE) and text.endswith("One more English sentence.\n")


def test_badges_pointed_at_a_fork_follow_without_going_stale(repo, capsys):
    upstream, fork = "mae-lesson/mae-lesson/blob/main", "someone/mae-lesson/blob/workshop-1"

    def change(nb):
        for cell in nb["cells"]:  # as tools.notebooks --repo-url does: every badge and Colab link
            cell["source"] = source_text(cell).replace(upstream, fork)

    _edit(repo / "notebooks" / f"{STEM}.ipynb", change)
    main(["build", "--root", str(repo)])
    assert _check(repo, capsys) == (0, "i18n check: everything translated and in sync\n")
    badge = next(source_text(c) for c in _zh(repo)["cells"] if fork in source_text(c))
    assert f"github/{fork}/notebooks/zh/{STEM}.ipynb" in badge and upstream not in badge
    _edit(repo / "notebooks" / f"{STEM}.ipynb",
          lambda nb: nb["cells"][0].update(source=source_text(nb["cells"][0]) + "\nAnd a new sentence.\n"))
    rc, out = _check(repo, capsys)  # a real edit beside the new links is still stale
    assert rc == 1 and "stale translation" in out


def test_orphaned_store_entry_fails_check(repo, capsys):
    _edit(repo / "i18n" / "zh" / "notebooks" / f"{STEM}.json",
          lambda store: store.update({"gone": {"en_sha256": "0" * 64, "zh": "旧"}}))
    main(["build", "--root", str(repo)])
    rc, out = _check(repo, capsys)
    assert rc == 1 and "entry 'gone' matches no English part" in out


def test_zh_file_without_english_source_fails_check(repo, capsys):
    shutil.copy(repo / "notebooks" / "zh" / f"{STEM}.ipynb", repo / "notebooks" / "zh" / "99_gone.ipynb")
    rc, out = _check(repo, capsys)
    assert rc == 1 and "notebooks/zh/99_gone.ipynb: no English source; delete it" in out


def test_links_are_rewritten_for_the_zh_folder(tmp_path):
    mapping = {"notebooks/01_a.ipynb": "notebooks/zh/01_a.ipynb", "docs/faq.md": "docs/zh/faq.md"}
    text = ("[next](01_a.ipynb) [old](02_b.ipynb) [faq](../docs/faq.md#why) [arch](../docs/architecture.md) "
            "![fig](../docs/results/x.png) <img src=\"img/y.png\"> [web](https://x.org/a.md) [here](#top) "
            "`[code](../docs/faq.md)`")
    out = rewrite_links(text, "notebooks/00_x.ipynb", "notebooks/zh/00_x.ipynb", mapping)
    assert out == ("[next](01_a.ipynb) [old](../02_b.ipynb) [faq](../../docs/zh/faq.md#why) "
                   "[arch](../../docs/architecture.md) ![fig](../../docs/results/x.png) "
                   "<img src=\"../img/y.png\"> [web](https://x.org/a.md) [here](#top) `[code](../docs/faq.md)`")
    out = rewrite_links("[a](docs/faq.md) [n](notebooks/01_a.ipynb) [c](docs/cheatsheet.md)", "README.md",
                        "README.zh-CN.md", mapping)
    assert out == "[a](docs/zh/faq.md) [n](notebooks/zh/01_a.ipynb) [c](docs/cheatsheet.md)"
    english_version = rewrite_links("[English](README.md)", "README.md", "README.zh-CN.md", {"README.md": "README.zh-CN.md"})
    assert english_version == "[English](README.md)"


def test_segments_split_at_headings_outside_code_and_join_back():
    text = "intro\n# Title\nbody\n```bash\n# not a heading\n```\n## Part\nx\n## Part\ny\n"
    segments = split_segments(text)
    assert [k for k, _ in segments] == ["(preamble)", "# Title", "## Part", "## Part (2)"]
    assert "".join(t for _, t in segments) == text


def _stores_missing() -> list[str]:
    return [p.store for p in i18n_sync.pairs(ROOT) if not (ROOT / p.store).exists()]


@pytest.mark.i18n_complete
@pytest.mark.skipif(bool(_stores_missing()), reason="translation stores not all written yet: "
                    + ", ".join(_stores_missing()))
def test_committed_tree_is_translated_and_in_sync(capsys):
    rc, out = _check(ROOT, capsys)
    assert rc == 0, out
