"""The Chinese edition uses the Chinese terms of docs/glossary.md.

For every glossary row whose English form appears in the prose of an English notebook cell or guide
segment (code, LaTeX, link targets and HTML tags removed first), the Chinese of that cell or segment
(from its translation store, where the translation is current) contains one of the row's Chinese
forms. Stale and missing translations are tools.i18n_sync's job (tests/test_i18n.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tools import i18n_sync
from tools.i18n_sync import sha256, source_text, split_segments

ROOT = Path(__file__).resolve().parents[1]
# Not checked: code, LaTeX, link targets, HTML tags, URLs; English in double quotes (a figure label or a
# printed line, which stay English: docs/glossary.md) and italic titles starting with a capital (a paper).
_NOT_PROSE = re.compile(r'"[^"\n]*"|“[^”\n]*”|(?<!\*)\*[A-Z][^*\n]*\*(?!\*)|'
                        r"```.*?```|~~~.*?~~~|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]+\$|\]\([^)]*\)|<[^>\n]+>|https?://\S+", re.S)


def glossary(path: Path = ROOT / "docs" / "glossary.md") -> list[tuple[list[str], list[str]]]:
    """The table's rows: ([English forms], [Chinese forms]), split at ' / '."""
    rows, in_table = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("| English | 中文 |"):
            in_table = True
        elif in_table and line.startswith("|") and not line.startswith("|---"):
            en, zh = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.append(([f.strip() for f in en.split(" / ")], [f.strip() for f in zh.split(" / ")]))
        elif in_table and not line.startswith("|"):
            break
    return rows


def _pattern(forms: list[str]) -> re.Pattern:
    words = [r"[\s-]+".join(map(re.escape, re.split(r"[\s-]+", f))) for f in forms]
    # a term followed by a number names a setting ("patch 4", "epoch 3"), kept as written
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)(?![\s-]\d)", re.I)


def violations(units: list[tuple[str, str, str]], rows) -> list[str]:
    """``units``: (where, English, Chinese). One line per glossary term the Chinese leaves out."""
    compiled = [(_pattern(en), en, zh) for en, zh in rows]
    found = []
    for where, english, chinese in units:
        prose = _NOT_PROSE.sub(" ", english)
        for pattern, en, zh in compiled:
            if pattern.search(prose) and not any(form in chinese for form in zh):
                found.append(f"{where}: English says {pattern.search(prose).group(0)!r}, Chinese has none of {zh}")
    return found


def committed_units(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """Every current translation in the stores: notebook markdown cells and guide segments."""
    units = []
    for pair in i18n_sync.pairs(root):
        store_path = root / pair.store
        if not store_path.exists():
            continue
        store = json.loads(store_path.read_text(encoding="utf-8"))
        english = (root / pair.en).read_text(encoding="utf-8")
        parts = ([(c["id"], source_text(c)) for c in json.loads(english)["cells"] if c["cell_type"] == "markdown"]
                 if pair.kind == "notebook" else split_segments(english))
        for key, text in parts:
            entry = store.get(key)
            if entry and entry["en_sha256"] == sha256(text):
                units.append((f"{pair.store} {key}", text, entry["zh"]))
    return units


def test_glossary_table_is_read():
    rows = glossary()
    assert len(rows) >= 50
    assert (["mask ratio"], ["掩码率"]) in rows and (["patch", "patches"], ["图像块"]) in rows


def test_a_translation_that_drifts_from_the_glossary_is_caught():
    rows = glossary()
    units = [("good", "Each patch is masked; the `mask_ratio` is $0.75$.", "每个图像块都被遮盖；掩码率是 0.75。"),
             ("label", 'The "loss" panel of *Masked Autoencoders Are Scalable*, patch 4.', "图中标为 loss 的面板。"),
             ("drift", "The encoder sees the visible patches.", "编码器只看到可见的小块。"),
             ("code only", "Call `decoder_pred` here.", "在这里调用 `decoder_pred`。")]
    found = violations(units, rows)
    assert len(found) == 2 and all(line.startswith("drift:") for line in found)
    assert any("图像块" in line for line in found)


def test_committed_translations_use_the_glossary_terms():
    units = committed_units()
    if not units:
        pytest.skip("no current translation in i18n/zh/ yet")
    found = violations(units, glossary())
    assert not found, f"{len(found)} glossary terms not used:\n" + "\n".join(found[:60])
