#!/usr/bin/env bash
# Builds the kernel check here (sm_90, without cuBLAS: the decode path and every probe that does not time a cuBLAS
# prompt GEMM) and packs it gzipped into .kc/ (git-ignored), so that a GPU-machine call runs it at once instead of
# spending ~65-85 s of the device budget building the addon first (session 66). Needs this machine's nvcc.
#   bash scripts/device/pack-kernel-check.sh [NAME [CMAKE_CUDA_FLAGS]]
#     NAME: .kc/NAME.gz (default kc); CMAKE_CUDA_FLAGS: e.g. "-DXLLAMA_SOME_SWITCH" for a variant build, in its own
#     build folder (/tmp/xllama-kc-NAME) so variants don't rebuild each other.
# Then carry [".kc"] (each binary is ~9 MB gzipped; the carry limit is 64 MiB with the working tree) and run:
#   gunzip -c .kc/kc.gz > /tmp/kc && chmod +x /tmp/kc && /tmp/kc --bench-depths
set -euo pipefail
root="$(git rev-parse --show-toplevel)"
cd "$root"
name="${1:-kc}"
flags="${2:-}"
build="/tmp/xllama-kc-$name"
grep -qx '/.kc/' .git/info/exclude 2>/dev/null || echo '/.kc/' >> .git/info/exclude
cmake -S . -B "$build" -DXLLAMA_CUDA=ON -DXLLAMA_CUDA_ARCH=90 -DXLLAMA_CUBLAS=OFF -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_FLAGS="$flags" > "$build.log" 2>&1
cmake --build "$build" --target xllama_kernel_check -j "$(nproc)" >> "$build.log" 2>&1 || {
  echo "build failed: $build.log"; tail -20 "$build.log"; exit 1; }
mkdir -p .kc
gzip -9 -c "$build/xllama_kernel_check" > ".kc/$name.gz"
commit="$(git rev-parse --short HEAD)$(git diff --quiet || echo '-dirty')"
echo "ready: .kc/$name.gz ($(du -h ".kc/$name.gz" | cut -f1)), from $commit"
