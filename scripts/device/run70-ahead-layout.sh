#!/usr/bin/env bash
# Session 70's A/B of which gate/up rows the decode look-ahead requests: the last part of each eighth (main), or of
# each of the first C strides of R packed rows (XLLAMA_L2_AHEAD_ROWS / _STRIDES: for the 70B's 9-wave gate/up,
# R=16 C=8 is what the first wave's warps read after their first batch). Kernel check built from branch
# experiment/s70-ahead-layout (`bash scripts/device/pack-kernel-check.sh layout` there). Carry [".kc"].
set -u
mkdir -p "$OUT"
gunzip -c .kc/layout.gz > /tmp/kc && chmod +x /tmp/kc
nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
run() { echo "-- $* at ${SECONDS}s"; env "$@" /tmp/kc --bench-depths 2>&1 | grep "^bench\|FAIL" | sed 's/: prompt.*decode/ decode/; s/ | weights.*//'; }
{ export XLLAMA_KC_MODELS=70B
  for r in 1 2; do run X=main; run XLLAMA_L2_AHEAD_ROWS=16 XLLAMA_L2_AHEAD_STRIDES=8; done
  run XLLAMA_L2_AHEAD_ROWS=64 XLLAMA_L2_AHEAD_STRIDES=2
  run XLLAMA_L2_AHEAD_ROWS=16 XLLAMA_L2_AHEAD_STRIDES=8 XLLAMA_DECODE_L2_AHEAD_MIB=24
  export XLLAMA_KC_MODELS=7B,13B
  for r in 1 2; do run X=main; run XLLAMA_L2_AHEAD_ROWS=16; run XLLAMA_L2_AHEAD_ROWS=64; done
} 2>&1 | tee "$OUT/layout.log"
echo "done at ${SECONDS}s"
