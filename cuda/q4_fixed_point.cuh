// Device helpers of the fixed-point decode dot (kernels_gemv_q4.cu, GemvDot::Fixed): the input as 16-bit integers
// per block of 32 inputs (4 packed rows), laid out for dp2a against the 4-bit codes, and the exact integer dot of
// one packed row. q4_dequant.cuh holds the fp16 dot's counterparts.
//
// A block's inputs are v = round(x * 32767 / max|x|) with scale max|x| / 32767; a packed row's 8 inputs are four
// words of two v each, [v0 v2][v4 v6][v1 v3][v5 v7]: a word of weights gives nibbles 0,2,4,6 as the bytes of
// `word & 0x0f0f0f0f` and 1,3,5,7 the same after >> 4, and dp2a.lo / dp2a.hi multiply bytes 0-1 / 2-3 of those with
// the two halves of one such word. x . (q - zero) over a block is then dot - zero * sum(v), in int32 (at most
// 32 * 32767 * 15 < 2^31), times the block's scale and the group's.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace xllama::cuda {

constexpr int kFixedBlockRows = 4;  // packed rows per fixed-point block (32 inputs)
constexpr float kFixedMax = 32767.f;

// One block's quantization, done by the half-warp that holds its 16 items (an item: inputs s and s + 4 of one
// packed row). Every lane of the warp must call it (full-warp shuffles; lanes without an item pass zeros).
// Returns the block's scale and sum of v in every lane of the half-warp. A NaN or infinite input makes the scale
// NaN or infinite, so the outputs show it as fp16 dot products would.
struct FixedBlock {
  float scale;
  int sum;
};
__device__ __forceinline__ FixedBlock quantize_fixed_pair(float a0, float a1, int& v0, int& v1) {
  // max |x| as integer bit patterns: ordered like the floats, and NaN above infinity
  int mbits = max(__float_as_int(fabsf(a0)), __float_as_int(fabsf(a1)));
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) mbits = max(mbits, __shfl_xor_sync(0xffffffffu, mbits, o));
  const float amax = __int_as_float(mbits);
  const float inv = amax > 0.f ? kFixedMax / amax : 0.f;  // 0 for NaN and infinity (the scale carries them)
  v0 = max(-32767, min(32767, __float2int_rn(a0 * inv)));
  v1 = max(-32767, min(32767, __float2int_rn(a1 * inv)));
  int sum = v0 + v1;
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  return {amax / kFixedMax, sum};
}

// Stores inputs s and s + 4 (s = 0..3) of a packed row into its 16 staged bytes.
__device__ __forceinline__ void store_fixed_pair(unsigned char* row, int s, int v0, int v1) {
  short* h = reinterpret_cast<short*>(row);
  const int e = (s & 1) * 4 + (s >> 1);  // input s's place; input s + 4 is one word on
  h[e] = (short)v0, h[e + 2] = (short)v1;
}

// d = c + the two signed 16-bit halves of a times unsigned bytes 0-1 (lo) or 2-3 (hi) of b.
__device__ __forceinline__ int dp2a_lo(uint32_t a, uint32_t b, int c) {
  int d;
  asm("dp2a.lo.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
__device__ __forceinline__ int dp2a_hi(uint32_t a, uint32_t b, int c) {
  int d;
  asm("dp2a.hi.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// dot[mi][j] += x . codes of column j of one packed row (16 bytes: 8 rows x 4 columns), exactly in integers; xq
// points at the row's staged 16 bytes for mi = 0, m_stride is one input row's staging (in 16-byte units).
// ODD16: the odd nibbles are not shifted down: `word & 0xf0f0f0f0` holds 16 x each of them in its bytes, and their
// products go into dot16 (16 x their sum, at most 16 x 32767 x 240 per fixed-point block: within int32), one bit
// operation per word fewer on the integer pipe, which the 70B's decode keeps 75-80% busy at the clocks its power
// limit leaves; fixed_dot_sum adds dot16 / 16 (exact) once per block. It holds 4 more registers per input row, so
// the kernels take it where that costs no spill and no block per SM (one row, symmetric zeros).
template <int M, bool ODD16>
__device__ __forceinline__ void dot_row_fixed(uint4 q, const uint4* xq, int m_stride, int dot[M][4], int dot16[M][4]) {
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
  uint4 x[M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) x[mi] = xq[mi * m_stride];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint32_t even = words[j] & 0x0f0f0f0fu;
    const uint32_t odd = ODD16 ? words[j] & 0xf0f0f0f0u : (words[j] >> 4) & 0x0f0f0f0fu;
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      dot[mi][j] = dp2a_hi(x[mi].y, even, dp2a_lo(x[mi].x, even, dot[mi][j]));
      int& d_odd = ODD16 ? dot16[mi][j] : dot[mi][j];
      d_odd = dp2a_hi(x[mi].w, odd, dp2a_lo(x[mi].z, odd, d_odd));
    }
  }
}

// A fixed-point block's whole integer dot: with ODD16, the even nibbles' sum plus the odd ones' (dot16 is exactly
// 16 x theirs).
template <bool ODD16>
__device__ __forceinline__ int fixed_dot_sum(int dot, int dot16) { return ODD16 ? dot + (dot16 >> 4) : dot; }

// One group's scales and integer zeros for a lane's 4 columns (symmetric zeros are left to the caller, which
// reads them from the parameters: no registers held).
template <bool SYM>
__device__ __forceinline__ void group_params_fixed(uint2 sraw, uint32_t zw, float sc[4], int z[4]) {
  const __half2* sh = reinterpret_cast<const __half2*>(&sraw);
  const float2 s01 = __half22float2(sh[0]), s23 = __half22float2(sh[1]);
  sc[0] = s01.x, sc[1] = s01.y, sc[2] = s23.x, sc[3] = s23.y;
  if (!SYM)
#pragma unroll
    for (int j = 0; j < 4; ++j) z[j] = (int)((zw >> (8 * j)) & 0xff);
}

}  // namespace xllama::cuda
