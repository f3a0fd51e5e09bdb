// Streaming loads for weights that are read exactly once per token.
#pragma once
#include <cstdint>

namespace xllama::cuda {

// An L2 policy for the weight stream (weight_evict_first_flag() in kernels.h): evict_first keeps the small tensors a
// token reads again (norm weights, activations, the KV cache) in L2 instead of behind gigabytes of weights.
__device__ __forceinline__ uint64_t weight_stream_policy(bool evict_first) {
  uint64_t p;
  if (evict_first) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  else asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(p));
  return p;
}
// 16 bytes through the read-only path without allocating in L1 (weights don't evict activations), under policy.
__device__ __forceinline__ uint4 load_stream(const uint4* p, uint64_t policy) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %5;"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p), "l"(policy));
  return r;
}

}  // namespace xllama::cuda
