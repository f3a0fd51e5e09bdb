// The tensor cores' m16n8k16 fp16 multiply with fp32 accumulation (mma.sync, sm_80+), shared by the prompt
// attention and the decode attention, and the fp16 packing of fp32 fragments (also the fused GEMM's tile stores).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace xllama::cuda {

// c += a (16x16, row major) . b (16x8, column major); fragments as the PTX ISA lays them out: lane = 4 g + t holds
// a's rows g and g + 8 at columns 2t, 2t + 1 (a[0], a[1]) and 2t + 8, 2t + 9 (a[2], a[3]); b's rows 2t, 2t + 1 (b0)
// and 2t + 8, 2t + 9 (b1) of column g; c's rows g (c[0], c[1]) and g + 8 (c[2], c[3]) at columns 2t, 2t + 1.
__device__ __forceinline__ void mma_16x8x16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two fp32 values of a fragment (adjacent columns) as one fp16x2 register, lo in the low half: an A or B fragment's
// register for the next mma, or a row pair for stmatrix.
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace xllama::cuda
