#include "cpu/linear.h"

#include <algorithm>
#include <string>

#include "backend/model_checks.h"
#include "cpu/kernels.h"

namespace xllama::cpu {

namespace {

// Rows (output columns) per task so that a task does at least ~64K multiply-adds: tiny layers stay on one
// thread instead of paying the pool's wake-up for microseconds of work.
int64_t grain_for(int64_t per_item) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, per_item)); }

constexpr int kTile = 8;  // output columns per step: one qzeros word, one AVX2 vector

}  // namespace

CpuLinear::CpuLinear(const LinearWeights& w, const GptqConfig& gptq, const std::string& what)
    : in_(w.in_features), out_(w.out_features), w_(w) {
  if (in_ <= 0 || out_ <= 0) throw BackendError("bad_model", what + ": bad shape");
  if (w.quantized()) {
    if (gptq.bits != 4) throw BackendError("bad_model", what + ": only 4-bit GPTQ is supported");
    // Shapes, dtypes and g_idx were checked at load (check_gptq_linear in backend/model_checks.cc).
    quantized_ = true;
    zero_offset_ = gptq.zero_offset;
    const int group_size = w.group_size > 0 ? w.group_size : gptq.group_size > 0 ? gptq.group_size : in_;
    groups_ = static_cast<int>(w.scales.shape[0]);
    group_of_row_.resize(in_);
    const int32_t* g = w.g_idx.present() ? static_cast<const int32_t*>(w.g_idx.data) : nullptr;
    for (int k = 0; k < in_; ++k) group_of_row_[k] = g ? g[k] : k / group_size;
    for (int k = 0; k < in_; ++k) rows_in_one_group_ = rows_in_one_group_ && group_of_row_[k] == group_of_row_[k & ~7];
    weight_bytes_ = w.qweight.numel() * 4 + w.qzeros.numel() * 4 + w.scales.numel() * dtype_size(w.scales.dtype) +
                    (w.g_idx.present() ? w.g_idx.numel() * 4 : 0);
  } else {
    check_tensor(w.weight, what + ".weight", {DType::F16, DType::BF16, DType::F32}, {out_, in_});
    weight_bytes_ = w.weight.numel() * dtype_size(w.weight.dtype);
  }
  if (w.bias.present()) {
    check_tensor(w.bias, what + ".bias", {DType::F16, DType::BF16, DType::F32}, {out_});
    bias_.resize(out_);
    to_f32(w.bias.data, w.bias.dtype, out_, bias_.data());
    weight_bytes_ += w.bias.numel() * dtype_size(w.bias.dtype);
  }
}

void CpuLinear::apply(const float* x, int n, float* y, ThreadPool& pool) const {
  if (quantized_) apply_gptq(x, n, y, pool);
  else apply_dense(x, n, y, pool);
  if (!bias_.empty()) {
    for (int t = 0; t < n; ++t) {
      float* row = y + static_cast<int64_t>(t) * out_;
      for (int o = 0; o < out_; ++o) row[o] += bias_[o];
    }
  }
}

// Tiles of 8 output rows are converted to float32 and transposed to [in][8], then applied to all n rows.
void CpuLinear::apply_dense(const float* x, int n, float* y, ThreadPool& pool) const {
  const Kernels& K = kernels();
  const DType dt = w_.weight.dtype;
  const char* base = static_cast<const char*>(w_.weight.data);
  const size_t row_bytes = static_cast<size_t>(in_) * dtype_size(dt);
  const int64_t tiles = (out_ + kTile - 1) / kTile;
  // A few rows: whole tiles straight from the weights (kernels.h); a last partial tile takes the buffers below.
  const int64_t direct_tiles = K.dense_few_rows && n <= kFewRows ? out_ / kTile : 0;
  pool.parallel_for(tiles, grain_for(static_cast<int64_t>(kTile) * in_ * (n + 2)), [&](int64_t b, int64_t e, int) {
    if (b < direct_tiles) {
      const int64_t end = std::min(e, direct_tiles);
      K.dense_few_rows(x, n, in_, base + row_bytes * b * kTile, dt, static_cast<int>(end - b), y + b * kTile, out_);
      if (end == e) return;
      b = end;
    }
    thread_local std::vector<float> rows, wt;
    rows.resize(static_cast<size_t>(kTile) * in_);
    wt.resize(static_cast<size_t>(kTile) * in_);
    for (int64_t tile = b; tile < e; ++tile) {
      const int o0 = static_cast<int>(tile * kTile), cols = std::min(kTile, out_ - o0);
      to_f32(base + row_bytes * o0, dt, static_cast<int64_t>(cols) * in_, rows.data());
      std::fill(rows.begin() + static_cast<int64_t>(cols) * in_, rows.end(), 0.0f);
      for (int k = 0; k < in_; ++k) {
        for (int c = 0; c < kTile; ++c) wt[static_cast<size_t>(k) * kTile + c] = rows[static_cast<size_t>(c) * in_ + k];
      }
      K.gemm8(x, n, in_, wt.data(), y + o0, out_, cols);
    }
  });
}

// The scales and zeros (offset added) of tiles [first, first + tiles) as [group][tile][8] floats.
void CpuLinear::panel_scales(int64_t first, int tiles, float* scale, float* zero) const {
  const char* scales = static_cast<const char*>(w_.scales.data);
  const int32_t* qzeros = static_cast<const int32_t*>(w_.qzeros.data);
  const size_t sbytes = dtype_size(w_.scales.dtype);
  constexpr int kPrefetchGroups = 2;  // each group's row lies `out` values apart: ask for the next ones early
  for (int g = 0; g < groups_; ++g) {
    if (g + kPrefetchGroups < groups_) {
      const int64_t ahead = static_cast<int64_t>(g + kPrefetchGroups);
      const char* s_row = scales + (static_cast<size_t>(ahead) * out_ + first * kTile) * sbytes;
      for (size_t b = 0; b < static_cast<size_t>(tiles) * kTile * sbytes; b += 64) __builtin_prefetch(s_row + b);
      const char* z_row = reinterpret_cast<const char*>(qzeros + ahead * (out_ / 8) + first);
      for (size_t b = 0; b < static_cast<size_t>(tiles) * 4; b += 64) __builtin_prefetch(z_row + b);
    }
    const int64_t at = static_cast<int64_t>(g) * tiles * kTile;
    to_f32(scales + (static_cast<size_t>(g) * out_ + first * kTile) * sbytes, w_.scales.dtype,
           static_cast<int64_t>(tiles) * kTile, scale + at);
    kernels().unpack_zeros(qzeros + static_cast<int64_t>(g) * (out_ / 8) + first, tiles, zero_offset_, zero + at);
  }
}

// w[k][c] = scale[g][c] * (q[k][c] - (zero[g][c] + zero_offset)), g = group_of_row[k]. Each thread cuts its share
// of the tiles of 8 output columns (one qzeros word each) into panels (kernels.h says why). A few rows (a decode
// step) are multiplied as the weights are dequantized in registers; more share each tile dequantized once into
// [in][8]. Both give the same sums.
void CpuLinear::apply_gptq(const float* x, int n, float* y, ThreadPool& pool) const {
  const Kernels& K = kernels();
  const int32_t* qweight = static_cast<const int32_t*>(w_.qweight.data);
  const int64_t tiles = out_ / kTile;
  const bool few_rows = K.gptq_few_rows && n <= kFewRows;
  const int panel_max = few_rows ? kGptqFewRowsPanelTiles : kGptqPanelTiles;
  pool.parallel_for(tiles, grain_for(static_cast<int64_t>(kTile) * in_ * (n + 2)), [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> wt, sbuf, zbuf;
    sbuf.resize(static_cast<size_t>(panel_max) * groups_ * kTile);
    zbuf.resize(sbuf.size());
    if (!few_rows) wt.resize(static_cast<size_t>(panel_max) * kTile * in_);
    for (int64_t first = b; first < e; first += panel_max) {
      const int panel_tiles = static_cast<int>(std::min<int64_t>(panel_max, e - first));
      const int c0 = static_cast<int>(first * kTile);
      panel_scales(first, panel_tiles, sbuf.data(), zbuf.data());
      const GptqPanel panel{qweight + c0, out_, in_, group_of_row_.data(), sbuf.data(), zbuf.data(), panel_tiles,
                            rows_in_one_group_};
      if (few_rows) {
        K.gptq_few_rows(x, n, panel, y + c0, out_);
        continue;
      }
      // With gemm16, tiles 2p and 2p + 1 are dequantized side by side into [in][16] (a last odd tile alone).
      const size_t tile_floats = static_cast<size_t>(kTile) * in_;
      const int64_t sz_stride = static_cast<int64_t>(panel_tiles) * kTile;
      const int paired = K.gemm16 ? panel_tiles & ~1 : 0;
      for (int r0 = 0; r0 < in_ / 8; r0 += kGptqBlockRows) {
        const int rows = std::min(kGptqBlockRows, in_ / 8 - r0);
        for (int u = 0; u < panel_tiles; ++u) {
          const int stride = u < paired ? 2 * kTile : kTile;
          float* dst = &wt[(u < paired ? (u & ~1) * tile_floats + (u & 1) * kTile : u * tile_floats) +
                           static_cast<size_t>(r0) * 8 * stride];
          K.dequant_gptq8(panel.qweight + static_cast<int64_t>(r0) * out_ + u * kTile, out_, rows * 8,
                          panel.group_of_row + r0 * 8, panel.scale + u * kTile, panel.zero + u * kTile, sz_stride,
                          dst, stride);
        }
      }
      for (int u = 0; u < paired; u += 2) K.gemm16(x, n, in_, &wt[u * tile_floats], y + c0 + u * kTile, out_);
      for (int u = paired; u < panel_tiles; ++u)
        K.gemm8(x, n, in_, &wt[u * tile_floats], y + c0 + u * kTile, out_, kTile);
    }
  });
}

}  // namespace xllama::cpu
