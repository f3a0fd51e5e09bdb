// The kernel check's harness: random inputs, device buffers, error measures and the PASS/FAIL report, GPTQ
// test weights, timing helpers and the dummy models' shapes, shared by its suites (suites.h) and main.cu.
#pragma once
#include <cuda_fp16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <chrono>
#include <memory>

#ifdef XLLAMA_HAVE_CUBLAS
#include <cublasLt.h>
#include <cublas_v2.h>
#endif


#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/gemm_sm_targets.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/weight_repack.h"


namespace xllama::kcheck {

using namespace xllama;
using namespace xllama::cuda;

extern std::mt19937_64 rng;  // every random input comes from this one seeded generator, in call order
extern int failures;         // checks that failed so far (main's exit code)

float urand(float lo, float hi);

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { XL_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T))); }
  Dev(const std::vector<T>& v) : Dev(v.size()) { upload(v); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  void upload(const std::vector<T>& v) { XL_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> v(n);
    XL_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  void poison() { XL_CUDA_CHECK(cudaMemset(p, 0xff, n * sizeof(T))); }  // NaN for half and float
};

// The sampled pick's scratch (top_k_scratch_words), zeroed once as a stage's is.
struct TopKPickScratch {
  Dev<uint32_t> words;
  int vocab;
  explicit TopKPickScratch(int v) : words(top_k_scratch_words(v)), vocab(v) {
    XL_CUDA_CHECK(cudaMemset(words.p, 0, words.n * sizeof(uint32_t)));
  }
  TopKScratch get() const { return top_k_scratch(words.p, vocab); }
};

// A greedy pick's state on the device (GreedyPick's best and done, zeroed as a stage's are) and its output; feed:
// [pos, token] for a fed decode step (get(true)).
struct GreedyPickState {
  Dev<unsigned long long> best{1};
  Dev<unsigned> done{1};
  Dev<int> out{1}, feed{2};
  GreedyPickState() {
    XL_CUDA_CHECK(cudaMemset(best.p, 0, sizeof(unsigned long long)));
    XL_CUDA_CHECK(cudaMemset(done.p, 0, sizeof(unsigned)));
  }
  GreedyPick get(bool fed = false) const {
    return fed ? GreedyPick{best.p, done.p, out.p, feed.p + 1, feed.p} : GreedyPick{best.p, done.p, out.p};
  }
};

std::vector<__half> rand_half(size_t n, float lo, float hi);
std::vector<__half> to_half(const std::vector<float>& v);
inline double to_d(__half h) { return (double)__half2float(h); }
inline double to_d(float f) { return (double)f; }

// One row of RMSNorm as the fused GEMVs stage it: fp32 sum of squares (returned in *sum_sq), then fp16-rounded
// x · rsqrt(mean + eps) · w, widened to double for the reference product.
std::vector<double> rmsnorm_row_ref(const float* h, const std::vector<__half>& w, int K, float eps, float* sum_sq);

// max |got - ref| / max |ref| (NaN anywhere is a failure)
template <class T>
double rel_err(const std::vector<T>& got, const std::vector<double>& ref) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = to_d(got[i]);
    if (!std::isfinite(g)) return INFINITY;
    num = std::max(num, std::fabs(g - ref[i]));
    den = std::max(den, std::fabs(ref[i]));
  }
  return num / den;
}

// The row (of `width` values each) holding the largest absolute difference: whether an error is one row's or all's.
template <class T>
int worst_row(const std::vector<T>& got, const std::vector<double>& ref, int width) {
  size_t worst = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (std::fabs(to_d(got[i]) - ref[i]) > std::fabs(to_d(got[worst]) - ref[worst])) worst = i;
  return (int)(worst / width);
}

// Prints name / error / PASS or FAIL and counts a failure.
void report(const std::string& name, double err, double tol);

// A failure inside one whole-backend step is reported and the rest still runs.
template <class F>
void guarded(const std::string& what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    cudaGetLastError();
    std::printf("%-52s %12s  FAIL (%s)\n", what.c_str(), "-", e.what());
    ++failures;
  }
}

// ---- GPTQ checkpoint-format random linear ----
struct HostGptq {
  int K, N, gs, G;
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<__half> scales;
  LinearWeights view() const {
    LinearWeights l;
    l.in_features = K, l.out_features = N, l.group_size = gs;
    l.qweight = {qweight.data(), DType::I32, {K / 8, N}, "qweight"};
    l.qzeros = {qzeros.data(), DType::I32, {G, N / 8}, "qzeros"};
    l.scales = {scales.data(), DType::F16, {G, N}, "scales"};
    l.g_idx = {g_idx.data(), DType::I32, {K}, "g_idx"};
    return l;
  }
  int q(int k, int n) const { return (qweight[(size_t)(k / 8) * N + n] >> (4 * (k % 8))) & 15; }
  int z(int g, int n, int offset) const { return ((qzeros[(size_t)g * (N / 8) + n / 8] >> (4 * (n % 8))) & 15) + offset; }
  double w(int k, int n, int offset) const {
    const int g = g_idx[k];
    return to_d(scales[(size_t)g * N + n]) * (q(k, n) - z(g, n, offset));
  }
};

HostGptq make_gptq(int K, int N, int gs, bool act_order, bool asym);

struct DevQ {
  PackedQ4 pk;
  Dev<uint32_t> qw;
  Dev<__half> sc;
  Dev<uint8_t> zr;
  Dev<int> perm;
  QWeight q;
  explicit DevQ(const HostGptq& h, int offset)
      : pk(pack(h, offset)), qw(pk.qweight), sc(pk.scales), zr(pk.zeros), perm(pk.perm) {
    q.qweight = qw.p, q.scales = sc.p, q.zeros = pk.zeros.empty() ? nullptr : zr.p;
    q.perm = pk.perm.empty() ? nullptr : perm.p;
    q.K = pk.K, q.N = pk.N, q.group_size = pk.group_size, q.sym_zero = pk.sym_zero;
  }
  static PackedQ4 pack(const HostGptq& h, int offset) {
    GptqConfig cfg;
    cfg.zero_offset = offset;
    LinearWeights l = h.view();
    PackedQ4 pk;
    if (!pack_q4({&l}, cfg, pk)) throw std::runtime_error("pack_q4 refused a valid layout");
    return pk;
  }
};

// ---- timing ----
// Median milliseconds of f over `runs` (after `warm` untimed), timed with events on the legacy stream.
float median_ms(const std::function<void()>& f, int warm = 20, int runs = 200);
// Microseconds per call of f, launched `batch` times back to back as a decode graph would run it.
float batch_us(const std::function<void()>& f, int batch = 10, int runs = 30);
// Device-to-device copy bandwidth (bytes read + written per second), as xllama bench measures it.
double copy_bandwidth_gbs();

// ---- the whole backend on dummy models ----
ModelConfig dummy_config(int vocab, int hidden, int inter, int layers, int heads, int kv, int max_pos);
// The dummies' shapes (as xllama bench --dummy builds them), and a prompt of random token ids.
ModelConfig llama_7b_config();
ModelConfig llama_13b_config();
ModelConfig llama_70b_config();
std::vector<int32_t> random_tokens(int n, int vocab);

}  // namespace xllama::kcheck
