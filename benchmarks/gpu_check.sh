#!/usr/bin/env bash
# GPU check for a bare H100/H200 machine (torch, diffusers, timm preinstalled; the repo copied,
# not pip-installed). Runs in <= 8 minutes:
#   1. the tests marked `cuda` (pytest -m cuda),
#   2. DiT-XL/2 training at 256 (32x32x4 synthetic cached latents, batch 64, bf16, flash SDPA,
#      torch.compile, fused AdamW, EMA) with gradient checkpointing off and on, and DiT-B/4,
#      reporting steps/s, images/s, MFU vs the card's bf16 dense peak and peak memory,
#   3. DiT-XL/2 DDPM-250 sampling throughput with guidance (images/s, latents),
# and writes everything as one JSON to $OUT/gpu_check.json (if $OUT is set) else ./gpu_check.json.
#
# --round2 (issue 18) measures instead, in the same budget and JSON (gpu_check_round2.json):
#   DiT-XL/2 bf16 batch 64 MFU with a profiler breakdown (matmul / attention / norm / fused
#   elementwise / optimizer kernel shares and the host gap), torchao float8 linears (if torchao
#   imports) with the per-step losses beside bf16's, DiT-B/4 at batch 64 and 256, per-block compile vs
#   whole-model compile in "reduce-overhead" mode (CUDA graphs), guided XL/2 DDPM-50 sampling
#   (batch 64, bf16) eager vs compiled, and last DiT-B/4 with mode "max-autotune".
#
# Usage:  bash benchmarks/gpu_check.sh                   # on the GPU machine
#         bash benchmarks/gpu_check.sh --round2          # issue 18's GPU items (skips pytest)
#         bash benchmarks/gpu_check.sh --device cpu --tiny  # a slow smoke run of the same script on a CPU
set -uo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEST="${OUT:-.}"
mkdir -p "$DEST"
JSON="$DEST/gpu_check.json"
XML="$(mktemp -t dit_cuda_tests.XXXXXX.xml)"
START=$SECONDS

DEVICE=cuda
EXTRA=()
ROUND2=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) EXTRA+=(--tiny); shift ;;
    --round2) EXTRA+=(--round2); ROUND2=1; JSON="$DEST/gpu_check_round2.json"; shift ;;
    *) echo "error: unknown argument $1 (use --device cpu|cuda, --tiny, --round2)" >&2; exit 2 ;;
  esac
done

if [ "$ROUND2" = 0 ]; then
  echo "== pytest -m cuda"
  # A hard cap keeps the measurements inside the 8-minute budget even if a test hangs.
  timeout 150 python -m pytest -q -m cuda -p no:cacheprovider --junitxml="$XML" tests/unit/runtime/test_cuda.py
  echo "pytest exit status $? ($((SECONDS - START))s)"
fi

echo "== training and sampling"
BUDGET=$((420 - (SECONDS - START)))
timeout $((BUDGET + 60)) python -m benchmarks.gpu_check --device "$DEVICE" "${EXTRA[@]}" \
  --out "$JSON" --pytest-xml "$XML" --budget-s "$BUDGET"
STATUS=$?
rm -f "$XML"
echo "total $((SECONDS - START))s; JSON: $JSON"
exit $STATUS
