// The kernel check's checks of the device's token picks (greedy, top-k with top-p / min-p / typical-p, the ranked
// walk over the whole row, penalties) against the host sampler's rule written out in float64, and of token_nll.
#include "backend/token_penalties.h"
#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

// The host sampler's rule (cli/engine/sampler.ts) written out in float64: the top_k candidates sorted (stable),
// their weights exp((l - l0) / T); top-p keeps candidates while the normalized mass before them is below top_p;
// min-p keeps those whose weight is at least min_p x the top one's; u picks the first whose cumulative weight
// exceeds u x the kept total.
struct RefDraw {
  std::vector<int> ids;        // candidates, most likely first
  std::vector<double> weight;  // of each candidate
  std::vector<double> before;  // normalized mass before each candidate (top-p's test)
  int kept = 0;                // candidates left after top-p and min-p
  std::vector<bool> typical;   // of those, the ones typical-p keeps (all without it)
  std::vector<double> dist;    // typical-p: each survivor's |surprisal - entropy|
  std::vector<double> typical_mass;  // typical-p: the mass after each candidate it keeps, in its order
};
RefDraw ref_draw(const std::vector<float>& l, const TokenSampling& s) {
  RefDraw d;
  d.ids.resize(l.size());
  std::iota(d.ids.begin(), d.ids.end(), 0);
  std::stable_sort(d.ids.begin(), d.ids.end(), [&](int a, int b) { return l[a] > l[b]; });
  const int k = s.top_k > 0 && s.top_k < (int)l.size() ? s.top_k : (int)l.size();
  d.ids.resize(k);
  double total = 0;
  for (int i = 0; i < k; ++i) {
    d.weight.push_back(std::exp(((double)l[d.ids[i]] - (double)l[d.ids[0]]) / (double)s.temperature));
    total += d.weight.back();
  }
  double before = 0;
  for (int i = 0; i < k; ++i) d.before.push_back(before), before += d.weight[i] / total;
  int n = k;
  if (s.top_p < 1.f) {
    n = 0;
    while (n < k && d.before[n] < (double)s.top_p) ++n;
    n = std::max(n, 1);
  }
  if (s.min_p > 0.f) {
    int m = 0;
    while (m < n && d.weight[m] >= (double)s.min_p) ++m;  // weight[0] is 1
    n = std::max(m, 1);
  }
  d.kept = n;
  d.typical.assign(n, true);
  if (s.typical_p < 1.f) {  // typicalFilter: the survivors' entropy, nearest surprisal first until the mass reaches p
    double total = 0, entropy = 0;
    for (int i = 0; i < n; ++i) total += d.weight[i];
    for (int i = 0; i < n; ++i)
      if (d.weight[i] > 0) entropy -= d.weight[i] / total * std::log(d.weight[i] / total);
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    d.dist.resize(n);
    for (int i = 0; i < n; ++i)
      d.dist[i] = d.weight[i] > 0 ? std::fabs(-std::log(d.weight[i] / total) - entropy) : INFINITY;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return d.dist[a] < d.dist[b]; });
    d.typical.assign(n, false);
    double mass = 0;
    for (int i : order) {
      d.typical[i] = true;
      mass += d.weight[i] / total;
      d.typical_mass.push_back(mass);
      if (mass >= (double)s.typical_p) break;
    }
  }
  return d;
}

int ref_sample(const std::vector<float>& l, const TokenSampling& s) {
  if (s.temperature <= 0) return (int)(std::max_element(l.begin(), l.end()) - l.begin());
  const RefDraw d = ref_draw(l, s);
  double kept = 0;
  int last = 0;
  for (int i = 0; i < d.kept; ++i)
    if (d.typical[i]) kept += d.weight[i], last = i;
  double acc = 0;
  for (int i = 0; i < d.kept; ++i) {
    if (!d.typical[i]) continue;
    acc += d.weight[i];
    if (acc > (double)s.uniform * kept) return d.ids[i];
  }
  return d.ids[last];
}

// Whether the host rule's choice between tokens a and b on logits l turns on less than rounding: their logits
// within kTieTol of each other, or (sampling) a quantity the rule compares within kTieTol of its bound: a
// cumulative share between their ranks against u, a mass before a candidate against top-p, a weight against min-p.
bool near_tie_pick(const std::vector<float>& l, const TokenSampling& s, int a, int b) {
  constexpr double kTieTol = 1e-3;
  if (a < 0 || b < 0 || a >= (int)l.size() || b >= (int)l.size()) return false;
  if (std::fabs((double)l[a] - (double)l[b]) < kTieTol) return true;
  if (s.temperature <= 0) return false;
  const RefDraw d = ref_draw(l, s);
  const int k = (int)d.ids.size();
  const int ra = (int)(std::find(d.ids.begin(), d.ids.end(), a) - d.ids.begin());
  const int rb = (int)(std::find(d.ids.begin(), d.ids.end(), b) - d.ids.begin());
  if (ra >= k || rb >= k) return false;
  for (int i = 0; i < k; ++i) {
    if (s.top_p < 1.f && std::fabs(d.before[i] - (double)s.top_p) < kTieTol) return true;
    if (s.min_p > 0.f && std::fabs(d.weight[i] - (double)s.min_p) < kTieTol) return true;
  }
  for (double m : d.typical_mass)
    if (std::fabs(m - (double)s.typical_p) < kTieTol) return true;
  for (size_t i = 0; i < d.dist.size(); ++i)
    for (size_t j = i + 1; j < d.dist.size(); ++j)
      if (std::fabs(d.dist[i] - d.dist[j]) < kTieTol) return true;
  double kept = 0;
  for (int i = 0; i < d.kept; ++i)
    if (d.typical[i]) kept += d.weight[i];
  double acc = 0;
  for (int i = 0; i < std::max(ra, rb); ++i) {
    if (i >= d.kept || !d.typical[i]) continue;
    acc += d.weight[i];
    if (i >= std::min(ra, rb) && std::fabs(acc / kept - (double)s.uniform) < kTieTol) return true;
  }
  return false;
}

void check_walked_sampling(int vocab);

// The device picks (argmax; top-k alone, then with top-p and min-p cuts that bind) against the host rule.
void check_sampling(int vocab) {
  int bad = 0, runs = 0;
  Dev<int> out(1);
  TopKPickScratch scratch(vocab);
  for (int trial = 0; trial < 24; ++trial) {
    std::vector<float> l(vocab);
    for (auto& v : l) v = urand(-10.f, 10.f);
    // ties at the top and around the k-th value: the lower index must win
    l[vocab / 3] = 12.f, l[vocab / 2] = 12.f;
    for (int i = 0; i < 5; ++i) l[(size_t)(rng() % vocab)] = 9.5f;
    // Ties across the top-k kernel's slices: a few distinct values (many entries equal to the k-th, in every
    // slice), and a flat row (the k lowest indices).
    if (trial >= 20) {
      for (auto& v : l) v = trial == 23 ? 0.f : (float)(int)urand(-3.f, 3.f);
    }
    Dev<float> dl(l);
    TokenSampling s;
    s.top_k = 1 + (int)(rng() % kMaxDeviceTopK);
    s.temperature = 0.3f + urand(0.f, 1.5f), s.uniform = urand(0.f, 1.f);
    out.poison();
    argmax(dl.p, vocab, out.p, nullptr);
    bad += out.download()[0] != ref_sample(l, TokenSampling{});
    runs += 1;
    for (int cut = 0; cut < 4; ++cut) {
      s.top_p = cut == 1 ? urand(0.3f, 0.99f) : 1.f;
      s.min_p = cut == 2 ? urand(0.01f, 0.5f) : 0.f;
      if (cut >= 2) s.top_p = 0.95f;  // both, as chat's defaults
      // then typical-p, on the random rows (the tied ones' distances may order differently by a rounding)
      s.typical_p = cut == 3 && trial < 20 ? urand(0.2f, 0.95f) : 1.f;
      out.poison();
      sample_top_k(dl.p, vocab, s, scratch.get(), out.p, nullptr);
      const int got = out.download()[0], want = ref_sample(l, s);
      // Equal logits have one order (the lower index first): no near-tie allowance on the tied rows.
      bad += got != want && (trial >= 20 || !near_tie_pick(l, s, got, want));
      runs += 1;
    }
  }
  report("sampling argmax + top-k, top-p, min-p, typical-p vocab=" + std::to_string(vocab) + " (mismatches/" +
             std::to_string(runs) + ")",
         bad, 0);
  // Rows a sampled pick can't rank (a NaN, a +infinity, all -infinity): kNonFinitePick, and a feed gets token 0.
  int missed = 0;
  Dev<int> feed_io(2);  // [0]: the fed token, [1]: the fed position
  for (int row = 0; row < 3; ++row) {
    std::vector<float> l(vocab);
    for (auto& v : l) v = row == 2 ? -INFINITY : urand(-10.f, 10.f);
    if (row < 2) l[(size_t)(rng() % vocab)] = row == 0 ? NAN : INFINITY;
    Dev<float> dl(l);
    out.poison();
    feed_io.poison();
    sample_top_k(dl.p, vocab, {0.8f, 40 < vocab ? 40 : 1, 0.95f, 0.05f, 0.5f}, scratch.get(), out.p, nullptr,
                 StepFeed{feed_io.p + 1, feed_io.p, 7});
    const std::vector<int> fed = feed_io.download();
    missed += out.download()[0] != kNonFinitePick || fed[0] != 0 || fed[1] != 7;
  }
  report("sampling: NaN, +infinity, all -infinity rows refused, feed kept valid vocab=" + std::to_string(vocab), missed,
         0);
  // A fed step's graph reads its draw when the kernel runs and advances the position by one: the same picks.
  int differ = 0;
  for (int trial = 0; trial < 8; ++trial) {
    std::vector<float> l(vocab);
    for (auto& v : l) v = urand(-10.f, 10.f);
    Dev<float> dl(l);
    TokenSampling draw;
    draw.top_k = 1 + (int)(rng() % std::min(kMaxDeviceTopK, vocab)), draw.temperature = 0.5f + urand(0.f, 1.f);
    draw.top_p = trial % 2 ? 0.9f : 1.f, draw.min_p = trial % 4 > 1 ? 0.05f : 0.f, draw.uniform = urand(0.f, 1.f);
    Dev<TokenSampling> at(std::vector<TokenSampling>{draw});
    Dev<int> io(std::vector<int>{-5, 100 + trial});  // [0]: the fed token, [1]: the position
    out.poison();
    sample_top_k(dl.p, vocab, draw, scratch.get(), out.p, nullptr);
    const int given = out.download()[0];
    out.poison();
    sample_top_k_at(dl.p, vocab, at.p, scratch.get(), out.p, nullptr, StepFeed{io.p + 1, io.p, 0, /*advance=*/true});
    const std::vector<int> fed = io.download();
    differ += out.download()[0] != given || fed[0] != given || fed[1] != 101 + trial;
  }
  report("sampling: draw read at run time + advancing feed = by value vocab=" + std::to_string(vocab), differ, 0);
  check_walked_sampling(vocab);
}

// Draws with more candidates than the top-k lists hold (top-k 0: the whole vocabulary, or k above kMaxDeviceTopK):
// the row walked in rank order (cuda/ranked_walk.cuh) against the host rule, on rows spread like a model's, flat
// ones (top-p then keeps thousands), and rows of few distinct values (walks ending inside runs of ties); then the same
// draws read at run time from a fed graph's slot, after a list draw, and the refused rows.
void check_walked_sampling(int vocab) {
  if (vocab <= kMaxDeviceTopK) return;
  Dev<int> out(1);
  TopKPickScratch scratch(vocab);
  int bad = 0, runs = 0, lists_differ = 0;
  for (int trial = 0; trial < 24; ++trial) {
    std::vector<float> l(vocab);
    const float spread = trial % 4 == 1 ? 0.5f : 10.f;  // trial 1, 5, ...: nearly flat
    for (auto& v : l) v = urand(-spread, spread);
    l[vocab / 3] = spread + 2.f, l[vocab / 2] = spread + 2.f;  // a tie at the top
    if (trial >= 12 && trial < 16) {
      for (auto& v : l) v = trial == 15 ? 1.f : (float)(int)urand(-3.f, 3.f);
    }
    // Trials 16-23: peaked as a model's usually are (a few dozen logits well above the rest): top-p, min-p and the
    // draw end within the row's top kMaxDeviceTopK, which the lists answer without walking.
    if (trial >= 16)
      for (int j = 0; j < 8 + (int)(rng() % 40); ++j) l[(size_t)(rng() % vocab)] = 14.f + urand(0.f, 8.f);
    Dev<float> dl(l);
    for (int cut = 0; cut < 5; ++cut) {
      TokenSampling s;
      s.temperature = 0.3f + urand(0.f, 1.5f), s.uniform = urand(0.f, 1.f);
      s.top_k = cut == 4 ? kMaxDeviceTopK + 1 + (int)(rng() % std::max(1, vocab / 2 - kMaxDeviceTopK)) : 0;
      s.top_p = cut == 1 || cut >= 3 ? urand(0.3f, 0.99f) : 1.f;
      s.min_p = cut == 2 || cut == 3 ? urand(0.001f, 0.3f) : 0.f;
      out.poison();
      // the lists tried whatever the draws before them (after misses in a row they are tried one draw in 16)
      XL_CUDA_CHECK(cudaMemset(scratch.get().state + 2, 0, sizeof(uint32_t)));
      sample_top_k(dl.p, vocab, s, scratch.get(), out.p, nullptr);
      const int got = out.download()[0], want = ref_sample(l, s);
      bad += got != want && ((trial >= 12 && trial < 16) || !near_tie_pick(l, s, got, want));
      runs += 1;
      // The lists' answer is the walk's, exactly (the same integer masses and targets).
      walk_lists_flag() = false;
      out.poison();
      sample_top_k(dl.p, vocab, s, scratch.get(), out.p, nullptr);
      walk_lists_flag() = true;
      lists_differ += out.download()[0] != got;
    }
  }
  report("sampling walked in rank order (top-k 0 / above " + std::to_string(kMaxDeviceTopK) + ", top-p, min-p) vocab=" +
             std::to_string(vocab) + " (mismatches/" + std::to_string(runs) + ")",
         bad, 0);
  report("sampling walked: answered from the top lists == walked vocab=" + std::to_string(vocab) + " (differ/" +
             std::to_string(runs) + ")",
         lists_differ, 0);
  // A graph's slot holds one draw after another: a walked one after a list one and back (the kernel's state reset
  // by each), the position advanced each time; and refused rows.
  int differ = 0;
  Dev<int> io(std::vector<int>{-5, 0});
  for (int trial = 0; trial < 6; ++trial) {
    std::vector<float> l(vocab);
    for (auto& v : l) v = urand(-10.f, 10.f);
    if (trial == 5) l[(size_t)(rng() % vocab)] = NAN;
    Dev<float> dl(l);
    TokenSampling draw;
    draw.temperature = 0.7f, draw.top_k = trial % 2 ? 40 : 0, draw.top_p = 0.9f, draw.min_p = trial % 3 ? 0.05f : 0.f;
    draw.uniform = urand(0.f, 1.f);
    Dev<TokenSampling> at(std::vector<TokenSampling>{draw});
    out.poison();
    sample_top_k_at(dl.p, vocab, at.p, scratch.get(), out.p, nullptr, StepFeed{io.p + 1, io.p, 0, /*advance=*/true});
    const std::vector<int> fed = io.download();
    const int got = out.download()[0];
    const int want = trial == 5 ? kNonFinitePick : ref_sample(l, draw);
    differ += (got != want && !near_tie_pick(l, draw, got, want)) || fed[0] != (trial == 5 ? 0 : got) || fed[1] != trial + 1;
  }
  report("sampling walked: draws read at run time, list and walked in turn, a NaN row refused vocab=" +
             std::to_string(vocab),
         differ, 0);
}

// Penalized picks (the draw's repetition, frequency and presence penalties read from the scratch's token history)
// and the history entry each records, against sample_token_host with the same history (the CPU backend's pick,
// which the CPU tests hold to the TypeScript sampler).
void check_penalized_sampling(int vocab) {
  Dev<int> out(1);
  TopKPickScratch scratch(vocab);
  const TokenSampling settings[] = {
      {1.f, 1, 1.f, 0.f, 0.f, 5.0, 0.0, 0.0},        // greedy after a repetition penalty (top-k 1)
      {0.8f, 40, 0.95f, 0.05f, 0.f, 1.3, 0.4, 0.2},  // chat's defaults with all three
      {1.2f, 64, 1.f, 0.f, 0.f, 1.0, -0.5, 1.5},     // frequency and presence only, one negative
      {0.9f, 0, 0.9f, 0.02f, 0.f, 1.2, 0.3, 0.0},    // the whole vocabulary, walked in rank order
  };
  int bad = 0, changed = 0, runs = 0;
  for (int trial = 0; trial < 12; ++trial) {
    std::vector<float> l(vocab);
    for (auto& v : l) v = urand(-10.f, 10.f);
    // The likeliest tokens seen and generated (0-3 times), so the penalties decide the pick.
    std::vector<uint32_t> history(vocab, 0u);
    for (int i = 0; i < vocab; ++i) {
      const uint32_t count = (uint32_t)(rng() % 4);
      if (l[i] > 8.f || rng() % 16 == 0) history[i] = (count << 1) | (count > 0 || rng() % 2 ? 1u : 0u);
    }
    TokenSampling s = settings[trial % 4];
    s.uniform = urand(0.f, 1.f);
    Dev<float> dl(l);
    XL_CUDA_CHECK(cudaMemcpy(scratch.get().history, history.data(), vocab * sizeof(uint32_t), cudaMemcpyHostToDevice));
    out.poison();
    sample_top_k(dl.p, vocab, s, scratch.get(), out.p, nullptr);
    const int got = out.download()[0];
    std::vector<uint32_t> want_history = history, got_history(vocab);
    const int want = sample_token_host(l.data(), vocab, s, want_history.data());
    XL_CUDA_CHECK(cudaMemcpy(got_history.data(), scratch.get().history, vocab * sizeof(uint32_t), cudaMemcpyDeviceToHost));
    std::vector<float> penalized(vocab);
    for (int i = 0; i < vocab; ++i) penalized[i] = penalized_logit(l[i], history[i], s);
    TokenSampling none = s;
    none.repeat_penalty = 1.0, none.frequency_penalty = 0.0, none.presence_penalty = 0.0;
    changed += sample_token_host(l.data(), vocab, none) != want;
    if (got != want) {
      bad += !near_tie_pick(penalized, s, got, want);
    } else {
      bad += got_history != want_history;
    }
    runs += 1;
  }
  report("sampling with penalties + recorded history = the host pick's vocab=" + std::to_string(vocab) +
             " (mismatches/" + std::to_string(runs) + ")",
         bad, 0);
  report("sampling: the penalties changed a pick vocab=" + std::to_string(vocab) + " (0: they did)", changed < 3, 0);
}

// token_nll against a float64 log-softmax of the same float logits: random rows shifted by `offset` (a large
// one must not overflow exp); from 3 rows on, row 0 is unscored (target -1: must read exactly 0), row 1 is
// peaked on another token (NLL near 40) and the last row on its target (NLL near 0).
void check_token_nll(int rows, int vocab, float offset) {
  std::vector<float> l((size_t)rows * vocab);
  for (auto& v : l) v = offset + urand(-12.f, 12.f);
  std::vector<int> targets(rows);
  for (auto& t : targets) t = (int)(rng() % vocab);
  if (rows >= 3) {
    targets[0] = -1;
    l[(size_t)1 * vocab + (targets[1] + 1) % vocab] = offset + 40.f;
    l[(size_t)(rows - 1) * vocab + targets[rows - 1]] = offset + 40.f;
  }
  std::vector<double> ref(rows, 0.0);
  for (int r = 0; r < rows; ++r) {
    if (targets[r] < 0) continue;
    const float* x = &l[(size_t)r * vocab];
    const double mx = *std::max_element(x, x + vocab);
    double sum = 0;
    for (int i = 0; i < vocab; ++i) sum += std::exp((double)x[i] - mx);
    ref[r] = std::log(sum) - ((double)x[targets[r]] - mx);
  }
  Dev<float> dl(l), out(rows);
  Dev<int> dt(targets);
  out.poison();
  token_nll(dl.p, rows, vocab, dt.p, out.p, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = out.download();
  double err = rel_err(got, ref);
  for (int r = 0; r < rows; ++r)
    if (targets[r] < 0 && got[r] != 0.f) err = INFINITY;
  char name[128];
  std::snprintf(name, sizeof name, "token_nll rows=%d vocab=%d offset=%g", rows, vocab, offset);
  report(name, err, 1e-5);
}

}  // namespace xllama::kcheck
