// Checks every backend makes of a model before it allocates anything for it, with the config.json field
// named in each message. Backend-specific limits (the CUDA kernels' head_dim) stay in that backend.
#pragma once
#include <initializer_list>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace xllama {

// Throws BackendError(kBadModel) when a size is not positive, the heads don't divide, or head_dim is odd.
void check_model_config(const ModelConfig& c);

// Throws BackendError(kBadModel) unless `weights` has one layer per config layer.
void check_layer_count(const ModelConfig& c, const ModelWeights& weights);

// Throws BackendError(kBadModel) naming the tensor when it is missing, of another dtype, or another shape.
void check_tensor(const TensorView& t, const std::string& what, std::initializer_list<DType> dtypes,
                  const std::vector<int64_t>& shape);

// Throws BackendError(kBadModel) naming the tensor unless a GPTQ 4-bit linear is consistent: in and out
// features multiples of 8, qweight I32 [in/8, out], scales floating-point [groups, out], qzeros I32
// [groups, out/8], and g_idx (when present) I32 [in] mapping every row to an existing group, or else enough
// groups for group_size. The loader checks every quantized linear once (loader/hf_checkpoint.cc); the
// backends rely on it.
void check_gptq_linear(const LinearWeights& l, const std::string& what);

}  // namespace xllama
