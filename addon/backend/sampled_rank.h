// The one rule that turns top-k candidates into a sampled token, shared by the host pick (token_sampling.cc) and
// the GPU's (cuda/kernels_sample.cu) so the two agree: top-p, then min-p, then typical-p, then the uniform draw over
// what is left, as the host sampler does it (cli/engine/sampler.ts: topPFilter, minPFilter, typicalFilter,
// pickIndex). Plain C++ that nvcc also compiles for the device.
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define XLLAMA_HOST_DEVICE __host__ __device__
#else
#define XLLAMA_HOST_DEVICE
#endif

namespace xllama {

// top-p, then min-p: how many of the k candidates (weight[r]: the r-th most likely one's exp((logit_r - logit_0) /
// temperature), weight[0] = 1) stay. Top-p keeps the shortest prefix whose normalized mass reaches top_p (a candidate
// is kept while the mass before it is below top_p, at least one); min-p then keeps those whose weight is at least
// min_p x the top one's.
XLLAMA_HOST_DEVICE inline int kept_by_cuts(const double* weight, int k, float top_p, float min_p) {
  int n = k;
  if (top_p < 1.0f) {
    double total = 0.0;
    for (int r = 0; r < k; ++r) total += weight[r];
    double before = 0.0;
    n = 0;
    while (n < k && before < (double)top_p) before += weight[n++] / total;
    if (n < 1) n = 1;
  }
  if (min_p > 0.0f) {
    const double cut = (double)min_p * weight[0];
    int m = 0;
    while (m < n && weight[m] >= cut) ++m;
    n = m < 1 ? 1 : m;
  }
  return n;
}

// Locally typical sampling (HF's TypicalLogitsWarper; typicalFilter) over the n candidates the cuts leave, in parts
// the GPU runs a candidate per thread: with p_r = weight[r] / total, the entropy H = -sum p_r log p_r (typical_term
// gives each p_r log p_r, 0 where p_r is 0, and stores -log p_r in surprisal[r]); each candidate's distance
// |-log p_r - H| (typical_distance: infinite where p_r is 0); candidates in order of distance (typical_before: ties,
// and two infinite distances, to the more likely one) are kept until their mass reaches typical_p, the one that
// crosses it too (typical_mark: a negative dist[r] marks candidate r kept).
XLLAMA_HOST_DEVICE inline double typical_term(const double* weight, int r, double total, double* surprisal) {
  const double p = weight[r] / total;
  if (!(p > 0.0)) {
    surprisal[r] = (double)INFINITY;
    return 0.0;
  }
  const double lp = log(p);
  surprisal[r] = -lp;
  return p * lp;
}
XLLAMA_HOST_DEVICE inline double typical_distance(double surprisal, double entropy) {
  return surprisal == (double)INFINITY ? (double)INFINITY : fabs(surprisal - entropy);
}
XLLAMA_HOST_DEVICE inline bool typical_before(int a, int b, const double* dist) {
  if (dist[a] < dist[b]) return true;
  if (dist[b] < dist[a]) return false;
  return a < b;
}
// Where candidate r stands in that order (how many come before it): the GPU places every candidate at once.
XLLAMA_HOST_DEVICE inline int typical_position(int r, int n, const double* dist) {
  int before = 0;
  for (int s = 0; s < n; ++s) before += typical_before(s, r, dist);
  return before;
}
XLLAMA_HOST_DEVICE inline void typical_mark(const double* weight, double total, const int* order, int n,
                                            float typical_p, double* dist) {
  double mass = 0.0;
  for (int c = 0; c < n;) {
    const int r = order[c++];
    mass += weight[r] / total;
    dist[r] = -1.0;
    if (mass >= (double)typical_p) break;
  }
}

// Heap sort of order[0, n) by typical_before: the host's order (a whole vocabulary's candidates at most), the same
// as typical_position's.
XLLAMA_HOST_DEVICE inline void typical_sort(int* order, int n, const double* dist) {
  const auto sift_down = [&](int root, int end) {
    for (int child = 2 * root + 1; child < end; child = 2 * root + 1) {
      if (child + 1 < end && typical_before(order[child], order[child + 1], dist)) ++child;
      if (!typical_before(order[root], order[child], dist)) return;
      const int t = order[root];
      order[root] = order[child], order[child] = t;
      root = child;
    }
  };
  for (int i = n / 2 - 1; i >= 0; --i) sift_down(i, n);
  for (int end = n - 1; end > 0; --end) {
    const int t = order[0];
    order[0] = order[end], order[end] = t;
    sift_down(0, end);
  }
}

// The uniform draw over the n candidates left (with typical-p, those typical_mark marked): `uniform` in [0, 1) picks
// the first (most likely first) whose cumulative weight exceeds uniform x the kept total.
XLLAMA_HOST_DEVICE inline int drawn_rank(const double* weight, int n, bool typical, const double* dist, float uniform) {
  const auto kept = [&](int r) { return !typical || dist[r] < 0.0; };
  double kept_total = 0.0;
  int last = 0;
  for (int r = 0; r < n; ++r)
    if (kept(r)) kept_total += weight[r], last = r;
  const double target = (double)uniform * kept_total;
  double acc = 0.0;
  for (int r = 0; r < n; ++r) {
    if (!kept(r)) continue;
    acc += weight[r];
    if (acc > target) return r;
  }
  return last;
}

// The whole rule, one step after the other (the host's pick; the GPU's runs typical-p's parts a candidate per thread):
// the rank picked among the k candidates. dist and order: scratch of k each, used only with typical_p < 1.
XLLAMA_HOST_DEVICE inline int sampled_rank(const double* weight, int k, float top_p, float min_p, float typical_p,
                                           float uniform, double* dist, int* order) {
  const int n = kept_by_cuts(weight, k, top_p, min_p);
  const bool typical = typical_p < 1.0f;
  if (typical) {
    double total = 0.0, entropy = 0.0;
    for (int r = 0; r < n; ++r) total += weight[r];
    for (int r = 0; r < n; ++r) entropy -= typical_term(weight, r, total, dist);  // dist holds the surprisals
    for (int r = 0; r < n; ++r) dist[r] = typical_distance(dist[r], entropy), order[r] = r;
    typical_sort(order, n, dist);
    typical_mark(weight, total, order, n, typical_p, dist);
  }
  return drawn_rank(weight, n, typical, dist, uniform);
}

}  // namespace xllama
