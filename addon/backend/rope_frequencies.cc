// RoPE inverse frequencies as Hugging Face transformers computes them (float32), for every rope_scaling
// type: the one implementation both backends use.
#include "backend/rope_frequencies.h"

#include <algorithm>
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

// _compute_yarn_parameters: per frequency, a blend of the original (extrapolated) one and the one divided by factor
// (interpolated), by a linear ramp over the dimensions between those that turn beta_fast and beta_slow times in the
// original context. The ramp's bounds in double as Python computes them; the tensors' arithmetic in float32.
static std::vector<float> yarn_inv_freq(const RopeConfig& rope, int dim) {
  const double base = rope.theta, two_pi = 2.0 * M_PI;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(rope.original_max_position / (rotations * two_pi)) / (2.0 * std::log(base));
  };
  double low = correction_dim(rope.beta_fast), high = correction_dim(rope.beta_slow);
  if (rope.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0), high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // HF: prevents a division by zero
  const float ramp_low = static_cast<float>(low), ramp_width = static_cast<float>(high - low);
  std::vector<float> inv(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    const float pos_freq = static_cast<float>(std::pow(base, static_cast<double>(exponent)));
    const float extrapolated = 1.0f / pos_freq, interpolated = 1.0f / (rope.factor * pos_freq);
    const float ramp = std::min(std::max((static_cast<float>(i) - ramp_low) / ramp_width, 0.0f), 1.0f);
    const float extrapolation = 1.0f - ramp;
    inv[i] = interpolated * (1.0f - extrapolation) + extrapolated * extrapolation;
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
    case RopeType::Yarn:
      return yarn_inv_freq(rope, dim);
  }
  return default_inv_freq(rope.theta, dim);
}

}  // namespace xllama
