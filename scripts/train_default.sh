#!/usr/bin/env bash
# Reproduce the bundled default model: train the `default` recipe on two sites -- the Kermany/Kaggle
# training films and the NIH ChestX-ray14 films of labels.csv -- with knee X-rays as real negatives of
# the gate, evaluate on Kermany test-dev and the NIH validation patients, and copy the model file
# into the package.
#   bash scripts/train_default.sh [KERMANY_ROOT] [NIH_LABELS_CSV] [NEGATIVES_DIR] [RUN_DIR]
# Defaults: the development machine's copies under ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
kermany=${1:-../shared/data/kermany-224}
nih=${2:-../shared/data/nih-cxr14/labels.csv}
negatives=${3:-../shared/data/not-chest/knee-xray}
run=${4:-runs/default-$(date +%Y%m%d-%H%M%S)}
.venv/bin/pneumoscan train --recipe default --data "$kermany/train" --data "$nih" \
    --set "gate.negatives=[\"$negatives\"]" --out "$run" --quiet
.venv/bin/pneumoscan evaluate "$run/model.safetensors" "$kermany/test-dev" --out "$run/test-dev" --quiet
mkdir -p src/pneumoscan/bundled
cp "$run/model.safetensors" src/pneumoscan/bundled/.pneumoscan-default.safetensors.tmp
mv src/pneumoscan/bundled/.pneumoscan-default.safetensors.tmp src/pneumoscan/bundled/pneumoscan-default.safetensors
echo "bundled: src/pneumoscan/bundled/pneumoscan-default.safetensors (from $run)"
