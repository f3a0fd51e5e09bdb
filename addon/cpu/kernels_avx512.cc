// AVX-512 versions of the few-row GPTQ kernel and of the prompt GEMM (this file is compiled with -mavx512f;
// kernels() only hands them out after checking the CPU supports it). Each instruction here covers two tiles (16
// output columns) where the AVX2 kernels' covers one. Every lane computes the values the AVX2 kernels compute for its
// column, in the same order, so the bits are the same (kernels_avx2.cc; test/cpu/kernel-sets.test.ts).
#ifdef XLLAMA_HAVE_AVX512
// GCC 12 warns about the deliberately undefined pass-through operand inside its own _mm512_srli_epi32 and
// _mm512_cvtepi32_ps; nothing here reads an uninitialized value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/gptq_row_walk.h"
#include "cpu/kernels.h"

namespace xllama::cpu {

// The float 2^23: OR-ed with a small integer q its bits are the float 2^23 + q, and (2^23 + q) - (2^23 + zero) is
// q - zero exactly (both exact, and within a factor 2 of each other), the value a conversion of q minus zero gives.
// So the decode kernel forms each nibble's float with one ternary-logic instruction (mask and OR) instead of an AND
// and a conversion: a 7B decoded 6.5% faster on a 2-core Xeon (docs/PERF-NOTES.md, session 50). The AVX2 kernel
// keeps the conversion: without a ternary-logic instruction the trick was even there, and 10% slower with
// act-order (an add per input for its group's zero). With AVX-512 act-order matrices gain too (2.58-2.64 -> 2.86
// t/s, where session 49's kernel with the conversion lost to the AVX2 one: 2.10 against 2.38).
constexpr int kFloatMagic = 0x4B000000;

// One row of qweight (8 inputs) across the panel's tiles, two at a time (a lone last tile: the lower 8 lanes).
// ONE_GROUP: the row's 8 inputs share a group (always without act-order), so each tile pair's scale and zero are
// loaded once for them; else each input loads its own group's.
template <int N, bool ONE_GROUP>
static inline void gptq_row(const float* xk, int64_t x_stride, const GptqRow& row, const GptqPanel& p,
                            __m512* acc) {
  const __m512i mask = _mm512_set1_epi32(15), magic = _mm512_set1_epi32(kFloatMagic);
  const __m512 magic_f = _mm512_castsi512_ps(magic);
  for (int tile = 0; tile < p.tiles; tile += 2) {
    const __mmask16 lanes = tile + 1 < p.tiles ? 0xFFFF : 0x00FF;
    _mm_prefetch(reinterpret_cast<const char*>(row.ahead + tile * 8), _MM_HINT_T0);
    const __m512i words = _mm512_maskz_loadu_epi32(lanes, row.words + tile * 8);
    __m512* a = acc + (tile / 2) * N * 2;
    __m512 even[N], odd[N];
    for (int t = 0; t < N; ++t) even[t] = a[2 * t], odd[t] = a[2 * t + 1];
    const __m512 scale0 = _mm512_maskz_loadu_ps(lanes, p.scale + row.group[0] + tile * 8);
    const __m512 magic_zero0 = _mm512_add_ps(magic_f, _mm512_maskz_loadu_ps(lanes, p.zero + row.group[0] + tile * 8));
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512 scale = ONE_GROUP ? scale0 : _mm512_maskz_loadu_ps(lanes, p.scale + row.group[j] + tile * 8);
      const __m512 magic_zero =
          ONE_GROUP ? magic_zero0
                    : _mm512_add_ps(magic_f, _mm512_maskz_loadu_ps(lanes, p.zero + row.group[j] + tile * 8));
      // the nibble q as the float 2^23 + q: (words >> 4j) & 15 | 2^23's bits (ternary logic 0xEA: A & B | C)
      const __m512i nibble = j == 0 ? words : _mm512_srli_epi32(words, 4 * j);
      const __m512 q_magic = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(nibble, mask, magic, 0xEA));
      const __m512 w = _mm512_mul_ps(scale, _mm512_sub_ps(q_magic, magic_zero));
      for (int t = 0; t < N; ++t) {
        const __m512 xv = _mm512_set1_ps(xk[t * x_stride + j]);
        if (j & 1) odd[t] = _mm512_fmadd_ps(xv, w, odd[t]);
        else even[t] = _mm512_fmadd_ps(xv, w, even[t]);
      }
    }
    for (int t = 0; t < N; ++t) a[2 * t] = even[t], a[2 * t + 1] = odd[t];
  }
}

template <int N>
static void gptq_rows(const float* x, const GptqPanel& p, float* y, int64_t y_stride) {
  constexpr int kPairs = (kGptqFewRowsPanelTiles + 1) / 2;
  __m512 acc[kPairs * N * 2];
  const int pairs = (p.tiles + 1) / 2;
  for (int i = 0; i < pairs * N * 2; ++i) acc[i] = _mm512_setzero_ps();
  if (p.rows_in_one_group)
    walk_gptq_rows(p, [&](const GptqRow& row) { gptq_row<N, true>(x + row.index * 8, p.in, row, p, acc); });
  else
    walk_gptq_rows(p, [&](const GptqRow& row) { gptq_row<N, false>(x + row.index * 8, p.in, row, p, acc); });
  for (int pair = 0; pair < pairs; ++pair) {
    const __mmask16 lanes = 2 * pair + 1 < p.tiles ? 0xFFFF : 0x00FF;
    for (int t = 0; t < N; ++t)
      _mm512_mask_storeu_ps(y + t * y_stride + pair * 16, lanes,
                            _mm512_add_ps(acc[(pair * N + t) * 2], acc[(pair * N + t) * 2 + 1]));
  }
}

static void gptq_few_rows_avx512(const float* x, int n, const GptqPanel& p, float* y, int64_t y_stride) {
  if (n == 1) gptq_rows<1>(x, p, y, y_stride);
  else if (n == 2) gptq_rows<2>(x, p, y, y_stride);
  else gptq_rows<3>(x, p, y, y_stride);
}

// gemm8_avx2 over two tiles side by side (wt [in][16]), line for line: each lane forms its column's sums as
// gemm8_avx2 does (per row an even-k and an odd-k chain, 4 rows sharing each weight vector, added at the end), so
// the bits are the same (test/cpu/kernel-sets.test.ts compares them). One template for both widths measured ~3%
// slower on AVX2 prompts (register allocation), so the two stay written out.
static void gemm16_avx512(const float* x, int n, int in, const float* wt, float* y, int64_t y_stride) {
  const int even_in = in & ~1;
  int t = 0;
  for (; t + 4 <= n; t += 4) {
    const float* x0 = x + static_cast<int64_t>(t) * in;
    const float *x1 = x0 + in, *x2 = x1 + in, *x3 = x2 + in;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps(), b3 = _mm512_setzero_ps();
    for (int k = 0; k < even_in; k += 2) {
      const __m512 w = _mm512_loadu_ps(wt + static_cast<int64_t>(k) * 16);
      const __m512 v = _mm512_loadu_ps(wt + static_cast<int64_t>(k) * 16 + 16);
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[k]), w, a0);
      a1 = _mm512_fmadd_ps(_mm512_set1_ps(x1[k]), w, a1);
      a2 = _mm512_fmadd_ps(_mm512_set1_ps(x2[k]), w, a2);
      a3 = _mm512_fmadd_ps(_mm512_set1_ps(x3[k]), w, a3);
      b0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[k + 1]), v, b0);
      b1 = _mm512_fmadd_ps(_mm512_set1_ps(x1[k + 1]), v, b1);
      b2 = _mm512_fmadd_ps(_mm512_set1_ps(x2[k + 1]), v, b2);
      b3 = _mm512_fmadd_ps(_mm512_set1_ps(x3[k + 1]), v, b3);
    }
    if (even_in < in) {
      const __m512 w = _mm512_loadu_ps(wt + static_cast<int64_t>(even_in) * 16);
      a0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[even_in]), w, a0);
      a1 = _mm512_fmadd_ps(_mm512_set1_ps(x1[even_in]), w, a1);
      a2 = _mm512_fmadd_ps(_mm512_set1_ps(x2[even_in]), w, a2);
      a3 = _mm512_fmadd_ps(_mm512_set1_ps(x3[even_in]), w, a3);
    }
    _mm512_storeu_ps(y + t * y_stride, _mm512_add_ps(a0, b0));
    _mm512_storeu_ps(y + (t + 1) * y_stride, _mm512_add_ps(a1, b1));
    _mm512_storeu_ps(y + (t + 2) * y_stride, _mm512_add_ps(a2, b2));
    _mm512_storeu_ps(y + (t + 3) * y_stride, _mm512_add_ps(a3, b3));
  }
  for (; t < n; ++t) {
    const float* xr = x + static_cast<int64_t>(t) * in;
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    for (int k = 0; k < even_in; k += 2) {
      a = _mm512_fmadd_ps(_mm512_set1_ps(xr[k]), _mm512_loadu_ps(wt + static_cast<int64_t>(k) * 16), a);
      b = _mm512_fmadd_ps(_mm512_set1_ps(xr[k + 1]), _mm512_loadu_ps(wt + static_cast<int64_t>(k) * 16 + 16), b);
    }
    if (even_in < in) a = _mm512_fmadd_ps(_mm512_set1_ps(xr[even_in]), _mm512_loadu_ps(wt + static_cast<int64_t>(even_in) * 16), a);
    _mm512_storeu_ps(y + t * y_stride, _mm512_add_ps(a, b));
  }
}

const Kernels* avx512_kernels() {
  static const Kernels set = [] {
    Kernels k = *avx2_kernels();
    k.gptq_few_rows = gptq_few_rows_avx512;
    k.gemm16 = gemm16_avx512;
    k.name = "avx512";
    return k;
  }();
  return &set;
}

}  // namespace xllama::cpu
#endif  // XLLAMA_HAVE_AVX512
