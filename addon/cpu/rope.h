// RoPE frequencies as Hugging Face transformers computes them (float32), for every rope_scaling type.
#pragma once
#include <vector>

#include "backend/backend.h"

namespace xllama::cpu {

// inv_freq[i] for i < head_dim/2, for a forward whose largest position + 1 is seq_len (dynamic NTK
// rescales the base once seq_len exceeds the original context; the other types ignore seq_len).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim, int max_position_embeddings, int seq_len);

// Rotates x [heads × head_dim] in place at one position (rotate_half pairs (i, i + head_dim/2)).
void apply_rope(float* x, int heads, int head_dim, const float* cos, const float* sin);

// cos/sin [head_dim/2] of position * inv_freq, float32 product as HF forms it.
void rope_cos_sin(const std::vector<float>& inv_freq, int position, float* cos, float* sin);

}  // namespace xllama::cpu
