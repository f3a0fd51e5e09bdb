// RoPE inverse frequencies as Hugging Face transformers computes them (float32), for every rope_scaling
// type: the one implementation both backends use.
#include "backend/rope_frequencies.h"

#include <cmath>

namespace xllama {

// HF: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), all float32.
static std::vector<float> default_inv_freq(float base, int dim) {
  std::vector<float> inv(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
  }
  return inv;
}

std::vector<float> rope_inv_freq(const RopeConfig& rope, int dim, int max_position_embeddings, int seq_len) {
  switch (rope.type) {
    case RopeType::Default:
      return default_inv_freq(rope.theta, dim);
    case RopeType::Linear: {  // _compute_linear_scaling_rope_parameters: inv_freq / factor
      std::vector<float> inv = default_inv_freq(rope.theta, dim);
      for (float& f : inv) f /= rope.factor;
      return inv;
    }
    case RopeType::Dynamic: {  // _compute_dynamic_ntk_parameters (only once past the original context)
      const int original = rope.original_max_position > 0 ? rope.original_max_position : max_position_embeddings;
      if (seq_len <= original) return default_inv_freq(rope.theta, dim);
      const double f = rope.factor;
      const double base = static_cast<double>(rope.theta) *
                          std::pow(f * seq_len / original - (f - 1.0), static_cast<double>(dim) / (dim - 2));
      return default_inv_freq(static_cast<float>(base), dim);
    }
    case RopeType::Llama3: {  // _compute_llama3_parameters
      std::vector<float> inv = default_inv_freq(rope.theta, dim);
      const float factor = rope.factor, low = rope.low_freq_factor, high = rope.high_freq_factor;
      const float old_ctx = static_cast<float>(rope.original_max_position);
      const float low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
      for (float& f : inv) {
        const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
        float scaled = wavelen > low_wavelen ? f / factor : f;
        const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        if (medium) {
          const float smooth = (old_ctx / wavelen - low) / (high - low);
          scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        f = scaled;
      }
      return inv;
    }
  }
  return default_inv_freq(rope.theta, dim);
}

}  // namespace xllama
