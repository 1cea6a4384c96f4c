#!/usr/bin/env bash
# Every test: the package's unit and end-to-end tests, then every notebook under nbval in quick mode.
# It first installs what the tests need (scripts/setup.sh --dev: Hugging Face transformers and
# vit-pytorch for the parity and benchmark tests); that step is quiet when all is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
source scripts/python_env.sh
PY="$(course_python)"
export MAE_LESSON_QUICK=1 PYTHONHASHSEED=0
"$PY" -m pytest -q tests "$@"
"$PY" -m pytest -q -p no:cacheprovider --nbval notebooks/ --nbval-current-env
