#!/usr/bin/env bash
# Issue 18 on the GPU machine: the non-Hopper code path next to the native one, and the load-time check.
#   native  build/ for this GPU (sm_90 + compute_90 PTX; scripts/device/setup.sh builds it)
#   arch80  build-arch80/: XLLAMA_CUDA_ARCH=80-virtual, compute_80 PTX only, so the driver JIT-compiles code in
#           which __CUDA_ARCH__ is 800 (no griddepcontrol, PDL not requested): the path Ampere and Ada GPUs run
#   nocode  build-nocode/: XLLAMA_CUDA_ARCH=86-real, machine code for Ampere only; the H200 has nothing to run,
#           and xllama must say so in one line (exit 2) instead of failing a kernel launch
# For native and arch80: the kernel check, check-cuda.mjs, check-generate.mjs (llama2.c's story) and
# `xllama bench --dummy llama-7b --json`; a side-by-side table at the end (arch-summary.txt).
#   bash scripts/device/check-arch.sh [native] [arch80] [nocode]     (default: all three, ~5-6 min)
# Carry: .device .devnm dist (see scripts/device/run-all.sh). KC_ARGS: kernel check flags (default --no-timing).
set -u
cd "$(dirname "$0")/../.."
steps="${*:-native arch80 nocode}"
source scripts/device/setup.sh || exit 1   # builds build/ for this machine's GPU
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv | tee "$OUT/gpu.txt"
run() {  # run NAME TIMEOUT CMD...: logs to $OUT/NAME.log, prints its tail
  local name=$1 limit=$2; shift 2
  echo "=== $name"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  tail -6 "$OUT/$name.log"; echo "=== $name rc=$rc"
}
build() {  # build DIR ARCH: quiet build, its closing line printed; fails when the build does
  echo "=== build $1 (XLLAMA_CUDA_ARCH=$2)"
  XLLAMA_BUILD_VERBOSE=0 node scripts/build-addon.mjs --cuda on --cuda-arch "$2" --build-dir "$1" > "$OUT/build-$1.log" 2>&1
  local rc=$?; tail -3 "$OUT/build-$1.log"; return $rc
}
checks() {  # checks NAME BUILD_DIR
  local name=$1 dir=$2
  export XLLAMA_ADDON="$PWD/$dir/Release/xllama.node"
  node bin/xllama.js info --gpus --json > "$OUT/info-$name.json" 2>&1
  run "kernels-$name" 300 "$dir/xllama_kernel_check" ${KC_ARGS:---no-timing}
  run "check-$name" 240 node scripts/device/check-cuda.mjs --backend cuda
  mkdir -p "$OUT/generate-$name"
  OUT="$OUT/generate-$name" run "generate-$name" 120 node scripts/device/check-generate.mjs --backend cuda
  timeout 300 node bin/xllama.js bench --dummy llama-7b --max-seq-len 4096 --gen 256 --json \
    > "$OUT/bench-$name.json" 2> "$OUT/bench-$name.log"
  echo "=== bench-$name rc=$?"
  unset XLLAMA_ADDON
}
for s in $steps; do
  case $s in
    native) checks native build ;;
    arch80) build build-arch80 80-virtual && checks arch80 build-arch80 ;;
    nocode)
      build build-nocode 86-real || continue
      export XLLAMA_ADDON="$PWD/build-nocode/Release/xllama.node"
      node bin/xllama.js info --gpus --json > "$OUT/info-nocode.json" 2>&1
      # generate: one line, exit 2. bench runs each configuration in a child, so there the same line is the
      # message of a failed row (exit 1), with no stack trace.
      node bin/xllama.js generate -m fixtures/models/stories260K -p Once -n 4 --backend cuda > "$OUT/nocode.out" 2> "$OUT/nocode.err"; rc=$?
      echo "\$ xllama generate … --backend cuda → exit $rc:"; cat "$OUT/nocode.err"
      if [ "$rc" = 2 ] && [ "$(wc -l < "$OUT/nocode.err")" = 1 ] && grep -q "has no code for GPU 0" "$OUT/nocode.err"; then
        echo "nocode generate: PASS"; else echo "nocode generate: FAIL"; fi
      node bin/xllama.js bench --dummy tiny -o csv > "$OUT/nocode.out" 2> "$OUT/nocode.err"; rc=$?
      echo "\$ xllama bench --dummy tiny → exit $rc:"; cat "$OUT/nocode.out"
      if [ "$rc" = 1 ] && grep -q ",failed,.*has no code for GPU 0" "$OUT/nocode.out" && ! grep -q "^ *at " "$OUT/nocode.err"; then
        echo "nocode bench: PASS"; else echo "nocode bench: FAIL"; fi
      unset XLLAMA_ADDON ;;
  esac
done
# Side by side: kernel check verdicts, check-cuda results, and the bench figures of both builds.
{
  for n in native arch80; do
    [ -f "$OUT/bench-$n.json" ] || continue
    echo "--- $n: kernel check $(grep -E '^(PASS|FAIL):' "$OUT/kernels-$n.log" | tail -1) ($(grep -c ' PASS$' "$OUT/kernels-$n.log") PASS lines)"
    echo "    $(tail -1 "$OUT/check-$n.log")"
    node -e 'const g = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      console.log(`    llama2.c story equal: ${g.greedyText.equalsLlama2c}; greedy ids common with reference: ` +
        `${g.greedyIds.commonPrefixWithReference}/196; device sampling repeatable: ${g.deviceSampling.sameSeedSameIds}`);' \
      "$OUT/generate-$n/generate-cuda.json" 2>&1
    node scripts/device/summarize-bench.mjs "$OUT/bench-$n.json" 2>&1 | sed 's/^/    /'
  done
} | tee "$OUT/arch-summary.txt"
tar -czf /tmp/results.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/results.tgz "$OUT/results.tgz" \
  && echo "results: \$OUT/results.tgz"
