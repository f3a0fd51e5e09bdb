// Checks every backend makes of a model before it allocates anything for it, with the config.json field
// named in each message. Backend-specific limits (the CUDA kernels' head_dim) stay in that backend.
#pragma once
#include "backend/backend.h"

namespace xllama {

// Throws BackendError(kBadModel) when a size is not positive, the heads don't divide, or head_dim is odd.
void check_model_config(const ModelConfig& c);

// Throws BackendError(kBadModel) unless `weights` has one layer per config layer.
void check_layer_count(const ModelConfig& c, const ModelWeights& weights);

}  // namespace xllama
