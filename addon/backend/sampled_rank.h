// The one rule that turns top-k candidates into a sampled token, shared by the host pick (token_sampling.cc) and
// the GPU's (cuda/kernels_sample.cu) so the two agree: top-p, then min-p, then the uniform draw over what is left,
// as the host sampler does it (cli/engine/sampler.ts: topPFilter, minPFilter, pickIndex). Plain C++ that nvcc
// also compiles for the device.
#pragma once

#if defined(__CUDACC__)
#define XLLAMA_HOST_DEVICE __host__ __device__
#else
#define XLLAMA_HOST_DEVICE
#endif

namespace xllama {

// weight[r]: the r-th most likely candidate's exp((logit_r - logit_0) / temperature) (weight[0] = 1), r < k.
// Returns the rank picked: top-p keeps the shortest prefix whose normalized mass reaches top_p (a candidate is
// kept while the mass before it is below top_p, at least one); min-p then keeps those whose weight is at least
// min_p x the top one's; `uniform` in [0, 1) picks the first whose cumulative weight exceeds uniform x the kept
// total.
XLLAMA_HOST_DEVICE inline int sampled_rank(const double* weight, int k, float top_p, float min_p, float uniform) {
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
  double kept = 0.0;
  for (int r = 0; r < n; ++r) kept += weight[r];
  const double target = (double)uniform * kept;
  double acc = 0.0;
  for (int r = 0; r < n; ++r) {
    acc += weight[r];
    if (acc > target) return r;
  }
  return n - 1;
}

}  // namespace xllama
