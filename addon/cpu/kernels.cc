#include "cpu/kernels.h"

#include <cstdlib>
#include <cstring>

namespace xllama::cpu {

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

static float dot_scalar(const float* a, const float* b, int n) {
  // Four partial sums: the same pairing for every call keeps results reproducible.
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

static void axpy_scalar(float a, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

static void f16_to_f32_scalar(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

static void dequant_gptq8_scalar(const int32_t* qweight, int64_t out, int in, const int32_t* group_of_row,
                                 const float* scale, const float* zero, int64_t sz_stride, float* wt, int wt_stride) {
  for (int r = 0; r < in / 8; ++r) {
    const int32_t* words = qweight + static_cast<int64_t>(r) * out;
    for (int j = 0; j < 8; ++j) {
      const int k = r * 8 + j;
      const int64_t g = group_of_row[k] * sz_stride;
      for (int c = 0; c < 8; ++c) {
        const float q = static_cast<float>((static_cast<uint32_t>(words[c]) >> (4 * j)) & 15);
        wt[static_cast<int64_t>(k) * wt_stride + c] = scale[g + c] * (q - zero[g + c]);
      }
    }
  }
}

static void gemm8_scalar(const float* x, int n, int in, const float* wt, float* y, int64_t y_stride, int cols) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + static_cast<int64_t>(t) * in;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < in; ++k) {
      const float xv = xr[k];
      const float* w = wt + static_cast<int64_t>(k) * 8;
      for (int c = 0; c < 8; ++c) acc[c] += xv * w[c];
    }
    for (int c = 0; c < cols; ++c) y[t * y_stride + c] = acc[c];
  }
}

static void unpack_zeros_scalar(const int32_t* words, int n_words, int offset, float* dst) {
  for (int i = 0; i < n_words; ++i) {
    const uint32_t word = static_cast<uint32_t>(words[i]);
    for (int j = 0; j < 8; ++j) dst[8 * i + j] = static_cast<float>(((word >> (4 * j)) & 15) + offset);
  }
}

// No gemm16, gptq_few_rows or dense_few_rows: the portable set takes every matrix through its buffers.
static const Kernels kScalar = {dot_scalar,           axpy_scalar,  f16_to_f32_scalar, unpack_zeros_scalar,
                                dequant_gptq8_scalar, gemm8_scalar, nullptr,           nullptr,
                                nullptr,              "scalar"};

const Kernels& kernels() {
  static const Kernels* chosen = []() -> const Kernels* {
    // XLLAMA_CPU_KERNELS=scalar or avx2 caps the set (to test the portable or AVX2 kernels on a machine with more).
    const char* forced = std::getenv("XLLAMA_CPU_KERNELS");
    if (forced && std::strcmp(forced, "scalar") == 0) return &kScalar;
#ifdef XLLAMA_HAVE_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
#ifdef XLLAMA_HAVE_AVX512
      if (__builtin_cpu_supports("avx512f") && !(forced && std::strcmp(forced, "avx2") == 0)) return avx512_kernels();
#endif
      return avx2_kernels();
    }
#endif
    return &kScalar;
  }();
  return *chosen;
}

void to_f32(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      kernels().f16_to_f32(static_cast<const uint16_t*>(src), dst, n);
      return;
    case DType::BF16: {
      auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      return;
    }
    case DType::I32:
      break;
  }
  throw BackendError("bad_model", std::string("cannot read an ") + dtype_name(dtype) + " tensor as floats");
}

}  // namespace xllama::cpu
