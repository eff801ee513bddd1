#!/usr/bin/env bash
# Reproduce the bundled default model: train the `default` recipe on the Kermany/Kaggle training films,
# evaluate on test-dev, and copy the model file into the package.
#   bash scripts/train_default.sh [DATA_ROOT] [RUN_DIR]
# DATA_ROOT holds train/ and test-dev/ (default: ../shared/data/kermany-224).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/kermany-224}
run=${2:-runs/default-$(date +%Y%m%d-%H%M%S)}
.venv/bin/pneumoscan train --recipe default --data "$data/train" --out "$run" --quiet
.venv/bin/pneumoscan evaluate "$run/model.safetensors" "$data/test-dev" --out "$run/test-dev" --quiet
mkdir -p src/pneumoscan/bundled
cp "$run/model.safetensors" src/pneumoscan/bundled/.pneumoscan-default.safetensors.tmp
mv src/pneumoscan/bundled/.pneumoscan-default.safetensors.tmp src/pneumoscan/bundled/pneumoscan-default.safetensors
echo "bundled: src/pneumoscan/bundled/pneumoscan-default.safetensors (from $run)"
