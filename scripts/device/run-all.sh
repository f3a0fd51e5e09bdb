#!/usr/bin/env bash
# One GPU-machine command that builds, checks and measures; each step's log lands in $OUT.
#   bash scripts/device/run-all.sh [steps...]    steps: kernels check generate ppl chat user monitor bench sanitize (default: all)
#                                                (sanitize: memcheck over check-cuda --quick, racecheck over the prompt and
#                                                decode attention)
#                                                and, on request: split (the layer split on GPU 0 named several times), leaks, load (writes ~40 GB of random
#                                                checkpoints; LOAD_PARTS and WINDOWS_70B as in load-bench.sh),
#                                                cold (the cold 7B load: startup-files.sh, then load-bench.sh's 7b-windows with
#                                                WINDOWS, default "0 256 4096/32 4096/8": windows and in-flight bounds),
#                                                timeline (a kernel check built with -DXLLAMA_KERNEL_TRACE=ON in build-trace/, then --timeline),
#                                                repeat (the backend path checks REPEAT times, default 10, with the dequantization side
#                                                stream on and off: how often a decode pipelining check flips a near-tie pick)
# Carry: .device .devnm dist   (pack them first: ../shared/device/pack-node.sh, scripts/device/pack-modules.sh,
# npm run build:ts)
set -u
cd "$(dirname "$0")/../.."
steps="${*:-kernels check generate ppl chat user monitor bench sanitize}"
source scripts/device/setup.sh || exit 1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee "$OUT/gpu.txt"
node bin/xllama.js info --gpus | tee "$OUT/info-gpus.txt"
run() {  # run NAME TIMEOUT CMD...: logs to $OUT/NAME.log, prints its tail
  local name=$1 limit=$2; shift 2
  echo "=== $name"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  tail -25 "$OUT/$name.log"; echo "=== $name rc=$rc"
}
for s in $steps; do
  case $s in
    kernels) kc=$(find build -name xllama_kernel_check -type f | head -1)  # KC_ARGS: e.g. --tune
             if [ -n "$kc" ]; then run kernels 300 "$kc" ${KC_ARGS:-}; else echo "=== kernels: no xllama_kernel_check built"; fi ;;
    user) run user 300 bash scripts/device/user-commands.sh ;;
    generate) run generate 120 node scripts/device/check-generate.mjs --backend cuda ;;
    chat) run chat 300 node scripts/device/check-chat.mjs --backend cuda ;;
    check) run check 240 node scripts/device/check-cuda.mjs --backend cuda ;;
    ppl) run ppl 300 bash scripts/device/check-ppl.sh ;;
    leaks) run leaks 300 bash -c 'node --expose-gc scripts/device/check-leaks.mjs --backend cuda --n 200 &&
             node --expose-gc scripts/device/check-leaks.mjs --backend cpu --n 200' ;;
    split) run split 240 node scripts/device/check-split.mjs ;;
    sanitize) run sanitize 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
               node scripts/device/check-cuda.mjs --backend cuda --quick
              kc=$(find build -name xllama_kernel_check -type f | head -1)  # shared-memory races of the attention kernels
              [ -n "$kc" ] && run racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 9 "$kc" --prompt-attention
              [ -n "$kc" ] && run racecheck-decode 180 compute-sanitizer --tool racecheck --error-exitcode 9 "$kc" --decode-attention ;;
    monitor) run monitor 120 bash scripts/device/record-monitor-traces.sh ;;
    timeline) cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
              run timeline-build 400 bash -c "cmake -S . -B build-trace -DXLLAMA_CUDA=ON -DXLLAMA_CUDA_ARCH=${cap:-90} \
                -DXLLAMA_KERNEL_TRACE=ON && cmake --build build-trace --target xllama_kernel_check -j 16"
              run timeline 300 build-trace/xllama_kernel_check --timeline ;;
    load) run load 400 bash scripts/device/load-bench.sh ;;
    cold) run startup 240 bash -c 'node scripts/device/make-gptq-folder.mjs ../xl-load/7b --shape llama-7b &&
            bash scripts/device/startup-files.sh ../xl-load/7b'
          LOAD_PARTS=7b-windows WINDOWS="${WINDOWS:-0 256 4096/32 4096/8}" run load-cold 400 bash scripts/device/load-bench.sh ;;
    repeat) kc=$(find build -name xllama_kernel_check -type f | head -1)
            [ -n "$kc" ] || { echo "=== repeat: no xllama_kernel_check built"; continue; }
            for ahead in 1 0; do
              failed=0
              for i in $(seq "${REPEAT:-10}"); do
                XLLAMA_DEQUANT_AHEAD=$ahead "$kc" --backend-paths > "$OUT/repeat-ahead$ahead-$i.log" 2>&1 || failed=$((failed + 1))
              done
              echo "=== repeat: XLLAMA_DEQUANT_AHEAD=$ahead: $failed of ${REPEAT:-10} runs failed"
              grep -h FAIL "$OUT"/repeat-ahead$ahead-*.log | grep -v "^FAIL:" | sort | uniq -c
            done ;;
    bench) # the bench matrix (dummies × one GPU / 2-stage split): bench.json, bench.md, bench-progress.log
           run bench 420 bash scripts/device/bench-matrix.sh ;;
  esac
done
# Only 8 files come back from the GPU machine: bundle every log, trace and frame into one archive.
# Only the archive stays in $OUT (the device returns the first 8 files by name).
tar -czf /tmp/results.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/results.tgz "$OUT/results.tgz" \
  && echo "results: \$OUT/results.tgz"
