// The decode attention's pieces shared by attention_kernel (kernels_model.cu) and the persistent decode kernel:
// the online-softmax step of a lane group and the combine of the key splits.
#pragma once
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

namespace xllama::cuda {

// A lane group of tpp threads, each holding 8 dims of one cached position's K and V row, takes U positions into
// its online softmax: positions p0 + u * stride (u < U) with rows kr[u], vr[u] (zeros past `end`); qv is this thread's 8 dims of q,
// pre-scaled so that exp2 gives the softmax. Positions at or past `end` leave the state as it is (uniform within
// the lane group, whose threads share the dot product through group_mask).
template <int U>
__device__ __forceinline__ void attend_positions(const uint4 (&kr)[U], const uint4 (&vr)[U], const float (&qv)[8],
                                                 int p0, int stride, int end, int tpp, unsigned group_mask,
                                                 float& mrun, float& lrun, float (&acc)[8]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int p = p0 + u * stride;
    const __half2* k2 = reinterpret_cast<const __half2*>(&kr[u]);
    float sdot = 0.f;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float2 f = __half22float2(k2[t]);
      sdot = fmaf(qv[2 * t], f.x, fmaf(qv[2 * t + 1], f.y, sdot));
    }
    for (int o = 1; o < tpp; o <<= 1) sdot += __shfl_xor_sync(group_mask, sdot, o);
    if (p < end) {
      const float mnew = fmaxf(mrun, sdot);
      const float alpha = exp2f(mrun - mnew), e = exp2f(sdot - mnew);
      lrun = lrun * alpha + e;
      const __half2* v2 = reinterpret_cast<const __half2*>(&vr[u]);
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        const float2 f = __half22float2(v2[t]);
        acc[2 * t] = fmaf(acc[2 * t], alpha, e * f.x);
        acc[2 * t + 1] = fmaf(acc[2 * t + 1], alpha, e * f.y);
      }
      mrun = mnew;
    }
  }
}

// Flash-decoding's combine, run by the last split block of a (row, head) to finish: the splits' partials at w
// ([o (D floats), running max, running sum] per split, max -inf for a split with no keys) merged into out[D].
__device__ __forceinline__ void combine_splits(const float* w, int splits, int D, int threads, __half* out) {
  float Mall = -INFINITY;
  for (int sp = 0; sp < splits; ++sp) Mall = fmaxf(Mall, __ldcg(w + sp * (D + 2) + D));
  for (int d = threadIdx.x; d < D; d += threads) {
    float o = 0.f, L = 0.f;
    for (int sp = 0; sp < splits; ++sp) {
      const float ms = __ldcg(w + sp * (D + 2) + D);
      if (ms == -INFINITY) continue;
      const float f = exp2f(ms - Mall);
      o += __ldcg(w + sp * (D + 2) + d) * f;
      L += __ldcg(w + sp * (D + 2) + D + 1) * f;
    }
    out[d] = __float2half(o / L);
  }
}

}  // namespace xllama::cuda
