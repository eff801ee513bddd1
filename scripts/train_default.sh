#!/usr/bin/env bash
# Reproduce the bundled default model: train the `default` recipe on four sources -- the Kermany/Kaggle
# training films, the NIH ChestX-ray14 films of labels.csv, the RSNA radiologist-read films and the clear
# (opacity 0) NIH films with other findings as negatives of the NIH site -- with knee X-rays as real
# negatives of the gate, measure every source on films it never trained on, and copy the model file
# into the package. benchmarks/population_search.py does the training and the measuring (variant
# "views balanced, fine last stage 96" is the default recipe as it stands).
#   bash scripts/train_default.sh [SHARED_DATA_DIR] [RUNS_DIR]
# Defaults: the development machine's copies under ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared/data}
runs=${2:-runs/populations-$(date +%Y%m%d-%H%M%S)}
variant="views balanced, fine last stage 96"
.venv/bin/python benchmarks/population_search.py --shared "$shared" --out "$runs" "$variant"
run="$runs/views_balanced__fine_last_stage_96"
mkdir -p src/pneumoscan/bundled
cp "$run/model.safetensors" src/pneumoscan/bundled/.pneumoscan-default.safetensors.tmp
mv src/pneumoscan/bundled/.pneumoscan-default.safetensors.tmp src/pneumoscan/bundled/pneumoscan-default.safetensors
echo "bundled: src/pneumoscan/bundled/pneumoscan-default.safetensors (from $run)"
