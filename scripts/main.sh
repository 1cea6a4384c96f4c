#!/usr/bin/env bash
# The course's main job: set up, then pretrain the default CPU MAE on Fashion-MNIST.
# Usage: bash scripts/main.sh [--quick] [any python -m mae_lesson.pretrain flag]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The shipped default checkpoint's recipe at a third of its length: 50 epochs, about 40 minutes on 2 cores
# (data/mae_fashion_mnist_p7.pt); add --epochs 150 for the default itself (about 2 hours, data/README.md).
# Later flags override these.
python3 -m mae_lesson.pretrain --config fashion_mnist_p7 --epochs 50 --blr 1e-3 --warmup-epochs 2 --out runs/main "$@"
