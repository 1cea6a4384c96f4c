#!/usr/bin/env bash
# Every test: the package's unit and end-to-end tests, then every notebook under nbval in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAE_LESSON_QUICK=1 PYTHONHASHSEED=0
python3 -m pytest -q tests "$@"
python3 -m pytest -q -p no:cacheprovider --nbval notebooks/ --nbval-current-env
