#!/usr/bin/env bash
# Session 71's last call, for whichever GPU comes: on an H200 issue 13's lite figures first (run70-h200-lite.sh,
# ~200 s); then, on any GPU while time is left, the correctness checks issue 13 asks of every speed-up, over sessions
# 69-70's decode attention: the llama2.c story on CUDA (check-generate), racecheck over the decode attention, the
# whole check-cuda, the whole kernel check. Logs in $OUT/checks.tgz, one line each in $OUT/checks.txt.
# Carry [".device", ".devnm", "dist"].
set -u
cd "$(dirname "$0")/../.."
source scripts/device/lib.sh
mkdir -p "$OUT" /tmp/logs
if lite_first_on_h200; then
  source .device/on-device.sh > /dev/null; [ -e node_modules ] || ln -sfn .devnm/node_modules node_modules
else
  nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
  source scripts/device/setup.sh > /tmp/logs/setup.log 2>&1 || { echo "setup failed"; tail -5 /tmp/logs/setup.log; exit 1; }
fi
kc=$(find build -name xllama_kernel_check -type f | head -1)
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
step() {  # step NAME LIMIT START_BY CMD...: runs CMD if SECONDS < START_BY, for at most LIMIT s; a line in checks.txt
  local name=$1 limit=$2 by=$3; shift 3
  if [ "$SECONDS" -ge "$by" ]; then echo "$name: skipped at ${SECONDS}s" | tee -a "$OUT/checks.txt"; return; fi
  local t0=$SECONDS; timeout "$limit" "$@" > "/tmp/logs/$name.log" 2>&1; local rc=$?
  echo "$name: rc=$rc in $((SECONDS - t0))s: $(grep -E 'passed|ERROR SUMMARY|RACECHECK SUMMARY|failure|PASS|FAIL' "/tmp/logs/$name.log" | tail -2 | tr '\n' ' ')" | tee -a "$OUT/checks.txt"
}
# Ends by ~560 s on an H200, ~330 s elsewhere (leaving the budget another H200 try).
end=330; is_h200 && end=560
step generate 100 $((end - 130)) node scripts/device/check-generate.mjs --backend cuda
step racecheck-decode 150 $((end - 120)) "$cs" --tool racecheck --error-exitcode 9 "$kc" --decode-attention
step check 150 $((end - 100)) node scripts/device/check-cuda.mjs --backend cuda
step kernels 120 $((end - 60)) "$kc"
tar -czf "$OUT/checks.tgz" -C /tmp/logs .
echo "done at ${SECONDS}s"
