#!/usr/bin/env bash
# Builds and runs tools/nvml-abi-check.cc: addon/nvml/nvml_abi.h (the slice of NVML's ABI the collector declares
# itself) against this machine's nvml.h, then the power fields read live. Needs g++ and nvml.h (the CUDA toolkit's).
#   bash scripts/device/check-nvml-abi.sh
set -eu
cd "$(dirname "$0")/../.."
inc=""
for d in "${CUDA_HOME:-}/include" /usr/local/cuda/include "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")/../include" \
         /usr/local/cuda/targets/x86_64-linux/include /usr/include; do
  if [ -f "$d/nvml.h" ]; then inc=$d; break; fi
done
[ -n "$inc" ] || { echo "check-nvml-abi: no nvml.h found (CUDA_HOME, /usr/local/cuda, nvcc's include)"; exit 2; }
echo "nvml.h: $inc/nvml.h"
mkdir -p build
g++ -std=c++17 -O1 -Wall -I addon -I "$inc" tools/nvml-abi-check.cc addon/nvml/nvml_library.cc -ldl -o build/nvml-abi-check
build/nvml-abi-check
