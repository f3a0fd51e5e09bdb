# Session 69: the L2 look-ahead (gate/up's weights requested into L2 by the decode attention's blocks without keys)
# on any GPU: builds the addon, the decode attention's checks and check-cuda --quick, the kernel check's decode at
# bench's depths with XLLAMA_DECODE_L2_AHEAD_MIB at 0 / 16 (default) alternated and 12 / 24 / 32 once, then
# `xllama bench` with it (the default). Carry .device .devnm dist.
set -u
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,uuid,clocks.max.sm,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"
pack() { tar -czf /tmp/r.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/r.tgz "$OUT/results.tgz"; }
source scripts/device/setup.sh || { pack; exit 1; }
kc=$(find build -name xllama_kernel_check -type f | head -1)
echo "setup done at ${SECONDS}s"
timeout 60 "$kc" --decode-attention > "$OUT/attn.log" 2>&1; echo "decode attention checks rc=$?: $(grep -c PASS "$OUT/attn.log") passed"
grep FAIL "$OUT/attn.log" | head -3
run() { echo "-- $* at ${SECONDS}s"; env "$@" "$kc" --bench-depths > "$OUT/t.log" 2>&1; grep "^bench\|FAIL" "$OUT/t.log" | sed 's/: prompt.*decode/ decode/; s/ | weights.*//'; cat "$OUT/t.log" >> "$OUT/timing.log"; }
export XLLAMA_KC_MODELS=7B,13B
for r in 1 2; do run XLLAMA_DECODE_L2_AHEAD_MIB=0; run XLLAMA_DECODE_L2_AHEAD_MIB=16; done
for v in 12 24 32; do run XLLAMA_DECODE_L2_AHEAD_MIB=$v; done
export XLLAMA_KC_MODELS=70B
run XLLAMA_DECODE_L2_AHEAD_MIB=0; run XLLAMA_DECODE_L2_AHEAD_MIB=16
unset XLLAMA_KC_MODELS
timeout 150 node scripts/device/check-cuda.mjs --backend cuda --quick > "$OUT/check.log" 2>&1; echo "check-cuda rc=$? at ${SECONDS}s"
tail -3 "$OUT/check.log"
for v in 16; do
  XLLAMA_DECODE_L2_AHEAD_MIB=$v timeout 200 node bin/xllama.js bench --dummy llama-7b --dummy llama-13b --dummy llama-70b \
    -p 512 -n 128 -d 0,2048 -r 2 --gpus 0 --gpu-split none -o json > "$OUT/bench-$v.json" 2> "$OUT/bench-$v.err"
  echo "== bench, look-ahead $v MiB: rc=$? at ${SECONDS}s"; node scripts/device/summarize-bench.mjs "$OUT/bench-$v.json"
done
rm -f "$OUT/t.log"; pack; echo "done at ${SECONDS}s"
