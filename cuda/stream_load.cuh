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

}  // namespace xllama::cuda
