"""The workshop's slide deck, built from ``docs/instructor/slides.md`` and the notebooks' own figures.

    python tools/slides.py                   # -> build/slides/slides.html (one file) and slides.md + figures/

The deck's text lives in ``docs/instructor/slides.md``: slides separated by a line ``---``, and a
figure written as ``![caption](notebook:07_finetuning#c84)``, the PNG output of that code cell
(by cell id) in the committed notebook, so the slides show what the notebooks drew in their last
full run. The HTML file embeds every figure and needs nothing else: open it in a browser, arrow
keys or a click move between slides, F11 for full screen.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECK = ROOT / "docs" / "instructor" / "slides.md"
FIGURE_RE = re.compile(r"!\[([^\]]*)\]\(notebook:(\d\d_\w+)#([\w-]+)\)")
SEPARATOR = re.compile(r"^---\s*$", re.M)

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ margin: 0; background: #222; font-family: system-ui, sans-serif; }}
section {{ display: none; box-sizing: border-box; width: 100vw; height: 100vh; padding: 3vh 6vw;
          background: #fff; overflow: hidden; font-size: 2.6vh; }}
section.current {{ display: flex; flex-direction: column; }}
section img {{ max-width: 100%; max-height: 58vh; object-fit: contain; align-self: center; }}
h1 {{ font-size: 5vh; }} h2 {{ font-size: 4vh; margin: 0 0 1.5vh; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #bbb; padding: 0.4em 0.8em; }}
.count {{ position: fixed; right: 1.5vw; bottom: 1vh; color: #888; font-size: 1.8vh; }}
</style></head><body>
{slides}
<div class="count"></div>
<script>
const slides = [...document.querySelectorAll("section")];
let at = Math.max(0, Math.min(slides.length - 1, parseInt(location.hash.slice(1) || "1") - 1));
function show(k) {{
  at = Math.max(0, Math.min(slides.length - 1, k));
  slides.forEach((s, i) => s.classList.toggle("current", i === at));
  document.querySelector(".count").textContent = (at + 1) + " / " + slides.length;
  history.replaceState(null, "", "#" + (at + 1));
}}
document.addEventListener("keydown", e => {{
  if (["ArrowRight", "PageDown", " "].includes(e.key)) show(at + 1);
  if (["ArrowLeft", "PageUp"].includes(e.key)) show(at - 1);
}});
document.addEventListener("click", e => show(at + (e.clientX > innerWidth / 3 ? 1 : -1)));
show(at);
</script></body></html>
"""


def notebook_figure(notebooks: Path, name: str, cell_id: str) -> bytes:
    """The first PNG output of cell ``cell_id`` in ``notebooks/<name>.ipynb``."""
    path = notebooks / f"{name}.ipynb"
    if not path.is_file():
        raise ValueError(f"the deck shows a figure of {name}, but there is no {path}")
    cells = {c.get("id"): c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]}
    if cell_id not in cells:
        raise ValueError(f"{name} has no cell {cell_id!r} any more: point the deck at the cell that draws the figure")
    for output in cells[cell_id].get("outputs", []):
        if "image/png" in output.get("data", {}):
            return base64.b64decode(output["data"]["image/png"])
    raise ValueError(f"cell {cell_id} of {name} has no PNG output: run the notebook (its figures come from its outputs)")


def split_slides(deck: str) -> list[str]:
    return [s.strip() for s in SEPARATOR.split(deck) if s.strip()]


def render_html(deck: str, notebooks: Path) -> str:
    """One self-contained HTML page: a ``<section>`` per slide, figures as data URIs."""
    import mistune  # nbconvert's Markdown renderer, installed with JupyterLab

    def inline(match: re.Match) -> str:
        data = base64.b64encode(notebook_figure(notebooks, match.group(2), match.group(3))).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    render = mistune.create_markdown(plugins=["table"])
    slides = [f"<section>{render(FIGURE_RE.sub(inline, text))}</section>" for text in split_slides(deck)]
    title = html.escape(split_slides(deck)[0].splitlines()[0].lstrip("# "))
    return PAGE.format(title=title, slides="\n".join(slides))


def write_markdown(deck: str, notebooks: Path, out: Path) -> list[Path]:
    """``slides.md`` with figures as files in ``figures/`` (for Marp, Pandoc or any Markdown viewer)."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    written = []

    def to_file(match: re.Match) -> str:
        target = out / "figures" / f"{match.group(2)}_{match.group(3)}.png"
        target.write_bytes(notebook_figure(notebooks, match.group(2), match.group(3)))
        written.append(target)
        return f"![{match.group(1)}](figures/{target.name})"

    (out / "slides.md").write_text(FIGURE_RE.sub(to_file, deck), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/slides.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deck", type=Path, default=DECK, help="the deck's Markdown (default: %(default)s)")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="where the figures come from")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides", help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.deck.is_file():
        parser.error(f"no deck at {args.deck}")
    deck = args.deck.read_text(encoding="utf-8")
    try:
        page = render_html(deck, args.notebooks)
        figures = write_markdown(deck, args.notebooks, args.out)
    except ValueError as err:
        parser.error(str(err))
    (args.out / "slides.html").write_text(page, encoding="utf-8")
    print(f"{len(split_slides(deck))} slides, {len(figures)} figures from the notebooks: {args.out / 'slides.html'} "
          f"(open in a browser) and {args.out / 'slides.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
