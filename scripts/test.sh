#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite on 2 workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} FLEXFLOW_TORCH_BACKEND=${FLEXFLOW_TORCH_BACKEND:-embedded}
exec .venv/bin/python -m pytest -n 2 -q --durations=15 "$@" tests
