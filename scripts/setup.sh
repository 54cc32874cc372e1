#!/usr/bin/env bash
# Set up phonion in the active Python environment (a venv or conda env is recommended).
#
# torch is installed first and only when missing, so that
#   * a torch that is already installed (e.g. a GPU user's CUDA build) is kept, and
#   * a CPU-only machine gets a CPU build instead of several GB of CUDA wheels.
set -euo pipefail
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."

if "$PY" -c "import torch" 2>/dev/null; then
    echo "phonion setup: keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif "$PY" -m pip download --quiet --no-index --no-deps -d "$(mktemp -d)" "torch==2.13.0" >/dev/null 2>&1; then
    echo "phonion setup: installing the local torch 2.13.0 build"
    "$PY" -m pip install "torch==2.13.0"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "phonion setup: GPU found; installing torch with CUDA from PyPI"
    "$PY" -m pip install torch
else
    echo "phonion setup: no GPU; installing the CPU build of torch"
    "$PY" -m pip install torch --index-url https://download.pytorch.org/whl/cpu
fi

# The rest; torch is already satisfied, so pip does not replace it.
"$PY" -m pip install -e ".[test]"
"$PY" -c "import mace, phonion.md, phonion.mdma, phonion.mlip; print('phonion setup: ok')"
