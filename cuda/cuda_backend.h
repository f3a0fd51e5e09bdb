// The CUDA implementation of xllama::Backend (backend/backend.h). Plain C++ declarations: the
// addon glue includes this without CUDA headers.
#pragma once
#include <cstdint>
#include <memory>

#include "backend/backend.h"
#include "backend/load_progress.h"

namespace xllama {

// Uploads the weights once and allocates the KV cache and scratch for options.max_seq_len.
// Throws BackendError("out_of_memory", ...) naming what was needed and what was free. `progress` (may be
// null; used only during the call) is told which part of the checkpoint the upload reads; without it the
// upload reads each next layer ahead itself (cuda/read_ahead.h).
std::unique_ptr<Backend> create_cuda_backend(const ModelConfig& config, const GptqConfig& gptq,
                                             const ModelWeights& weights, const BackendOptions& options,
                                             LoadProgress* progress = nullptr);

// A random GPTQ 4-bit model of the given shapes, built directly on the GPU (no checkpoint), for benchmarks.
std::unique_ptr<Backend> create_cuda_dummy_backend(const ModelConfig& config, int group_size,
                                                   const BackendOptions& options, uint64_t seed);

}  // namespace xllama
