#!/usr/bin/env bash
# The course's main job: set up, then pretrain the default CPU MAE on Fashion-MNIST.
# Usage: bash scripts/main.sh [--quick] [any python -m mae_lesson.pretrain flag]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/python_env.sh
# The pretrain_cpu recipe (mae_lesson/configs/recipes/pretrain_cpu.yaml): 50 epochs, about 40 minutes on
# 2 cores (data/mae_fashion_mnist_p7.pt); add --epochs 150 for the shipped default (about 2 hours,
# data/README.md). Later flags override the recipe.
"$(course_python)" -m mae_lesson.pretrain --recipe pretrain_cpu --out runs/main "$@"
