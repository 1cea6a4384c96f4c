"""A classroom kit for machines without network: the course's wheels and Fashion-MNIST in one folder.

    python -m tools.offline_kit KIT/                         # wheels for requirements.txt, the data, the repository
    python -m tools.offline_kit KIT/ --pip-arg=--platform=manylinux2014_x86_64 \\
        --pip-arg=--python-version=3.11 --pip-arg=--only-binary=:all:    # for other learners' machines

Run it online, on the operating system and Python version of the learners' machines (or name
theirs with the pip arguments above), and copy ``KIT/`` to a USB stick. On each learner's machine,
with no network, ``bash KIT/install.sh [FOLDER]`` clones the course from the kit's git bundle,
makes ``FOLDER/.venv`` and installs into it with ``pip install --no-index --find-links KIT/wheels``,
and copies the data into ``FOLDER/data/FashionMNIST/raw``. ``KIT/README.txt`` says the same.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from mae_lesson.data import fashion_mnist_sources
from mae_lesson.pretrained import DATA_DIR

ROOT = Path(__file__).resolve().parents[1]

FASHION_FILES = [f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]

INSTALL_SH = """#!/usr/bin/env bash
# Install the course with no network: bash install.sh [FOLDER]  (default ./mae-lesson)
set -euo pipefail
KIT="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
DEST="${{1:-mae-lesson}}"
PYTHON="${{PYTHON:-python3}}"
if [ -f "$KIT/mae-lesson.bundle" ] && [ ! -d "$DEST/.git" ]; then
    git -c advice.detachedHead=false clone -q "$KIT/mae-lesson.bundle" "$DEST"
fi
mkdir -p "$DEST"
"$PYTHON" -m venv "$DEST/.venv"
{install}
mkdir -p "$DEST/data/FashionMNIST/raw"
cp "$KIT"/data/* "$DEST/data/FashionMNIST/raw/" 2>/dev/null || true
echo "installed into $DEST/.venv; start with: cd $DEST && .venv/bin/python -m mae_lesson.doctor"
"""


def install_commands(requirements: str, project: bool) -> list[str]:
    """The pip commands of ``install.sh``: everything from ``$KIT/wheels``, never from an index."""
    pip = '"$DEST/.venv/bin/python" -m pip install --no-index --find-links "$KIT/wheels"'
    commands = [f'{pip} -r "$KIT/{requirements}"']
    if project:
        commands.append(f'{pip} -e "$DEST"')
    return commands


def build_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What ``pip install -e`` needs to build the project (``[build-system] requires``), e.g. setuptools.

    Read with a pattern rather than ``tomllib``, which Python 3.10 (the oldest the course supports) lacks.
    """
    text = pyproject.read_text(encoding="utf-8")
    match = re.search(r"^\[build-system\][^\[]*?^requires\s*=\s*(\[.*?\])", text, re.M | re.S)
    if match is None:
        raise ValueError(f"{pyproject} has no [build-system] requires list")
    return ast.literal_eval(match.group(1))


def copy_data(target: Path, root: Path = DATA_DIR) -> list[str]:
    """Copy Fashion-MNIST's four idx files (gzipped or not) from the first folder that has them."""
    for folder in fashion_mnist_sources(root):
        found = [next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None) for name in FASHION_FILES]
        if all(found):
            target.mkdir(parents=True, exist_ok=True)
            for path in found:
                shutil.copy2(path, target / path.name)
            return [p.name for p in found]
    searched = ", ".join(str(f) for f in fashion_mnist_sources(root))
    raise FileNotFoundError(f"Fashion-MNIST not found (searched {searched}); get it first (sudo apt-get install "
                            f"dataset-fashion-mnist, or run a notebook online once), or pass --no-data")


def build_kit(out: Path, requirements: Path, pip_args: list[str] | None = None, build_requires: list[str] | None = None,
              data_root: Path | None = DATA_DIR, bundle: bool = True) -> list[str]:
    """Download the wheels, copy the data and the repository, write ``install.sh``; returns the install commands."""
    out.mkdir(parents=True, exist_ok=True)
    wheels = out / "wheels"
    pip = [sys.executable, "-m", "pip", "download", "--dest", str(wheels), *(pip_args or [])]
    shutil.copy2(requirements, out / requirements.name)
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    if build_requires:
        subprocess.run([*pip, *build_requires], check=True)
    if data_root is not None:
        copy_data(out / "data", data_root)
    has_bundle = bundle and (ROOT / ".git").exists()
    if has_bundle:
        subprocess.run(["git", "-C", str(ROOT), "bundle", "create", str((out / "mae-lesson.bundle").resolve()), "HEAD"],
                       check=True, capture_output=True)
    commands = install_commands(requirements.name, project=has_bundle)
    script = out / "install.sh"
    script.write_text(INSTALL_SH.format(install="\n".join(commands)), encoding="utf-8")
    script.chmod(0o755)
    (out / "README.txt").write_text(
        "The mae-lesson course, offline.\n\n"
        "On each learner's machine (no network needed): bash install.sh [FOLDER]\n"
        "It clones the course from mae-lesson.bundle (if present), creates FOLDER/.venv and runs:\n\n"
        + "\n".join("  " + c.replace('"$KIT', "KIT").replace('"$DEST', "FOLDER").replace('"', "") for c in commands)
        + "\n\nthen copies data/ into FOLDER/data/FashionMNIST/raw. Windows: run the same pip commands with\n"
        "FOLDER\\.venv\\Scripts\\python.exe. The wheels fit the operating system and Python they were\n"
        "downloaded for.\n", encoding="utf-8")
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.offline_kit", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the kit's folder (created)")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt",
                        help="what to download (default: %(default)s)")
    parser.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                        help="passed to pip download, e.g. --pip-arg=--python-version=3.11 (repeat for several)")
    parser.add_argument("--no-data", action="store_true", help="leave Fashion-MNIST out")
    parser.add_argument("--no-bundle", action="store_true", help="leave the repository (git bundle) out")
    args = parser.parse_args(argv)
    if not args.requirements.is_file():
        parser.error(f"no requirements file {args.requirements}; pass --requirements FILE")
    try:
        commands = build_kit(args.out, args.requirements, args.pip_arg,
                             None if args.no_bundle else build_requirements(),
                             None if args.no_data else DATA_DIR, bundle=not args.no_bundle)
    except (FileNotFoundError, ValueError, subprocess.CalledProcessError) as err:
        parser.error(str(err))
    print(f"kit in {args.out}: {len(list((args.out / 'wheels').iterdir()))} wheels; install on each machine with\n"
          f"  bash {args.out / 'install.sh'} [FOLDER]\nwhich runs\n  " + "\n  ".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
