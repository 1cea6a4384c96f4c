"""What every notebook's first cells share: the environment check and the Colab set-up cell.

The repository URL lives here once (``REPO_URL``); ``python -m mae_lesson.notebook`` rewrites
every notebook's "Open in Colab" badge and set-up cell from it.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

from .utils import get_device, quick_mode

REPO_URL = "https://github.com/mae-lesson/mae-lesson"
BRANCH = "main"
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

SETUP_MARK = "# mae-lesson setup"
BADGE_MARK = "Open In Colab"


def setup_cell_source(repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    """The first code cell: on Colab clone and install the course; everywhere, pick the device."""
    return f"""{SETUP_MARK} (on Colab: clone the course and install it; elsewhere: nothing to do)
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.isdir("mae-lesson"):
    subprocess.run(["git", "clone", "--depth", "1", "-b", "{branch}", "{repo_url}", "mae-lesson"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "mae-lesson"], check=True)
    sys.path.insert(0, os.path.abspath("mae-lesson"))
    os.chdir("mae-lesson/notebooks")
from mae_lesson.notebook import environment_report
device = environment_report()"""


def badge_markdown(notebook_name: str, repo_url: str = REPO_URL, branch: str = BRANCH) -> str:
    path = repo_url.replace("https://github.com/", "")
    return (f"[![{BADGE_MARK}](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/{branch}/notebooks/{notebook_name})")


def environment_report() -> torch.device:
    """Print versions, device and mode; on a CPU-only Colab say how to enable the GPU."""
    device = get_device("auto")
    print(f"python {platform.python_version()}, torch {torch.__version__}, device: {device}")
    print(f"mode: {'quick (MAE_LESSON_QUICK=1)' if quick_mode() else 'full'}")
    if device.type == "cpu" and "google.colab" in sys.modules:
        print("Tip: Runtime > Change runtime type > GPU makes training cells much faster.")
    return device


def sync_notebooks(folder: Path = NOTEBOOK_DIR) -> list[str]:
    """Rewrite the badge and set-up cell of every notebook from ``REPO_URL``; returns changed files."""
    changed = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        before = json.dumps(nb)
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] == "code" and text.startswith(SETUP_MARK):
                cell["source"] = setup_cell_source().splitlines(keepends=True)
            elif cell["cell_type"] == "markdown" and BADGE_MARK in text:
                lines = [badge_markdown(path.name) if BADGE_MARK in line else line for line in text.splitlines()]
                cell["source"] = "\n".join(lines).splitlines(keepends=True)
        if json.dumps(nb) != before:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path.name)
    return changed


if __name__ == "__main__":
    print("updated:", sync_notebooks() or "nothing")
