#!/usr/bin/env bash
# Where the time goes on today's main, on one H200, for the README's "Where the time goes" (its figures were session
# 46's build): the floors and speeds by `xllama bench` in the same run (also at depth 2048), the decode timeline (a
# trace build of the kernel check, --timeline), one prompt chunk with parts left out (--bench-prompt-ablate), the
# DRAM's read ceiling against the copy bandwidth and the lm_head back to back (--time-read, --time-lm-head), and
# ncu's isolated kernels of one 7B decode step and one 512-token chunk; also the L2 look-ahead at the GPU's default,
# off and on.
# Exits after reading the GPU's name on anything but an H200 (the README's figures are the H200's; ANY_GPU=1 runs it
# on any). Carry: .device .devnm dist.
#   bash scripts/device/run65-breakdown.sh    (NCU_BY=S: skip ncu once S seconds have passed, default 470)
set -u
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,uuid,memory.total,clocks.max.sm,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
if [ -z "${ANY_GPU:-}" ] && ! nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then echo "not an H200: stopping"; exit 0; fi
pack() {  # only the archive comes back (8 files at most)
  tar -czf /tmp/results.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/results.tgz "$OUT/results.tgz"
}
source scripts/device/setup.sh || { pack; exit 1; }
kc=$(find build -name xllama_kernel_check -type f | head -1)
echo "setup done at ${SECONDS}s; kernel check: ${kc:-none}"
# The trace build runs beside the bench on 4 of the 16 cores.
(cmake -S . -B build-trace -DXLLAMA_CUDA=ON -DXLLAMA_CUDA_ARCH=90 -DXLLAMA_KERNEL_TRACE=ON > "$OUT/trace-build.log" 2>&1 &&
  cmake --build build-trace --target xllama_kernel_check -j 4 >> "$OUT/trace-build.log" 2>&1; echo "trace build rc=$?" >> "$OUT/trace-build.log") &
trace_pid=$!
echo "=== bench"
timeout 300 node bin/xllama.js bench --dummy llama-7b --dummy llama-13b --dummy llama-70b -p 512 -n 128 -d 0,2048 \
  -r 3 --gpus 0 --gpu-split none -o json > "$OUT/bench.json" 2> "$OUT/bench.err"
echo "bench rc=$? at ${SECONDS}s"; tail -3 "$OUT/bench.err"
node scripts/device/summarize-bench.mjs "$OUT/bench.json" | tee "$OUT/bench.md"
echo "=== the L2 look-ahead: the GPU's default (session 81), off, 16 MiB; the kernel check's decode loop, 7B and 13B,"
echo "    alternated twice (each line names the MiB in force)"
for r in 1 2; do for v in default 0 16; do
  ahead=(); [ "$v" = default ] || ahead=("XLLAMA_DECODE_L2_AHEAD_MIB=$v")
  [ -n "$kc" ] && env -u XLLAMA_DECODE_L2_AHEAD_MIB "${ahead[@]}" XLLAMA_KC_MODELS=7B,13B \
    timeout 60 "$kc" --bench-depths 2>&1 |
    grep '^bench' | sed "s/^/[$v] /; s/: prompt.*decode/ decode/; s/ | weights.*//" | tee -a "$OUT/look-ahead.log"
done; done
echo "=== prompt ablation"
[ -n "$kc" ] && timeout 150 "$kc" --bench-prompt-ablate > "$OUT/ablate.log" 2>&1
echo "ablate rc=$? at ${SECONDS}s"; grep -v '^ok' "$OUT/ablate.log" | tail -30
echo "=== read ceiling"
[ -n "$kc" ] && timeout 60 "$kc" --time-read > "$OUT/read.log" 2>&1 && timeout 60 "$kc" --time-lm-head >> "$OUT/read.log" 2>&1
echo "read rc=$? at ${SECONDS}s"; grep '^time read\|^time lm_head' "$OUT/read.log"
wait "$trace_pid"; tail -2 "$OUT/trace-build.log"
echo "=== timeline at ${SECONDS}s"
[ -x build-trace/xllama_kernel_check ] && timeout 150 build-trace/xllama_kernel_check --timeline > "$OUT/timeline.log" 2>&1
echo "timeline rc=$? at ${SECONDS}s"; grep -v '^ok' "$OUT/timeline.log" | head -80
ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,launch__grid_size
for what in decode prefill; do
  if [ -z "$ncu_bin" ] || [ -z "$kc" ] || [ "$SECONDS" -gt "${NCU_BY:-470}" ]; then echo "=== ncu $what: skipped at ${SECONDS}s"; continue; fi
  echo "=== ncu $what at ${SECONDS}s"
  timeout 60 "$ncu_bin" --profile-from-start off --cache-control none --clock-control none --launch-count 200 \
    --metrics "$metrics" --csv --page raw "$kc" --profile-step "$what" > "$OUT/ncu-$what.csv" 2> "$OUT/ncu-$what.err"
  echo "rc=$?"; tail -2 "$OUT/ncu-$what.err"
done
echo "done at ${SECONDS}s"
pack
