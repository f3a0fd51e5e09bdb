// Inner loops of the CPU backend, float32 throughout. A portable version lives in kernels.cc; an
// AVX2/FMA/F16C version in kernels_avx2.cc is picked at run time when the CPU supports it, and with AVX-512 the
// same set with kernels_avx512.cc's GPTQ decode kernel and prompt GEMM (gemm16). All give the same bits.
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace xllama::cpu {

// A panel of a GPTQ matrix: `tiles` consecutive tiles of 8 output columns. qweight points at the panel's first
// column in row 0 (row stride `out` words); scale and zero are [groups][tiles][8] floats for the panel (zero with
// the format's offset added).
struct GptqPanel {
  const int32_t* qweight;
  int64_t out;
  int in;
  const int32_t* group_of_row;
  const float* scale;
  const float* zero;
  int tiles;
  bool rows_in_one_group;  // every row's 8 inputs share a group (false with act-order's shuffled groups)
};

// How linear.cc cuts a GPTQ matrix. The rows of qweight lie `out` words apart, so reading one tile's 32 bytes a row
// at a time waits on a TLB miss and a DRAM round trip for every 32 bytes: a decode step instead streams 2 KB of each
// row (kGptqFewRowsPanelTiles tiles, prefetched rows ahead), and a prompt dequantizes 8 tiles a block of rows at a
// time.
constexpr int kFewRows = 3;                 // the *_few_rows kernels take n <= this; more rows share a buffer
constexpr int kGptqFewRowsPanelTiles = 64;  // the most tiles of one gptq_few_rows panel
constexpr int kGptqPanelTiles = 8;          // tiles dequantized together for more rows
constexpr int kGptqBlockRows = 16;          // ... kGptqBlockRows rows of qweight (8 inputs each) at a time

struct Kernels {
  float (*dot)(const float* a, const float* b, int n);
  void (*axpy)(float a, const float* x, float* y, int n);       // y += a * x
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // GPTQ zeros: dst[8 i + j] = nibble j of words[i] + offset, for i < n_words (a tile's 8 columns per word).
  void (*unpack_zeros)(const int32_t* words, int n_words, int offset, float* dst);
  // GPTQ: dequantizes 8 output columns for all `in` rows into wt, input k's 8 values at k * wt_stride:
  // wt[k][c] = scale[g][c] * (nibble(k, c) - zero[g][c]), g = group_of_row[k]; qweight points at column 0 of
  // the tile in row 0 (row stride `out`); scale and zero hold the tile's 8 values of group g at g * sz_stride.
  void (*dequant_gptq8)(const int32_t* qweight, int64_t out, int in, const int32_t* group_of_row,
                        const float* scale, const float* zero, int64_t sz_stride, float* wt, int wt_stride);
  // y[t][c] = sum_k x[t][k] * wt[k][c] for t < n, c < cols (<= 8); x rows `in` apart, y rows `y_stride` apart.
  void (*gemm8)(const float* x, int n, int in, const float* wt, float* y, int64_t y_stride, int cols);
  // The same for two tiles dequantized side by side (wt [in][16], wt_stride 16), as two gemm8 calls would give
  // them bit for bit. nullptr where the kernel set has none: callers then take the tiles one at a time.
  void (*gemm16)(const float* x, int n, int in, const float* wt, float* y, int64_t y_stride);
  // GPTQ for a few rows (n <= kFewRows), dequantizing in registers: y[t][c] for t < n and the panel's tiles * 8
  // columns, bit for bit the sums dequant_gptq8 + gemm8 give. nullptr where the kernel set has none (scalar):
  // those callers dequantize into a buffer instead.
  void (*gptq_few_rows)(const float* x, int n, const GptqPanel& panel, float* y, int64_t y_stride);
  // A dense [out, in] matrix for a few rows (n <= kFewRows): y[t][c] for t < n and the 8 * tiles output columns
  // whose weight rows start at w (rows `in` values apart), converted and transposed in registers; bit for bit the
  // sums to_f32 + a transpose + gemm8 give. nullptr where the kernel set has none.
  void (*dense_few_rows)(const float* x, int n, int in, const void* w, DType dtype, int tiles, float* y,
                         int64_t y_stride);
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
#ifdef XLLAMA_HAVE_AVX512
const Kernels* avx512_kernels();  // kernels_avx512.cc: the AVX2 set with AVX-512 gptq_few_rows and gemm16
#endif

}  // namespace xllama::cpu
