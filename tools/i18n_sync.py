"""Keep the Chinese edition in sync with the English one.

The English notebooks and guides are the source. A translation store beside them holds, for each
English markdown cell (notebooks) or heading segment (guides), the Chinese text and the SHA-256 of
the English text it translates (format: ``i18n/README.md``). This tool builds the Chinese files
from the two, so code cells and outputs are always the English ones, and says which translations
are missing or stale::

    python -m tools.i18n_sync build    # write notebooks/zh/*.ipynb, docs/zh/*.md, README.zh-CN.md
    python -m tools.i18n_sync check    # non-zero exit if anything is missing, stale or out of date
    python -m tools.i18n_sync status   # counts per file
    python -m tools.i18n_sync todo     # the translators' worklist: current English of each missing/stale part

A missing or stale part is kept in English in the built file, under a visible marker.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANG = "zh"
STORE_DIR = f"i18n/{LANG}"
MARKER_MISSING = "> **[未翻译 · untranslated]** 这一段还没有中文译文，下面暂时是英文原文。\n\n"
MARKER_STALE = "> **[译文待更新 · stale]** 英文原文改过了，下面暂时是新的英文原文。\n\n"


def source_text(cell: dict) -> str:
    """A cell's source as one string (nbformat stores a list of lines or a string)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- what is synced


@dataclass(frozen=True)
class Pair:
    """One English source, its translation store and the Chinese file built from them (repo-relative)."""

    kind: str  # "notebook" or "doc"
    en: str
    store: str
    zh: str


def pairs(root: Path) -> list[Pair]:
    """Every English file of the Chinese edition: all numbered notebooks, and the guides in DOCS."""
    out = [Pair("notebook", f"notebooks/{p.name}", f"{STORE_DIR}/notebooks/{p.stem}.json", f"notebooks/{LANG}/{p.name}")
           for p in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    out += [Pair("doc", en, f"{STORE_DIR}/docs/{Path(en).stem}.json", zh) for en, zh in DOCS if (root / en).exists()]
    return out


# The guides translated segment by segment (README.zh-CN.md is adapted per segment: i18n/README.md).
DOCS = [
    ("README.md", "README.zh-CN.md"),
    ("docs/workshop.md", f"docs/{LANG}/workshop.md"),
    ("docs/cheatsheet.md", f"docs/{LANG}/cheatsheet.md"),
    ("docs/faq.md", f"docs/{LANG}/faq.md"),
]


def counterparts(root: Path) -> dict[str, str]:
    """English path -> Chinese path, for every pair whose store exists (its Chinese file is built)."""
    return {p.en: p.zh for p in pairs(root) if (root / p.store).exists()}


# ----------------------------------------------------------------------------- links

# "Open in Colab" and GitHub links to a file of this repository, a fork or a pinned tag:
# group 1 is the site, group 2 "owner/repo/blob/ref" (rewritten by python -m tools.notebooks --repo-url).
REPO_URL = re.compile(r"(https://(?:colab\.research\.google\.com/github|github\.com)/)([\w.-]+/[\w.-]+/blob/[\w.-]+)/")
CODE_SPANS = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.S)  # never rewrite inside code
_MD_TARGET = re.compile(r"(\]\(\s*)(<[^>\n]*>|[^)\s]+)")  # [text](target "title") and ![alt](target)
_HTML_TARGET = re.compile(r"""(\b(?:src|href)\s*=\s*["'])([^"']+)""")
_REF_TARGET = re.compile(r"^(\s{0,3}\[[^\]\n]+\]:\s*)(\S+)", re.M)


def rewrite_target(target: str, en_file: str, zh_file: str, mapping: dict[str, str]) -> str:
    """Re-point one relative link from ``en_file`` so it works from ``zh_file`` (both repo-relative).

    A target that has a Chinese counterpart (a notebook, a translated guide) points at it, except a
    link to ``en_file`` itself (the Chinese text's "English version" link); any other relative path
    points at the same file as before. Absolute URLs, anchors and root paths are kept.
    """
    bracketed = target.startswith("<") and target.endswith(">")
    raw = target[1:-1] if bracketed else target
    repo = REPO_URL.match(raw)  # "Open in Colab" / GitHub links to this repository open the Chinese file
    if repo and raw[repo.end():] in mapping:
        return target.replace(raw, repo.group(0) + mapping[raw[repo.end():]])
    if not raw or raw.startswith(("#", "/")) or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", raw):
        return target
    cut = min((i for i in (raw.find("#"), raw.find("?")) if i >= 0), default=len(raw))
    path, rest = raw[:cut], raw[cut:]
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(en_file), path))
    if resolved != en_file:  # a link to the file's own English source is the "English version" link
        resolved = mapping.get(resolved, resolved)
    new = posixpath.relpath(resolved, posixpath.dirname(zh_file) or ".")
    if path.endswith("/") and not new.endswith("/"):
        new += "/"
    new += rest
    return f"<{new}>" if bracketed else new


def rewrite_links(text: str, en_file: str, zh_file: str, mapping: dict[str, str]) -> str:
    """Rewrite every relative link and image path in markdown ``text`` (code spans and blocks untouched)."""
    def fix(match: re.Match) -> str:
        return match.group(1) + rewrite_target(match.group(2), en_file, zh_file, mapping)

    parts = CODE_SPANS.split(text)
    for i in range(0, len(parts), 2):  # even parts are prose, odd parts are code
        for pattern in (_MD_TARGET, _HTML_TARGET, _REF_TARGET):
            parts[i] = pattern.sub(fix, parts[i])
    return "".join(parts)


# ----------------------------------------------------------------------------- segments


@dataclass
class Report:
    """What one pair needs: parts without a translation, stale ones, store keys with no English part."""

    pair: Pair
    total: int = 0
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    worklist: list[tuple[str, str, str]] = field(default_factory=list)  # (key, status, current English)
    out_of_date: bool = False  # the committed Chinese file differs from what build writes

    @property
    def translated(self) -> int:
        return self.total - len(self.missing) - len(self.stale)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.stale or self.orphans or self.out_of_date)


def load_store(root: Path, pair: Pair) -> dict | None:
    path = root / pair.store
    if not path.exists():
        return None
    try:
        store = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SystemExit(f"{pair.store} is not valid JSON ({err}); fix the file, nothing was written")
    for key, entry in store.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("en_sha256"), str) and isinstance(entry.get("zh"), str)):
            raise SystemExit(f'{pair.store}: entry {key!r} needs {{"en_sha256": "<hex>", "zh": "<text>"}}; '
                             "fix the entry, nothing was written")
    return store


def translate(key: str, english: str, store: dict, report: Report) -> str:
    """The Chinese text for one English part, or the English under a marker (recorded in ``report``)."""
    report.total += 1
    entry = store.get(key)
    if entry is None:
        report.missing.append(key)
        report.worklist.append((key, "missing", english))
        return MARKER_MISSING + english
    if entry["en_sha256"] != sha256(english):
        followed = _follow_repo_url(english, entry)
        if followed is not None:
            return followed
        report.stale.append(key)
        report.worklist.append((key, "stale", english))
        return MARKER_STALE + english
    return entry["zh"]


def _follow_repo_url(english: str, entry: dict) -> str | None:
    """The translation with the English's repository links, if they are all that changed, else None.

    Pointing the badges at a fork or a tag (python -m tools.notebooks --repo-url URL --tag TAG)
    rewrites "owner/repo/blob/ref" in the English; the translation still holds the old one. When
    putting the old one back into the English gives the hash the translation was made from, the
    translation is current and only its links follow.
    """
    now = {m.group(2) for m in REPO_URL.finditer(english)}
    then = {m.group(2) for m in REPO_URL.finditer(entry["zh"])}
    if len(now) != 1 or len(then) != 1 or now == then:
        return None
    (new,), (old,) = now, then
    back = REPO_URL.sub(lambda m: m.group(1) + old + "/", english)
    if sha256(back) != entry["en_sha256"]:
        return None
    return REPO_URL.sub(lambda m: m.group(1) + new + "/", entry["zh"])


def split_segments(text: str) -> list[tuple[str, str]]:
    """Split a markdown guide at its heading lines: ``[(key, segment text)]``, text joined back losslessly.

    The key is the heading line (``"## Quick start"``), with `` (2)``, `` (3)`` for a repeated
    heading; the text before the first heading is ``"(preamble)"``. Lines in fenced code are not
    headings.
    """
    segments: list[list] = [["(preamble)", ""]]
    seen: dict[str, int] = {}
    fence = None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        marker = re.match(r"(```|~~~)", stripped)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
        elif fence is None and re.match(r"#{1,6} ", line):
            heading = stripped
            seen[heading] = seen.get(heading, 0) + 1
            key = heading if seen[heading] == 1 else f"{heading} ({seen[heading]})"
            segments.append([key, ""])
        segments[-1][1] += line
    if not segments[0][1]:
        segments.pop(0)
    return [(k, t) for k, t in segments]


# ----------------------------------------------------------------------------- checker messages

# Code cells whose printed lines are the exercise checkers' (mae_lesson/exercises/_i18n.py): in the
# Chinese notebooks' kernels (started in notebooks/zh) they print Chinese, so their copied outputs are
# passed through the same catalogue, and nbval compares like with like.
CHECKER_TAGS = ("exercise-check", "exercise-use", "exercise-solution")
CHECKER_CALLS = ("assemble_mae_forward(",)  # untagged cells that print carry.py's per-piece lines


def checker_catalogue():
    """This repository's mae_lesson/exercises/_i18n.py, loaded on its own (a sync imports no torch)."""
    spec = importlib.util.spec_from_file_location("_checker_i18n", ROOT / "mae_lesson" / "exercises" / "_i18n.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def translate_checker_outputs(cell: dict, translate) -> None:
    """Put the stdout of an exercise cell (by tag or call) into Chinese, line by line, through the catalogue."""
    tags = cell.get("metadata", {}).get("tags", [])
    if not (any(t in CHECKER_TAGS for t in tags) or any(c in source_text(cell) for c in CHECKER_CALLS)):
        return
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            text = translate("".join(output["text"]) if isinstance(output["text"], list) else output["text"], LANG)
            output["text"] = text.splitlines(keepends=True)


# ----------------------------------------------------------------------------- build


def build_pair(root: Path, pair: Pair, mapping: dict[str, str]) -> tuple[str | None, Report]:
    """The Chinese file's text as build would write it (None without a store), and its report."""
    report = Report(pair)
    store = load_store(root, pair)
    if store is None:
        english = (root / pair.en).read_text(encoding="utf-8")
        keys = ([c.get("id") for c in json.loads(english)["cells"] if c["cell_type"] == "markdown"]
                if pair.kind == "notebook" else [k for k, _ in split_segments(english)])
        report.total, report.missing = len(keys), list(keys)
        return None, report
    if pair.kind == "notebook":
        nb = json.loads((root / pair.en).read_text(encoding="utf-8"))
        zh = copy.deepcopy(nb)
        translate_outputs = checker_catalogue().translate
        for cell in zh["cells"]:
            if cell["cell_type"] == "code":
                translate_checker_outputs(cell, translate_outputs)
            if cell["cell_type"] == "markdown":
                text = rewrite_links(translate(cell["id"], source_text(cell), store, report), pair.en, pair.zh, mapping)
                cell["source"] = text.splitlines(keepends=True)
        used = {c["id"] for c in nb["cells"] if c["cell_type"] == "markdown"}
        out = json.dumps(zh, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # nbformat's own layout
    else:
        segments = split_segments((root / pair.en).read_text(encoding="utf-8"))
        out = "".join(rewrite_links(translate(k, t, store, report), pair.en, pair.zh, mapping) for k, t in segments)
        used = {k for k, _ in segments}
    report.orphans = [k for k in store if k not in used]
    return out, report


def run(root: Path, command: str, names: list[str]) -> int:
    mapping = counterparts(root)
    chosen = [p for p in pairs(root) if not names or any(n in (p.en, p.zh, Path(p.en).stem) for n in names)]
    if names and not chosen:
        print(f"no English notebook or guide matches {names}; try a stem such as 03_encoder or faq")
        return 2
    failed = False
    for pair in chosen:
        text, report = build_pair(root, pair, mapping)
        zh_path = root / pair.zh
        current = zh_path.read_text(encoding="utf-8") if zh_path.exists() else None
        report.out_of_date = text is not None and current != text
        if command == "build" and text is not None and report.out_of_date:
            zh_path.parent.mkdir(parents=True, exist_ok=True)
            zh_path.write_text(text, encoding="utf-8")
            print(f"wrote {pair.zh}")
        if command == "status":
            state = "no store" if text is None else ("up to date" if not report.out_of_date else "needs build")
            print(f"{pair.en:42} {report.translated:3}/{report.total:<3} translated  {len(report.stale):2} stale  "
                  f"{len(report.missing):3} missing  {len(report.orphans)} orphaned  {state}")
        if command == "check" and not report.ok:
            failed = True
            if text is None:
                print(f"{pair.en}: no translation store {pair.store}")
                continue
            for key in report.missing:
                print(f"{pair.en}: missing translation for {key!r}")
            for key in report.stale:
                print(f"{pair.en}: stale translation for {key!r} (its English changed)")
            for key in report.orphans:
                print(f"{pair.store}: entry {key!r} matches no English part; delete it")
            if report.out_of_date:
                print(f"{pair.zh}: differs from what build writes; run python -m tools.i18n_sync build")
        if command == "todo":
            for key, status, english in report.worklist:
                print(f"===== {pair.en} · {key} · {status} · en_sha256 {sha256(english)}\n{english}\n")
    if command == "check" and not names:
        built = {p.zh for p in pairs(root)}
        for stray in sorted({*(root / "notebooks" / LANG).glob("*.ipynb"), *(root / "docs" / LANG).glob("*.md")}):
            if stray.relative_to(root).as_posix() not in built:
                failed = True
                print(f"{stray.relative_to(root).as_posix()}: no English source; delete it")
    if command == "check":
        print("i18n check: " + ("FAILED" if failed else "everything translated and in sync"))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.i18n_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "check", "status", "todo"])
    parser.add_argument("names", nargs="*", help="limit to these notebooks/guides (stem or path); default all")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (tests use a copy)")
    args = parser.parse_args(argv)
    try:
        return run(args.root.resolve(), args.command, args.names)
    except BrokenPipeError:  # `todo | head`: the reader has all it wanted
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
