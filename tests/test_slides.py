"""tools/slides.py: the committed deck's figures all come from notebook cells, and the page is self-contained."""

from __future__ import annotations

import pytest

from tools import slides


def test_committed_deck_builds_with_every_figure(tmp_path):
    deck = slides.DECK.read_text()
    refs = slides.FIGURE_RE.findall(deck)
    assert len(refs) >= 8, "the deck should show the notebooks' figures"
    assert slides.main(["--out", str(tmp_path)]) == 0
    page = (tmp_path / "slides.html").read_text()
    assert page.count("<section>") == len(slides.split_slides(deck)) >= 10
    assert page.count("data:image/png;base64,") == len(refs) and "notebook:" not in page
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == sorted({f"{name}_{cell}.png" for _, name, cell in refs})
    assert all((tmp_path / "figures" / f).read_bytes().startswith(b"\x89PNG") for f in figures)


def test_a_figure_from_a_missing_cell_is_named(tmp_path, capsys):
    deck = tmp_path / "deck.md"
    deck.write_text("# t\n\n---\n\n![x](notebook:07_finetuning#no-such-cell)\n")
    with pytest.raises(SystemExit):
        slides.main(["--deck", str(deck), "--out", str(tmp_path / "out")])
    assert "07_finetuning has no cell 'no-such-cell'" in capsys.readouterr().err
