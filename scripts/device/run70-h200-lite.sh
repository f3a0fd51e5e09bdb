#!/usr/bin/env bash
# Issue 13's decode figures on an H200 in ~200 s of device time (session 65's full breakdown takes ~450): the addon
# built from this checkout, `xllama bench` of the three dummies at depths 0 and 2048, the L2 look-ahead off / on in the
# kernel check's decode loop (7B and 13B alternated twice, the 70B once each), check-cuda --quick. Exits after reading
# the GPU's name on anything but an H200 (ANY_GPU=1 runs it on any). Carry [".device", ".devnm", "dist"].
set -u
cd "$(dirname "$0")/../.."
source scripts/device/lib.sh
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,uuid,memory.total,clocks.max.sm,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
if [ -z "${ANY_GPU:-}" ] && ! is_h200; then echo "not an H200: stopping"; exit 0; fi
source scripts/device/setup.sh || exit 1
kc=$(find build -name xllama_kernel_check -type f | head -1)
echo "setup done at ${SECONDS}s"
timeout 240 node bin/xllama.js bench --dummy llama-7b --dummy llama-13b --dummy llama-70b -p 512 -n 128 -d 0,2048 \
  -r 2 --gpus 0 --gpu-split none -o json > "$OUT/bench.json" 2> "$OUT/bench.err"
echo "bench rc=$? at ${SECONDS}s"; node scripts/device/summarize-bench.mjs "$OUT/bench.json" | tee "$OUT/bench.md"
{ for r in 1 2; do for v in 0 16; do decode_loop "$kc" XLLAMA_KC_MODELS=7B,13B XLLAMA_DECODE_L2_AHEAD_MIB=$v; done; done
  for v in 0 16; do decode_loop "$kc" XLLAMA_KC_MODELS=70B XLLAMA_DECODE_L2_AHEAD_MIB=$v; done
} 2>&1 | tee "$OUT/look-ahead.log"
timeout 100 node scripts/device/check-cuda.mjs --quick 2>&1 | grep "^check-cuda"
echo "done at ${SECONDS}s"
