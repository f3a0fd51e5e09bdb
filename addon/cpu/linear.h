// y = x W^T + b on the CPU for the three weight layouts: dense F16/BF16/F32 [out, in] and GPTQ 4-bit.
// Each worker converts (or dequantizes) a tile of output columns once and applies it to every input row,
// so a prompt of n tokens reads the weights once, not n times.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "cpu/thread_pool.h"

namespace xllama::cpu {

class CpuLinear {
 public:
  CpuLinear() = default;
  // Checks shapes and dtypes (BackendError "bad_model" naming the tensor) and resolves the group map.
  CpuLinear(const LinearWeights& w, const GptqConfig& gptq, const std::string& what);

  int in() const { return in_; }
  int out() const { return out_; }
  size_t weight_bytes() const { return weight_bytes_; }

  // Y[n, out] = X[n, in] W^T (+ bias).
  void apply(const float* x, int n, float* y, ThreadPool& pool) const;

 private:
  void apply_dense(const float* x, int n, float* y, ThreadPool& pool) const;
  void apply_gptq(const float* x, int n, float* y, ThreadPool& pool) const;
  void panel_scales(int64_t first, int tiles, float* scale, float* zero) const;

  int in_ = 0, out_ = 0;
  LinearWeights w_;
  bool quantized_ = false;
  int groups_ = 0;
  int zero_offset_ = 1;
  std::vector<int32_t> group_of_row_;  // g_idx, or k / group_size
  bool rows_in_one_group_ = true;      // each qweight row's 8 inputs share a group (always without act-order)
  std::vector<float> bias_;
  size_t weight_bytes_ = 0;
};

}  // namespace xllama::cpu
