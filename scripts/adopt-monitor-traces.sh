#!/usr/bin/env bash
# Adopts the traces that scripts/device/record-monitor-traces.sh wrote to $OUT on the GPU machine as test
# fixtures: trace-{tensor,memory,idle}.jsonl (and trace-fp32.jsonl when present) ->
# fixtures/monitor/h100-*.jsonl, each cut to its header and first 40 snapshots (fixtures stay small;
# test/monitor/recorded-traces.test.ts reads them).
#   bash scripts/adopt-monitor-traces.sh RESULTS_DIR
# RESULTS_DIR is the fetched $OUT folder; when it holds results.tgz (scripts/device/run-all.sh bundles $OUT so)
# the traces are taken from inside it. All three traces are checked before any fixture is written.
set -euo pipefail
MAX_SNAPSHOTS=40
NAMES=(tensor memory idle)
OPTIONAL=(fp32)

die() { echo "adopt-monitor-traces: $*" >&2; exit 2; }
[ $# -eq 1 ] || die "usage: adopt-monitor-traces.sh RESULTS_DIR"
src=$1
[ -d "$src" ] || die "$src: not a folder"
cd "$(dirname "$0")/.."
dest=fixtures/monitor

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -f "$src/trace-tensor.jsonl" ] && [ -f "$src/results.tgz" ]; then
  tar -xzf "$src/results.tgz" -C "$work" || die "$src/results.tgz: cannot unpack"
  src=$work
fi

for name in "${OPTIONAL[@]}"; do
  [ -f "$src/trace-$name.jsonl" ] && NAMES+=("$name")
done
for name in "${NAMES[@]}"; do
  f=$src/trace-$name.jsonl
  [ -f "$f" ] || die "$f: missing (did the monitor step of the device run finish?)"
  head -1 "$f" | grep -q '"format":"xllama-gpu-trace"' || die "$f:1: not an xllama GPU trace"
  n=$(($(grep -c . "$f") - 1))
  [ "$n" -ge 10 ] || die "$f: only $n snapshots (want at least 10)"
  head -n $((MAX_SNAPSHOTS + 1)) "$f" > "$work/h100-$name.jsonl"
done
for name in "${NAMES[@]}"; do
  mv "$work/h100-$name.jsonl" "$dest/h100-$name.jsonl"
  echo "$dest/h100-$name.jsonl: $(($(wc -l < "$dest/h100-$name.jsonl") - 1)) snapshots"
done
echo "next: npm run build:ts && node --test dist/test/monitor/recorded-traces.test.js"
