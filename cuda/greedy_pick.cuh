// The greedy pick's rule on the device, shared by the argmax kernel (kernels_sample.cu) and the lm_head that picks
// as its blocks finish (gemv_f16_rmsnorm with a GreedyPick, kernels_linear.cu): the largest logit, ties to the lower
// index, NaN never taken (a row of NaN picks 0).
#pragma once
#include <cstdint>

namespace xllama::cuda {

// Larger float -> larger key (NaN sorts as the largest negative-bit pattern; logits are finite).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Whether logit v at index i replaces the best so far (best, bi); start from (-INFINITY, kNoPick).
constexpr int kNoPick = 0x7fffffff;
__device__ __forceinline__ bool greedy_takes(float v, int i, float best, int bi) {
  return v > best || (v == best && i < bi);
}

// (value, index) as one 64-bit key whose maximum is the greedy pick among several: the value's order (-0 as +0,
// which compare equal) above the index's complement (the lower index wins a tie). Never 0, which means none.
__device__ __forceinline__ unsigned long long greedy_key(float v, int i) {
  return (unsigned long long)order_key(v + 0.f) << 32 | (uint32_t)~(uint32_t)i;
}
__device__ __forceinline__ int greedy_key_index(unsigned long long key) {
  return key ? (int)~(uint32_t)key : 0;
}

}  // namespace xllama::cuda
