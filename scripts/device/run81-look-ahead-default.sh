#!/usr/bin/env bash
# Session 81: the L2 look-ahead's per-GPU default (off where DRAM peaks at 4 TB/s or more). Builds the addon, then
# the kernel check's decode loop with the default, 16 MiB and 0 (the loop's lines name the MiB in force), and on an
# H200 also 4 MiB and `xllama bench` of the three dummies at the default (issue 13's figures), check-cuda --quick.
# Carry [".device", ".devnm", "dist"].
set -u
cd "$(dirname "$0")/../.."
source scripts/device/lib.sh
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,uuid,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee "$OUT/gpu.txt"
source scripts/device/setup.sh || exit 1
kc=$(find build -name xllama_kernel_check -type f | head -1)
echo "setup done at ${SECONDS}s"
{ decode_loop "$kc" XLLAMA_KC_MODELS=7B,13B
  decode_loop "$kc" XLLAMA_KC_MODELS=7B,13B XLLAMA_DECODE_L2_AHEAD_MIB=16
  decode_loop "$kc" XLLAMA_KC_MODELS=7B,13B XLLAMA_DECODE_L2_AHEAD_MIB=0
  decode_loop "$kc" XLLAMA_KC_MODELS=7B,13B
  if is_h200; then
    decode_loop "$kc" XLLAMA_KC_MODELS=7B,13B XLLAMA_DECODE_L2_AHEAD_MIB=4
    decode_loop "$kc" XLLAMA_KC_MODELS=70B
    decode_loop "$kc" XLLAMA_KC_MODELS=70B XLLAMA_DECODE_L2_AHEAD_MIB=16
    decode_loop "$kc" XLLAMA_KC_MODELS=70B XLLAMA_DECODE_L2_AHEAD_MIB=4
  fi
} 2>&1 | tee "$OUT/look-ahead.log"
if is_h200; then
  timeout 240 node bin/xllama.js bench --dummy llama-7b --dummy llama-13b --dummy llama-70b -p 512 -n 128 -d 0,2048 \
    -r 2 --gpus 0 --gpu-split none -o json > "$OUT/bench.json" 2> "$OUT/bench.err"
  echo "bench rc=$? at ${SECONDS}s"; node scripts/device/summarize-bench.mjs "$OUT/bench.json" | tee "$OUT/bench.md"
fi
timeout 100 node scripts/device/check-cuda.mjs --quick 2>&1 | grep "^check-cuda"
echo "done at ${SECONDS}s"
