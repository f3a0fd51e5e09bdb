// The decode attention's pieces shared by attention_kernel (kernels_model.cu), the tensor-core attention
// (kernels_attention_decode_mma.cu) and the persistent decode kernel: the deferred norm factor, the online-softmax step of
// a lane group and the combine of the key splits.
#pragma once
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "cuda/kernels.h"
#include "cuda/rope_pair.cuh"

namespace xllama::cuda {

// A qkv row's RMSNorm factor where the q/k/v GEMV left it out (GemvInput::RmsNormDeferred), else 1 (exact).
__device__ __forceinline__ float row_norm_factor(const DeferredNorm& n, int row) {
  return n.sum_sq ? rsqrtf(n.sum_sq[row] / (float)n.dim + n.eps) : 1.f;
}

// This thread's 8 dims of q against the same 8 dims of one cached K row (fp16, one 16-byte load).
__device__ __forceinline__ float dot8(const uint4& k, const float (&qv)[8]) {
  const __half2* k2 = reinterpret_cast<const __half2*>(&k);
  float sdot = 0.f;
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    const float2 f = __half22float2(k2[t]);
    sdot = fmaf(qv[2 * t], f.x, fmaf(qv[2 * t + 1], f.y, sdot));
  }
  return sdot;
}

// A lane group's scores of U positions (rows kr[u]) against its q dims qv, summed over the group's tpp threads.
template <int U>
__device__ __forceinline__ void score_positions(const uint4 (&kr)[U], const float (&qv)[8], int tpp,
                                                unsigned group_mask, float (&sc)[U]) {
#pragma unroll
  for (int u = 0; u < U; ++u) sc[u] = dot8(kr[u], qv);
  for (int o = 1; o < tpp; o <<= 1)
#pragma unroll
    for (int u = 0; u < U; ++u) sc[u] += __shfl_xor_sync(group_mask, sc[u], o);
}

// The U scored positions p0 + u * stride (value rows vr[u]; none at or past `end`) into the online softmax at once:
// one running-max step and one rescale of acc for all of them, which shortens the dependent chain and saves U - 1
// rescales against attend_positions.
template <int U>
__device__ __forceinline__ void softmax_accumulate(const float (&sc)[U], const uint4 (&vr)[U], int p0, int stride,
                                                   int end, float& mrun, float& lrun, float (&acc)[8]) {
  float mnew = mrun;
#pragma unroll
  for (int u = 0; u < U; ++u)
    if (p0 + u * stride < end) mnew = fmaxf(mnew, sc[u]);
  if (mnew == -INFINITY) return;  // no position here and none before
  const float alpha = exp2f(mrun - mnew);  // 0 while mrun is -inf
  lrun *= alpha;
#pragma unroll
  for (int t = 0; t < 8; ++t) acc[t] *= alpha;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    if (p0 + u * stride >= end) continue;
    const float e = exp2f(sc[u] - mnew);
    lrun += e;
    const __half2* v2 = reinterpret_cast<const __half2*>(&vr[u]);
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const float2 f = __half22float2(v2[t]);
      acc[2 * t] = fmaf(e, f.x, acc[2 * t]);
      acc[2 * t + 1] = fmaf(e, f.y, acc[2 * t + 1]);
    }
  }
  mrun = mnew;
}

// A lane group of tpp threads, each holding 8 dims of one cached position's K and V row, takes U positions into
// its online softmax one after another: positions p0 + u * stride (u < U) with rows kr[u], vr[u] (zeros past
// `end`); qv is this thread's 8 dims of q, pre-scaled so that exp2 gives the softmax. Positions at or past `end`
// leave the state as it is (uniform within the lane group, whose threads share the dot product through group_mask).
// (attention_kernel's batched path takes a round at once: score_positions, then softmax_accumulate.)
template <int U>
__device__ __forceinline__ void attend_positions(const uint4 (&kr)[U], const uint4 (&vr)[U], const float (&qv)[8],
                                                 int p0, int stride, int end, int tpp, unsigned group_mask,
                                                 float& mrun, float& lrun, float (&acc)[8]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int p = p0 + u * stride;
    float sdot = dot8(kr[u], qv);
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

// Rotation pair (j, j + D/2) of a new position's k and v (decode attention with RoPE fused): read from its q/k/v
// GEMV output row `src` (fp32, KV head kvh of KV), times the row's deferred norm factor r, k rotated by (c, s), both
// rounded to fp16 and written into the caches at kd and vd (the position's rows) and into the block's shared-memory
// copy `fresh` ([k | v], 2 D halves).
__device__ __forceinline__ void write_new_kv_pair(const float* src, int H, int KV, int kvh, int D, int j, float r,
                                                  float c, float s, __half* kd, __half* vd, __half* fresh) {
  const int half_d = D / 2;
  const float* ksrc = src + (size_t)(H + kvh) * D;
  const float* vsrc = src + (size_t)(H + KV + kvh) * D;
  float a = ksrc[j] * r, b = ksrc[j + half_d] * r;
  rotate_pair_cs(a, b, c, s);
  const __half ka = __float2half(a), kb = __float2half(b);
  const __half va = __float2half(vsrc[j] * r), vb = __float2half(vsrc[j + half_d] * r);
  kd[j] = ka, kd[j + half_d] = kb, vd[j] = va, vd[j + half_d] = vb;
  fresh[j] = ka, fresh[j + half_d] = kb, fresh[D + j] = va, fresh[D + j + half_d] = vb;
}

// Whether this block is the last of a (row, head)'s `splits` blocks to count itself on `counter`, which it then leaves
// zero for the next launch. One thread releases the block's partials (ordered before it by the barrier) with the
// count and acquires the others'. Every thread of the block calls it.
__device__ __forceinline__ bool last_split_block(unsigned* counter, int splits) {
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    last = atomicAdd(counter, 1u) == (unsigned)splits - 1;
    if (last) {
      *counter = 0;  // ready for the next launch
      __threadfence();
    }
  }
  __syncthreads();
  return last;
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

// The same combine with every load of a chunk of splits in flight at once: the block (THREADS threads, all of
// them) copies the partials into `stage` (stage_floats floats of shared memory) a chunk at a time, coalesced, and
// folds each chunk into a running max and sums per dim. combine_splits' loads depend on each other through its
// loops: ~6 L2 round trips at 9 splits against 1 here.
template <int THREADS>
__device__ __forceinline__ void combine_splits_staged(const float* w, int splits, int D, float* stage,
                                                      int stage_floats, __half* out) {
  constexpr int kLoads = 10;  // per thread and chunk: a stage of (D + 2) floats per lane group is <= 10 per thread
  constexpr int kDims = 2;    // dims per thread: D <= 256, THREADS >= 128
  const int stride = D + 2, tid = threadIdx.x;
  const int per_chunk = min(stage_floats, kLoads * THREADS) / stride;
  float M = -INFINITY, L = 0.f, o[kDims] = {0.f, 0.f};
  for (int c0 = 0; c0 < splits; c0 += per_chunk) {
    const int n = min(per_chunk, splits - c0) * stride;
    const float* src = w + (size_t)c0 * stride;
    float v[kLoads];
#pragma unroll
    for (int k = 0; k < kLoads; ++k)
      if (tid + k * THREADS < n) v[k] = __ldcg(src + tid + k * THREADS);
#pragma unroll
    for (int k = 0; k < kLoads; ++k)
      if (tid + k * THREADS < n) stage[tid + k * THREADS] = v[k];
    __syncthreads();
    float Mc = M;
    for (int i = 0; i < n; i += stride) Mc = fmaxf(Mc, stage[i + D]);
    if (Mc != -INFINITY) {  // else every split so far had no keys
      const float a = exp2f(M - Mc);  // 0 while M is -inf
      L *= a;
#pragma unroll
      for (int k = 0; k < kDims; ++k) o[k] *= a;
      for (int i = 0; i < n; i += stride) {
        const float ms = stage[i + D];
        if (ms == -INFINITY) continue;
        const float f = exp2f(ms - Mc);
        L += stage[i + D + 1] * f;
#pragma unroll
        for (int k = 0; k < kDims; ++k)
          if (tid + k * THREADS < D) o[k] += stage[i + tid + k * THREADS] * f;
      }
      M = Mc;
    }
    __syncthreads();  // the next chunk overwrites the stage
  }
#pragma unroll
  for (int k = 0; k < kDims; ++k)
    if (tid + k * THREADS < D) out[tid + k * THREADS] = __float2half(o[k] / L);
}

}  // namespace xllama::cuda
