#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/sampled_rank.h"
#include "backend/token_penalties.h"

namespace xllama {

int32_t sample_token_host(const float* logits, int vocab, const TokenSampling& s, uint32_t* history) {
  const bool penalized = penalties_on(s);
  if (s.temperature <= 0.0f) {
    if (penalized) throw BackendError(kBadInput, "penalties need a sampled pick (temperature > 0; greedy is top-k 1)");
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);  // first max on ties
  }
  bool any_above_minus_inf = false;
  for (int i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i]) || logits[i] == INFINITY)
      throw BackendError(kNonFiniteLogits, std::string(std::isnan(logits[i]) ? "NaN" : "+infinity") + " at token " +
                                               std::to_string(i) + " of " + std::to_string(vocab));
    any_above_minus_inf = any_above_minus_inf || logits[i] != -INFINITY;
  }
  if (!any_above_minus_inf) throw BackendError(kNonFiniteLogits, "all " + std::to_string(vocab) + " are -infinity");
  std::vector<float> penalized_logits;
  if (penalized && history) {  // after the check, as the host sampler: it looks at the model's own logits
    penalized_logits.resize(vocab);
    for (int i = 0; i < vocab; ++i) penalized_logits[i] = penalized_logit(logits[i], history[i], s);
    logits = penalized_logits.data();
  }
  int k = (s.top_k > 0 && s.top_k < vocab) ? s.top_k : vocab;
  std::vector<int32_t> idx(vocab);
  std::iota(idx.begin(), idx.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
  const double max_logit = logits[idx[0]];
  std::vector<double> weight(k);
  for (int i = 0; i < k; ++i) weight[i] = std::exp((logits[idx[i]] - max_logit) / s.temperature);
  std::vector<double> dist(s.typical_p < 1.0f ? k : 0);
  std::vector<int> order(dist.size());
  const int32_t pick = idx[sampled_rank(weight.data(), k, s.top_p, s.min_p, s.typical_p, s.uniform, dist.data(),
                                        order.data())];
  if (penalized && history) history[pick] = history_after_pick(history[pick]);
  return pick;
}

int32_t Backend::forward_sample(const int32_t* tokens, int n, int pos, const TokenSampling& sampling,
                                const TokenSampling* /*next: no pipelining here*/) {
  const int vocab = config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  forward(tokens, n, pos, false, logits.data());
  if (penalties_on(sampling) && token_history_.empty()) token_history_.assign(vocab, 0u);
  return sample_token_host(logits.data(), vocab, sampling, token_history_.empty() ? nullptr : token_history_.data());
}

void Backend::set_token_history(const int32_t* seen, int n_seen, const int32_t* generated, int n_generated) {
  const int vocab = config().vocab_size;
  token_history_.assign(vocab, 0u);
  for (int i = 0; i < n_seen; ++i)
    if (seen[i] >= 0 && seen[i] < vocab) token_history_[seen[i]] |= 1u;
  for (int i = 0; i < n_generated; ++i) {
    const int32_t id = generated[i];
    if (id >= 0 && id < vocab) token_history_[id] = history_after_pick(token_history_[id]);
  }
}

double token_nll_host(const float* logits, int vocab, int target) {
  const float max_logit = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  return std::log(sum) - (static_cast<double>(logits[target]) - max_logit);
}

// Rows per forward in the default score(): bounds the host logits buffer (64 rows of a 128k vocabulary
// are 32 MiB) while keeping each forward a real prompt chunk.
constexpr int kScoreRows = 64;

void check_score_targets(const int32_t* targets, int n, int vocab) {
  for (int i = 0; i < n; ++i) {
    if (targets[i] >= vocab) {
      throw BackendError(kBadInput, "target id " + std::to_string(targets[i]) + " at index " + std::to_string(i) +
                                        " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")");
    }
  }
}

void Backend::score(const int32_t* tokens, int n, int pos, const int32_t* targets, float* nll) {
  const int vocab = config().vocab_size;
  check_score_targets(targets, n, vocab);
  std::vector<float> logits;
  for (int start = 0; start < n; start += kScoreRows) {
    const int m = std::min(kScoreRows, n - start);
    logits.resize(static_cast<size_t>(m) * vocab);
    forward(tokens + start, m, pos + start, true, logits.data());
    for (int r = 0; r < m; ++r) {
      const int t = targets[start + r];
      nll[start + r] = t < 0 ? 0.0f : static_cast<float>(token_nll_host(&logits[static_cast<size_t>(r) * vocab], vocab, t));
    }
  }
}

}  // namespace xllama
