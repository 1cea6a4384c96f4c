#!/usr/bin/env bash
# Install what a fresh machine lacks: Debian's Fashion-MNIST and the Python packages.
# Usage: bash scripts/setup.sh [--dev]   (--dev adds the test-only extras)
# The packages go into the active virtual/conda environment, or else into the course's own .venv
# (made here on first use; scripts/python_env.sh), never into a system Python.
# Safe to run again: it installs only what is missing and prints nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
created=""
[ -x "$(course_python)" ] || created=yes
make_course_env
PY="$(course_python)"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist \
    || echo "apt could not install dataset-fashion-mnist; pass --download to fetch Fashion-MNIST with torchvision"
fi
requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
# The site's browser test needs a real Chromium (Debian's package); only the test set-up asks for it.
if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "apt could not install chromium; the site's browser test will be skipped"
fi
export PIP_ROOT_USER_ACTION=ignore
# pip takes many seconds even when nothing is missing, so first ask the installed packages' metadata.
if ! "$PY" - "$requirements" <<'PY'
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh virtual environment has packaging only inside pip
    from pip._vendor.packaging.requirements import Requirement


def requirements(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirements(path.parent / line[3:].strip())
        elif line:
            lines.append(line)
    return lines


def missing(path: Path) -> list[str]:
    absent = []
    for line in requirements(path):
        req = Requirement(line)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            absent.append(line)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            absent.append(f"{line} (have {version})")
    return absent

sys.exit(1 if missing(Path(sys.argv[1])) else 0)
PY
then
  "$PY" -m pip install -q -r "$requirements"
fi
# The course package itself (editable), unless Python already finds it in this folder.
# The check runs from / so that the current folder does not shadow the installed package.
here="$(pwd -P)"
if ! (cd / && "$PY" -c "import importlib.util, pathlib, sys
spec = importlib.util.find_spec('mae_lesson')
sys.exit(spec is None or pathlib.Path(spec.origin).resolve().parents[1] != pathlib.Path(sys.argv[1]))" "$here"); then
  "$PY" -m pip install -q --no-deps -e .
fi
if [ -n "$created" ] && [ "$(course_env_dir)" = "${MAE_LESSON_VENV:-$here/.venv}" ]; then
  echo "Ready. Start JupyterLab from the course's environment with: $(course_env_dir)/bin/jupyter lab notebooks/"
  echo "(or activate it first: source $(course_env_dir)/bin/activate)"
fi
