#!/usr/bin/env bash
# Source at the start of a GPU-machine command, from the repo root (carry .device, .devnm, dist):
#   source scripts/device/setup.sh
# Puts Node on PATH, links the production node_modules, builds the addon with CUDA for this machine's GPU
# (sm_90 on the H100/H200), the whole compiler output (ptxas statistics too) in $OUT/build.log.
source .device/on-device.sh || return 1
[ -e node_modules ] || ln -sfn .devnm/node_modules node_modules
export XLLAMA_CUDA=on
export XLLAMA_BUILD_VERBOSE=1
export CMAKE_BUILD_PARALLEL_LEVEL=16
mkdir -p "$OUT"
if ! node scripts/build-addon.mjs > "$OUT/build.log" 2>&1; then
  echo "setup: addon build failed"; tail -40 "$OUT/build.log"; return 1
fi
echo "setup: addon built ($(grep -c warning "$OUT/build.log") warnings)"
