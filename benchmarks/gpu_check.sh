#!/usr/bin/env bash
# One prepared run on a CUDA machine: the README's GPU training line (bf16 on CUDA) and the two-site
# search of benchmarks/site_search.py on the GPU.  DATA holds kermany/{train,test-dev}, nih/labels.csv
# and knee/ (copies of the development data); results and logs go to OUT.
#   DATA=.devdata OUT=/tmp/out bash benchmarks/gpu_check.sh [VARIANT ...]
set -uo pipefail
DATA=${DATA:-.devdata}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PNEUMOSCAN_CACHE=/tmp/pneumoscan-cache
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'bf16', torch.cuda.is_bf16_supported())"
  start=$SECONDS
  python3 -m pneumoscan train --data "$DATA/kermany/train" --data "$DATA/nih/labels.csv" --recipe default \
    --set "gate.negatives=[\"$DATA/knee\"]" --epochs 3 --accelerator gpu --devices 1 --out /tmp/gpu-run --quiet
  echo "README GPU line: exit $? in $((SECONDS - start)) s"
  python3 -c "import json; m=json.load(open('/tmp/gpu-run/summary.json')); print({k: m[k] for k in ('train_seconds', 'epochs', 'train_images', 'val_images')})"
  grep -m1 -o "bf16[^ ]*\|precision[^,]*" /tmp/gpu-run/config.json /tmp/gpu-run/logs/hparams.yaml 2>/dev/null | head -3
} 2>&1 | tee "$OUT/gpu-train.log"
python3 benchmarks/site_search.py --kermany "$DATA/kermany" --nih "$DATA/nih/labels.csv" --negatives "$DATA/knee" \
  --out /tmp/sites --set train.accelerator=gpu "$@" 2>&1 | grep -v "Warning\|warn(" | tee "$OUT/site-search.log"
cp /tmp/sites/results.csv "$OUT/" 2>/dev/null
