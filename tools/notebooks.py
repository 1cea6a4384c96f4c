"""Maintainer tools for the notebook files: their first cells, Colab links, and clean committed outputs.

- ``setup_cell_source()``: the first code cell. On Colab it clones the course into one absolute
  folder (``/content/mae-lesson``) and installs it; run again, it finds that clone and only moves
  into it. Everywhere it prints the environment (``mae_lesson.notebook.environment_report``, the one
  piece a learner's kernel imports).
- ``badge_markdown()``: the "Open in Colab" badge of a notebook; ``colab_links()`` puts an
  absolute Colab link beside each relative link to another notebook (Colab cannot follow those).
- ``clean_notebook()``: strips from committed outputs what only the machine that ran them
  should see: progress bars, ``stderr`` streams, warnings, widget state and absolute paths.

The repository URL lives here once (``REPO_URL``). Command line::

    python -m tools.notebooks                       # rewrite every badge and set-up cell
    python -m tools.notebooks --repo-url URL [--branch B]   # the same for a fork or mirror
    python -m tools.notebooks --repo-url URL --tag TAG      # a workshop: a fork pinned to a tag
    python -m tools.notebooks --clean FILE [FILE ...]       # clean committed outputs
    python -m tools.notebooks --timings             # minutes of each notebook's committed run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_URL = "https://github.com/mae-lesson/mae-lesson"
BRANCH = "main"
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

SETUP_MARK = "# mae-lesson setup"
BADGE_MARK = "Open In Colab"
# Where the set-up cell clones the course on Colab. Absolute, so that a second run of the cell
# (whose first run moved into the clone's notebooks/ folder) finds the clone instead of nesting one.
COLAB_DIR = "/content/mae-lesson"
COLAB_DIR_ENV = "MAE_LESSON_DIR"


# ------------------------------------------------------------------------- set-up cell and badge
def setup_cell_source(repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The first code cell: on Colab clone and install the course (once); everywhere, pick the device.

    The clone goes to ``$MAE_LESSON_DIR``, by default ``/content/mae-lesson``; the cell is safe
    to run any number of times. ``branch`` may be a tag: a workshop pins one, so that what the
    learners clone cannot change during the session.
    """
    return f"""{SETUP_MARK} (on Colab: clone the course and install it; elsewhere: nothing to do)
import os, subprocess, sys
if "google.colab" in sys.modules:
    repo = os.environ.get("{COLAB_DIR_ENV}", "{COLAB_DIR}")  # absolute: a second run finds the clone
    if not os.path.isdir(os.path.join(repo, ".git")):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}", "{repo_url}", repo], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", repo], check=True)
    if repo not in sys.path:  # pip's editable install is read when Python starts, and this kernel started before it
        sys.path.insert(0, repo)
    os.chdir(os.path.join(repo, "notebooks"))
from mae_lesson.notebook import environment_report
device = environment_report()"""


def github_path(repo_url: str) -> str | None:
    """``owner/name`` of a GitHub URL (https or ssh, with or without ``.git``); None elsewhere."""
    match = re.fullmatch(r"(?:https://github\.com/|git@github\.com:)([\w.-]+/[\w.-]+?)(?:\.git)?/?", repo_url)
    return match.group(1) if match else None


def colab_url(notebook_name: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """Colab's address of ``notebooks/<notebook_name>`` in a GitHub repository at ``branch`` (or tag)."""
    path = github_path(repo_url)
    if path is None:
        raise ValueError(f"Colab opens notebooks from GitHub only, and {repo_url!r} is not a GitHub URL; "
                         "use https://github.com/<owner>/<name>")
    return f"https://colab.research.google.com/github/{path}/blob/{branch}/notebooks/{notebook_name}"


def badge_markdown(notebook_name: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The "Open in Colab" badge for ``notebooks/<notebook_name>`` of a GitHub repository."""
    return (f"[![{BADGE_MARK}](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook_name, repo_url, branch)})")


# A relative link to a course notebook, with the Colab link this module puts after it, if any.
NOTEBOOK_LINK_RE = re.compile(r"(\[[^\]]+\]\((\d\d_\w+\.ipynb)\))(?: \(\[Colab\]\([^)\s]*\)\))?")


def colab_links(markdown: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """``[06 · Pretraining](06_pretraining.ipynb)`` -> the same plus `` ([Colab](<absolute URL>))``.

    Relative links work in JupyterLab and on GitHub; inside Colab they do not, so each gets its
    absolute twin. Running it again replaces the twins (for a new fork or tag).
    """
    return NOTEBOOK_LINK_RE.sub(lambda m: f"{m.group(1)} ([Colab]({colab_url(m.group(2), repo_url, branch)}))", markdown)


# ----------------------------------------------------------------------------- notebook files
def read_notebook(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_notebook(path: Path, nb: dict[str, Any]) -> None:
    """Write as Jupyter does (indent 1, UTF-8, final newline), keeping the keys in their order."""
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def notebook_paths(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks ``NN_name.ipynb`` of ``folder``, in order."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def sync_notebooks(folder: Path = NOTEBOOK_DIR, repo_url: str = REPO_URL, branch: str = BRANCH) -> list[str]:
    """Rewrite the badge and set-up cell of every notebook in ``folder``; returns the changed files.

    Badges and the Colab links beside notebook links are rewritten only for a GitHub URL (Colab
    opens notebooks from GitHub only).
    """
    changed = []
    for path in notebook_paths(folder):
        nb = read_notebook(path)
        before = json.dumps(nb)
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] == "code" and text.startswith(SETUP_MARK):
                cell["source"] = setup_cell_source(repo_url, branch).splitlines(keepends=True)
            elif cell["cell_type"] == "markdown" and github_path(repo_url):
                lines = [badge_markdown(path.name, repo_url, branch) if BADGE_MARK in line else line
                         for line in text.split("\n")]
                new = colab_links("\n".join(lines), repo_url, branch)
                if new != text:
                    cell["source"] = new.splitlines(keepends=True)
        if json.dumps(nb) != before:
            write_notebook(path, nb)
            changed.append(path.name)
    return changed


def set_repo_url(repo_url: str, branch: str = BRANCH, module_file: Path = Path(__file__)) -> bool:
    """Store ``repo_url`` and ``branch`` as ``REPO_URL``/``BRANCH`` in this module's source file.

    So that a later ``python -m tools.notebooks`` keeps the fork's URL. Returns True if the
    file changed.
    """
    if not re.fullmatch(r"[^\s\"'\\]+", repo_url) or not re.fullmatch(r"[\w./-]+", branch):
        raise ValueError(f"repo URL {repo_url!r} or branch {branch!r} contains spaces or quotes; "
                         "pass a plain git URL and branch name")
    text = Path(module_file).read_text(encoding="utf-8")
    new = re.sub(r'^REPO_URL = ".*"$', f'REPO_URL = "{repo_url}"', text, count=1, flags=re.M)
    new = re.sub(r'^BRANCH = ".*"$', f'BRANCH = "{branch}"', new, count=1, flags=re.M)
    if new != text:
        Path(module_file).write_text(new, encoding="utf-8")
    return new != text


# ------------------------------------------------------------------------------ output cleaning
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# A progress bar as tqdm draws it: "45%|####5     | 9/20 [00:01<00:02, 4.5it/s]".
PROGRESS_RE = re.compile(r"\d+%\|.*\||\[[\d:]+<[\d:?]+")
WARNING_RE = re.compile(r"\w*Warning:")
# Where a path starts (not inside a word, a URL or another path) and what it is made of.
_START = r"(?<![\w.~/-])"
_PATH = r"[^\s'\"`<>()\[\]{},;:]"
_SYSTEM_PREFIXES = {"/", "/usr", "/usr/local", "/opt"}


def repo_root(path: Path) -> Path:
    """The nearest folder at or above ``path`` holding ``pyproject.toml`` or ``.git``; else ``path``."""
    path = Path(path).resolve()
    return next((p for p in [path, *path.parents] if (p / "pyproject.toml").exists() or (p / ".git").exists()), path)


def _prefix_rules() -> list[tuple[str, str]]:
    """(absolute prefix, replacement) for this machine's own folders, the longest first."""
    rules = {}
    for folder, repl in [(Path.home(), "~"), (tempfile.gettempdir(), ""), (sys.prefix, ""),
                         (sys.base_prefix, ""), (Path.cwd(), "")]:
        for text in {str(folder), str(Path(folder).resolve())}:
            text = text.rstrip("/")
            if text and text not in _SYSTEM_PREFIXES:
                rules.setdefault(text, repl)
    return sorted(rules.items(), key=lambda rule: -len(rule[0]))


def scrub_paths(text: str, base: Path | None = None) -> str:
    """Replace absolute paths of this (or any usual) machine by relative ones.

    Paths inside the repository that holds ``base`` (the notebook's folder; default: the current
    folder) become relative to ``base``: ``/work/main/runs/06`` seen from ``notebooks/`` is
    ``../runs/06``. Then ``.../site-packages/`` is dropped (``tqdm/auto.py``), the home folder
    becomes ``~``, and the temp folder, ``sys.prefix``, the current folder, ``/work/<x>``,
    ``/tmp``, ``/content`` (Colab), ``/root``, ``/home/<user>`` and ``/Users/<user>`` are dropped.
    """
    base = Path(base if base is not None else Path.cwd()).resolve()
    root = str(repo_root(base))
    if root not in _SYSTEM_PREFIXES:
        pattern = _START + re.escape(root) + r"(?:/" + _PATH + r"*)?(?![\w.-])"
        text = re.sub(pattern, lambda m: os.path.relpath(m.group(0).rstrip("."), base)
                      + m.group(0)[len(m.group(0).rstrip(".")):], text)
    text = re.sub(_START + r"/" + _PATH + r"*?(?:site|dist)-packages/", "", text)
    for prefix, repl in _prefix_rules():
        text = re.sub(_START + re.escape(prefix) + r"/", repl + "/" if repl else "", text)
        text = re.sub(_START + re.escape(prefix) + r"(?![\w./-])", repl or ".", text)
    generic = [
        (_START + r"/(?:home|Users)/[\w.-]+/", "~/"),
        (_START + r"/root/", "~/"),
        (_START + r"/work/[\w.-]+/", ""),
        (_START + r"/(?:tmp|var/tmp|content)/", ""),
    ]
    for pattern, repl in generic:
        text = re.sub(pattern, repl, text)
    return text


def _split_lines(text: str) -> list[str]:
    """Lines ending in ``\\n`` as Jupyter stores them (``str.splitlines`` would also split at ``\\r``)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def _clean_stream_text(text: str) -> str:
    """A stdout stream without progress bars or warnings; carriage returns resolved as a terminal does."""
    kept = []
    for line in _split_lines(text):
        end = "\n" if line.endswith("\n") else ""
        body = line[:-1] if end else line
        if "\r" in body:
            body = body.rstrip("\r").split("\r")[-1]
            if not body.strip() or PROGRESS_RE.search(body):
                continue
            line = body + end
        if PROGRESS_RE.search(body):
            continue
        if WARNING_RE.search(body) or body.startswith("  warnings.warn("):
            continue
        kept.append(line)
    return "".join(kept)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else value


def _as_source(original: Any, text: str) -> Any:
    """``text`` stored the way the original was (a list of lines or one string)."""
    return _split_lines(text) if isinstance(original, list) else text


def clean_outputs(outputs: list[dict[str, Any]], base: Path | None = None) -> list[dict[str, Any]]:
    """The outputs without stderr, progress bars, warnings or widgets, and with relative paths."""
    cleaned = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            if out.get("name") == "stderr":
                continue
            new_text = scrub_paths(_clean_stream_text(_text(out["text"])), base)
            if new_text != _text(out["text"]):
                if not new_text.strip():  # nothing but progress bars or warnings
                    continue
                out = {**out, "text": _as_source(out["text"], new_text)}
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                continue
            new_data = {}
            for mime, value in data.items():
                if mime.startswith("text/") and isinstance(value, (str, list)):
                    new = scrub_paths(_text(value), base)
                    value = value if new == _text(value) else _as_source(value, new)
                new_data[mime] = value
            if new_data != data:
                out = {**out, "data": new_data}
        elif kind == "error":
            traceback = [scrub_paths(line, base) for line in out.get("traceback", [])]
            if traceback != out.get("traceback", []):
                out = {**out, "traceback": traceback}
        cleaned.append(out)
    return cleaned


def clean_notebook(path: Path) -> bool:
    """Clean one notebook file in place (see ``clean_outputs``); returns True if it changed.

    Everything else (sources, metadata, images, key order, formatting) stays byte-identical;
    ``metadata.widgets`` (saved widget state) is dropped.
    """
    path = Path(path)
    base = path.resolve().parent
    nb = read_notebook(path)
    before = json.dumps(nb)
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        if "outputs" in cell:
            cell["outputs"] = clean_outputs(cell["outputs"], base)
        cell.get("metadata", {}).pop("widgets", None)
    if json.dumps(nb) == before:
        return False
    write_notebook(path, nb)
    return True


# ------------------------------------------------------------------------------------ timings
def run_minutes(path: Path) -> float | None:
    """Minutes the notebook's committed outputs took to compute, from Jupyter's cell timestamps.

    ``jupyter nbconvert --execute`` records when each cell started and finished; this adds up each
    cell's time (so a notebook whose cells were run in several sittings is not charged for the
    gaps). None when no cell has timestamps.
    """
    from datetime import datetime

    def when(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    seconds, timed = 0.0, False
    for cell in read_notebook(path).get("cells", []):
        execution = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in execution and "shell.execute_reply" in execution:
            seconds += (when(execution["shell.execute_reply"]) - when(execution["iopub.execute_input"])).total_seconds()
            timed = True
    return seconds / 60 if timed else None


# --------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None, module_file: Path = Path(__file__)) -> int:
    """The command line; ``module_file`` is where ``--repo-url`` stores the URL (this file)."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.notebooks",
        description="Rewrite every notebook's Colab badge and set-up cell, or clean committed outputs.")
    parser.add_argument("--clean", nargs="+", metavar="FILE", type=Path,
                        help="strip progress bars, stderr, warnings, widgets and absolute paths from these notebooks' outputs")
    parser.add_argument("--timings", action="store_true",
                        help="print the minutes each notebook's committed outputs took (from its cell timestamps)")
    parser.add_argument("--repo-url", help=f"the repository the set-up cell clones (a fork or mirror; stored in "
                                          f"this module as REPO_URL, now {REPO_URL})")
    parser.add_argument("--branch", help=f"the branch (or tag) to clone and link (now {BRANCH})")
    parser.add_argument("--tag", help="a tag to clone and link instead of a branch: pins a workshop's content "
                                      "(create it first: git tag TAG && git push origin TAG)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help="folder of the notebooks (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.clean:
        missing = [str(p) for p in args.clean if not p.is_file()]
        if missing:
            parser.error(f"no such notebook: {', '.join(missing)}")
        for path in args.clean:
            print(f"{path}: {'cleaned' if clean_notebook(path) else 'already clean'}")
        return 0
    if args.timings:
        for path in notebook_paths(args.notebooks):
            minutes = run_minutes(path)
            print(f"{path.name}: " + (f"{minutes:.1f} min" if minutes is not None else "no cell timestamps"))
        return 0
    if args.tag and args.branch:
        parser.error(f"--branch {args.branch} and --tag {args.tag}: the set-up cell clones one of them; give one")
    repo_url, branch = args.repo_url or REPO_URL, args.tag or args.branch or BRANCH
    if args.tag:
        print(f"pinning every badge, Colab link and set-up cell to tag {args.tag}; it must exist in {repo_url} "
              f"(git tag {args.tag} && git push origin {args.tag}), or the set-up cell's clone fails")
    if args.repo_url or args.branch or args.tag:
        if set_repo_url(repo_url, branch, module_file):
            print(f"{module_file.name}: REPO_URL = {repo_url}, BRANCH = {branch}")
        if not github_path(repo_url):
            print(f"{repo_url} is not on GitHub: set-up cells clone it, badges are left as they are "
                  "(Colab opens notebooks from GitHub only)")
    print("updated:", ", ".join(sync_notebooks(args.notebooks, repo_url, branch)) or "nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
