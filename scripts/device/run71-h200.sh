#!/usr/bin/env bash
# Session 71: on an H200 issue 13's lite figures first (run70-h200-lite.sh, ~200 s); then on any GPU the look-ahead's
# size per model in the kernel check's decode loop (13B at 16 / 24 / 32 MiB, 7B at 14 / 16, alternated twice): would
# a size from gate/up's bytes (a third of them) serve both? Carry [".device", ".devnm", "dist", ".kc"] (.kc/kc.gz
# from main, `bash scripts/device/pack-kernel-check.sh kc`).
set -u
cd "$(dirname "$0")/../.."
source scripts/device/lib.sh
mkdir -p "$OUT"
lite_first_on_h200
gunzip -c .kc/kc.gz > /tmp/kc && chmod +x /tmp/kc
nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
{ for r in 1 2; do
    for v in 16 24 32; do decode_loop /tmp/kc XLLAMA_KC_MODELS=13B XLLAMA_DECODE_L2_AHEAD_MIB=$v; done
    for v in 14 16; do decode_loop /tmp/kc XLLAMA_KC_MODELS=7B XLLAMA_DECODE_L2_AHEAD_MIB=$v; done
  done
} 2>&1 | tee "$OUT/size.log"
echo "done at ${SECONDS}s"
