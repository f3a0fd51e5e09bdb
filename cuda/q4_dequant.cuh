// Device helpers shared by the 4-bit decode GEMVs (kernels_gemv_q4.cu, kernels_decode_persistent.cu) and the
// prompt path's dequantization (kernels_linear.cu, sm90a/gemm_q4_wgmma.cu):
// nibbles to exact fp16 (q - zero) pairs, one group's scales and zeros, and the fp16 dot products of one
// packed row (8 input rows x 4 columns) with the staged activations.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace xllama::cuda {

// x is staged as x/16 so the fp16 sum of four (q - zero) * x products (|q - zero| <= 16) can't overflow
// for |x| < 16k (down_proj inputs can reach thousands); the scale folds 16 back in fp32.
constexpr float kXScale = 0.0625f, kXUnscale = 16.f;

__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;  // (a & b) | c
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// The 8 nibbles of `word` as four half2 pairs (rows s and s+4, s = 0..3) of exact (q - zero) values.
// Even s: (nibbles | 0x6400) is the fp16 number 1024 + q, and subtracting z1024 = 1024 + zero is exact. Odd s
// (no shift: the nibbles sit 4 bits up): 1024 + 16 q, and fma(., 1/16, zneg64 = -(64 + zero)) is exact too
// (64 + q - 64 - zero, one rounding of an exact value). One shift per word instead of three.
__device__ __forceinline__ void dequant_word(uint32_t word, __half2 z1024, __half2 zneg64, __half2 d[4]) {
  const __half2 sixteenth = __float2half2_rn(0.0625f);
  const uint32_t hi = word >> 8;
  uint32_t h0 = lop3_and_or(word, 0x000f000fu, 0x64006400u), h1 = lop3_and_or(word, 0x00f000f0u, 0x64006400u);
  uint32_t h2 = lop3_and_or(hi, 0x000f000fu, 0x64006400u), h3 = lop3_and_or(hi, 0x00f000f0u, 0x64006400u);
  d[0] = __hsub2(*reinterpret_cast<__half2*>(&h0), z1024);
  d[1] = __hfma2(*reinterpret_cast<__half2*>(&h1), sixteenth, zneg64);
  d[2] = __hsub2(*reinterpret_cast<__half2*>(&h2), z1024);
  d[3] = __hfma2(*reinterpret_cast<__half2*>(&h3), sixteenth, zneg64);
}

// Rows 0..7 of two adjacent columns' words a and b, each as one half2 (low half: a's column) of exact (q - zero)
// values: dequant_word on the words' bytes interleaved, rows 0-3 of a | b and then rows 4-7 (z1024 and zneg64 hold
// each column's zero). The prompt path's dequantization writes rows of 8 columns, so it pairs columns where the
// GEMV pairs rows.
__device__ __forceinline__ void dequant_column_pair(uint32_t a, uint32_t b, __half2 z1024, __half2 zneg64,
                                                    __half2 d[8]) {
  dequant_word(__byte_perm(a, b, 0x5410), z1024, zneg64, d);
  dequant_word(__byte_perm(a, b, 0x7632), z1024, zneg64, d + 4);
}

// One group's scales (times 16) and zeros for a lane's 4 columns: z2[j] = 1024 + zero, z2[4 + j] = -(64 + zero).
template <bool SYM>
__device__ __forceinline__ void group_params(uint2 sraw, uint32_t zw, int sym_zero, float sc[4], __half2 z2[8]) {
  const __half2* sh = reinterpret_cast<const __half2*>(&sraw);
  const float2 s01 = __half22float2(sh[0]), s23 = __half22float2(sh[1]);
  sc[0] = s01.x * kXUnscale, sc[1] = s01.y * kXUnscale, sc[2] = s23.x * kXUnscale, sc[3] = s23.y * kXUnscale;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int z = SYM ? sym_zero : (int)((zw >> (8 * j)) & 0xff);
    const uint16_t zb = 0x6400 | z;
    z2[j] = __halves2half2(__ushort_as_half(zb), __ushort_as_half(zb));
    z2[4 + j] = __float2half2_rn(-(64.f + (float)z));
  }
}

// acc[mi][j] += x[mi] . column j of one packed row (16 bytes: 8 rows x 4 columns); xs holds each input row's
// staged pairs ([M][block_rows * 4] half2), xo = this packed row's offset in them.
template <int M>
__device__ __forceinline__ void accumulate_row(uint4 q, const __half2 z2[8], const float sc[4], const __half2* xs,
                                               int block_rows, int xo, float acc[M][4]) {
  const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    __half2 d[4];
    dequant_word(words[j], z2[j], z2[4 + j], d);
#pragma unroll
    for (int mi = 0; mi < M; ++mi) {
      const uint4 xw = *reinterpret_cast<const uint4*>(xs + mi * block_rows * 4 + xo);
      const __half2* xm = reinterpret_cast<const __half2*>(&xw);
      __half2 p = __hmul2(d[0], xm[0]);
      p = __hfma2(d[1], xm[1], p);
      p = __hfma2(d[2], xm[2], p);
      p = __hfma2(d[3], xm[3], p);
      const float2 f = __half22float2(p);
      acc[mi][j] = fmaf(f.x + f.y, sc[j], acc[mi][j]);
    }
  }
}

// A decode GEMV's inputs, rounded to fp16 as the unfused kernels round them (rmsnorm_kernel, silu_mul_kernel).
__device__ __forceinline__ float rmsnorm_input(float h, float r, __half norm) {
  return __half2float(__float2half(h * r * __half2float(norm)));
}
__device__ __forceinline__ float silu_gate_input(float gate, float up) {
  return __half2float(__float2half(gate / (1.f + __expf(-gate)) * up));
}

}  // namespace xllama::cuda
