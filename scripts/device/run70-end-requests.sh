#!/usr/bin/env bash
# Session 70: the decode look-ahead requested by every block at its end where every split is live. On any GPU:
# (1) the experiment's kernel check (branch experiment/s70-ahead-end, `bash scripts/device/pack-kernel-check.sh end`)
# with XLLAMA_L2_AHEAD_END 0 (session 69's code) / 1 (this session's) alternated twice at bench's depths, and the
# look-ahead's size for the 7B and 13B; (2) the addon built from this checkout: xllama bench -d 0,2048,
# check-cuda --quick, memcheck over the decode attention's checks. On an H200, session 65's breakdown after (1).
# Carry [".device", ".devnm", "dist", ".kc"].
set -u
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu0.txt"
gunzip -c .kc/end.gz > /tmp/kc && chmod +x /tmp/kc
run() { echo "-- $* at ${SECONDS}s"; env "$@" /tmp/kc --bench-depths 2>&1 | grep "^bench\|FAIL" | sed 's/: prompt.*decode/ decode/; s/ | weights.*//'; }
export XLLAMA_KC_MODELS=7B,13B
for r in 1 2; do run XLLAMA_L2_AHEAD_END=0; run XLLAMA_L2_AHEAD_END=1; done 2>&1 | tee "$OUT/end-ab.log"
{ for v in 8 24; do run XLLAMA_L2_AHEAD_END=1 XLLAMA_DECODE_L2_AHEAD_MIB=$v; done
  XLLAMA_KC_MODELS=13B; for r in 1 2; do for v in 16 32 40; do run XLLAMA_L2_AHEAD_END=1 XLLAMA_DECODE_L2_AHEAD_MIB=$v; done; done
} 2>&1 | tee "$OUT/size.log"
unset XLLAMA_KC_MODELS
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  NCU_BY=380 bash scripts/device/run65-breakdown.sh; exit
fi
source scripts/device/setup.sh > "$OUT/setup.log" 2>&1 || { echo "setup failed"; tail -5 "$OUT/setup.log"; exit 1; }
echo "setup done at ${SECONDS}s"
kc=$(find build -name xllama_kernel_check -type f | head -1)
timeout 240 node bin/xllama.js bench --dummy llama-7b --dummy llama-13b --dummy llama-70b -p 512 -n 128 -d 0,2048 \
  -r 2 --gpus 0 --gpu-split none -o json > "$OUT/bench.json" 2> "$OUT/bench.err"
echo "bench rc=$? at ${SECONDS}s"; node scripts/device/summarize-bench.mjs "$OUT/bench.json"
timeout 100 node scripts/device/check-cuda.mjs --quick 2>&1 | grep "^check-cuda"
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 200 "$cs" --tool memcheck --leak-check no "$kc" --decode-attention 2>&1 | grep "ERROR SUMMARY\|PASS:\|FAIL" | tail -3
echo "done at ${SECONDS}s"
