"""docs/faq.md and notebook 10: one section per question, each answer linked to its evidence and its public threads.

Static checks on the committed files (no execution): the notebook itself runs under nbval.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "10_questions.ipynb"
FAQ = ROOT / "docs" / "faq.md"

# The public threads each question answers (owner/repo#number), as the questions were collected.
THREADS = {
    1: ["facebookresearch/mae#146", "facebookresearch/mae#153", "facebookresearch/mae#174", "facebookresearch/mae#190",
        "facebookresearch/mae#197", "pengzhiliang/MAE-pytorch#40", "pengzhiliang/MAE-pytorch#46"],
    2: ["facebookresearch/mae#3", "facebookresearch/mae#8", "facebookresearch/mae#33", "facebookresearch/mae#38",
        "facebookresearch/mae#155", "facebookresearch/mae#156", "facebookresearch/mae#188"],
    3: ["huggingface/transformers#20328", "huggingface/transformers#20431", "facebookresearch/mae#203"],
    4: ["facebookresearch/mae#16", "facebookresearch/mae#95", "facebookresearch/mae#190"],
    5: ["facebookresearch/mae#19", "facebookresearch/mae#32", "facebookresearch/mae#95", "facebookresearch/mae#144",
        "facebookresearch/mae#154"],
    6: ["facebookresearch/mae#5", "facebookresearch/mae#54", "facebookresearch/mae#70"],
    7: ["lightly-ai/lightly#991", "lucidrains/vit-pytorch#169", "facebookresearch/mae#185"],
    8: ["lucidrains/vit-pytorch#202"],
}
ISSUE_URL = re.compile(r"https://github\.com/([\w.-]+/[\w.-]+)/issues/(\d+)")
NOTEBOOK_LINK = re.compile(r"\.\./notebooks/10_questions\.ipynb#([\w-]+)")
HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)
ANCHOR = re.compile(r'<a id="([\w-]+)"></a>')


def threads_in(text: str) -> set[str]:
    return {f"{repo}#{number}" for repo, number in ISSUE_URL.findall(text)}


def notebook_sections(cells: list[dict]) -> dict[int, dict]:
    """Question number -> {"anchor", "text" (markdown of the section), "code" (its code cells)}."""
    sections: dict[int, dict] = {}
    current = None
    for cell in cells:
        source = "".join(cell["source"])
        heading = HEADING.search(source) if cell["cell_type"] == "markdown" else None
        if heading:
            anchor = ANCHOR.search(source)
            current = int(heading.group(1))
            assert current not in sections, f"notebook 10 has two sections numbered {current}"
            sections[current] = {"anchor": anchor.group(1) if anchor else None, "text": "", "code": []}
        elif cell["cell_type"] == "markdown" and source.startswith("## "):
            current = None  # a closing section that answers no question
        if current is None:
            continue
        if cell["cell_type"] == "markdown":
            sections[current]["text"] += source + "\n"
        else:
            sections[current]["code"].append(cell)
    return sections


def faq_entries(text: str) -> dict[int, str]:
    """Question number -> the text of its docs/faq.md entry."""
    starts = list(HEADING.finditer(text))
    return {int(m.group(1)): text[m.start(): (starts[i + 1].start() if i + 1 < len(starts) else len(text))]
            for i, m in enumerate(starts)}


@pytest.fixture(scope="module")
def cells() -> list[dict]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


@pytest.fixture(scope="module")
def faq() -> str:
    return FAQ.read_text(encoding="utf-8")


def test_notebook_has_one_section_per_question_with_committed_evidence(cells):
    sections = notebook_sections(cells)
    assert sorted(sections) == sorted(THREADS), f"notebook 10 sections {sorted(sections)}, expected 1-8"
    for number, section in sections.items():
        assert section["anchor"], f"section {number} has no <a id=...></a> anchor for docs/faq.md to link"
        assert "**Short answer.**" in section["text"], f"section {number} gives no short answer"
        with_output = [c for c in section["code"] if c.get("outputs")]
        assert with_output, f"section {number} has no code cell with a committed output (the evidence)"


def test_notebook_sections_link_their_public_threads(cells):
    for number, section in notebook_sections(cells).items():
        missing = set(THREADS[number]) - threads_in(section["text"])
        assert not missing, f"notebook 10 section {number} does not link {sorted(missing)}"


def test_faq_links_every_answer_to_its_notebook_section_and_threads(cells, faq):
    sections = notebook_sections(cells)
    entries = faq_entries(faq)
    assert sorted(entries) == sorted(THREADS), f"docs/faq.md questions {sorted(entries)}, expected 1-8"
    for number, entry in entries.items():
        anchors = NOTEBOOK_LINK.findall(entry)
        assert anchors == [sections[number]["anchor"]], (
            f"docs/faq.md question {number} links {anchors}, expected the notebook anchor {sections[number]['anchor']!r}")
        missing = set(THREADS[number]) - threads_in(entry)
        assert not missing, f"docs/faq.md question {number} does not link {sorted(missing)}"


def test_notebook_is_finished_and_linked(cells):
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert not re.search(r"SUMMARY_|TAKEAWAY|LABELS_N|TODO", text), "notebook 10 still holds a placeholder"
    for target in re.findall(r"\]\(([\w.]+\.ipynb)\)", text):
        assert (NOTEBOOK.parent / target).is_file(), f"notebook 10 links a missing notebook {target}"
    for target in re.findall(r"\]\((\.\./[\w./]+)\)", text):
        assert (NOTEBOOK.parent / target).is_file(), f"notebook 10 links a missing file {target}"
    table_anchors = set(re.findall(r"\]\(#([\w-]+)\)", text))
    assert table_anchors == {s["anchor"] for s in notebook_sections(cells).values()}, "the question table's links miss a section"
