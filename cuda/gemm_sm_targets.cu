#include "cuda/gemm_sm_targets.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "backend/verbose_load.h"
#include "cuda/env_switch.h"

namespace xllama::cuda {

bool gemm_sm_targets_setting() { return env_switch_on("XLLAMA_GEMM_SM_TARGETS"); }

namespace {
// Candidates below the GPU's count, in steps of 4 SMs down to a quarter fewer: past that, cuBLAS's waves grow on
// every shape measured.
constexpr int kStep = 4;
constexpr double kWithin = 1.02;
}  // namespace

GemmSmTargets::GemmSmTargets(int sm_count) : sm_count_(sm_count) {
  XL_CUDA_CHECK(cudaEventCreate(&start_));
  XL_CUDA_CHECK(cudaEventCreate(&stop_));
}

GemmSmTargets::~GemmSmTargets() {
  if (start_) cudaEventDestroy(start_);
  if (stop_) cudaEventDestroy(stop_);
}

int GemmSmTargets::target(const Shape& shape, cudaStream_t stream, const std::function<void(int)>& run) {
  if (shape.row_tiles * 128 < kMinRows || sm_count_ < 2 * kStep) return 0;
  const auto known = chosen_.find(shape);
  if (known != chosen_.end()) return known->second;
  std::vector<int> candidates{0};  // 0: cuBLAS's own choice on every SM
  for (int t = sm_count_ - kStep; t >= sm_count_ * 3 / 4; t -= kStep) candidates.push_back(t);
  std::vector<float> ms(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    run(candidates[i]);  // warm-up: the first call of a new target chooses its kernel
    float best = 0.f;
    for (int rep = 0; rep < 2; ++rep) {
      XL_CUDA_CHECK(cudaEventRecord(start_, stream));
      run(candidates[i]);
      XL_CUDA_CHECK(cudaEventRecord(stop_, stream));
      XL_CUDA_CHECK(cudaEventSynchronize(stop_));
      float t = 0.f;
      XL_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
      best = rep == 0 ? t : std::min(best, t);
    }
    ms[i] = best;
  }
  const float fastest = *std::min_element(ms.begin(), ms.end());
  int chosen = 0;
  for (size_t i = 0; i < candidates.size(); ++i)
    if (ms[i] <= fastest * kWithin) chosen = candidates[i];  // later candidates have fewer SMs
  chosen_[shape] = chosen;
  if (verbose_load()) {  // what was timed, for `xllama bench --verbose`
    std::string times;
    for (size_t i = 0; i < candidates.size(); ++i)
      times += " " + std::to_string(candidates[i]) + ":" + std::to_string((int)(ms[i] * 1e3f + 0.5f));
    std::fprintf(stderr, "xllama: gemm %dx%d, %d token tiles%s%s: SM target %d (us at each:%s)\n", shape.K, shape.N,
                 shape.row_tiles, shape.f32 ? ", fp32 out" : "", shape.accumulate ? ", accumulating" : "", chosen,
                 times.c_str());
  }
  return chosen;
}

}  // namespace xllama::cuda
