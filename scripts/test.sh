#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, and run the fast test suite on CPU, offline.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-system.sh
export HF_HUB_OFFLINE=1 NEUROINSPECT_NO_PROGRESS=1 MPLBACKEND=Agg
.venv/bin/ruff check neuroinspect tests benchmarks
.venv/bin/python -m pytest -n 2 -q "$@"
