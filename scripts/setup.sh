#!/usr/bin/env bash
# Create .venv (if missing) and install neuroinspect with its pinned stack. Idempotent.
# torch and torchvision are pinned through constraints.txt so that no CUDA wheels are pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.neuroinspect-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[study,ray,dev]'
  touch "$stamp"
fi
