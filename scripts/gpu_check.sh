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
#
# Then the real thing end to end: `avbench run` of avprompt at full size (random frozen
# towers) on the intra protocol of a scaled synthetic set (SCALE, default 8), media prepared
# with every core, for E2E_EPOCHS epochs (default 2); it prints each epoch's wall time,
# training rate, the share of training time spent waiting for data (epochs.jsonl's
# data_wait_s) and the MFU (the rate x the bench's training FLOPs per clip / peak). E2E_ONLY=1 skips the bench; DEVICE=cpu with
# BACKBONE=tiny checks the script itself on a machine without a GPU.
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

DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" != cpu ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" - <<'EOF'
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "|", torch.cuda.get_device_name())
EOF
fi

if [ -z "${E2E_ONLY:-}" ]; then
  args=(bench --device "$DEVICE" --batch "${BATCH:-32}" --json "$OUT/gpu-$stamp.json")
  if [ -n "${PEAK_TFLOPS:-}" ]; then args+=(--peak-tflops "$PEAK_TFLOPS"); fi
  COLUMNS=${COLUMNS:-140} "$PY" -m avbench "${args[@]}" 2>&1 | tee "$OUT/gpu-$stamp.txt"
  echo "wrote $OUT/gpu-$stamp.json and $OUT/gpu-$stamp.txt"
fi

# -- end to end: the engine, the cache and the DataLoader feeding the device --------------
e2e="$OUT/e2e-$stamp"
"$PY" -m avbench run -d avprompt -p intra --quiet --device "$DEVICE" --out "$e2e" \
  --data "fakeavceleb=synthetic?scale=${SCALE:-8}" --workers "$(nproc)" \
  --set backbone="${BACKBONE:-full}" --set clip_weights=random --set whisper_weights=random \
  --set epochs="${E2E_EPOCHS:-2}" --set batch_size="${BATCH:-32}" 2>&1 | tee "$e2e.txt"
bench_json=""
if [ -z "${E2E_ONLY:-}" ]; then bench_json="$OUT/gpu-$stamp.json"; fi
"$PY" - "$e2e" "$bench_json" "${BATCH:-32}" <<'EOF' | tee -a "$e2e.txt"
# each epoch's wall time, the share of the training time spent waiting for data, and the
# model FLOPs utilisation: segments/s x the bench's training FLOPs per clip / the GPU's peak
import json, pathlib, sys
run, bench, batch = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
flops = peak = None
if bench and pathlib.Path(bench).is_file():
    model = json.loads(pathlib.Path(bench).read_text()).get("model") or {}
    train = model.get("train") or {}
    if model.get("batch") == batch:
        flops, peak = train.get("flops_per_clip"), train.get("peak_tflops")
for f in sorted(run.rglob("epochs.jsonl")):
    for line in f.read_text().splitlines():
        e = json.loads(line)
        rate = e["segments_per_s"]
        mfu = (f", MFU {100 * rate * flops / (peak * 1e12):.1f} %" if flops and peak
               else ", MFU n/a (needs the bench's FLOPs and the GPU's peak)")
        print(f"e2e epoch {e['epoch']}: {e['seconds']:.1f} s wall, training {rate:.0f} "
              f"segments/s ({e['train_s']:.1f} s), waiting for data "
              f"{100 * e['data_wait_s'] / max(e['train_s'], 1e-9):.1f} % of it{mfu}")
EOF
echo "wrote $e2e.txt"
