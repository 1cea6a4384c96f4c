#!/usr/bin/env bash
# The course's main job: set up, then pretrain the default CPU MAE on Fashion-MNIST.
# Usage: bash scripts/main.sh [--quick] [any python -m mae_lesson.pretrain flag]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The shipped default checkpoint's recipe (data/README.md); later flags override these.
python3 -m mae_lesson.pretrain --config fashion_mnist_p7 --epochs 50 --blr 1e-3 --warmup-epochs 2 --out runs/main "$@"
