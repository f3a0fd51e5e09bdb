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
