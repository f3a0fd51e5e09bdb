#!/usr/bin/env bash
# Records real gpu-monitor traces on a GPU machine and checks them (about 75 s, under 110 s):
#   (a) tensor-core load: bf16 8192x8192 matmuls in a loop  -> Tensor/Compute should lead
#   (b) memory-bound load: device-to-device copies of 2 GiB  -> Memory bandwidth should lead
#   (c) idle                                                 -> Total should read "idle" throughout
#   (d) FP32 load: fp32 8192x8192 matmuls, TF32 off (FFMA)   -> Compute should lead, its pipe FP32
# Legacy GPU-Util should read near 100% under both loads. Only $OUT comes back from the GPU machine; on
# this side, `bash scripts/adopt-monitor-traces.sh RESULTS_DIR` copies the traces into fixtures/monitor/. Also saves `gpu-monitor --once` output and
# measures the CPU cost of the whole xllama process sampling at 500 ms for ~20 s.
# Run from the repo root, after `source .device/on-device.sh` and with dist/ and the addon built:
#   bash scripts/device/record-monitor-traces.sh
# Writes to $OUT: trace-{tensor,memory,idle,fp32}.jsonl, frame-{tensor,memory,idle,fp32}.txt (the panel at the end of
# each trace), once.txt, once.json, probe.json, summary.txt, load-*.log
set -uo pipefail
: "${OUT:?set OUT to the folder for results}"
mkdir -p "$OUT"
[ -f dist/cli/main.js ] || { echo "record-monitor-traces: dist/ missing; run npm run build:ts first"; exit 1; }
[ -f build/Release/xllama.node ] || { echo "record-monitor-traces: addon missing; run 'source scripts/device/setup.sh' (or npm run build:addon) first"; exit 1; }
[ -d node_modules ] || { echo "record-monitor-traces: node_modules missing; run 'source scripts/device/setup.sh' first"; exit 1; }
START=$SECONDS
X="node bin/xllama.js"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

node -e "const a=require('./build/Release/xllama.node'); console.log(JSON.stringify(a.monitorProbe()))" > "$OUT/probe.json"
say "probe: $(cat "$OUT/probe.json")"

timeout 15 $X gpu-monitor --once > "$OUT/once.txt" 2>&1; say "gpu-monitor --once: exit $?"
cat "$OUT/once.txt" | tee -a "$SUMMARY"
timeout 15 $X gpu-monitor --once --json > "$OUT/once.json" 2>&1; say "gpu-monitor --once --json: exit $?"

# A GPU load in the background; prints READY once warmed up, then runs for $2 seconds.
start_load() {
  python3 - "$1" "$2" > "$OUT/load-$1.log" 2>&1 <<'PY' &
import sys, time, torch
mode, secs = sys.argv[1], float(sys.argv[2])
if mode == 'tensor':
    a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)
    b = torch.randn_like(a)
    step = lambda: torch.matmul(a, b)
elif mode == 'fp32':
    torch.backends.cuda.matmul.allow_tf32 = False  # plain FFMA on the FP32 pipe, not tensor cores
    a = torch.randn(8192, 8192, device='cuda', dtype=torch.float32)
    b = torch.randn_like(a)
    step = lambda: torch.matmul(a, b)
else:
    src = torch.empty(2 * 1024**3, dtype=torch.uint8, device='cuda')
    dst = torch.empty_like(src)
    step = lambda: dst.copy_(src)
step(); torch.cuda.synchronize()
print('READY', flush=True)
# Work per step, to report the achieved rate each second (a sanity check that the load is real).
work, unit = (2 * 8192**3 / 1e12, 'TFLOP/s') if mode in ('tensor', 'fp32') else (2 * 2 * 1024**3 / 1e9, 'GB/s read+written')
n, t0, last = 0, time.time(), time.time()
while time.time() - t0 < secs:
    for _ in range(8):
        step()
    torch.cuda.synchronize()
    n += 8
    if time.time() - last >= 1:
        last = time.time()
        print(f'{mode}: {n} steps in {last - t0:.1f} s = {n * work / (last - t0):.0f} {unit}', flush=True)
PY
  LOAD_PID=$!
  for _ in $(seq 1 300); do
    grep -q READY "$OUT/load-$1.log" 2>/dev/null && return 0
    kill -0 "$LOAD_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "load $1 did not start:"; tail -5 "$OUT/load-$1.log"; return 1
}

record() {  # record NAME: ~8 s trace at 250 ms
  timeout 20 $X gpu-monitor --record "$OUT/trace-$1.jsonl" --interval 250 --duration 8 2>>"$OUT/record-$1.log"
  say "recorded trace-$1.jsonl: exit $?, $(($(wc -l < "$OUT/trace-$1.jsonl") - 1)) snapshots"
}

for load in tensor memory; do
  if start_load "$load" 14; then
    record "$load"
    kill "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null
    tail -1 "$OUT/load-$load.log" | tee -a "$SUMMARY"
  fi
done
sleep 1  # let the clocks and counters settle
record idle
if start_load fp32 14; then
  record fp32
  kill "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null
  tail -1 "$OUT/load-fp32.log" | tee -a "$SUMMARY"
fi

say ""
say "== summaries (xllama's own aggregation) =="
summarize() {  # summarize NAME [checks...]: also writes the panel frame at the end of the trace
  [ -f "$OUT/trace-$1.jsonl" ] || { say "trace-$1.jsonl: missing"; return; }
  local name=$1; shift
  FORCE_COLOR=0 node scripts/device/summarize-trace.mjs "$OUT/trace-$name.jsonl" --frame "$OUT/frame-$name.txt" "$@" 2>&1 | tee -a "$SUMMARY"
}
summarize tensor --expect-lead compute,tensor --expect-legacy-min 90
summarize memory --expect-lead memory --expect-legacy-min 90
summarize idle --expect-idle
summarize fp32 --expect-lead compute --expect-legacy-min 90

# CPU cost: process CPU time (utime+stime from /proc/PID/stat) of a --json run at 500 ms, over ~20 s.
say ""
$X gpu-monitor --json --interval 500 --duration 23 > /dev/null 2>"$OUT/cpu-run.log" &
MON=$!
sleep 2  # skip start-up (module loading, NVML init)
ticks() { sed 's/.*) //' "/proc/$MON/stat" | awk '{print $12 + $13}'; }
t0=$(ticks); w0=$(date +%s.%N)
sleep 20
t1=$(ticks); w1=$(date +%s.%N)
wait "$MON"; rc=$?
HZ=$(getconf CLK_TCK)
say "CPU cost: $(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v w0="$w0" -v w1="$w1" 'BEGIN { c = (b - a) / hz; printf "%.2f s CPU over %.1f s wall = %.2f%% of one core (whole xllama process, --json at 500 ms)", c, w1 - w0, 100 * c / (w1 - w0) }') (run exit $rc)"
say "total time: $((SECONDS - START)) s"
