#!/usr/bin/env bash
# The course's main job: set up, then pretrain the default CPU MAE on Fashion-MNIST.
# Usage: bash scripts/main.sh [--quick] [any python -m mae_lesson.pretrain flag]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m mae_lesson.pretrain --out runs/main "$@"
