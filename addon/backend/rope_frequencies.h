// RoPE inverse frequencies (HF transformers' formulas, float32) for every rope_scaling type, shared by the
// CPU and CUDA backends so that both rotate by exactly the same angles.
#pragma once
#include <vector>

#include "backend/backend.h"

namespace xllama {

// inv_freq[i] for i < head_dim/2, for a forward call whose largest position + 1 is seq_len. Dynamic NTK
// rescales the base once seq_len exceeds the original context, by the length of the whole call (HF's
// dynamic_rope_update uses max(position_ids) + 1 of the call); the other types ignore seq_len.
std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim, int max_position_embeddings, int seq_len);

}  // namespace xllama
