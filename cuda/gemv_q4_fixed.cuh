// Device helpers of the fixed-point decode GEMV (kernels_gemv_q4.cu) that the one-launch decode MLP
// (kernels_mlp_decode.cu) shares: the running dot over a warp's packed rows, a group's raw scales and zeros, and the
// 4-wide atomic add.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/kernels.h"
#include "cuda/q4_fixed_point.cuh"
#include "cuda/q4_groups.cuh"

namespace xllama::cuda {

constexpr int kCols = 128;     // output columns per GEMV block
constexpr int kBatchRows = 8;  // packed rows a warp loads before using them

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

// fixed_dot_row's GroupLoad: the group of an input index, and a later group's raw scales and zeros, from global
// memory. This one divides, for kernels launched without QWeight::group_div (the one-launch MLP, the persistent
// decode).
struct GlobalGroupLoad {
  __device__ __forceinline__ int group(const QWeight& w, int n) const { return n / w.group_size; }
  __device__ __forceinline__ void operator()(const QWeight& w, int g, int c, uint2& sraw, uint32_t& zw,
                                             bool sym) const {
    sraw = group_scales_raw(w, g, c);
    if (!sym) zw = group_zeros_raw(w, g, c);
  }
};
// The same for the kernels gemv_q4 launches, which have QWeight::group_div.
struct GlobalGroupLoadByDivisor : GlobalGroupLoad {
  __device__ __forceinline__ int group(const QWeight& w, int n) const { return group_of(w, n); }
};

// Packed row `row` of the block's slice (its 16 bytes in q; u = row's place in its batch of kBatchRows, a
// compile-time constant once unrolled) into acc: at a fixed-point block's first row, the group's scales if the group
// changed (the first group's from sraw_first / zw_first, loaded before the wait) and zeroed sums; at its last, the
// block's sum x . (q - zero) = x . q - zero * sum(x) times the block's and the group's scales. A group is a whole
// number of fixed-point blocks (gemv_q4_resolve checks), so the group is looked at once per block. load_group
// finds a row's group and fetches a later group's scales and zeros (from global memory, or where the kernel staged
// them).
template <int M, bool SYM, class GroupLoad = GlobalGroupLoad>
__device__ __forceinline__ void fixed_dot_row(const QWeight& w, int r0, int row, int u, int c, const uint4& q,
                                              const unsigned char* xq, const float2* xb, int block_rows,
                                              uint2 sraw_first, uint32_t zw_first, FixedDotState<M>& st,
                                              float (&acc)[M][4], const GroupLoad& load_group = {}) {
  if (u % kFixedBlockRows == 0) {
    const int g = load_group.group(w, (r0 + row) * 8);
    if (g != st.cur_g) {
      const bool first = st.cur_g < 0;
      st.cur_g = g;
      uint2 sraw = sraw_first;
      uint32_t zw = SYM ? 0u : zw_first;
      if (!first) load_group(w, g, c, sraw, zw, SYM);
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
