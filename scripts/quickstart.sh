#!/usr/bin/env bash
# Set up and run the main job: a FlexFlow-API training demo on the embedded runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/native/digits_mlp.py -b 64 -e 10 "$@"
