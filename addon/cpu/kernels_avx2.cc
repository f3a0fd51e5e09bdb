// AVX2/FMA/F16C versions of the kernels (this file is compiled with -mavx2 -mfma -mf16c; kernels()
// only hands these out after checking the CPU supports them).
#include <immintrin.h>

#include "cpu/kernels.h"

namespace xllama::cpu {

static inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

static float dot_avx2(const float* a, const float* b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

static void axpy_avx2(float a, const float* x, float* y, int n) {
  __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

static void f16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = half_to_float(src[i]);
}

// Row k of the tile is the 8 nibbles at shift 4*(k%8) of the 8 packed words: one vector per k, no gathers.
static void dequant_gptq8_avx2(const int32_t* qweight, int64_t out, int in, const int32_t* group_of_row,
                               const float* scale, const float* zero, float* wt) {
  const __m256i mask = _mm256_set1_epi32(15);
  for (int r = 0; r < in / 8; ++r) {
    const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qweight + static_cast<int64_t>(r) * out));
    for (int j = 0; j < 8; ++j) {
      const int k = r * 8 + j, g = group_of_row[k];
      const __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(words, _mm256_set1_epi32(4 * j)), mask));
      const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(scale + g * 8), _mm256_sub_ps(q, _mm256_loadu_ps(zero + g * 8)));
      _mm256_storeu_ps(wt + static_cast<int64_t>(k) * 8, w);
    }
  }
}

static inline void store_cols(float* y, __m256 v, int cols) {
  if (cols == 8) {
    _mm256_storeu_ps(y, v);
  } else {
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, v);
    for (int c = 0; c < cols; ++c) y[c] = tmp[c];
  }
}

// Each row sums even and odd k in two chains (added at the end) whether it runs in a block of 4 rows or
// alone, so a row's result doesn't depend on how the prompt was batched or chunked: decoding token by
// token reproduces a batched forward exactly.
static void gemm8_avx2(const float* x, int n, int in, const float* wt, float* y, int64_t y_stride, int cols) {
  const int even_in = in & ~1;
  int t = 0;
  for (; t + 4 <= n; t += 4) {  // 4 rows share each weight vector
    const float* x0 = x + static_cast<int64_t>(t) * in;
    const float *x1 = x0 + in, *x2 = x1 + in, *x3 = x2 + in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
    for (int k = 0; k < even_in; k += 2) {
      const __m256 w = _mm256_loadu_ps(wt + static_cast<int64_t>(k) * 8);
      const __m256 v = _mm256_loadu_ps(wt + static_cast<int64_t>(k) * 8 + 8);
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[k]), w, a0);
      a1 = _mm256_fmadd_ps(_mm256_set1_ps(x1[k]), w, a1);
      a2 = _mm256_fmadd_ps(_mm256_set1_ps(x2[k]), w, a2);
      a3 = _mm256_fmadd_ps(_mm256_set1_ps(x3[k]), w, a3);
      b0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[k + 1]), v, b0);
      b1 = _mm256_fmadd_ps(_mm256_set1_ps(x1[k + 1]), v, b1);
      b2 = _mm256_fmadd_ps(_mm256_set1_ps(x2[k + 1]), v, b2);
      b3 = _mm256_fmadd_ps(_mm256_set1_ps(x3[k + 1]), v, b3);
    }
    if (even_in < in) {
      const __m256 w = _mm256_loadu_ps(wt + static_cast<int64_t>(even_in) * 8);
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[even_in]), w, a0);
      a1 = _mm256_fmadd_ps(_mm256_set1_ps(x1[even_in]), w, a1);
      a2 = _mm256_fmadd_ps(_mm256_set1_ps(x2[even_in]), w, a2);
      a3 = _mm256_fmadd_ps(_mm256_set1_ps(x3[even_in]), w, a3);
    }
    store_cols(y + t * y_stride, _mm256_add_ps(a0, b0), cols);
    store_cols(y + (t + 1) * y_stride, _mm256_add_ps(a1, b1), cols);
    store_cols(y + (t + 2) * y_stride, _mm256_add_ps(a2, b2), cols);
    store_cols(y + (t + 3) * y_stride, _mm256_add_ps(a3, b3), cols);
  }
  for (; t < n; ++t) {
    const float* xr = x + static_cast<int64_t>(t) * in;
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int k = 0; k < even_in; k += 2) {
      a = _mm256_fmadd_ps(_mm256_set1_ps(xr[k]), _mm256_loadu_ps(wt + static_cast<int64_t>(k) * 8), a);
      b = _mm256_fmadd_ps(_mm256_set1_ps(xr[k + 1]), _mm256_loadu_ps(wt + static_cast<int64_t>(k) * 8 + 8), b);
    }
    if (even_in < in) a = _mm256_fmadd_ps(_mm256_set1_ps(xr[even_in]), _mm256_loadu_ps(wt + static_cast<int64_t>(even_in) * 8), a);
    store_cols(y + t * y_stride, _mm256_add_ps(a, b), cols);
  }
}

static const Kernels kAvx2 = {dot_avx2, axpy_avx2, f16_to_f32_avx2, dequant_gptq8_avx2, gemm8_avx2, "avx2"};

const Kernels* avx2_kernels() { return &kAvx2; }

}  // namespace xllama::cpu
