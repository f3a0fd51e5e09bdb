#!/usr/bin/env bash
# Checkpoint load time on the GPU machine (after setup.sh has built the addon): random GPTQ folders of real
# size, written here; the disk's read speed; 7B in the page cache (the earlier upload path and this one) and
# cold; 70B sharded in the page cache. Prints `xllama bench --verbose`'s load lines.
#   bash scripts/device/load-bench.sh [DIR]      (DIR: where the folders go, default ../xl-load: on the disk,
#                                                  not a tmpfs, so that dropping the page cache makes it cold)
set -u
dir="${1:-$(pwd)/../xl-load}"
mkdir -p "$dir"
df -h "$dir" | tail -1; nproc; free -g | head -2
load() {  # load FOLDER [ENV=VALUE...]: one bench run, only its load lines
  local m=$1; shift
  env "$@" node bin/xllama.js bench -m "$m" --prompt 16 --context 0 --gen 4 --repeats 1 --json --verbose 2>&1 >/dev/null |
    grep "xllama: load"
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
t0=$(date +%s%N)
node scripts/device/make-gptq-folder.mjs "$dir/llama-7b" --shape llama-7b
echo "(written in $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
echo "--- 7B, one file, page cache, earlier upload path:"; load "$dir/llama-7b" XLLAMA_LEGACY_UPLOAD=1
echo "--- 7B, one file, page cache:"; load "$dir/llama-7b"; load "$dir/llama-7b"
drop_caches
echo "--- disk read speed (the 7B file, cold):"; dd if="$dir/llama-7b/model.safetensors" of=/dev/null bs=16M 2>&1 | tail -1
drop_caches
echo "--- 7B, one file, cold:"; load "$dir/llama-7b"
rm -rf "$dir/llama-7b"
t0=$(date +%s%N)
node scripts/device/make-gptq-folder.mjs "$dir/llama-70b" --shape llama-70b --shards 8
echo "(written in $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
echo "--- 70B, 8 shards, page cache:"; load "$dir/llama-70b"; load "$dir/llama-70b"
rm -rf "$dir/llama-70b"
