// A 4-bit weight's group of an input index without a division: QWeight::group_div, set by the launch that needs
// it, makes it one multiply-high (a division by a runtime divisor is ~20 dependent instructions).
#pragma once
#include <cstdint>

#include "cuda/kernels.h"

namespace xllama::cuda {

// QWeight::group_div for a group size of at least 2: ceil(2^32 / group_size).
inline uint32_t group_divisor(int group_size) {
  return (uint32_t)(((1ull << 32) + (unsigned)group_size - 1) / (unsigned)group_size);
}
// Whether group_of is exact for every input index of w: with m = (2^32 + f) / d, f < d, floor(n m / 2^32) =
// floor(n / d) as long as n f < 2^32, which K * group_size <= 2^32 ensures (every Llama shape).
inline bool group_of_exact(const QWeight& w) {
  return w.group_size >= 2 && (uint64_t)w.K * (uint64_t)w.group_size <= (1ull << 32);
}
// The group of input n (below K), where w.group_div is set and group_of_exact(w).
__device__ __forceinline__ int group_of(const QWeight& w, int n) { return (int)__umulhi((unsigned)n, w.group_div); }

}  // namespace xllama::cuda
