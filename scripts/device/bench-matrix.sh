#!/usr/bin/env bash
# The GPU-machine bench matrix: the 7B, 13B and 70B dummies, each on one GPU and as a 2-stage layer split on
# that same GPU; prompts of 512 and 2048 tokens and 128 generated, at depth 0 and 2048, 3 runs after a
# warm-up. Leaves in $OUT: bench.json (-o json), bench.md (the Markdown table, rendered from that JSON) and
# bench-progress.log (stderr: a line per test). Prints the table. About 2-3 minutes on an H100/H200.
#   source scripts/device/setup.sh && bash scripts/device/bench-matrix.sh     (or: run-all.sh bench)
# BENCH_MODELS (default llama-7b,llama-13b,llama-70b) and BENCH_SPLIT (default 1,200: GB per stage; none: one GPU
# only) change it.
set -u
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must name the folder for the results}"
dummies=()
for m in $(echo "${BENCH_MODELS:-llama-7b,llama-13b,llama-70b}" | tr , ' '); do dummies+=(--dummy "$m"); done
placements=(--gpus 0 --gpu-split none)
[ "${BENCH_SPLIT:-1,200}" = none ] || placements+=(--gpus 0,0 --gpu-split "${BENCH_SPLIT:-1,200}")
node bin/xllama.js bench "${dummies[@]}" -p 512,2048 -n 128 -d 0,2048 -r 3 "${placements[@]}" --timeout 150 \
  -o json > "$OUT/bench.json" 2> "$OUT/bench-progress.log"
rc=$?
tail -3 "$OUT/bench-progress.log"
node scripts/device/summarize-bench.mjs "$OUT/bench.json" | tee "$OUT/bench.md"
echo "bench: exit $rc (1: some rows failed; they say why)"
exit $rc
