#!/usr/bin/env bash
# Set up pneumoscan in ./.venv: PyTorch first (so no unwanted CUDA build is pulled), then the package.
#   bash scripts/setup.sh          # runtime: train, evaluate, predict, serve, export
#   bash scripts/setup.sh --dev    # + test and lint tools
# TORCH_SPEC chooses the PyTorch build (pip arguments). The default, torch==2.13.0, is the CPU wheel on
# machines that keep it locally; from PyPI on Linux the same line gives the CUDA build for NVIDIA GPUs.
#   TORCH_SPEC="torch==2.13.0" bash scripts/setup.sh                 # GPU (CUDA build from PyPI)
#   TORCH_SPEC="torch==2.13.0 --index-url <PyTorch CPU index>" ...  # CPU-only build elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
extras="all"
[ "${1:-}" = "--dev" ] && extras="dev"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # TORCH_SPEC may hold several pip arguments
python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
python -m pip install -q -e ".[${extras}]"
echo "pneumoscan installed in .venv ($(.venv/bin/pneumoscan --version))"
