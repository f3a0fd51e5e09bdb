// Streaming loads for weights that are read exactly once per token.
#pragma once
#include <cstdint>

namespace xllama::cuda {

// 16 bytes through the read-only path without allocating in L1, so weights don't evict activations.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// Block b of the grid prefetches its share of [p, p + bytes) into L2 (kept ahead of streamed data), one 128-byte
// line per thread and step; the instruction doesn't wait for the data.
__device__ __forceinline__ void prefetch_l2_share(const void* p, size_t bytes) {
  if (!p || bytes == 0) return;
  const size_t blocks = (size_t)gridDim.x * gridDim.y * gridDim.z;
  const size_t b = ((size_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const size_t lines = (bytes + 127) / 128, per = (lines + blocks - 1) / blocks;
  const size_t l0 = b * per, l1 = l0 + per < lines ? l0 + per : lines;
  const char* c = static_cast<const char*>(p);
  for (size_t l = l0 + threadIdx.x; l < l1; l += blockDim.x)
    asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(c + l * 128));
}

}  // namespace xllama::cuda
