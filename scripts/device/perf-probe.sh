#!/usr/bin/env bash
# Decode/prefill probe on the GPU machine (after setup.sh): the kernel check without timings (every kernel
# against the float64 references; KC_ARGS=--tune adds the back-to-back GEMV tuning and the prompt path's settings
# side by side), the prompt speeds (--bench-prompt: the prompt attention alone, then the dummies' prompts), and
# ncu's per-kernel breakdown of one 7B decode step, one 512-token prompt chunk and one 2048-token chunk (isolated
# kernels: caches not flushed, clocks not locked). Logs and CSVs land in $OUT.
#   bash scripts/device/perf-probe.sh [kernels] [prompt] [ncu]     (default: all three)
set -u
steps="${*:-kernels prompt ncu}"
kc=$(find build -name xllama_kernel_check -type f | head -1)
[ -n "$kc" ] || { echo "perf-probe: no xllama_kernel_check built"; exit 1; }
ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__block_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active
for s in $steps; do
  case $s in
    kernels) echo "=== kernel check (no timing) ${KC_ARGS:-}"
             timeout 300 "$kc" --no-timing ${KC_ARGS:-} > "$OUT/kernels.log" 2>&1; echo "rc=$?"
             grep -E "FAIL|failure|^tune" "$OUT/kernels.log" | head -60 ;;
    prompt) echo "=== prompt speeds"
        timeout 300 "$kc" --bench-prompt > "$OUT/prompt.log" 2>&1; echo "rc=$?"
        grep -E "^time|^bench" "$OUT/prompt.log" | sed 's/ | decode.*scratch/ scratch/; s/, GPU memory.*//' ;;
    ncu) [ -n "$ncu_bin" ] || { echo "=== ncu: not found"; continue; }
         for what in decode prefill prefill2048; do
           echo "=== ncu $what"
           timeout 240 "$ncu_bin" --profile-from-start off --cache-control none --clock-control none \
             --launch-count 200 --metrics "$metrics" --csv --page raw "$kc" --profile-step "$what" \
             > "$OUT/ncu-$what.csv" 2> "$OUT/ncu-$what.err"; echo "rc=$?"; tail -3 "$OUT/ncu-$what.err"
         done ;;
  esac
done
