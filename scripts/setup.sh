#!/usr/bin/env bash
# Install what a fresh machine lacks: Debian's Fashion-MNIST and the Python packages.
# Usage: bash scripts/setup.sh [--dev]   (--dev adds the test-only extras)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist \
    || echo "apt could not install dataset-fashion-mnist; pass --download to fetch Fashion-MNIST with torchvision"
fi
requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
python3 -m pip install -q -r "$requirements"
python3 -m pip install -q --no-deps -e .
