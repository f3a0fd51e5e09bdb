// Inner loops of the CPU backend, float32 throughout. A portable version lives in kernels.cc; an
// AVX2/FMA/F16C version in kernels_avx2.cc is picked at run time when the CPU supports it.
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace xllama::cpu {

struct Kernels {
  float (*dot)(const float* a, const float* b, int n);
  void (*axpy)(float a, const float* x, float* y, int n);       // y += a * x
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // GPTQ: dequantizes 8 output columns for all `in` rows into wt [in][8]:
  // wt[k][c] = scale[g][c] * (nibble(k, c) - zero[g][c]), g = group_of_row[k]; qweight points at column 0 of
  // the tile in row 0 (row stride `out`); scale and zero are [groups][8] for the tile.
  void (*dequant_gptq8)(const int32_t* qweight, int64_t out, int in, const int32_t* group_of_row,
                        const float* scale, const float* zero, float* wt);
  // y[t][c] = sum_k x[t][k] * wt[k][c] for t < n, c < cols (<= 8); x rows `in` apart, y rows `y_stride` apart.
  void (*gemm8)(const float* x, int n, int in, const float* wt, float* y, int64_t y_stride, int cols);
  const char* name;
};

// The best kernels this CPU can run (decided once).
const Kernels& kernels();

float half_to_float(uint16_t h);
inline float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// Converts n elements of an F16/BF16/F32 tensor to float32.
void to_f32(const void* src, DType dtype, int64_t n, float* dst);

#ifdef XLLAMA_HAVE_AVX2
const Kernels* avx2_kernels();  // kernels_avx2.cc
#endif

}  // namespace xllama::cpu
