"""Build the course site, English and Chinese, from the committed notebooks (with their outputs) and docs.

    python -m tools.site            # stage into build/site_src/, then mkdocs build --strict into build/site/
    python -m tools.site --serve    # the same, then serve build/site/ on http://127.0.0.1:8000/ (English: /en/)

MkDocs reads one folder, so this stages two, ``build/site_src/en`` and ``build/site_src/zh``, with
the pages at their repository paths (README.md is the home page): the English notebooks and
guides and every file they link to, and in the Chinese folder each translated page built by
tools.i18n_sync from the English source and its store (links left on the same paths), the English
page where there is no translation. The two sites (mkdocs.yml, mkdocs.zh.yml) thus have the same
page paths, at /en/ and /zh/ (the root page sends a visitor to /en/), and Material's language
switch moves between them, staying on the page. MathJax comes
from the jupyter-server-mathjax package, so the site works offline. Links inside notebooks, which
MkDocs does not check, are checked here: a missing target fails the build as --strict does for
markdown pages.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tools.i18n_sync import CODE_SPANS, Pair, build_pair, pairs

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "site_src"
SITE = ROOT / "build" / "site"


def english_pages(root: Path) -> list[str]:
    """The site's English pages: the README, every guide in docs/ and docs/instructor/, every numbered notebook."""
    docs = sorted(p.relative_to(root).as_posix() for p in [*(root / "docs").glob("*.md"),
                                                           *(root / "docs" / "instructor").glob("*.md")])
    return ["README.md", *docs, *(p.en for p in pairs(root) if p.kind == "notebook")]


def _site_target(path: str) -> str:
    """A notebook's link as the built site needs it (MkDocs leaves notebook HTML alone)."""
    if path == "README.md":
        return "index.html"
    return re.sub(r"\.(md|ipynb)$", ".html", path)


def stage(root: Path = ROOT, out: Path = STAGE) -> list[str]:
    """Write the two sites' source folders, ``out/en`` and ``out/zh``, with the same page paths.

    A page without a translation store is English in both. Returns the broken notebook links found
    (empty when fine).
    """
    if out.exists():
        shutil.rmtree(out)
    missing: list[str] = []
    linked: set[str] = set()
    stores = {p.en: p for p in pairs(root) if (root / p.store).exists()}
    pages = english_pages(root)
    for page in pages:
        english = (root / page).read_text(encoding="utf-8")
        chinese = english
        if page in stores:  # links stay on the English names: both sites have the same paths
            chinese, _ = build_pair(root, Pair(stores[page].kind, page, stores[page].store, page), {})
        for lang, text in (("en", english), ("zh", chinese)):
            dest = out / lang / page
            dest.parent.mkdir(parents=True, exist_ok=True)
            if page.endswith(".ipynb"):
                text = json.dumps(_notebook_links(json.loads(text), page, root, missing, linked))
            else:
                text = _markdown_page(text, page, root)
                linked |= _targets(text, page)
            dest.write_text(text, encoding="utf-8")
    for target in sorted(linked - set(pages)):  # figures and other files the pages link to
        source = root / target
        for lang in ("en", "zh"):
            if source.is_file():
                (out / lang / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, out / lang / target)
            elif source.is_dir():
                shutil.copytree(source, out / lang / target, dirs_exist_ok=True)
    import jupyter_server_mathjax  # the MathJax 2.7 files Jupyter itself serves

    mathjax = out / "en" / "assets" / "mathjax"
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", mathjax)
    # That package ships the STIX-Web fonts only; MathJax's default TeX fonts would be fetched and fail.
    (mathjax / "config" / "local").mkdir(parents=True, exist_ok=True)
    (mathjax / "config" / "local" / "course.js").write_text(
        'MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", '
        'imageFont: null}, SVG: {font: "STIX-Web"}});\n'
        'MathJax.Ajax.loadComplete("[MathJax]/config/local/course.js");\n', encoding="utf-8")
    return sorted(set(missing))


_SWITCH = re.compile(r"\A[^\n]*\]\(README(?:\.zh-CN)?\.md\)[^\n]*\n\n")  # README's language line


def _markdown_page(text: str, page: str, root: Path) -> str:
    """A guide as the site needs it: no README language line (the site has its switch), and a link to
    a folder goes to the folder's README.md (GitHub shows that; MkDocs needs the file)."""
    def fix(match: re.Match) -> str:
        target = match.group(2)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), target))
        if target.endswith("/") and (root / resolved / "README.md").is_file():
            return match.group(1) + target + "README.md"
        return match.group(0)

    return re.sub(r"(\]\(\s*)([^)\s#]+)", fix, _SWITCH.sub("", text))


_TARGET = re.compile(r"\]\(\s*<?([^)\s>]+)|\b(?:src|href)=\"([^\"]+)\"")


def _targets(text: str, page: str) -> set[str]:
    """Repository paths of the relative links and images in a markdown text."""
    found = set()
    for match in _TARGET.finditer(CODE_SPANS.sub("", text)):
        target = (match.group(1) or match.group(2)).split("#")[0]
        if target and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target) and not target.startswith("/"):
            found.add(posixpath.normpath(posixpath.join(posixpath.dirname(page), target)))
    return found


def _notebook_links(nb: dict, page: str, root: Path, missing: list[str], linked: set[str]) -> dict:
    """Point a notebook's relative links at the built pages (.html); record what they need and lack."""
    def fix(match: re.Match) -> str:
        prefix, target = match.group(1), match.group(2)
        path, _, anchor = target.partition("#")
        if not path or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", path) or path.startswith("/"):
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
        if not (root / resolved).exists():
            missing.append(f"{page}: link to {path} (no {resolved})")
        linked.add(resolved)
        new = posixpath.relpath(_site_target(resolved), posixpath.dirname(page))
        return prefix + new + ("#" + anchor if anchor else "")

    pattern = re.compile(r"(\]\(\s*|\b(?:src|href)=\")([^)\s\"]+)")
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            parts = CODE_SPANS.split(text)  # even parts are prose, odd parts are code, left alone
            cell["source"] = "".join(pattern.sub(fix, p) if i % 2 == 0 else p for i, p in enumerate(parts))
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.site", description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="serve build/site/ on http://127.0.0.1:8000/ afterwards")
    args = parser.parse_args(argv)
    missing = stage()
    if missing:
        print("broken links in notebooks:\n  " + "\n  ".join(missing))
        return 1
    if SITE.exists():
        shutil.rmtree(SITE)
    for config in ("mkdocs.yml", "mkdocs.zh.yml"):  # build/site/en/ and build/site/zh/
        built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / config)], cwd=ROOT)
        if built.returncode:
            return built.returncode
    (SITE / "index.html").write_text('<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" '
                                     'content="0; url=en/index.html"><a href="en/index.html">mae-lesson</a>\n',
                                     encoding="utf-8")
    if not args.serve:
        return 0
    subprocess.run([sys.executable, "-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", str(SITE)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
