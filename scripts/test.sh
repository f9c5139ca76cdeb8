#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, and run the fast test suite on CPU, offline.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-system.sh
export HF_HUB_OFFLINE=1 NEUROINSPECT_NO_PROGRESS=1 MPLBACKEND=Agg
.venv/bin/ruff check neuroinspect tests benchmarks
# Byte-compile the package once: with PYTHONDONTWRITEBYTECODE set (as in this environment) every
# process would compile it again, and the suite starts many (two workers, the command-line, Streamlit
# and Ray processes the tests launch). Python still reads the files it finds.
.venv/bin/python -m compileall -q -j 0 neuroinspect
# Likewise pytest's assert-rewritten test modules (rewritten again in every process otherwise: about 9
# CPU s each, 25 s of the suite's wall time on a fresh clone).
.venv/bin/python scripts/rewrite_tests.py tests
# The tests' files go to memory where the machine has a writable /dev/shm (about 130 MB): the code
# under test fsyncs every file it writes (results, checkpoints, study answers), which costs seconds
# over the suite on a disk and nothing on tmpfs.
basetemp=()
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm=$(mktemp -d /dev/shm/neuroinspect-tests.XXXXXX)
  trap 'rm -rf "$shm"' EXIT
  basetemp=(--basetemp "$shm/t")
fi
# worksteal: a worker that runs out of tests takes half of the other's queue (the tests marked `long`
# run first, tests/conftest.py), so both finish together.
.venv/bin/python -m pytest -n 2 --dist worksteal -q "${basetemp[@]}" "$@"
