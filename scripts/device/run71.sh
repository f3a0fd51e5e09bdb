#!/usr/bin/env bash
# Session 71's call, for whichever GPU comes. On an H200 first issue 13's lite figures (run70-h200-lite.sh). Then on
# any GPU: the end-request guard's checks (the kernel check's --decode-attention, memcheck over it), check-cuda --quick,
# the user's commands on the real fixture checkpoints (user-commands.sh), the look-ahead row-layout A/B
# (run70-ahead-layout.sh, .kc/layout.gz), and on a non-H200 the bench at depths 0 and 2048.
# Carry [".device", ".devnm", "dist", ".kc"].
set -u
cd "$(dirname "$0")/../.."
source scripts/device/lib.sh
mkdir -p "$OUT"
h200=
if lite_first_on_h200; then
  h200=1
else
  nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
  source scripts/device/setup.sh > /tmp/setup.log 2>&1 || { echo "setup failed"; tail -5 /tmp/setup.log; exit 1; }
  echo "setup done at ${SECONDS}s"
fi
source .device/on-device.sh; [ -e node_modules ] || ln -sfn .devnm/node_modules node_modules
kc=$(find build -name xllama_kernel_check -type f | head -1)
{ echo "-- kernel check --decode-attention at ${SECONDS}s"
  timeout 60 "$kc" --decode-attention > /tmp/da.log 2>&1; echo "rc=$? PASS lines: $(grep -c PASS /tmp/da.log)"
  grep -i "FAIL\|ahead" /tmp/da.log | tail -8; tail -1 /tmp/da.log
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  echo "-- memcheck at ${SECONDS}s"
  timeout 200 "$cs" --tool memcheck --leak-check no "$kc" --decode-attention 2>&1 | grep "ERROR SUMMARY\|FAIL" | tail -3
  echo "-- check-cuda at ${SECONDS}s"
  timeout 120 node scripts/device/check-cuda.mjs --quick 2>&1 | grep "^check-cuda\|FAIL"
} 2>&1 | tee "$OUT/guard.log"
echo "-- user commands at ${SECONDS}s"
timeout 150 bash scripts/device/user-commands.sh > "$OUT/user.log" 2>&1; echo "user-commands rc=$?"; tail -4 "$OUT/user.log"
if [ "$SECONDS" -lt 420 ]; then timeout 130 bash scripts/device/run70-ahead-layout.sh; else echo "layout A/B skipped at ${SECONDS}s"; fi
if [ -z "$h200" ] && [ "$SECONDS" -lt 420 ]; then
  timeout 170 node bin/xllama.js bench --dummy llama-7b --dummy llama-13b --dummy llama-70b -p 512 -n 128 -d 0,2048 \
    -r 2 --gpus 0 --gpu-split none -o json > "$OUT/bench.json" 2> "$OUT/bench.err"
  echo "bench rc=$? at ${SECONDS}s"; node scripts/device/summarize-bench.mjs "$OUT/bench.json" | tee "$OUT/bench.md"
fi
echo "done at ${SECONDS}s"
