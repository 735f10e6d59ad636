#!/usr/bin/env bash
# Set up, prepare the English-Sinhala data and train the converted mT5 model on the
# embedded FlexFlow runtime with the default recipe; ends with the scores, a few
# translations and where the predictions, scores and plot went.
# Extra arguments go to mt5_ff.py (e.g. -e 2 for a shorter run, --model DIR).
# Threads: as many as other processes leave idle (printed); FLEXFLOW_TORCH_THREADS=N chooses.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/prepare_mt5_data.py --out examples/mt5/data
.venv/bin/python examples/mt5/mt5_ff.py -b 16 -e 10 --lr 0.003 "$@"
