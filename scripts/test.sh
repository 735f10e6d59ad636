#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite on 2 workers.
# The contract tests (tests/contract) download FlexFlow's source once per machine (about
# 2 MB extracted into ~/.cache/flexflow-torch); here a failed download fails the run
# instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} FLEXFLOW_TORCH_BACKEND=${FLEXFLOW_TORCH_BACKEND:-embedded}
export FLEXFLOW_TORCH_REQUIRE_FLEXFLOW_SOURCE=1
exec .venv/bin/python -m pytest -n 2 -q -rsx --durations=15 "$@" tests
