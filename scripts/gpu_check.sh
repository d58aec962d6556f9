#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md in one run: a few minutes on one H100-class GPU.
#
#   scripts/gpu_check.sh                 # writes results/bench/gpu-<date>.{txt,json}
#   OUT=some/folder scripts/gpu_check.sh # writes there instead
#
# It runs `avbench bench --device cuda --batch 32` (bf16 autocast, as the engine trains on
# CUDA): decoding, the cache and the DataLoader on this machine's CPUs; the avprompt
# training step against its frozen-backbone floor with achieved TFLOP/s and model FLOPs
# utilisation; evaluation against the bare forward; peak CUDA memory; the projected
# 15-epoch intra training; `avbench --help`. Set PEAK_TFLOPS for a GPU the table of
# avbench/bench/model.py does not know. Weights are random (no download needed).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1
OUT=${OUT:-results/bench}
mkdir -p "$OUT"
stamp=$(date -u +%Y%m%d-%H%M%S)

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
"$PY" - <<'EOF'
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "|", torch.cuda.get_device_name())
EOF

args=(bench --device cuda --batch "${BATCH:-32}" --json "$OUT/gpu-$stamp.json")
if [ -n "${PEAK_TFLOPS:-}" ]; then args+=(--peak-tflops "$PEAK_TFLOPS"); fi
COLUMNS=${COLUMNS:-140} "$PY" -m avbench "${args[@]}" 2>&1 | tee "$OUT/gpu-$stamp.txt"
echo "wrote $OUT/gpu-$stamp.json and $OUT/gpu-$stamp.txt"
