#!/usr/bin/env bash
# Session 70's A/B: where every split of the decode attention is live (7B, 13B past ~900 positions), the live blocks
# request gate/up's look-ahead at their end (XLLAMA_L2_AHEAD_END=1: every block, 2: all but each head's last), from
# a kernel check built from branch experiment/s70-ahead-end (`bash scripts/device/pack-kernel-check.sh end` there).
# Carry [".kc"].
set -u
mkdir -p "$OUT"
gunzip -c .kc/end.gz > /tmp/kc && chmod +x /tmp/kc
nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
for m in 1 2; do XLLAMA_L2_AHEAD_END=$m timeout 60 /tmp/kc --decode-attention > "$OUT/attn$m.log" 2>&1
  echo "mode $m: decode attention checks rc=$?: $(grep -c PASS "$OUT/attn$m.log") passed"; grep FAIL "$OUT/attn$m.log" | head -3; done
run() { echo "-- $* at ${SECONDS}s"; env "$@" /tmp/kc --bench-depths > "$OUT/t.log" 2>&1; grep "^bench\|FAIL" "$OUT/t.log" | sed 's/: prompt.*decode/ decode/; s/ | weights.*//'; cat "$OUT/t.log" >> "$OUT/timing.log"; }
export XLLAMA_KC_MODELS=7B,13B
for r in 1 2; do for m in 0 1 2; do run XLLAMA_L2_AHEAD_END=$m; done; done
run XLLAMA_L2_AHEAD_END=2 XLLAMA_DECODE_L2_AHEAD_MIB=32
run XLLAMA_L2_AHEAD_END=2 XLLAMA_DECODE_L2_AHEAD_MIB=8
rm -f "$OUT/t.log"; echo "done at ${SECONDS}s"
