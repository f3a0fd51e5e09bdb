// AVX2/FMA/F16C versions of the kernels (this file is compiled with -mavx2 -mfma -mf16c; kernels()
// only hands these out after checking the CPU supports them).
#ifdef XLLAMA_HAVE_AVX2  // (built with AVX2 flags on x86-64 only; elsewhere this file is empty)
#include <immintrin.h>

#include "cpu/gptq_row_walk.h"
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

static void unpack_zeros_avx2(const int32_t* words, int n_words, int offset, float* dst) {
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), mask = _mm256_set1_epi32(15),
                add = _mm256_set1_epi32(offset);
  for (int i = 0; i < n_words; ++i) {
    const __m256i nibbles = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(words[i]), shifts), mask);
    _mm256_storeu_ps(dst + 8 * i, _mm256_cvtepi32_ps(_mm256_add_epi32(nibbles, add)));
  }
}

// Row k of the tile is the 8 nibbles at shift 4*(k%8) of the 8 packed words: one vector per k, no gathers.
static void dequant_gptq8_avx2(const int32_t* qweight, int64_t out, int in, const int32_t* group_of_row,
                               const float* scale, const float* zero, int64_t sz_stride, float* wt, int wt_stride) {
  const __m256i mask = _mm256_set1_epi32(15);
  for (int r = 0; r < in / 8; ++r) {
    const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qweight + static_cast<int64_t>(r) * out));
    for (int j = 0; j < 8; ++j) {
      const int k = r * 8 + j;
      const int64_t g = group_of_row[k] * sz_stride;
      const __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(words, _mm256_set1_epi32(4 * j)), mask));
      const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(scale + g), _mm256_sub_ps(q, _mm256_loadu_ps(zero + g)));
      _mm256_storeu_ps(wt + static_cast<int64_t>(k) * wt_stride, w);
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

// One row of qweight (8 inputs) across the panel's tiles. ONE_GROUP: every row's 8 inputs share a group (always
// without act-order), so each tile's scale and zero are loaded once for them.
template <int N, bool ONE_GROUP>
static inline void gptq_row(const float* xk, int64_t x_stride, const GptqRow& row, const GptqPanel& p,
                            __m256* acc) {
  const int64_t(&g)[8] = row.group;
  const __m256i mask = _mm256_set1_epi32(15);
  for (int tile = 0; tile < p.tiles; ++tile) {
    // A later row's line for every second tile (64 bytes), spread over the row's work: a burst of them would fill
    // the core's miss buffers and stall it.
    if (!(tile & 1)) _mm_prefetch(reinterpret_cast<const char*>(row.ahead + tile * 8), _MM_HINT_T0);
    const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row.words + tile * 8));
    __m256* a = acc + tile * N * 2;
    __m256 even[N], odd[N];
    for (int t = 0; t < N; ++t) even[t] = a[2 * t], odd[t] = a[2 * t + 1];
    const __m256 scale0 = _mm256_loadu_ps(p.scale + g[0] + tile * 8), zero0 = _mm256_loadu_ps(p.zero + g[0] + tile * 8);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256 scale = ONE_GROUP ? scale0 : _mm256_loadu_ps(p.scale + g[j] + tile * 8);
      const __m256 zero = ONE_GROUP ? zero0 : _mm256_loadu_ps(p.zero + g[j] + tile * 8);
      const __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(words, 4 * j), mask));
      const __m256 w = _mm256_mul_ps(scale, _mm256_sub_ps(q, zero));
      for (int t = 0; t < N; ++t) {
        const __m256 xv = _mm256_broadcast_ss(xk + t * x_stride + j);
        if (j & 1) odd[t] = _mm256_fmadd_ps(xv, w, odd[t]);
        else even[t] = _mm256_fmadd_ps(xv, w, even[t]);
      }
    }
    for (int t = 0; t < N; ++t) a[2 * t] = even[t], a[2 * t + 1] = odd[t];
  }
}

// GPTQ for n = N rows, dequantizing in registers. w and the sums are formed exactly as dequant_gptq8_avx2 and
// gemm8_avx2 form them (w = scale * (q - zero); per row and column an even-k and an odd-k chain of FMAs, added at
// the end), so a decode step gives the bits a batched forward gives. It walks the panel row by row (the chains
// parked in acc, in L1, between rows), so qweight is read as contiguous runs of the panel's width, each
// prefetched a few rows ahead.
template <int N>
static void gptq_rows(const float* x, const GptqPanel& p, float* y, int64_t y_stride) {
  __m256 acc[kGptqFewRowsPanelTiles * N * 2];
  for (int i = 0; i < p.tiles * N * 2; ++i) acc[i] = _mm256_setzero_ps();
  if (p.rows_in_one_group)
    walk_gptq_rows(p, [&](const GptqRow& row) { gptq_row<N, true>(x + row.index * 8, p.in, row, p, acc); });
  else
    walk_gptq_rows(p, [&](const GptqRow& row) { gptq_row<N, false>(x + row.index * 8, p.in, row, p, acc); });
  for (int tile = 0; tile < p.tiles; ++tile)
    for (int t = 0; t < N; ++t)
      _mm256_storeu_ps(y + t * y_stride + tile * 8, _mm256_add_ps(acc[(tile * N + t) * 2], acc[(tile * N + t) * 2 + 1]));
}

static void gptq_few_rows_avx2(const float* x, int n, const GptqPanel& p, float* y, int64_t y_stride) {
  if (n == 1) gptq_rows<1>(x, p, y, y_stride);
  else if (n == 2) gptq_rows<2>(x, p, y, y_stride);
  else gptq_rows<3>(x, p, y, y_stride);
}

// 8 consecutive values of a weight row as floats, converted as to_f32 converts them.
template <DType D>
static inline __m256 load8(const void* row, int k) {
  if constexpr (D == DType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k)));
  } else if constexpr (D == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(row) + k);
  }
}

template <DType D>
static inline float load1(const void* row, int k) {
  if constexpr (D == DType::F16) return half_to_float(static_cast<const uint16_t*>(row)[k]);
  else if constexpr (D == DType::BF16) return bf16_to_float(static_cast<const uint16_t*>(row)[k]);
  else return static_cast<const float*>(row)[k];
}

// r[i] holds row i's 8 values; afterwards r[k] holds value k of rows 0..7.
static inline void transpose8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// One tile (8 output columns, their weight rows from w) for N rows: the even-k and odd-k chains of gemm8_avx2,
// the weights transposed 8 inputs at a time.
template <DType D, int N>
static inline void dense_tile(const float* x, int in, const char* w, size_t row_bytes, float* y, int64_t y_stride) {
  __m256 even[N], odd[N];
  for (int t = 0; t < N; ++t) even[t] = odd[t] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= in; k += 8) {
    __m256 r[8];
    for (int c = 0; c < 8; ++c) r[c] = load8<D>(w + c * row_bytes, k);
    transpose8(r);
    for (int j = 0; j < 8; ++j)
      for (int t = 0; t < N; ++t) {
        const __m256 xv = _mm256_broadcast_ss(x + static_cast<int64_t>(t) * in + k + j);
        if (j & 1) odd[t] = _mm256_fmadd_ps(xv, r[j], odd[t]);
        else even[t] = _mm256_fmadd_ps(xv, r[j], even[t]);
      }
  }
  for (; k < in; ++k) {  // k keeps its parity's chain, as in gemm8_avx2
    alignas(32) float col[8];
    for (int c = 0; c < 8; ++c) col[c] = load1<D>(w + c * row_bytes, k);
    const __m256 wk = _mm256_load_ps(col);
    for (int t = 0; t < N; ++t) {
      const __m256 xv = _mm256_broadcast_ss(x + static_cast<int64_t>(t) * in + k);
      if (k & 1) odd[t] = _mm256_fmadd_ps(xv, wk, odd[t]);
      else even[t] = _mm256_fmadd_ps(xv, wk, even[t]);
    }
  }
  for (int t = 0; t < N; ++t) _mm256_storeu_ps(y + t * y_stride, _mm256_add_ps(even[t], odd[t]));
}

template <DType D>
static void dense_few_rows_of(const float* x, int n, int in, const void* w, int tiles, float* y, int64_t y_stride) {
  const size_t row_bytes = static_cast<size_t>(in) * (D == DType::F32 ? 4 : 2);
  for (int tile = 0; tile < tiles; ++tile) {
    const char* rows = static_cast<const char*>(w) + static_cast<size_t>(tile) * 8 * row_bytes;
    if (n == 1) dense_tile<D, 1>(x, in, rows, row_bytes, y + tile * 8, y_stride);
    else if (n == 2) dense_tile<D, 2>(x, in, rows, row_bytes, y + tile * 8, y_stride);
    else dense_tile<D, 3>(x, in, rows, row_bytes, y + tile * 8, y_stride);
  }
}

static void dense_few_rows_avx2(const float* x, int n, int in, const void* w, DType dtype, int tiles, float* y,
                                int64_t y_stride) {
  if (dtype == DType::F16) dense_few_rows_of<DType::F16>(x, n, in, w, tiles, y, y_stride);
  else if (dtype == DType::BF16) dense_few_rows_of<DType::BF16>(x, n, in, w, tiles, y, y_stride);
  else dense_few_rows_of<DType::F32>(x, n, in, w, tiles, y, y_stride);
}

static const Kernels kAvx2 = {dot_avx2,           axpy_avx2,  f16_to_f32_avx2,    unpack_zeros_avx2,
                              dequant_gptq8_avx2, gemm8_avx2, nullptr,            gptq_few_rows_avx2,
                              dense_few_rows_avx2, "avx2"};

const Kernels* avx2_kernels() { return &kAvx2; }

}  // namespace xllama::cpu
#endif  // XLLAMA_HAVE_AVX2
