#!/usr/bin/env bash
# Session 69's A/B of the decode L2 look-ahead on any GPU, from a kernel check built here
# (`bash scripts/device/pack-kernel-check.sh look`): the decode attention's checks, then decode at bench's depths
# with XLLAMA_DECODE_L2_AHEAD_MIB 0 / 16 (the default) alternated twice, 12 / 24 once, and the 70B 0 / 16.
# Carry [".kc"].
set -u
mkdir -p "$OUT"
gunzip -c .kc/look.gz > /tmp/kc && chmod +x /tmp/kc
nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 /tmp/kc --decode-attention > "$OUT/attn.log" 2>&1; echo "decode attention checks rc=$?: $(grep -c PASS "$OUT/attn.log") passed"
grep FAIL "$OUT/attn.log" | head -3
run() { echo "-- $* at ${SECONDS}s"; env "$@" /tmp/kc --bench-depths > "$OUT/t.log" 2>&1; grep "^bench\|FAIL" "$OUT/t.log" | sed 's/: prompt.*decode/ decode/; s/ | weights.*//'; cat "$OUT/t.log" >> "$OUT/timing.log"; }
export XLLAMA_KC_MODELS=7B,13B
for r in 1 2; do run XLLAMA_DECODE_L2_AHEAD_MIB=0; run XLLAMA_DECODE_L2_AHEAD_MIB=16; done
for v in 12 24; do run XLLAMA_DECODE_L2_AHEAD_MIB=$v; done
export XLLAMA_KC_MODELS=70B
run XLLAMA_DECODE_L2_AHEAD_MIB=0; run XLLAMA_DECODE_L2_AHEAD_MIB=16
rm -f "$OUT/t.log"; echo "done at ${SECONDS}s"
