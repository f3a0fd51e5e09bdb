#!/usr/bin/env bash
# Checkpoint load time on the GPU machine (after setup.sh has built the addon): random GPTQ folders of real
# size, written here, loaded by `xllama bench --verbose`; prints its load lines (the checkpoint's small-tensor
# read-ahead, the CUDA breakdown, the total).
#   bash scripts/device/load-bench.sh [DIR]      (DIR: where the folders go, default ../xl-load: on the disk,
#                                                  not a tmpfs, so that dropping the page cache makes it cold)
#   LOAD_PARTS="7b-cold 70b-cold" bash scripts/device/load-bench.sh [DIR]     only these parts, in this order
# Parts (default: 7b-warm 7b-cold 70b-shards, the run of session 5; session 59 ran the first five, and what
# 7b-windows does from a script of its own):
#   7b-warm      7B, one file, page cache: the earlier upload path once, this one twice
#   7b-cold      7B, one file: the disk's read speed (dd of the file, cold), then the load from a cold cache,
#                then again with the read-ahead before session 61 (256 MiB asked for at once)
#   70b-shards   70B, 8 shards, page cache, twice
#   70b-onefile  70B, one file, page cache, twice
#   70b-cold     70B, one file: dd's read speed of the file, then the load from a cold cache, once with the
#                defaults, or once per entry of WINDOWS_70B ("default" or W/F as in 7b-windows), each after a dd
#   7b-windows   7B, one file, cold: the checkpoint read-ahead's windows WINDOWS (MiB, default "0 256 512"; an
#                entry W/F also bounds what it keeps in flight to F MiB, XLLAMA_READ_AHEAD_IN_FLIGHT_MIB)
#                alternated ROUNDS times (default 2), each after dropping the whole page cache and after dropping
#                only the model file (the CUDA driver's libraries stay cached), printing each load's line
# The disk holds one 70B copy (36.6 GB) at a time: a part that needs another folder removes the one there.
set -u
dir="${1:-$(pwd)/../xl-load}"
parts="${LOAD_PARTS:-7b-warm 7b-cold 70b-shards}"
for p in $parts; do
  case $p in 7b-warm|7b-cold|70b-shards|70b-onefile|70b-cold|7b-windows) ;; *)
    echo "load-bench: unknown part '$p' (parts: 7b-warm 7b-cold 70b-shards 70b-onefile 70b-cold 7b-windows)"; exit 2 ;;
  esac
done
mkdir -p "$dir"
df -h "$dir" | tail -1; nproc; free -g | head -2
echo "parts: $parts"
load() {  # load FOLDER [ENV=VALUE...]: one bench run, only its load lines (bench's last words if it failed)
  local m=$1; shift
  local err
  err=$(env "$@" node bin/xllama.js bench -m "$m" --prompt 16 --depth 0 --gen 4 --repeats 1 --json --verbose 2>&1 >/dev/null)
  grep "xllama: load" <<<"$err" || { echo "(no load line; bench said:)"; tail -5 <<<"$err"; }
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
window_env() {  # window_env W/F: the read-ahead's environment for a window of W MiB, F MiB in flight (W alone: no bound)
  local w=${1%%/*} f=0
  [ "$1" != "$w" ] && f=${1#*/}
  echo "XLLAMA_READ_AHEAD_MIB=$w XLLAMA_READ_AHEAD_IN_FLIGHT_MIB=$f"
}
drop_file() {  # drop_file FILE: only FILE's pages leave the page cache
  sync; python3 -c "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" "$1"
}
read_speed() {  # read_speed FILE: dd's sequential read of FILE from a cold cache
  drop_caches
  echo "--- disk read speed ($(basename "$(dirname "$1")")/$(basename "$1"), cold):"
  dd if="$1" of=/dev/null bs=16M 2>&1 | tail -1
}
have=""  # the folder on disk now: 7b, 70b-shards or 70b-onefile
folder() {  # folder KIND: writes it unless it is already there, removing the other one first
  local kind=$1
  [ "$have" = "$kind" ] && return
  [ -n "$have" ] && rm -rf "${dir:?}/$have"
  have=""
  local t0; t0=$(date +%s%N)
  case $kind in
    7b) node scripts/device/make-gptq-folder.mjs "$dir/7b" --shape llama-7b ;;
    70b-shards) node scripts/device/make-gptq-folder.mjs "$dir/70b-shards" --shape llama-70b --shards 8 ;;
    70b-onefile) node scripts/device/make-gptq-folder.mjs "$dir/70b-onefile" --shape llama-70b ;;
  esac || { echo "load-bench: could not write the $kind folder"; exit 1; }
  echo "(written in $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
  have=$kind
}
for p in $parts; do
  case $p in
    7b-warm)
      folder 7b
      echo "--- 7B, one file, page cache, earlier upload path:"; load "$dir/7b" XLLAMA_LEGACY_UPLOAD=1
      echo "--- 7B, one file, page cache:"; load "$dir/7b"; load "$dir/7b" ;;
    7b-cold)
      folder 7b
      read_speed "$dir/7b/model.safetensors"
      drop_caches
      echo "--- 7B, one file, cold:"; load "$dir/7b"
      drop_caches  # the same with the default before session 61: 256 MiB asked for at once
      echo "--- 7B, one file, cold, $(window_env 256):"; load "$dir/7b" $(window_env 256) ;;
    70b-shards)
      folder 70b-shards
      echo "--- 70B, 8 shards, page cache:"; load "$dir/70b-shards"; load "$dir/70b-shards" ;;
    70b-onefile)
      folder 70b-onefile
      echo "--- 70B, one file, page cache:"; load "$dir/70b-onefile"; load "$dir/70b-onefile" ;;
    7b-windows)
      folder 7b
      read_speed "$dir/7b/model.safetensors"
      for round in $(seq "${ROUNDS:-2}"); do
        for entry in ${WINDOWS:-0 256 512}; do
          drop_caches; echo "--- 7B, all cold, $(window_env "$entry") (round $round):"
          load "$dir/7b" $(window_env "$entry") | grep -E 'read-ahead|open:|7b in'
          drop_file "$dir/7b/model.safetensors"; echo "--- 7B, file cold, $(window_env "$entry") (round $round):"
          load "$dir/7b" $(window_env "$entry") | grep -E 'read-ahead|open:|7b in'
        done
      done ;;
    70b-cold)
      folder 70b-onefile
      for entry in ${WINDOWS_70B:-default}; do
        # dd before each load: session 61's disk slowed between two pairs of loads, so each load needs its own
        read_speed "$dir/70b-onefile/model.safetensors"
        drop_caches
        settings=""; [ "$entry" != default ] && settings=$(window_env "$entry")
        echo "--- 70B, one file, cold${settings:+, $settings}:"; load "$dir/70b-onefile" $settings
      done ;;
  esac
done
[ -n "$have" ] && rm -rf "${dir:?}/$have"
exit 0
