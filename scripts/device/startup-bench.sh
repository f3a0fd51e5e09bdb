#!/usr/bin/env bash
# How long a command takes to start on real-size folders: `xllama generate -n 1` from launch to exit, and its
# timings.loadMs, on a random GPTQ 7B (Llama 2's tokenizer) and, when LLAMA3_TOKENIZER names a folder with Llama 3's
# tokenizer.json and tokenizer_config.json, a random Llama-3-8B-shaped one (its 128,256 ids need that tokenizer).
# Files in the page cache (each read once first). Launchers alternate, ROUNDS rounds (default 3):
#   XLLAMA_BINS="bin/xllama.js other/bin/xllama.js" LLAMA3_TOKENIZER=DIR bash scripts/device/startup-bench.sh
# Writes ~9.6 GB under ${STARTUP_DIR:-/tmp/xllama-startup}; results on stdout and in $OUT/startup.tsv.
set -u
cd "$(dirname "$0")/../.."
bins=${XLLAMA_BINS:-bin/xllama.js}
rounds=${ROUNDS:-3}
dir=${STARTUP_DIR:-/tmp/xllama-startup}
out=${OUT:-/tmp}
mkdir -p "$dir" "$out"
models=("$dir/llama-7b")
[ -d "$dir/llama-7b" ] || node scripts/device/make-gptq-folder.mjs "$dir/llama-7b" --shape llama-7b
if [ -n "${LLAMA3_TOKENIZER:-}" ]; then
  [ -d "$dir/llama3-8b" ] || node scripts/device/make-gptq-folder.mjs "$dir/llama3-8b" --shape llama3-8b --tokenizer "$LLAMA3_TOKENIZER"
  models+=("$dir/llama3-8b")
fi
for m in "${models[@]}"; do cat "$m"/* > /dev/null; done
# The addon every launcher loads: this checkout's build, so that only the JavaScript differs between them.
export XLLAMA_ADDON=${XLLAMA_ADDON:-$PWD/build/Release/xllama.node}
printf 'model\tlauncher\tround\twall_ms\tloadMs\n' | tee "$out/startup.tsv"
for m in "${models[@]}"; do
  for b in $bins; do node "$b" generate -m "$m" -p Hello -n 1 --temperature 0 > /dev/null 2>&1; done  # warm-up
  for r in $(seq "$rounds"); do
    for b in $bins; do
      start=$(date +%s%N)
      json=$(node "$b" generate -m "$m" -p Hello -n 1 --temperature 0 --json 2> "$out/startup-err.log") \
        || { echo "$b on $m failed:"; tail -3 "$out/startup-err.log"; continue; }
      wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))
      load=$(node -e 'console.log(JSON.parse(process.argv[1]).timings.loadMs.toFixed(0))' "$json")
      printf '%s\t%s\t%s\t%s\t%s\n' "$(basename "$m")" "$b" "$r" "$wall_ms" "$load" | tee -a "$out/startup.tsv"
    done
  done
done
