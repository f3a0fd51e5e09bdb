// RoPE rotation on the CPU (the frequencies come from backend/rope_frequencies.h).
#pragma once
#include <vector>

#include "backend/rope_frequencies.h"

namespace xllama::cpu {

// Rotates x [heads × head_dim] in place at one position (rotate_half pairs (i, i + head_dim/2)).
void apply_rope(float* x, int heads, int head_dim, const float* cos, const float* sin);

// cos/sin [head_dim/2] of position * inv_freq, float32 product as HF forms it, times the attention factor (YaRN's
// attention_scaling; 1 for the other rope types).
void rope_cos_sin(const std::vector<float>& inv_freq, float attention_factor, int position, float* cos, float* sin);

}  // namespace xllama::cpu
