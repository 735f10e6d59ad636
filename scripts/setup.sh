#!/usr/bin/env bash
# Set up flexflow-torch in a virtual environment (.venv) beside the repository.
# torch==2.13.0 goes in first: any other torch requirement would pull several GB of
# CUDA packages. Re-running is cheap: it does nothing when setup.py is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.flexflow-torch-setup"
want="$(sha256sum setup.py | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "$want" > "$stamp"
echo "flexflow-torch is set up in $VENV (activate with: source $VENV/bin/activate)"
