#include "cpu/rope.h"

#include <cmath>

namespace xllama::cpu {

void rope_cos_sin(const std::vector<float>& inv_freq, float attention_factor, int position, float* cos, float* sin) {
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float angle = static_cast<float>(position) * inv_freq[i];
    cos[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * attention_factor;
    sin[i] = static_cast<float>(std::sin(static_cast<double>(angle))) * attention_factor;
  }
}

void apply_rope(float* x, int heads, int dim, const float* cos, const float* sin) {
  const int half = dim / 2;
  for (int h = 0; h < heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * dim;
    for (int i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

}  // namespace xllama::cpu
