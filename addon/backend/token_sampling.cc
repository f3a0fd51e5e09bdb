#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/backend.h"

namespace xllama {

int32_t sample_token_host(const float* logits, int vocab, const TokenSampling& s) {
  if (s.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);  // first max on ties
  }
  int k = (s.top_k > 0 && s.top_k < vocab) ? s.top_k : vocab;
  std::vector<int32_t> idx(vocab);
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
  const float max_logit = logits[idx[0]];
  std::vector<double> p(k);
  double sum = 0.0;
  for (int i = 0; i < k; ++i) sum += p[i] = std::exp((logits[idx[i]] - max_logit) / s.temperature);
  double target = static_cast<double>(s.uniform) * sum, acc = 0.0;
  for (int i = 0; i < k; ++i) {
    acc += p[i];
    if (acc > target) return idx[i];
  }
  return idx[k - 1];
}

int32_t Backend::forward_sample(const int32_t* tokens, int n, int pos, const TokenSampling& sampling) {
  std::vector<float> logits(static_cast<size_t>(config().vocab_size));
  forward(tokens, n, pos, false, logits.data());
  return sample_token_host(logits.data(), config().vocab_size, sampling);
}

}  // namespace xllama
