// Device helpers of the fixed-point decode GEMV (kernels_gemv_q4.cu) that the one-launch decode MLP
// (kernels_mlp_decode.cu) shares: how a block stages its input (normalized, SiLU-gated or plain) as fixed point, the
// running dot over a warp's packed rows, and the 4-wide atomic add.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernel_trace.cuh"
#include "cuda/kernels.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/q4_fixed_point.cuh"

namespace xllama::cuda {

constexpr int kCols = 128;  // output columns per block
constexpr int kWarps = 4;
constexpr int kBatchRows = 8;  // packed rows a warp loads before using them

// Input value k (checkpoint order) of row mi as the GEMV multiplies it; IN is how x becomes the input (GemvInput
// in kernels.h). r: the row's RMSNorm factor (RmsNorm input only).
template <GemvInput IN>
__device__ __forceinline__ float gemv_input(const QWeight& w, const void* __restrict__ xv, int x_stride,
                                            const GemvFusion& f, int mi, int k, float r) {
  if (IN == GemvInput::SiluGateUp) {
    const float* gr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
    return silu_gate_input(gr[k] * r, gr[w.K + k] * r);  // silu_mul rounds to fp16
  } else if (IN == GemvInput::RmsNorm) {
    const float* hr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
    return rmsnorm_input(hr[k], r, f.in_norm[k]);  // rmsnorm_kernel's formula and rounding
  } else if (IN == GemvInput::RmsNormDeferred) {
    const float* hr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
    return hr[k] * __half2float(f.in_norm[k]);  // no fp16 rounding: unnormalized values may exceed its range
  } else {
    return __half2float(static_cast<const __half*>(xv)[(size_t)mi * x_stride + k]);
  }
}

// The factor gemv_input multiplies row mi by: RmsNorm's, or (SiluGateUp after a RmsNormDeferred gate/up) the one
// the gate/up GEMV left out; 1 (exact) otherwise.
template <GemvInput IN>
__device__ __forceinline__ float rmsnorm_factor(const QWeight& w, const GemvFusion& f, int mi) {
  if (IN == GemvInput::RmsNorm) return rsqrtf(f.in_sum_sq[mi] / (float)w.K + f.eps);
  if (IN == GemvInput::SiluGateUp && f.in_sum_sq) return rsqrtf(f.in_sum_sq[mi] / (float)f.norm_dim + f.eps);
  return 1.f;
}

// x for packed rows [r0, r0 + nr) in fixed point (q4_fixed_point.cuh), read through the act-order permutation:
// 16 bytes per packed row in xq, and per block of 4 packed rows (scale, sum of v) in xb.
// sum_squares (RmsNormDeferred): also each row's sum of squares of h over the staged inputs, per warp into partial.
template <int M, GemvInput IN>
__device__ __forceinline__ void stage_x_fixed(const QWeight& w, const void* __restrict__ xv, int x_stride,
                                              const GemvFusion& f, int r0, int nr, int block_rows,
                                              unsigned char* xq, float2* xb, bool sum_squares,
                                              float (&partial)[kWarps][M]) {
  const int items = M * nr * 4;  // a multiple of 16: nr is a multiple of 4
  float ss[M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) ss[mi] = 0.f;
  for (int base = 0; base < items; base += blockDim.x) {  // uniform trip count: the shuffles need whole warps
    const int i = base + threadIdx.x;
    const bool live = i < items;
    const int mi = live ? i / (nr * 4) : 0, rem = i - mi * nr * 4, rr = rem >> 2, s = rem & 3;
    float a0 = 0.f, a1 = 0.f;
    if (live) {
      int k0 = (r0 + rr) * 8 + s, k1 = k0 + 4;
      if (w.perm) k0 = w.perm[k0], k1 = w.perm[k1];
      if (IN == GemvInput::RmsNormDeferred) {  // the squares from the same loads (no second pass over h)
        const float* hr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
        const float h0 = hr[k0], h1 = hr[k1];
        a0 = h0 * __half2float(f.in_norm[k0]), a1 = h1 * __half2float(f.in_norm[k1]);
#pragma unroll
        for (int r = 0; r < M; ++r)
          if (r == mi) ss[r] = fmaf(h0, h0, fmaf(h1, h1, ss[r]));
      } else {
        const float r = rmsnorm_factor<IN>(w, f, mi);
        a0 = gemv_input<IN>(w, xv, x_stride, f, mi, k0, r);
        a1 = gemv_input<IN>(w, xv, x_stride, f, mi, k1, r);
      }
    }
    if (base == 0 && live) trace_mark_arrived(3, a0);  // (--timeline: the first input arrived)
    int v0, v1;
    const FixedBlock blk = quantize_fixed_pair(a0, a1, v0, v1);
    if (!live) continue;
    if ((i & 15) == 0)
      xb[mi * (block_rows / kFixedBlockRows) + rr / kFixedBlockRows] = make_float2(blk.scale, __int_as_float(blk.sum));
    store_fixed_pair(xq + ((size_t)mi * block_rows + rr) * 16, s, v0, v1);
  }
  if (IN != GemvInput::RmsNormDeferred || !sum_squares) return;  // (uniform over the block)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    float v = ss[mi];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[warp][mi] = v;
  }
}

// y[0..3] += v in one atomic operation where the GPU has them (red.global.add.v4.f32, sm_90), else four.
__device__ __forceinline__ void atomic_add4(float* dst, float4 v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
               : "memory");
#else
  atomicAdd(dst, v.x), atomicAdd(dst + 1, v.y), atomicAdd(dst + 2, v.z), atomicAdd(dst + 3, v.w);
#endif
}

// Group g's raw scales (fp16) and zeros (packed bytes) for the 4 columns from c: what group_params and
// group_params_fixed take.
__device__ __forceinline__ uint2 group_scales_raw(const QWeight& w, int g, int c) {
  return *reinterpret_cast<const uint2*>(w.scales + (size_t)g * w.N + c);
}
__device__ __forceinline__ uint32_t group_zeros_raw(const QWeight& w, int g, int c) {
  return *reinterpret_cast<const uint32_t*>(w.zeros + (size_t)g * w.N + c);
}

// The fixed-point dot's running state over a warp's packed rows of one column slice: the current group's scales
// (and zeros) and the integer sums of the current block of 32 inputs.
template <int M>
struct FixedDotState {
  int cur_g = -1;
  float sc[4];
  int zi[4];
  int dot[M][4];
  int dot16[M][4];  // the odd nibbles' products, x 16 (dot_row_fixed's ODD16; unused otherwise)
};

// Packed row `row` of the block's slice (its 16 bytes in q; u = row's place in its batch of kBatchRows, a
// compile-time constant once unrolled) into acc: at a fixed-point block's first row, the group's scales if the group
// changed (the first group's from sraw_first / zw_first, loaded before the wait) and zeroed sums; at its last, the
// block's sum x . (q - zero) = x . q - zero * sum(x) times the block's and the group's scales. A group is a whole
// number of fixed-point blocks (gemv_q4_resolve checks), so the group is looked at once per block.
template <int M, bool SYM>
__device__ __forceinline__ void fixed_dot_row(const QWeight& w, int r0, int row, int u, int c, const uint4& q,
                                              const unsigned char* xq, const float2* xb, int block_rows,
                                              uint2 sraw_first, uint32_t zw_first, FixedDotState<M>& st,
                                              float (&acc)[M][4]) {
  if (u % kFixedBlockRows == 0) {
    const int g = ((r0 + row) * 8) / w.group_size;
    if (g != st.cur_g) {
      const bool first = st.cur_g < 0;
      st.cur_g = g;
      const uint2 sraw = first ? sraw_first : group_scales_raw(w, g, c);
      const uint32_t zw = SYM ? 0u : first ? zw_first : group_zeros_raw(w, g, c);
      group_params_fixed<SYM>(sraw, zw, st.sc, st.zi);
    }
#pragma unroll
    for (int mi = 0; mi < M; ++mi)
#pragma unroll
      for (int j = 0; j < 4; ++j) st.dot[mi][j] = st.dot16[mi][j] = 0;
  }
  constexpr bool kOdd16 = M == 1 && SYM;  // (dot_row_fixed: where its registers are free)
  dot_row_fixed<M, kOdd16>(q, reinterpret_cast<const uint4*>(xq) + row, block_rows, st.dot, st.dot16);
  if (u % kFixedBlockRows == kFixedBlockRows - 1) {
    const int fixed_blocks = block_rows / kFixedBlockRows;  // per input row
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      const float2 b = xb[mi * fixed_blocks + row / kFixedBlockRows];
      const int xsum = __float_as_int(b.y);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int d = fixed_dot_sum<kOdd16>(st.dot[mi][j], st.dot16[mi][j]) - (SYM ? w.sym_zero : st.zi[j]) * xsum;
        acc[mi][j] = fmaf((float)d * b.x, st.sc[j], acc[mi][j]);
      }
    }
  }
}


}  // namespace xllama::cuda
