// xllama kernel check: runs every CUDA kernel of the backend on fresh random inputs against a
// straightforward float64 host reference, then times the decode GEMVs at 7B shapes.
//   xllama_kernel_check [--no-timing] [--tune] [--bench-prompt [7b]] [--prompt-attention] [--decode-attention]
//                       [--decode-step [quick]] [--bench-depths] [--time-attention]
//                       [--profile-step prefill|prefill2048|decode] [--bench-decode] [--bench-ablate] [--timeline]
//                       [--prompt-gemm] [--bench-dequant-ahead] [--gemm-algos] [--gemm-sm] [--backend-paths]
// --tune also times every 4-bit GEMV variant on the 7B/13B/70B decode shapes, then the prompt path's settings
// (dequantization tile, chunk) side by side; --decode-step [quick] runs only the persistent decode kernel's timings
// (quick: 7B at length 128, for a profiler); --bench-prompt times the prompt attention and the dummies' prompt
// speeds (--bench-prompt 7b: the 7B's 512 and 2048 only, as the backend is set);
// --prompt-attention / --decode-attention run only the prompt / decode attention's checks (for
// compute-sanitizer's racecheck); --bench-depths times decode at bench's depths on the dummies; --time-attention
// times the decode attention alone (XLLAMA_PROFILE_ONCE=1: two untimed launches per case, for ncu); --profile-step
// runs one 7B prompt chunk (512 or 2048 tokens) or decode step between cudaProfilerStart/Stop (ncu
// --profile-from-start off); --bench-decode times decode's variants (dots, where the norms apply) side by side;
// --bench-ablate times decode steps with parts left out (what they cost inside the graph); --timeline (a build with
// -DXLLAMA_KERNEL_TRACE=ON) shows when each decode kernel is released inside the graph and what its block 0 spends
// where. --prompt-gemm checks the prompt GEMMs, then times the fused Hopper GEMM against dequantization + cuBLAS
// on 7B and 70B shapes. --bench-dequant-ahead times a GEMM with the next tile's dequantization beside it, then the
// dummies' prompts with XLLAMA_DEQUANT_AHEAD off and on, side by side. --gemm-algos (cuBLAS builds) times the prompt
// GEMM shapes through cublasGemmEx's choice and every cublasLt heuristic candidate; --gemm-sm times them at SM-count
// targets from the GPU's down to 96. --backend-paths runs only the whole-backend path checks (decode steps against
// prompt chunks, sampling, decode pipelining, scoring) in every setting, for repeating them.
// Prints name / max rel err / PASS|FAIL; exits 1 on any failure.
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

#ifdef XLLAMA_HAVE_CUBLAS
#include <cublasLt.h>
#include <cublas_v2.h>
#endif

#include <chrono>
#include <memory>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/gemm_sm_targets.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/weight_repack.h"

using namespace xllama;
using namespace xllama::cuda;

namespace {

std::mt19937_64 rng(12345);
int failures = 0;

float urand(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

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

std::vector<__half> rand_half(size_t n, float lo, float hi) {
  std::vector<__half> v(n);
  for (auto& x : v) x = __float2half(urand(lo, hi));
  return v;
}

std::vector<__half> to_half(const std::vector<float>& v) {
  std::vector<__half> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = __float2half(v[i]);
  return h;
}

double to_d(__half h) { return (double)__half2float(h); }
double to_d(float f) { return (double)f; }

// One row of RMSNorm as the fused GEMVs stage it: fp32 sum of squares (returned in *sum_sq), then fp16-rounded
// x · rsqrt(mean + eps) · w, widened to double for the reference product.
std::vector<double> rmsnorm_row_ref(const float* h, const std::vector<__half>& w, int K, float eps, float* sum_sq) {
  double s2 = 0;
  for (int k = 0; k < K; ++k) s2 += (double)h[k] * h[k];
  *sum_sq = (float)s2;
  const double r = 1.0 / std::sqrt(s2 / K + eps);
  std::vector<double> x(K);
  for (int k = 0; k < K; ++k) x[k] = to_d(__float2half((float)(h[k] * r * to_d(w[k]))));
  return x;
}

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

void report(const std::string& name, double err, double tol) {
  const bool ok = err <= tol;
  if (!ok) ++failures;
  std::printf("%-52s %12.3e  %s\n", name.c_str(), err, ok ? "PASS" : "FAIL");
}

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

HostGptq make_gptq(int K, int N, int gs, bool act_order, bool asym) {
  HostGptq h{K, N, gs, (K + gs - 1) / gs, {}, {}, {}, {}};
  h.qweight.resize((size_t)K / 8 * N);
  for (auto& w : h.qweight) w = (int32_t)(uint32_t)rng();
  h.qzeros.resize((size_t)h.G * N / 8);
  // Asymmetric zeros as min-max quantization gives them for weights centred near 0: stored 5..9, around the codes'
  // mean 7.5. With zeros uniform over 0..15 (weights biased by up to 8 scale steps) one draw of the GPTQ backend
  // check put a single row of 100 (row 51) 0.3 apart between decode and prompt while every later row, which reads
  // that row's K and V, agreed to 2e-3; old and new prompt kernels alike: the random model, not a path.
  for (auto& z : h.qzeros) {
    uint32_t word = 0x77777777u;
    if (asym)
      for (int i = 0; i < 8; ++i) word = (word & ~(15u << (4 * i))) | ((5u + (uint32_t)(rng() % 5)) << (4 * i));
    z = (int32_t)word;
  }
  h.scales = rand_half((size_t)h.G * N, 0.002f, 0.02f);
  h.g_idx.resize(K);
  for (int k = 0; k < K; ++k) h.g_idx[k] = k / gs;
  if (act_order) std::shuffle(h.g_idx.begin(), h.g_idx.end(), rng);
  return h;
}

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

// The load path's GPU act-order permutation against pack_q4's host repack of the same checkpoint tensors.
void check_permute_q4(int K, int N, int gs) {
  HostGptq h = make_gptq(K, N, gs, true, false);
  GptqConfig cfg;
  LinearWeights l = h.view();
  PackedQ4 pk;
  if (!pack_q4({&l}, cfg, pk) || pk.perm.empty()) {
    report("permute_q4_rows: layout", INFINITY, 0);
    return;
  }
  Dev<uint32_t> raw(std::vector<uint32_t>(h.qweight.begin(), h.qweight.end())), out(pk.qweight.size());
  Dev<int> perm(pk.perm);
  out.poison();
  permute_q4_rows(raw.p, out.p, perm.p, K, N, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint32_t> got = out.download();
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != pk.qweight[i];
  report("permute_q4_rows (load path) " + std::to_string(K) + "x" + std::to_string(N) + " g" + std::to_string(gs) +
             " vs host repack (words differing)",
         (double)bad, 0);
}

// x uniform in +-x_range; with outliers, every 61st input 50x larger (as LLM activations have a few channels far
// above the rest): the fixed-point dot's blocks of 32 then hold one large and 31 small inputs. Each dot is
// reported on its own (every split of K).
void check_gemv_q4(int K, int N, int gs, int m, bool act_order, bool asym, int offset, float x_range = 1.f,
                   bool outliers = false) {
  HostGptq h = make_gptq(K, N, gs, act_order, asym);
  DevQ d(h, offset);
  std::vector<__half> x = rand_half((size_t)m * K, -x_range, x_range);
  if (outliers)
    for (size_t i = 0; i < x.size(); i += 61) x[i] = __float2half(__half2float(x[i]) * 50.f);
  std::vector<float> base(m * (size_t)N);
  for (auto& b : base) b = urand(-1.f, 1.f);
  std::vector<double> ref(base.size());
  for (int i = 0; i < m; ++i)
    for (int n = 0; n < N; ++n) {
      double s = base[(size_t)i * N + n];
      for (int k = 0; k < K; ++k) s += to_d(x[(size_t)i * K + k]) * h.w(k, n, offset);
      ref[(size_t)i * N + n] = s;
    }
  Dev<__half> dx(x);
  Dev<float> dy(base.size());
  for (GemvDot dot : {GemvDot::Half, GemvDot::Fixed}) {
    double worst = 0;
    for (const GemvQ4Config& c : gemv_q4_candidates()) {  // every split the tuning sweep times
      if (c.dot != dot) continue;
      dy.poison();
      dy.upload(base);  // the GEMV accumulates into y
      gemv_q4(d.q, dx.p, GemvInput::Half, m, K, dy.p, N, nullptr, c);
      XL_CUDA_CHECK(cudaDeviceSynchronize());
      worst = std::max(worst, rel_err(dy.download(), ref));
    }
    char name[160];
    std::snprintf(name, sizeof name, "gemv_q4 %dx%d g%d m=%d%s%s%s%s (%s dot)", K, N, gs, m,
                  act_order ? " act-order" : "", asym ? " asym" : "", x_range > 1.f ? " |x|<4000" : "",
                  outliers ? " outliers" : "", dot == GemvDot::Half ? "fp16" : "fixed-point");
    report(name, worst, 4e-3);
  }
}

// A NaN or infinite input must show in the outputs of both dots (the fixed-point scale carries it).
void check_gemv_q4_nonfinite() {
  const int K = 256, N = 128;
  HostGptq h = make_gptq(K, N, 128, false, false);
  DevQ d(h, 1);
  for (float bad : {NAN, INFINITY}) {
    std::vector<__half> x = rand_half(K, -1.f, 1.f);
    x[37] = __float2half(bad);
    Dev<__half> dx(x);
    Dev<float> dy(N);
    for (const GemvQ4Config& c : gemv_q4_candidates()) {
      XL_CUDA_CHECK(cudaMemset(dy.p, 0, N * 4));
      gemv_q4(d.q, dx.p, GemvInput::Half, 1, K, dy.p, N, nullptr, c);
      XL_CUDA_CHECK(cudaDeviceSynchronize());
      size_t finite = 0;
      for (float v : dy.download()) finite += std::isfinite(v);
      report(std::string("gemv_q4 ") + (std::isnan(bad) ? "NaN" : "inf") + " input shows in every output (" +
                 (c.dot == GemvDot::Half ? "fp16" : "fixed") +
                 (c.rows_per_warp ? " r" + std::to_string(c.rows_per_warp) : std::string(" rule")) +
                 ", outputs finite)",
             (double)finite, 0);
    }
  }
}

void check_gemv_q4_silu(int K, int N, int gs, int m, bool act_order) {
  HostGptq h = make_gptq(K, N, gs, act_order, false);
  DevQ d(h, 1);
  std::vector<float> gu((size_t)m * 2 * K);
  for (auto& v : gu) v = urand(-3.f, 3.f);
  std::vector<double> ref((size_t)m * N, 0.0);
  for (int i = 0; i < m; ++i)
    for (int k = 0; k < K; ++k) {
      const double g = gu[(size_t)i * 2 * K + k], u = gu[(size_t)i * 2 * K + K + k];
      const double xk = to_d(__float2half((float)(g / (1 + std::exp(-g)) * u)));
      for (int n = 0; n < N; ++n) ref[(size_t)i * N + n] += xk * h.w(k, n, 1);
    }
  Dev<float> dg(gu), dy((size_t)m * N);
  double worst = 0;
  for (const GemvQ4Config& c : gemv_q4_candidates()) {
    dy.poison();
    XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
    gemv_q4(d.q, dg.p, GemvInput::SiluGateUp, m, 2 * K, dy.p, N, nullptr, c);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    worst = std::max(worst, rel_err(dy.download(), ref));
  }
  char name[128];
  std::snprintf(name, sizeof name, "gemv_q4 + fused silu*up %dx%d m=%d%s (all variants)", K, N, m,
                act_order ? " act-order" : "");
  report(name, worst, 4e-3);

  // After a deferred gate/up: gate and up stored short of their row's factor r = rsqrt(ss / dim + eps), which the
  // GEMV applies from the row sums of squares.
  const int dim = 3000;
  const float eps = 1e-5f;
  std::vector<float> ss(m), gu_short(gu.size());
  for (int i = 0; i < m; ++i) {
    ss[i] = urand(0.5f, 20.f) * dim;
    const double r = 1.0 / std::sqrt((double)ss[i] / dim + eps);
    for (int k = 0; k < 2 * K; ++k) gu_short[(size_t)i * 2 * K + k] = (float)(gu[(size_t)i * 2 * K + k] / r);
  }
  Dev<float> dshort(gu_short), dss(ss);
  worst = 0;
  for (const GemvQ4Config& c : gemv_q4_candidates()) {
    GemvFusion f;
    f.in_sum_sq = dss.p, f.norm_dim = dim, f.eps = eps;
    dy.poison();
    XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
    gemv_q4(d.q, dshort.p, GemvInput::SiluGateUp, m, 2 * K, dy.p, N, nullptr, c, f);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    worst = std::max(worst, rel_err(dy.download(), ref));
  }
  std::snprintf(name, sizeof name, "gemv_q4 + fused silu*up after a deferred norm %dx%d m=%d%s", K, N, m,
                act_order ? " act-order" : "");
  report(name, worst, 4e-3);
}

// The buffers a fused kernel zeroes: poisoned before, all zero after.
struct PoisonedZeroFills {
  Dev<float> a, b;
  PoisonedZeroFills(size_t na, size_t nb) : a(na), b(nb) { a.poison(), b.poison(); }
  ZeroFill fill_a() const { return {a.p, a.n}; }
  ZeroFill fill_b() const { return {b.p, b.n}; }
  bool all_zero() const {
    for (const Dev<float>* d : {&a, &b})
      for (float v : d->download())
        if (v != 0.f) return false;
    return true;
  }
};

// RmsNorm input: y = base + rmsnorm(h) . W with the row sums of squares given (as the previous kernel leaves
// them); the host normalizes in double from its own sums and rounds to fp16 as rmsnorm does. Also checks
// the zeroing.
void check_gemv_q4_rmsnorm(int K, int N, int gs, int m, bool act_order) {
  HostGptq hq = make_gptq(K, N, gs, act_order, false);
  DevQ d(hq, 1);
  std::vector<float> h((size_t)m * K), base((size_t)m * N), ss(m);
  for (auto& v : h) v = urand(-3.f, 3.f);
  for (auto& v : base) v = urand(-1.f, 1.f);
  std::vector<__half> nw = rand_half(K, 0.5f, 1.5f);
  const float eps = 1e-5f;
  std::vector<double> ref((size_t)m * N);
  for (int i = 0; i < m; ++i) {
    const std::vector<double> x = rmsnorm_row_ref(&h[(size_t)i * K], nw, K, eps, &ss[i]);
    for (int n = 0; n < N; ++n) {
      double acc = base[(size_t)i * N + n];
      for (int k = 0; k < K; ++k) acc += x[k] * hq.w(k, n, 1);
      ref[(size_t)i * N + n] = acc;
    }
  }
  Dev<float> dh(h), dss(ss), dy(base.size());
  Dev<__half> dnw(nw);
  double worst = 0;
  bool zeroed = true;
  for (const GemvQ4Config& c : gemv_q4_candidates()) {
    PoisonedZeroFills z(777 + m, 5 + m);
    GemvFusion f;
    f.in_sum_sq = dss.p, f.in_norm = dnw.p, f.eps = eps;
    f.zero[0] = z.fill_a(), f.zero[1] = z.fill_b();
    dy.poison();
    dy.upload(base);
    gemv_q4(d.q, dh.p, GemvInput::RmsNorm, m, K, dy.p, N, nullptr, c, f);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    worst = std::max(worst, rel_err(dy.download(), ref));
    zeroed = zeroed && z.all_zero();
  }
  char name[128];
  std::snprintf(name, sizeof name, "gemv_q4 + fused rmsnorm (+ zeroing) %dx%d m=%d%s", K, N, m,
                act_order ? " act-order" : "");
  report(name, zeroed ? worst : INFINITY, 4e-3);

  // Deferred: y = (h * norm) . W, each row short of its factor r, and the row sums of squares added into in_sum_sq
  // (which starts from 1 here, so it must be added to, not written). r * y against the same reference.
  double worst_def = 0, worst_ss = 0;
  for (const GemvQ4Config& c : gemv_q4_candidates()) {
    if (c.dot != GemvDot::Fixed) continue;
    Dev<float> acc_ss(std::vector<float>(m, 1.f));
    GemvFusion f;
    f.in_sum_sq = acc_ss.p, f.in_norm = dnw.p, f.eps = eps;
    dy.poison();
    XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
    gemv_q4(d.q, dh.p, GemvInput::RmsNormDeferred, m, K, dy.p, N, nullptr, c, f);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> y = dy.download(), got_ss = acc_ss.download();
    std::vector<float> scaled(y.size());
    std::vector<double> ref_part(y.size()), ref_ss(m);
    for (int i = 0; i < m; ++i) {
      ref_ss[i] = 1.0 + ss[i];
      const double r = 1.0 / std::sqrt((double)ss[i] / K + eps);
      for (int n = 0; n < N; ++n) {
        scaled[(size_t)i * N + n] = (float)(r * y[(size_t)i * N + n]);
        ref_part[(size_t)i * N + n] = ref[(size_t)i * N + n] - base[(size_t)i * N + n];
      }
    }
    worst_def = std::max(worst_def, rel_err(scaled, ref_part));
    worst_ss = std::max(worst_ss, rel_err(got_ss, ref_ss));
  }
  std::snprintf(name, sizeof name, "gemv_q4 + deferred rmsnorm %dx%d m=%d%s (fixed dot)", K, N, m,
                act_order ? " act-order" : "");
  report(name, worst_def, 4e-3);
  report("  its row sums of squares (added)", worst_ss, 1e-5);
}

// Output sums of squares: after y += x . W, out_sum_sq[i] += sum_n y[i, n]^2 (the final y), for every split
// of K (the column counters must come back to zero for the next launch, which the next variant relies on).
void check_gemv_q4_sum_sq(int K, int N, int gs, int m, GemvInput input) {
  HostGptq hq = make_gptq(K, N, gs, false, false);
  DevQ d(hq, 1);
  const bool silu = input == GemvInput::SiluGateUp;
  std::vector<float> base((size_t)m * N), gu(silu ? (size_t)m * 2 * K : 0);
  std::vector<__half> x = rand_half(silu ? 0 : (size_t)m * K, -1.f, 1.f);
  for (auto& v : base) v = urand(-1.f, 1.f);
  for (auto& v : gu) v = urand(-3.f, 3.f);
  std::vector<double> ref((size_t)m * N);
  for (int i = 0; i < m; ++i) {
    std::vector<double> xi(K);
    for (int k = 0; k < K; ++k) {
      if (silu) {
        const double g = gu[(size_t)i * 2 * K + k], u = gu[(size_t)i * 2 * K + K + k];
        xi[k] = to_d(__float2half((float)(g / (1 + std::exp(-g)) * u)));
      } else {
        xi[k] = to_d(x[(size_t)i * K + k]);
      }
    }
    for (int n = 0; n < N; ++n) {
      double acc = base[(size_t)i * N + n];
      for (int k = 0; k < K; ++k) acc += xi[k] * hq.w(k, n, 1);
      ref[(size_t)i * N + n] = acc;
    }
  }
  Dev<__half> dx(x);
  Dev<float> dgu(gu), dy(base.size()), dss(m);
  Dev<unsigned> done((N + 127) / 128);
  XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
  double worst = 0, worst_ss = 0;
  for (const GemvQ4Config& c : gemv_q4_candidates()) {
    GemvFusion f;
    f.out_sum_sq = dss.p, f.col_done = done.p;
    XL_CUDA_CHECK(cudaMemset(dss.p, 0, dss.n * 4));
    dy.poison();
    dy.upload(base);
    gemv_q4(d.q, silu ? (const void*)dgu.p : (const void*)dx.p, input, m, silu ? 2 * K : K, dy.p, N, nullptr, c, f);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> y = dy.download();
    worst = std::max(worst, rel_err(y, ref));
    // the sums must be those of the final y (a block that squared values before every K slice was added would
    // be far off); y itself is checked against the float64 reference above
    std::vector<double> ref_ss(m, 0.0);
    for (int i = 0; i < m; ++i)
      for (int n = 0; n < N; ++n) ref_ss[i] += (double)y[(size_t)i * N + n] * y[(size_t)i * N + n];
    worst_ss = std::max(worst_ss, rel_err(dss.download(), ref_ss));
  }
  for (unsigned v : done.download())
    if (v != 0) worst_ss = INFINITY;
  char name[128];
  std::snprintf(name, sizeof name, "gemv_q4%s (sums of squares on) %dx%d m=%d", silu ? " silu" : "", K, N, m);
  report(name, worst, 4e-3);
  std::snprintf(name, sizeof name, "  its row sums of squares (+ counters left zero)");
  report(name, worst_ss, 1e-5);
}

// Embedding rows (decode form: + row sums of squares + zeroing).
void check_embed(int m, int hidden, int vocab) {
  std::vector<__half> table = rand_half((size_t)vocab * hidden, -1.f, 1.f);
  std::vector<int> toks(m);
  for (auto& t : toks) t = (int)(rng() % vocab);
  std::vector<double> ref((size_t)m * hidden), ref_ss(m, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < hidden; ++j) {
      const double v = to_d(table[(size_t)toks[i] * hidden + j]);
      ref[(size_t)i * hidden + j] = v;
      ref_ss[i] += v * v;
    }
  Dev<__half> dt(table);
  Dev<int> dtok(toks);
  Dev<float> h(ref.size()), ss(m);
  h.poison(), ss.poison();
  PoisonedZeroFills z(3000, 8);
  embed_rows(dt.p, dtok.p, m, hidden, h.p, nullptr, ss.p, z.fill_a(), z.fill_b());
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const double err = std::max(rel_err(h.download(), ref), rel_err(ss.download(), ref_ss));
  report("embed + row sums of squares (+ zeroing) m=" + std::to_string(m) + " n=" + std::to_string(hidden),
         z.all_zero() ? err : INFINITY, 1e-5);
}

// The fused Hopper GEMM (dequantization in the A fragments), where this GPU runs it: fp32 accumulate (twice: 2 ref)
// and fp16 overwrite, against the float64 reference.
void check_gemm_q4_wgmma(const QWeight& q, const Dev<__half>& dx, int m, const std::vector<double>& ref,
                         bool act_order) {
  if (!gemm_q4_wgmma_supported()) {
    std::printf("prefill gemm (fused wgmma): skipped, this GPU does not run sm_90a code\n");
    return;
  }
  if (!gemm_q4_wgmma_fits(q)) throw std::runtime_error("check_gemm_q4_wgmma: shape does not fit the kernel");
  Dev<__half> xw((size_t)m * q.K);
  xw.poison();
  gemm_q4_wgmma_input(dx.p, m, q.K, q.K, q.perm, xw.p, nullptr);
  Dev<float> dy((size_t)m * q.N);
  XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
  gemm_q4_wgmma(q, xw.p, m, dy.p, q.N, true, nullptr);
  gemm_q4_wgmma(q, xw.p, m, dy.p, q.N, true, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> ref2(ref);
  for (double& v : ref2) v *= 2;
  char name[128];
  std::snprintf(name, sizeof name, "prefill gemm (fused wgmma, accumulated twice) %dx%d m=%d%s%s", q.K, q.N, m,
                act_order ? " act-order" : "", q.zeros ? " asym" : "");
  report(name, rel_err(dy.download(), ref2), 4e-3);
  Dev<__half> dyh((size_t)m * q.N);
  dyh.poison();
  gemm_q4_wgmma(q, xw.p, m, dyh.p, q.N, false, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  std::snprintf(name, sizeof name, "prefill gemm (fused wgmma, fp16 out) %dx%d m=%d%s%s", q.K, q.N, m,
                act_order ? " act-order" : "", q.zeros ? " asym" : "");
  report(name, rel_err(dyh.download(), ref), 4e-3);
}

// dequant_q4 (the prompt path's fp16 weights, also what the fused GEMM rounds to) against the host's
// fp16(scale * (q - zero)) of the packed layout, bit for bit, over the column range [n0, n1).
void check_dequant_q4_exact(int K, int N, int gs, bool act_order, bool asym, int n0, int n1) {
  const HostGptq h = make_gptq(K, N, gs, act_order, asym);
  DevQ d(h, 1);
  const int nc = n1 - n0;
  Dev<__half> deq((size_t)K * nc);
  deq.poison();
  dequant_q4(d.q, n0, n1, deq.p, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<__half> got = deq.download();
  const PackedQ4& pk = d.pk;
  size_t differ = 0;
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < nc; ++c) {
      const int n = n0 + c, g = k / pk.group_size;
      const int q = (int)((pk.qweight[(size_t)(k / 8) * N + n] >> (4 * (k % 8))) & 15u);
      const int z = pk.zeros.empty() ? pk.sym_zero : pk.zeros[(size_t)g * N + n];
      const __half want = __float2half(__half2float(pk.scales[(size_t)g * N + n]) * (float)(q - z));
      const __half have = got[(size_t)k * nc + c];
      differ += std::memcmp(&want, &have, sizeof(__half)) != 0;
    }
  char what[160];
  std::snprintf(what, sizeof what, "dequant_q4 == fp16(scale * (q - zero)) %dx%d cols %d-%d%s%s (halves differing)",
                K, N, n0, n1, act_order ? " act-order" : "", asym ? " asym" : " sym");
  report(what, (double)differ, 0);
}

void check_gemm_q4(int K, int N, int gs, int m, bool act_order) {
  HostGptq h = make_gptq(K, N, gs, act_order, true);
  DevQ d(h, 1);
  std::vector<__half> x = rand_half((size_t)m * K, -1.f, 1.f);
  std::vector<double> ref((size_t)m * N, 0.0);
  for (int i = 0; i < m; ++i)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += to_d(x[(size_t)i * K + k]) * h.w(k, n, 1);
      ref[(size_t)i * N + n] = s;
    }
  Dev<__half> dx(x), xp((size_t)m * K), deq((size_t)K * N);
  Dev<float> dy((size_t)m * N);
  const __half* a = dx.p;
  if (d.q.perm) {
    gather_columns(dx.p, m, K, K, d.q.perm, xp.p, nullptr);
    a = xp.p;
  }
  deq.poison();
  dequant_q4(d.q, 0, N, deq.p, nullptr);
  {  // the side stream's launch (DequantAhead) writes the same halves
    Dev<__half> deq2((size_t)K * N);
    deq2.poison();
    dequant_q4(d.q, 0, N, deq2.p, nullptr, /*beside=*/true);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<__half> a1 = deq.download(), a2 = deq2.download();
    const int differ = std::memcmp(a1.data(), a2.data(), a1.size() * sizeof(__half)) != 0;
    char what[128];
    std::snprintf(what, sizeof what, "dequant_q4 beside == in line %dx%d%s (differs)", K, N,
                  act_order ? " act-order" : "");
    report(what, differ, 0);
  }
  char name[128];
  std::snprintf(name, sizeof name, "prefill gemm (dequant+wmma) %dx%d m=%d%s", K, N, m, act_order ? " act-order" : "");
  XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
  gemm_f16_wmma(a, K, deq.p, N, true, dy.p, N, m, N, K, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  report(name, rel_err(dy.download(), ref), 4e-3);
  Dev<__half> dyh((size_t)m * N);  // fp16 output (a prompt chunk's q/k/v, gate/up): overwritten
  dyh.poison();
  gemm_f16_wmma(a, K, deq.p, N, true, dyh.p, N, m, N, K, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  std::snprintf(name, sizeof name, "prefill gemm (dequant+wmma, fp16 out) %dx%d m=%d%s", K, N, m,
                act_order ? " act-order" : "");
  report(name, rel_err(dyh.download(), ref), 4e-3);
#ifdef XLLAMA_HAVE_CUBLAS
  cublasHandle_t hb;
  cublasCreate(&hb);
  XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
  const float one = 1.f;
  cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, deq.p, CUDA_R_16F, N, a, CUDA_R_16F, K, &one, dy.p,
               CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  cublasDestroy(hb);
  std::snprintf(name, sizeof name, "prefill gemm (dequant+cuBLAS) %dx%d m=%d%s", K, N, m, act_order ? " act-order" : "");
  report(name, rel_err(dy.download(), ref), 4e-3);
  cublasCreate(&hb);
  dyh.poison();
  const float zero = 0.f;
  cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, deq.p, CUDA_R_16F, N, a, CUDA_R_16F, K, &zero, dyh.p,
               CUDA_R_16F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  cublasDestroy(hb);
  std::snprintf(name, sizeof name, "prefill gemm (dequant+cuBLAS, fp16 out) %dx%d m=%d%s", K, N, m,
                act_order ? " act-order" : "");
  report(name, rel_err(dyh.download(), ref), 4e-3);
#endif
  check_gemm_q4_wgmma(d.q, dx, m, ref, act_order);
}

void check_dense(int K, int N, int m, bool use_gemm) {
  std::vector<__half> w = rand_half((size_t)N * K, -0.05f, 0.05f), x = rand_half((size_t)m * K, -1.f, 1.f),
                      b = rand_half(N, -0.5f, 0.5f);
  std::vector<double> ref((size_t)m * N);
  for (int i = 0; i < m; ++i)
    for (int n = 0; n < N; ++n) {
      double s = use_gemm ? 0.0 : to_d(b[n]);
      for (int k = 0; k < K; ++k) s += to_d(x[(size_t)i * K + k]) * to_d(w[(size_t)n * K + k]);
      ref[(size_t)i * N + n] = s;
    }
  Dev<__half> dw(w), dx(x), db(b);
  Dev<float> dy((size_t)m * N);
  XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
  if (use_gemm)
    gemm_f16_wmma(dx.p, K, dw.p, K, false, dy.p, N, m, N, K, nullptr);
  else
    gemv_f16(dw.p, db.p, K, N, dx.p, m, K, dy.p, N, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  char name[128];
  std::snprintf(name, sizeof name, "%s fp16 %dx%d m=%d", use_gemm ? "gemm_wmma [N,K]" : "gemv", K, N, m);
  report(name, rel_err(dy.download(), ref), 3e-3);
}

// The decode lm_head: y = rmsnorm(h) . W^T + b written over a poisoned y, from the row sums of squares given;
// the host normalizes in double from its own sums and rounds to fp16 as rmsnorm does.
void check_gemv_f16_rmsnorm(int K, int N, int m) {
  std::vector<__half> w = rand_half((size_t)N * K, -0.05f, 0.05f), b = rand_half(N, -0.5f, 0.5f),
                      nw = rand_half(K, 0.5f, 1.5f);
  std::vector<float> h((size_t)m * K), ss(m);
  for (auto& v : h) v = urand(-3.f, 3.f);
  const float eps = 1e-5f;
  std::vector<double> ref((size_t)m * N);
  for (int i = 0; i < m; ++i) {
    const std::vector<double> x = rmsnorm_row_ref(&h[(size_t)i * K], nw, K, eps, &ss[i]);
    for (int n = 0; n < N; ++n) {
      double acc = to_d(b[n]);
      for (int k = 0; k < K; ++k) acc += x[k] * to_d(w[(size_t)n * K + k]);
      ref[(size_t)i * N + n] = acc;
    }
  }
  Dev<__half> dw(w), db(b), dnw(nw);
  Dev<float> dh(h), dss(ss), dy((size_t)m * N);
  dy.poison();
  gemv_f16_rmsnorm(dw.p, db.p, K, N, dh.p, K, dss.p, dnw.p, eps, m, dy.p, N, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  char name[128];
  std::snprintf(name, sizeof name, "gemv fp16 + fused rmsnorm (writes) %dx%d m=%d", K, N, m);
  report(name, rel_err(dy.download(), ref), 4e-3);
}

void check_rmsnorm(int m, int n) {
  std::vector<float> x(m * (size_t)n);
  for (auto& v : x) v = urand(-3.f, 3.f);
  std::vector<__half> w = rand_half(n, 0.5f, 1.5f);
  std::vector<double> ref(x.size());
  for (int i = 0; i < m; ++i) {
    double ss = 0;
    for (int j = 0; j < n; ++j) ss += (double)x[(size_t)i * n + j] * x[(size_t)i * n + j];
    const double r = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int j = 0; j < n; ++j) ref[(size_t)i * n + j] = x[(size_t)i * n + j] * r * to_d(w[j]);
  }
  Dev<float> dx(x);
  Dev<__half> dw(w), dy(x.size());
  dy.poison();
  Dev<float> zb(5000);
  zb.poison();
  rmsnorm(dx.p, n, m, n, dw.p, 1e-5f, dy.p, n, nullptr, zb.p, zb.n);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const double zero_err = rel_err(zb.download(), std::vector<double>(zb.n, 0.0));  // den is 1e-30: any non-zero fails
  report("rmsnorm (+ zeroing) m=" + std::to_string(m) + " n=" + std::to_string(n),
         std::max(rel_err(dy.download(), ref), zero_err > 0 ? INFINITY : 0.0), 2e-3);
}

// half_input: gate/up as a prompt chunk's fp16 GEMM output leaves them (the reference takes the same rounded values).
void check_silu(int m, int I, bool half_input = false) {
  std::vector<float> gu((size_t)m * 2 * I);
  for (auto& v : gu) v = half_input ? __half2float(__float2half(urand(-4.f, 4.f))) : urand(-4.f, 4.f);
  std::vector<double> ref((size_t)m * I);
  for (int i = 0; i < m; ++i)
    for (int c = 0; c < I; ++c) {
      const double g = gu[(size_t)i * 2 * I + c], u = gu[(size_t)i * 2 * I + I + c];
      ref[(size_t)i * I + c] = g / (1 + std::exp(-g)) * u;
    }
  Dev<float> dg(gu);
  Dev<__half> dgh(to_half(gu));
  Dev<__half> dy(ref.size());
  dy.poison();
  if (half_input) silu_mul(dgh.p, m, I, dy.p, nullptr);
  else silu_mul(dg.p, m, I, dy.p, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  report(std::string("silu_mul ") + (half_input ? "fp16 in " : "") + "m=" + std::to_string(m) + " I=" + std::to_string(I),
         rel_err(dy.download(), ref), 2e-3);
}

void check_rope(int m, int H, int KV, int D, int pos, int S, bool half_input = false) {
  const int width = (H + 2 * KV) * D;
  std::vector<float> qkv((size_t)m * width);
  for (auto& v : qkv) v = half_input ? __half2float(__float2half(urand(-2.f, 2.f))) : urand(-2.f, 2.f);
  std::vector<float> inv(D / 2);
  for (int i = 0; i < D / 2; ++i) inv[i] = (float)(1.0 / std::pow(500000.0, (double)(float)(2 * i) / D));
  std::vector<double> rq((size_t)m * H * D), rk((size_t)KV * S * D, 0.0), rv((size_t)KV * S * D, 0.0);
  for (int i = 0; i < m; ++i) {
    const int p = pos + i;
    for (int h = 0; h < H + 2 * KV; ++h) {
      const float* src = &qkv[(size_t)i * width + (size_t)h * D];
      for (int j = 0; j < D / 2; ++j) {
        const double ang = (double)((float)p * inv[j]);
        double a = src[j], b = src[j + D / 2];
        if (h < H + KV) {
          const double ra = a * std::cos(ang) - b * std::sin(ang), rb = b * std::cos(ang) + a * std::sin(ang);
          a = ra, b = rb;
        }
        double* dst = h < H ? &rq[((size_t)i * H + h) * D]
                            : h < H + KV ? &rk[((size_t)(h - H) * S + p) * D] : &rv[((size_t)(h - H - KV) * S + p) * D];
        dst[j] = a, dst[j + D / 2] = b;
      }
    }
  }
  Dev<float> dq(qkv), di(inv);
  Dev<__half> dqh(to_half(qkv));
  Dev<int> dp(std::vector<int>{pos});
  Dev<__half> oq(rq.size()), ok(rk.size()), ov(rv.size());
  oq.poison();
  XL_CUDA_CHECK(cudaMemset(ok.p, 0, ok.n * 2));
  XL_CUDA_CHECK(cudaMemset(ov.p, 0, ov.n * 2));
  if (half_input) rope_qkv_to_cache(dqh.p, m, H, KV, D, di.p, dp.p, oq.p, ok.p, ov.p, S, nullptr);
  else rope_qkv_to_cache(dq.p, m, H, KV, D, di.p, dp.p, oq.p, ok.p, ov.p, S, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const double e = std::max({rel_err(oq.download(), rq), rel_err(ok.download(), rk), rel_err(ov.download(), rv)});
  report(std::string("rope+kv write ") + (half_input ? "fp16 in " : "") + "m=" + std::to_string(m) + " D=" +
             std::to_string(D) + " pos=" + std::to_string(pos),
         e, 2e-3);
}

// The decode attention's block size and softmax update in a check's name.
const char* attn_threads_tag() {
  if (attention_threads_flag() >= 256) return attention_batch_flag() ? " [256 threads]" : " [256 threads, 1 by 1]";
  return attention_batch_flag() ? " [128 threads]" : " [128 threads, 1 by 1]";
}

// Decode attention with RoPE fused: host RoPE (as check_rope) of the new rows, host attention over the
// cache (old random positions + the new ones); checks the output and the k, v the kernel wrote.
void check_attention_rope(int m, int H, int KV, int D, int pos, int S) {
  const int width = (H + 2 * KV) * D, half_d = D / 2;
  std::vector<float> qkv((size_t)m * width);
  for (auto& v : qkv) v = urand(-2.f, 2.f);
  std::vector<float> inv(half_d);
  for (int i = 0; i < half_d; ++i) inv[i] = (float)(1.0 / std::pow(10000.0, (double)(float)(2 * i) / D));
  std::vector<__half> kc = rand_half((size_t)KV * S * D, -1.f, 1.f), vc = rand_half((size_t)KV * S * D, -1.f, 1.f);
  std::vector<double> rk(kc.size()), rv(vc.size()), rq((size_t)m * H * D);
  for (size_t i = 0; i < kc.size(); ++i) rk[i] = to_d(kc[i]), rv[i] = to_d(vc[i]);
  for (int i = 0; i < m; ++i) {
    const int p = pos + i;
    for (int h = 0; h < H + 2 * KV; ++h) {
      const float* src = &qkv[(size_t)i * width + (size_t)h * D];
      for (int j = 0; j < half_d; ++j) {
        const double ang = (double)((float)p * inv[j]);
        double a = src[j], b = src[j + half_d];
        if (h < H + KV) {
          const double ra = a * std::cos(ang) - b * std::sin(ang), rb = b * std::cos(ang) + a * std::sin(ang);
          a = ra, b = rb;
        }
        double* dst = h < H ? &rq[((size_t)i * H + h) * D]
                            : h < H + KV ? &rk[((size_t)(h - H) * S + p) * D] : &rv[((size_t)(h - H - KV) * S + p) * D];
        dst[j] = a, dst[j + half_d] = b;
      }
    }
  }
  std::vector<double> ref((size_t)m * H * D);
  const double scale = 1.0 / std::sqrt((double)D);
  for (int i = 0; i < m; ++i)
    for (int h = 0; h < H; ++h) {
      const int kvh = h / (H / KV), L = pos + i + 1;
      std::vector<double> sc(L);
      double mx = -1e300, sum = 0;
      for (int p = 0; p < L; ++p) {
        double d = 0;
        for (int t = 0; t < D; ++t) d += rq[((size_t)i * H + h) * D + t] * rk[((size_t)kvh * S + p) * D + t];
        sc[p] = d * scale, mx = std::max(mx, sc[p]);
      }
      for (auto& v : sc) sum += (v = std::exp(v - mx));
      for (int t = 0; t < D; ++t) {
        double o = 0;
        for (int p = 0; p < L; ++p) o += sc[p] * rv[((size_t)kvh * S + p) * D + t];
        ref[((size_t)i * H + h) * D + t] = o / sum;
      }
    }
  const int splits = attention_splits(m, H, S);
  Dev<float> dqkv(qkv), dinv(inv), work((size_t)m * H * splits * (D + 2));
  Dev<__half> dk(kc), dv(vc), out(ref.size());
  Dev<int> dp(std::vector<int>{pos});
  Dev<unsigned> done((size_t)m * H);
  XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
  double e = 0;
  for (int call = 0; call < 2; ++call) {  // the second call relies on the first leaving the counters zero
    out.poison();
    attention_rope(dqkv.p, dinv.p, dk.p, dv.p, m, H, KV, D, S, dp.p, splits, work.p, done.p, out.p, nullptr);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    e = std::max({e, rel_err(out.download(), ref), rel_err(dk.download(), rk), rel_err(dv.download(), rv)});
  }
  char name[160];
  std::snprintf(name, sizeof name, "attention+rope m=%d H=%d KV=%d D=%d pos=%d splits=%d%s", m, H, KV, D, pos, splits,
                attn_threads_tag());
  report(name, e, 3e-3);

}

void check_attention(int m, int H, int KV, int D, int len_after, int S, bool prefill_splits,
                     int min_keys = kAttnMinKeysPerSplit) {
  // Rows are positions len_after - m .. len_after - 1; the cache holds len_after positions.
  const int pos = len_after - m;
  std::vector<__half> q = rand_half((size_t)m * H * D, -1.f, 1.f), kc = rand_half((size_t)KV * S * D, -1.f, 1.f),
                      vc = rand_half((size_t)KV * S * D, -1.f, 1.f);
  std::vector<double> ref((size_t)m * H * D);
  const double scale = 1.0 / std::sqrt((double)D);
  for (int i = 0; i < m; ++i)
    for (int h = 0; h < H; ++h) {
      const int kvh = h / (H / KV), L = pos + i + 1;
      std::vector<double> s(L);
      double mx = -1e300;
      for (int p = 0; p < L; ++p) {
        double d = 0;
        for (int t = 0; t < D; ++t)
          d += to_d(q[((size_t)i * H + h) * D + t]) * to_d(kc[((size_t)kvh * S + p) * D + t]);
        s[p] = d * scale, mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (auto& v : s) sum += (v = std::exp(v - mx));
      for (int t = 0; t < D; ++t) {
        double o = 0;
        for (int p = 0; p < L; ++p) o += s[p] * to_d(vc[((size_t)kvh * S + p) * D + t]);
        ref[((size_t)i * H + h) * D + t] = o / sum;
      }
    }
  const int splits = prefill_splits ? 1 : attention_splits(m, H, S);
  Dev<__half> dq(q), dk(kc), dv(vc), out(ref.size());
  Dev<int> dp(std::vector<int>{pos});
  Dev<float> work((size_t)m * H * splits * (D + 2));
  Dev<unsigned> done((size_t)m * H);
  XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
  double worst = 0;
  for (int call = 0; call < 2; ++call) {  // the second call relies on the first leaving the counters zero
    out.poison();
    work.poison();
    if (prefill_splits)
      attention_prefill(dq.p, dk.p, dv.p, m, H, KV, D, S, dp.p, out.p, nullptr);
    else
      attention(dq.p, dk.p, dv.p, m, H, KV, D, S, dp.p, splits, work.p, done.p, out.p, nullptr, min_keys);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    worst = std::max(worst, rel_err(out.download(), ref));
  }
  char name[128];
  std::snprintf(name, sizeof name, "%s m=%d H=%d KV=%d D=%d len=%d splits=%d%s%s",
                prefill_splits ? "attention_prefill" : "attention", m, H, KV, D, len_after, splits,
                min_keys != kAttnMinKeysPerSplit ? " min_keys=1" : "", prefill_splits ? "" : attn_threads_tag());
  report(name, worst, 3e-3);
}

// The decode attention's cases, for the block size and softmax update attention_threads_flag() and
// attention_batch_flag() set (also alone: --decode-attention, e.g. under compute-sanitizer's racecheck).
void check_decode_attention() {
  check_attention(1, 8, 2, 128, 1, 64, false);
  check_attention(1, 8, 2, 128, 100, 256, false);
  check_attention(1, 32, 32, 128, 2048, 2048, false);  // 17 splits: the combine takes them in two chunks
  check_attention(1, 8, 1, 128, 16384, 16384, false);  // 64 splits
  check_attention(5, 8, 4, 64, 300, 512, false);
  check_attention(3, 8, 4, 8, 20, 32, false);
  check_attention(1, 8, 2, 128, 20, 2048, false, 1);  // 17 splits of 2 keys for 20: the last ones have none
  check_attention_rope(1, 32, 32, 128, 0, 64);     // the first position
  check_attention_rope(1, 8, 2, 128, 1000, 1100);  // GQA, many splits
  check_attention_rope(5, 8, 4, 64, 300, 512);     // several rows: new positions across splits
  check_attention_rope(3, 8, 4, 8, 20, 32);        // head_dim 8
  check_attention_rope(1, 32, 32, 128, 40, 2048);  // 17 splits in the grid, one live: no combine
  check_attention_rope(2, 4, 4, 256, 700, 1024);   // head_dim 256
  // rows whose live lengths (61..68) straddle kAttnMinKeysPerSplit: one and two live splits in one launch
  for (int m = 1; m <= kGemvMaxRows; ++m) check_attention_rope(m, 8, 2, 128, 60, 1024);
  check_attention(4, 8, 2, 128, 130, 2048, false);  // live splits 2 and 3 of 17 in one launch, called twice
  check_attention_rope(1, 64, 8, 128, 2047, 4096);  // the 70B at depth 2048
  check_attention_rope(1, 32, 8, 128, 3000, 4096);  // Llama-3 8B's heads
  check_attention_rope(8, 64, 8, 128, 1500, 2048);  // 8 rows of the 70B
  check_attention_rope(1, 8, 1, 128, 16383, 16384); // one KV head, the last position of a long cache
}

// The prompt attention's cases (also alone: --prompt-attention, e.g. under compute-sanitizer's racecheck).
void check_prompt_attention() {
  check_attention(64, 4, 2, 128, 200, 256, true);
  check_attention(37, 4, 4, 64, 37, 64, true);      // a first chunk: rows at positions 0..36
  check_attention(100, 8, 2, 128, 612, 700, true);  // a later chunk over an existing cache
  check_attention(300, 4, 2, 128, 300, 320, true);  // a first chunk of 5 row tiles (the longest run first)
  check_attention(130, 4, 1, 64, 1130, 1200, true); // 18 key tiles through the two-stage ring, D 64
  check_attention(20, 8, 4, 8, 30, 32, true);       // head_dim 8: falls back to the split kernel
}

int ref_sample(const std::vector<float>& l, int k, float T, float u) {
  std::vector<int> idx(l.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
  if (T <= 0) return idx[0];
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += std::exp((double)((l[idx[i]] - l[idx[0]]) / T));
  double acc = 0;
  for (int i = 0; i < k; ++i) {
    acc += std::exp((double)((l[idx[i]] - l[idx[0]]) / T));
    if (acc > u * sum) return idx[i];
  }
  return idx[k - 1];
}

// Whether the host rule's choice between tokens a and b on logits l turns on less than rounding: their logits
// within kTieTol of each other, or (top-k) a cumulative share between their ranks within kTieTol of u.
bool near_tie_pick(const std::vector<float>& l, const TokenSampling& s, int a, int b) {
  constexpr double kTieTol = 1e-3;
  if (a < 0 || b < 0 || a >= (int)l.size() || b >= (int)l.size()) return false;
  if (std::fabs((double)l[a] - (double)l[b]) < kTieTol) return true;
  if (s.temperature <= 0 || s.top_k <= 0) return false;
  std::vector<int> idx(l.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) { return l[x] > l[y]; });
  const int k = std::min<int>(s.top_k, (int)l.size());
  const int ra = (int)(std::find(idx.begin(), idx.end(), a) - idx.begin());
  const int rb = (int)(std::find(idx.begin(), idx.end(), b) - idx.begin());
  if (ra >= k || rb >= k) return false;
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += std::exp((double)((l[idx[i]] - l[idx[0]]) / s.temperature));
  double acc = 0;
  for (int i = 0; i < std::max(ra, rb); ++i) {
    acc += std::exp((double)((l[idx[i]] - l[idx[0]]) / s.temperature));
    if (i >= std::min(ra, rb) && std::fabs(acc / sum - (double)s.uniform) < kTieTol) return true;
  }
  return false;
}

void check_sampling(int vocab) {
  int bad = 0, runs = 0;
  Dev<int> out(1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> l(vocab);
    for (auto& v : l) v = urand(-10.f, 10.f);
    // ties at the top and around the k-th value: the lower index must win
    l[vocab / 3] = 12.f, l[vocab / 2] = 12.f;
    for (int i = 0; i < 5; ++i) l[(size_t)(rng() % vocab)] = 9.5f;
    Dev<float> dl(l);
    const int k = 1 + (int)(rng() % kMaxDeviceTopK);
    const float T = 0.3f + urand(0.f, 1.5f), u = urand(0.f, 1.f);
    out.poison();
    argmax(dl.p, vocab, out.p, nullptr);
    bad += out.download()[0] != ref_sample(l, 1, 0.f, 0.f);
    out.poison();
    sample_top_k(dl.p, vocab, k, T, u, out.p, nullptr);
    bad += out.download()[0] != ref_sample(l, k, T, u);
    runs += 2;
  }
  report("sampling argmax + top-k vocab=" + std::to_string(vocab) + " (mismatches/" + std::to_string(runs) + ")",
         bad, 0);
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

// ---- timing ----
float median_ms(const std::function<void()>& f, int warm = 20, int runs = 200) {
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  for (int i = 0; i < warm; ++i) f();
  std::vector<float> t(runs);
  for (int i = 0; i < runs; ++i) {
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    cudaEventElapsedTime(&t[i], a, b);
  }
  cudaEventDestroy(a), cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[runs / 2];
}

// Microseconds per call of f, launched `batch` times back to back as a decode graph would run it.
float batch_us(const std::function<void()>& f, int batch = 10, int runs = 30) {
  return median_ms([&] { for (int i = 0; i < batch; ++i) f(); }, 3, runs) * 1e3f / batch;
}

void time_gemv_q4(const char* what, int K, int N, int m) {
  const int gs = 128, G = K / gs;
  Dev<uint32_t> qw((size_t)K / 8 * N);
  Dev<__half> sc((size_t)G * N), x((size_t)m * K);
  Dev<float> y((size_t)m * N);
  fill_random_u32(qw.p, qw.n, 1, nullptr);
  fill_random_half(sc.p, sc.n, 2, 0.001f, 0.002f, nullptr);
  fill_random_half(x.p, x.n, 3, -1.f, 1.f, nullptr);
  QWeight q;
  q.qweight = qw.p, q.scales = sc.p, q.K = K, q.N = N, q.group_size = gs, q.sym_zero = 8;
  for (GemvDot dot : {GemvDot::Half, GemvDot::Fixed}) {
    const GemvQ4Config c = gemv_q4_resolve(q, {0, dot});  // as the backend runs it
    const float ms = median_ms([&] { gemv_q4(q, x.p, GemvInput::Half, m, K, y.p, N, nullptr, c); });
    const double bytes = (double)qw.n * 4 + sc.n * 2;
    std::printf("time gemv_q4 %-22s %5dx%-5d m=%d  %8.1f us  %7.0f GB/s  (%d rows/warp, %s dot)\n", what, K, N, m,
                ms * 1e3, bytes / (ms * 1e-3) / 1e9, c.rows_per_warp, dot == GemvDot::Half ? "fp16" : "fixed-point");
  }
}

void time_gemv_f16(const char* what, int K, int N) {
  Dev<__half> w((size_t)N * K), x(K);
  Dev<float> y(N);
  fill_random_half(w.p, w.n, 4, -0.01f, 0.01f, nullptr);
  fill_random_half(x.p, x.n, 5, -1.f, 1.f, nullptr);
  const float ms = median_ms([&] { gemv_f16(w.p, nullptr, K, N, x.p, 1, K, y.p, N, nullptr); });
  std::printf("time gemv_f16 %-21s %5dx%-5d m=1  %8.1f us  %7.0f GB/s\n", what, K, N, ms * 1e3,
              (double)w.n * 2 / (ms * 1e-3) / 1e9);
}

// The lm_head back to back: rmsnorm + gemv_f16 (two kernels, as prompt chunks run it) against the fused one.
void time_lm_head_rmsnorm(int K, int N) {
  Dev<__half> w((size_t)N * K), x(K), nw(K);
  Dev<float> h(K), ss(1), y(N);
  fill_random_half(w.p, w.n, 4, -0.01f, 0.01f, nullptr);
  fill_random_half(nw.p, nw.n, 5, 0.5f, 1.5f, nullptr);
  XL_CUDA_CHECK(cudaMemset(h.p, 0, h.n * 4));
  XL_CUDA_CHECK(cudaMemset(ss.p, 0, 4));
  const float two = batch_us([&] {
    rmsnorm(h.p, K, 1, K, nw.p, 1e-5f, x.p, K, nullptr, y.p, y.n);
    gemv_f16(w.p, nullptr, K, N, x.p, 1, K, y.p, N, nullptr);
  });
  const float fused =
      batch_us([&] { gemv_f16_rmsnorm(w.p, nullptr, K, N, h.p, K, ss.p, nw.p, 1e-5f, 1, y.p, N, nullptr); });
  std::printf("time lm_head %dx%d m=1 back to back: rmsnorm + gemv_f16 %.1f us, fused %.1f us\n", K, N, two, fused);
}

void time_attention(int H, int KV, int D, int len) {
  const int S = len;
  Dev<__half> q((size_t)H * D), kc((size_t)KV * S * D), vc((size_t)KV * S * D), out((size_t)H * D);
  fill_random_half(q.p, q.n, 6, -1.f, 1.f, nullptr);
  fill_random_half(kc.p, kc.n, 7, -1.f, 1.f, nullptr);
  fill_random_half(vc.p, vc.n, 8, -1.f, 1.f, nullptr);
  const int splits = attention_splits(1, H, S);
  Dev<float> work((size_t)H * splits * (D + 2));
  Dev<unsigned> done(H);
  XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
  Dev<int> dp(std::vector<int>{len - 1});
  const float ms =
      median_ms([&] { attention(q.p, kc.p, vc.p, 1, H, KV, D, S, dp.p, splits, work.p, done.p, out.p, nullptr); });
  std::printf("time attention decode H=%d KV=%d D=%d len=%-6d splits=%-3d %8.1f us  %7.0f GB/s\n", H, KV, D, len,
              splits, ms * 1e3, (double)(kc.n + vc.n) * 2 / (ms * 1e-3) / 1e9);
}

// Back to back (as a graph replays it) at a live length below the cache size: the fixed grid (every split
// live, as before the live rule) against minimum keys per split of 32, 64 (the backend's) and 128.
void time_attention_split_rule(int H, int KV, int D, int len, int S) {
  Dev<__half> q((size_t)H * D), kc((size_t)KV * S * D), vc((size_t)KV * S * D), out((size_t)H * D);
  fill_random_half(q.p, q.n, 6, -1.f, 1.f, nullptr);
  fill_random_half(kc.p, kc.n, 7, -1.f, 1.f, nullptr);
  fill_random_half(vc.p, vc.n, 8, -1.f, 1.f, nullptr);
  const int splits = attention_splits(1, H, S);
  Dev<float> work((size_t)H * splits * (D + 2));
  Dev<unsigned> done(H);
  XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
  Dev<int> dp(std::vector<int>{len - 1});
  std::printf("time attention decode H=%d D=%d len=%-5d (grid %d splits), back to back, min keys per split:", H, D,
              len, splits);
  for (int keys : {1, 32, 64, 128}) {
    const float us = batch_us(
        [&] { attention(q.p, kc.p, vc.p, 1, H, KV, D, S, dp.p, splits, work.p, done.p, out.p, nullptr, keys); });
    std::printf("  %d: %.1f us", keys, us);
  }
  std::printf("\n");
}

void time_attention_prefill(int H, int KV, int D, int m) {
  const int S = m;
  Dev<__half> q((size_t)m * H * D), kc((size_t)KV * S * D), vc((size_t)KV * S * D), out((size_t)m * H * D);
  fill_random_half(q.p, q.n, 9, -1.f, 1.f, nullptr);
  fill_random_half(kc.p, kc.n, 10, -1.f, 1.f, nullptr);
  fill_random_half(vc.p, vc.n, 11, -1.f, 1.f, nullptr);
  Dev<int> dp(std::vector<int>{0});
  const float ms = median_ms([&] { attention_prefill(q.p, kc.p, vc.p, m, H, KV, D, S, dp.p, out.p, nullptr); }, 5, 50);
  const double flops = 4.0 * H * D * (double)m * (m + 1) / 2;
  std::printf("time attention_prefill H=%d D=%d m=%d (one layer)   %8.1f us  %7.1f TFLOP/s\n", H, D, m, ms * 1e3,
              flops / (ms * 1e-3) / 1e12);
}

// One prompt GEMM of a model's shape (random symmetric 4-bit weights, group 128), fused (x reordered, then the wgmma
// kernel) against dequantization + cuBLAS, side by side; fp32 output accumulated as o_proj and down_proj do.
void time_prompt_gemm(const char* what, int K, int N, int m) {
  HostGptq h = make_gptq(K, N, 128, false, false);
  DevQ d(h, 1);
  Dev<__half> x((size_t)m * K), xw((size_t)m * K), deq((size_t)K * N);
  fill_random_half(x.p, x.n, 12, -1.f, 1.f, nullptr);
  Dev<float> y((size_t)m * N);
  XL_CUDA_CHECK(cudaMemset(y.p, 0, y.n * 4));
  const double flops = 2.0 * m * (double)K * N;
  float fused = -1.f, unfused = -1.f;
  if (gemm_q4_wgmma_supported() && gemm_q4_wgmma_fits(d.q))
    fused = median_ms([&] {
      gemm_q4_wgmma_input(x.p, m, K, K, nullptr, xw.p, nullptr);
      gemm_q4_wgmma(d.q, xw.p, m, y.p, N, true, nullptr);
    }, 3, 20);
#ifdef XLLAMA_HAVE_CUBLAS
  cublasHandle_t hb;
  cublasCreate(&hb);
  const float one = 1.f;
  unfused = median_ms([&] {
    dequant_q4(d.q, 0, N, deq.p, nullptr);
    cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, deq.p, CUDA_R_16F, N, x.p, CUDA_R_16F, K, &one, y.p,
                 CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }, 3, 20);
  cublasDestroy(hb);
#endif
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  std::printf("time prompt gemm %-8s %5dx%-5d m=%4d | fused %8.1f us %6.1f TFLOP/s | dequant+cuBLAS %8.1f us %6.1f "
              "TFLOP/s | fused/unfused %.3f\n",
              what, K, N, m, fused * 1e3, flops / (fused * 1e-3) / 1e12, unfused * 1e3,
              flops / (unfused * 1e-3) / 1e12, fused / unfused);
}

void time_prompt_gemms() {
  for (int m : {512, 2048}) {
    time_prompt_gemm("7B qkv", 4096, 12288, m);
    time_prompt_gemm("7B o", 4096, 4096, m);
    time_prompt_gemm("7B gu", 4096, 22016, m);
    time_prompt_gemm("7B down", 11008, 4096, m);
  }
  time_prompt_gemm("70B qkv", 8192, 10240, 2048);
  time_prompt_gemm("70B o", 8192, 8192, 2048);
  time_prompt_gemm("70B gu", 8192, 57344, 2048);
  time_prompt_gemm("70B down", 28672, 8192, 2048);
}

// ---- the whole backend on dummy models ----
ModelConfig dummy_config(int vocab, int hidden, int inter, int layers, int heads, int kv, int max_pos) {
  ModelConfig c;
  c.vocab_size = vocab, c.hidden_size = hidden, c.intermediate_size = inter, c.num_layers = layers;
  c.num_heads = heads, c.num_kv_heads = kv, c.head_dim = hidden / heads, c.max_position_embeddings = max_pos;
  c.rms_norm_eps = 1e-5f;
  c.rope.theta = 10000.f;
  return c;
}

// Decode (graph replays of 1, 3 and 8 rows) must agree with prompt chunks (GEMM path) on the same tokens.
void check_backend_paths() {
  const std::string tag = std::string(pdl_enabled() ? "" : " [no PDL]") +
                          (persistent_decode_flag() ? "" : " [5-kernel decode]") +
                          (deferred_norm_flag() ? " [deferred norms]" : "");
  ModelConfig c = dummy_config(1000, 256, 704, 2, 4, 2, 256);
  BackendOptions o;
  o.max_seq_len = 128, o.max_chunk_tokens = 64;
  auto b = create_cuda_dummy_backend(c, 64, o, 7);
  // 100 positions: decode attention goes from one live split (no combine) to two at length 65
  const int n = 100, V = c.vocab_size;
  std::vector<int32_t> toks(n);
  for (auto& t : toks) t = (int32_t)(rng() % V);
  std::vector<float> all((size_t)n * V);
  b->forward(toks.data(), n, 0, true, all.data());
  const std::vector<double> ref(all.begin(), all.end());
  for (int rows : {1, 3, kGemvMaxRows}) {  // graph replays of `rows` tokens (the last step takes what is left)
    std::vector<float> dec((size_t)n * V);
    b->clear_cache();
    const unsigned long long launches = decode_step_enqueued();
    for (int i = 0; i < n; i += rows) {
      const int m = std::min(rows, n - i);
      b->forward(&toks[i], m, i, true, &dec[(size_t)i * V]);
    }
    // one-row steps take the persistent kernel (captured once) unless it is switched off
    const bool path_ok = rows != 1 || (decode_step_enqueued() > launches) == persistent_decode_flag();
    report("backend: decode m=" + std::to_string(rows) + " (graph) vs prompt chunk (GEMM)" + tag,
           path_ok ? rel_err(dec, ref) : INFINITY, 2e-2);
  }
  // device sampling = host rule on the same logits: those of the decode step it samples from (the prompt path's
  // differ by ~5e-4 relative, which flips near-ties between the top candidates)
  b->clear_cache();
  std::vector<float> last(V);
  b->forward(toks.data(), n - 1, 0, false, last.data());
  b->forward(&toks[n - 1], 1, n - 1, false, last.data());
  b->trim_cache(n - 1);
  TokenSampling greedy;
  const int32_t g = b->forward_sample(&toks[n - 1], 1, n - 1, greedy);
  b->trim_cache(n - 1);
  TokenSampling tk;
  tk.temperature = 0.7f, tk.top_k = 40, tk.uniform = 0.61f;
  const int32_t t = b->forward_sample(&toks[n - 1], 1, n - 1, tk);
  const int mism = (g != ref_sample(last, 1, 0.f, 0.f)) + (t != ref_sample(last, 40, 0.7f, 0.61f));
  report("backend: forward_sample greedy + top-k vs host rule (mismatches)" + tag, mism, 0);
  {  // Decode pipelining: forward_sample with `next` (the step after started ahead) picks what it picks without, in
     // greedy and top-k runs; the caller's cache length holds while a step is ahead; the dropped step changes
     // nothing (a forward of another token at its position after it gives the logits a plain run gives).
     // Decode adds a long row's K slices with fp32 atomics in whatever order the blocks finish, so two runs may
     // round differently and flip a pick the logits leave to rounding: a run that differs counts as a failure
     // only where the first differing pick was not such a near tie (near_tie_pick, on the plain run's logits).
    auto step_sampling = [](const TokenSampling& base, int i) {
      TokenSampling s = base;
      s.uniform = 0.05f * (float)i;
      return s;
    };
    auto steps = [&](bool piped, const TokenSampling& base, std::vector<float>& after) {
      b->clear_cache();
      b->forward(toks.data(), 40, 0, false, after.data());
      std::vector<int32_t> picked;
      int32_t t = toks[40];
      for (int i = 0; i < 20; ++i) {
        const TokenSampling s = step_sampling(base, i), next = step_sampling(base, i + 1);
        t = b->forward_sample(&t, 1, 40 + i, s, piped ? &next : nullptr);  // the last one leaves a step ahead
        picked.push_back(t);
      }
      const bool length_held = b->cache_length() == 60;
      b->forward(&toks[99], 1, 60, false, after.data());
      if (!length_held) picked.push_back(-1);
      return picked;
    };
    // The logits step i of a run that picked `picked` sampled from (plain forwards of the same tokens).
    auto logits_at_step = [&](const std::vector<int32_t>& picked, int i) {
      std::vector<float> l(V);
      b->clear_cache();
      b->forward(toks.data(), 40, 0, false, l.data());
      for (int j = 0; j <= i; ++j) b->forward(j == 0 ? &toks[40] : &picked[j - 1], 1, 40 + j, false, l.data());
      return l;
    };
    TokenSampling topk;
    topk.temperature = 0.8f, topk.top_k = 20;
    int differ = 0, near_ties = 0;
    double worst = 0;
    for (const TokenSampling& base : {greedy, topk}) {
      std::vector<float> plain_after(V), piped_after(V);
      const std::vector<int32_t> plain = steps(false, base, plain_after), piped = steps(true, base, piped_after);
      if (plain == piped) {
        worst = std::max(worst, rel_err(piped_after, std::vector<double>(plain_after.begin(), plain_after.end())));
        continue;
      }
      const size_t i = std::mismatch(plain.begin(), plain.end(), piped.begin(), piped.end()).first - plain.begin();
      const bool tie = i < 20 && plain.size() == piped.size() &&
                       near_tie_pick(logits_at_step(plain, (int)i), step_sampling(base, (int)i), plain[i], piped[i]);
      if (tie) ++near_ties; else ++differ;
    }
    report("backend: forward_sample with the next step ahead vs without (runs that differ, near ties aside)" + tag,
           differ, 0);
    if (near_ties) std::printf("  (%d run(s) flipped a near-tie pick; their later steps were not compared)\n", near_ties);
    report("backend: a forward after a dropped step ahead vs after none" + tag, worst, 1e-3);
  }
  // score() reduces on the device: it must give the host NLL of forward()'s logits (0 where the target is -1)
  // over prompt chunks and decode-sized steps, and chunks with nothing to score (lm_head skipped) must still
  // fill the cache for the ones after them. The tolerance is the decode-vs-prompt one above.
  std::vector<int32_t> targets(n);
  for (int i = 0; i < n; ++i)
    targets[i] = i < 30 || (i >= 35 && i < 40) || i % 7 == 3 ? -1 : toks[(i + 1) % n];
  std::vector<double> want(n, 0.0);
  for (int i = 0; i < n; ++i)
    if (targets[i] >= 0) want[i] = token_nll_host(&all[(size_t)i * V], V, targets[i]);
  std::vector<float> got(n);
  b->clear_cache();
  const int cuts[] = {0, 30, 35, 40, n};  // [0,30) skipped, [30,35) decode, [35,40) decode skipped, [40,100)
  for (int c = 0; c + 1 < 5; ++c)
    b->score(&toks[cuts[c]], cuts[c + 1] - cuts[c], cuts[c], &targets[cuts[c]], &got[cuts[c]]);
  double err = rel_err(got, want);
  for (int i = 0; i < n; ++i)
    if (targets[i] < 0 && got[i] != 0.f) err = INFINITY;
  report("backend: score() on the device vs host NLL of forward()" + tag, err, 2e-2);
  {  // 128-row chunks: gate/up's buffer holds 90 rows of logits, so score() passes 90 rows, then 8 (GEMV rows)
    BackendOptions o128 = o;
    o128.max_chunk_tokens = 128;
    auto wide = create_cuda_dummy_backend(c, 64, o128, 7);  // the same weights as b
    std::vector<float> got2(n);
    wide->score(toks.data(), n - 2, 0, targets.data(), got2.data());
    wide->score(&toks[n - 2], 2, n - 2, &targets[n - 2], &got2[n - 2]);
    double err2 = rel_err(got2, want);
    for (int i = 0; i < n; ++i)
      if (targets[i] < 0 && got2[i] != 0.f) err2 = INFINITY;
    report("backend: score() in 90-row lm_head passes vs host NLL of forward()" + tag, err2, 2e-2);
  }
}

// A random GPTQ checkpoint through create_cuda_backend (the upload path): act-order (q/k/v and gate/up share a
// g_idx, as GPTQ writes them), asymmetric zeros, head_dim 128 with GQA, gate/up N = 2800 (a partial 128-column
// tile) and down K = 1400 (three K splits, the last partial). One-row decode (the persistent kernel) against
// the prompt path (dequant + GEMM), and the persistent kernel against the 5-kernel decode.
// The GPTQ backend check's model in float64 (no rounding anywhere): the truth both GPU paths approximate. `lin`
// holds each layer's q, k, v, o, gate, up, down in that order; norms each layer's input and post-attention norm.
std::vector<double> host_model_logits(const ModelConfig& c, const std::vector<const HostGptq*>& lin, int zero_offset,
                                      const __half* embed, const std::vector<const __half*>& norms,
                                      const __half* final_norm, const __half* lm_head,
                                      const std::vector<int32_t>& toks) {
  const int n = (int)toks.size(), hid = c.hidden_size, H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim;
  const int V = c.vocab_size;
  auto dense = [&](const HostGptq& g) {  // [K][N]
    std::vector<double> m((size_t)g.K * g.N);
    for (int k = 0; k < g.K; ++k)
      for (int j = 0; j < g.N; ++j) m[(size_t)k * g.N + j] = g.w(k, j, zero_offset);
    return m;
  };
  auto matmul = [](const std::vector<double>& x, int rows, int K, const std::vector<double>& w, int N) {
    std::vector<double> y((size_t)rows * N, 0.0);
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < K; ++k) {
        const double a = x[(size_t)r * K + k];
        const double* wr = &w[(size_t)k * N];
        double* yr = &y[(size_t)r * N];
        for (int j = 0; j < N; ++j) yr[j] += a * wr[j];
      }
    return y;
  };
  auto rmsnorm = [&](const std::vector<double>& h, const __half* w) {
    std::vector<double> x(h.size());
    for (int r = 0; r < n; ++r) {
      double ss = 0;
      for (int i = 0; i < hid; ++i) ss += h[(size_t)r * hid + i] * h[(size_t)r * hid + i];
      const double inv = 1.0 / std::sqrt(ss / hid + c.rms_norm_eps);
      for (int i = 0; i < hid; ++i) x[(size_t)r * hid + i] = h[(size_t)r * hid + i] * inv * to_d(w[i]);
    }
    return x;
  };
  std::vector<double> h((size_t)n * hid);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < hid; ++i) h[(size_t)r * hid + i] = to_d(embed[(size_t)toks[r] * hid + i]);
  std::vector<float> inv_freq(D / 2);  // transformers' fp32 inv_freq and fp32 angle
  for (int j = 0; j < D / 2; ++j) inv_freq[j] = (float)(1.0 / std::pow((double)c.rope.theta, (double)(float)(2 * j) / D));
  for (int l = 0; l < c.num_layers; ++l) {
    const HostGptq* const* L = &lin[(size_t)l * 7];
    std::vector<double> x = rmsnorm(h, norms[2 * l]);
    std::vector<double> q = matmul(x, n, hid, dense(*L[0]), H * D), k = matmul(x, n, hid, dense(*L[1]), KV * D),
                        v = matmul(x, n, hid, dense(*L[2]), KV * D);
    auto rope = [&](std::vector<double>& t, int heads) {
      for (int r = 0; r < n; ++r)
        for (int hh = 0; hh < heads; ++hh)
          for (int j = 0; j < D / 2; ++j) {
            const double ang = (double)((float)r * inv_freq[j]);
            double& a = t[((size_t)r * heads + hh) * D + j];
            double& b = t[((size_t)r * heads + hh) * D + j + D / 2];
            const double ra = a * std::cos(ang) - b * std::sin(ang), rb = b * std::cos(ang) + a * std::sin(ang);
            a = ra, b = rb;
          }
    };
    rope(q, H);
    rope(k, KV);
    std::vector<double> att((size_t)n * H * D, 0.0);
    for (int r = 0; r < n; ++r)
      for (int hh = 0; hh < H; ++hh) {
        const int kvh = hh / (H / KV);
        std::vector<double> sc(r + 1);
        double mx = -1e300;
        for (int p = 0; p <= r; ++p) {
          double d = 0;
          for (int t = 0; t < D; ++t) d += q[((size_t)r * H + hh) * D + t] * k[((size_t)p * KV + kvh) * D + t];
          sc[p] = d / std::sqrt((double)D), mx = std::max(mx, sc[p]);
        }
        double sum = 0;
        for (auto& e : sc) sum += (e = std::exp(e - mx));
        for (int p = 0; p <= r; ++p)
          for (int t = 0; t < D; ++t) att[((size_t)r * H + hh) * D + t] += sc[p] / sum * v[((size_t)p * KV + kvh) * D + t];
      }
    const std::vector<double> o = matmul(att, n, H * D, dense(*L[3]), hid);
    for (size_t i = 0; i < h.size(); ++i) h[i] += o[i];
    x = rmsnorm(h, norms[2 * l + 1]);
    const int I = c.intermediate_size;
    const std::vector<double> g = matmul(x, n, hid, dense(*L[4]), I), u = matmul(x, n, hid, dense(*L[5]), I);
    std::vector<double> a((size_t)n * I);
    for (size_t i = 0; i < a.size(); ++i) a[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    const std::vector<double> dn = matmul(a, n, I, dense(*L[6]), hid);
    for (size_t i = 0; i < h.size(); ++i) h[i] += dn[i];
  }
  const std::vector<double> x = rmsnorm(h, final_norm);
  std::vector<double> logits((size_t)n * V, 0.0);
  for (int r = 0; r < n; ++r)
    for (int t = 0; t < V; ++t) {
      double d = 0;
      for (int i = 0; i < hid; ++i) d += x[(size_t)r * hid + i] * to_d(lm_head[(size_t)t * hid + i]);
      logits[(size_t)r * V + t] = d;
    }
  return logits;
}

// check_backend_paths as set, then with PDL, the persistent decode kernel and the deferred norms each switched.
void check_backend_paths_every_setting() {
  guarded("backend paths", check_backend_paths);
  const bool pdl = pdl_enabled();
  set_pdl_enabled(!pdl);
  guarded("backend paths (PDL switched)", check_backend_paths);
  set_pdl_enabled(pdl);
  const bool persistent = persistent_decode_flag();
  persistent_decode_flag() = !persistent;
  guarded("backend paths (persistent decode switched)", check_backend_paths);
  persistent_decode_flag() = persistent;
  const bool defer = deferred_norm_flag();
  deferred_norm_flag() = !defer;
  guarded("backend paths (deferred norms switched)", check_backend_paths);
  deferred_norm_flag() = defer;
}

void check_backend_gptq() {
  rng.seed(2026);  // its own draw: checks added before it do not change this model
  const int V = 1000, hid = 512, I = 1400, NL = 2, H = 4, KV = 2, gs = 64;
  ModelConfig c = dummy_config(V, hid, I, NL, H, KV, 256);
  GptqConfig g;
  g.enabled = true, g.group_size = gs, g.sym = false, g.desc_act = true, g.zero_offset = 1;
  std::vector<std::unique_ptr<HostGptq>> keep;
  std::vector<std::vector<__half>> dense;
  auto half_tensor = [&](std::vector<int64_t> shape, float lo, float hi, const char* name) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    dense.push_back(rand_half((size_t)n, lo, hi));
    return TensorView{dense.back().data(), DType::F16, shape, name};
  };
  auto gptq_linear = [&](int K, int N, const std::vector<int>& g_idx) {
    keep.push_back(std::make_unique<HostGptq>(make_gptq(K, N, gs, false, true)));
    keep.back()->g_idx = g_idx;
    LinearWeights l = keep.back()->view();
    return l;
  };
  auto shuffled_groups = [&](int K) {
    std::vector<int> gi(K);
    for (int k = 0; k < K; ++k) gi[k] = k / gs;
    std::shuffle(gi.begin(), gi.end(), rng);
    return gi;
  };
  dense.reserve(64);
  ModelWeights w;
  w.embed_tokens = half_tensor({V, hid}, -1.f, 1.f, "embed_tokens");
  w.final_norm = half_tensor({hid}, 0.8f, 1.2f, "norm");
  w.lm_head.in_features = hid, w.lm_head.out_features = V;
  w.lm_head.weight = half_tensor({V, hid}, -0.05f, 0.05f, "lm_head");
  for (int l = 0; l < NL; ++l) {
    LayerWeights lw;
    lw.input_norm = half_tensor({hid}, 0.8f, 1.2f, "input_layernorm");
    lw.post_attention_norm = half_tensor({hid}, 0.8f, 1.2f, "post_attention_layernorm");
    const std::vector<int> g_att = shuffled_groups(hid), g_o = shuffled_groups(H * 128),
                           g_mlp = shuffled_groups(hid), g_down = shuffled_groups(I);
    lw.q = gptq_linear(hid, H * 128, g_att), lw.k = gptq_linear(hid, KV * 128, g_att);
    lw.v = gptq_linear(hid, KV * 128, g_att), lw.o = gptq_linear(H * 128, hid, g_o);
    lw.gate = gptq_linear(hid, I, g_mlp), lw.up = gptq_linear(hid, I, g_mlp), lw.down = gptq_linear(I, hid, g_down);
    w.layers.push_back(lw);
  }
  BackendOptions o;
  o.max_seq_len = 128, o.max_chunk_tokens = 64;
  const int n = 100;
  std::vector<int32_t> toks(n);
  for (auto& t : toks) t = (int32_t)(rng() % V);
  auto decode_all = [&](Backend& b) {
    std::vector<float> dec((size_t)n * V);
    for (int i = 0; i < n; ++i) b.forward(&toks[i], 1, i, true, &dec[(size_t)i * V]);
    return dec;
  };
  // Each path against the model in float64. Comparing decode with prompt directly measured the random draw: both
  // paths land ~1.5e-2 (max-normalized) from the float64 logits, each at its own worst row, so their difference
  // reached 2.6e-2 on one draw and 1e-2 on another.
  std::vector<const HostGptq*> lin;
  for (const auto& k : keep) lin.push_back(k.get());
  std::vector<const __half*> norms;
  for (const auto& lw : w.layers) {
    norms.push_back(static_cast<const __half*>(lw.input_norm.data));
    norms.push_back(static_cast<const __half*>(lw.post_attention_norm.data));
  }
  const std::vector<double> truth =
      host_model_logits(c, lin, g.zero_offset, static_cast<const __half*>(w.embed_tokens.data), norms,
                        static_cast<const __half*>(w.final_norm.data),
                        static_cast<const __half*>(w.lm_head.weight.data), toks);
  constexpr double kVsFloat64 = 3e-2;
  auto vs_truth = [&](const std::string& what, const std::vector<float>& got) {
    report("backend gptq asym act-order: " + what + " vs float64 model (worst at row " +
               std::to_string(worst_row(got, truth, V)) + ")",
           rel_err(got, truth), kVsFloat64);
  };
  const bool flag = persistent_decode_flag();
  persistent_decode_flag() = false;
  auto b5 = create_cuda_backend(c, g, w, o);  // graphs are captured per backend: one for each decode path
  std::vector<float> prompt((size_t)n * V);
  b5->forward(toks.data(), n, 0, true, prompt.data());
  const std::vector<double> ref(prompt.begin(), prompt.end());
  vs_truth("prompt chunks", prompt);
  b5->clear_cache();
  const std::vector<float> five = decode_all(*b5);
  vs_truth(std::string("5-kernel decode") + (gemv_q4_fixed_point_flag() ? " (fixed-point dot)" : " (fp16 dot)"), five);
  // the persistent kernel takes the fp16 dot: it is compared with the 5-kernel decode on the same dot
  const bool fixed = gemv_q4_fixed_point_flag();
  gemv_q4_fixed_point_flag() = !fixed;
  const std::vector<float> other = decode_all(*create_cuda_backend(c, g, w, o));
  vs_truth(std::string("5-kernel decode") + (fixed ? " (fp16 dot)" : " (fixed-point dot)"), other);
  gemv_q4_fixed_point_flag() = fixed;
  {  // the RMSNorm factors deferred (or not, if that is the default) against the float64 model and against the
     // 5-kernel decode above: the same arithmetic but for where each row's factor is applied
    const bool defer = deferred_norm_flag();
    deferred_norm_flag() = !defer;
    const std::vector<float> switched = decode_all(*create_cuda_backend(c, g, w, o));
    deferred_norm_flag() = defer;
    const std::string what = std::string("5-kernel decode, norms ") + (defer ? "in the GEMVs" : "deferred");
    vs_truth(what + (fixed ? " (fixed-point dot)" : " (fp16 dot)"), switched);
    // (the deferred inputs skip fp16's rounding of the normalized values: as far apart as decode and prompt chunks)
    report("backend gptq asym act-order: " + what + " vs as default", rel_err(switched, {five.begin(), five.end()}),
           2e-2);
  }
  const std::vector<float>& five_half = fixed ? other : five;
  const std::vector<double> five_d(five_half.begin(), five_half.end());
  {  // a prompt in one chunk gives the logits of the same prompt in two (the second over the first's cache)
    BackendOptions whole = o;
    whole.max_chunk_tokens = 128;
    auto one = create_cuda_backend(c, g, w, whole);
    std::vector<float> p1((size_t)n * V);
    one->forward(toks.data(), n, 0, true, p1.data());
    report("backend gptq asym act-order: prompt in one chunk vs two", rel_err(p1, ref), 2e-3);
  }
  {  // the upload path (parallel staging, GPU layout and act-order permutation, embedding and lm_head as they
     // lie) against the earlier host repack: the same weights give the same prompt logits
    setenv("XLLAMA_LEGACY_UPLOAD", "1", 1);
    auto legacy = create_cuda_backend(c, g, w, o);
    unsetenv("XLLAMA_LEGACY_UPLOAD");
    std::vector<float> lp((size_t)n * V);
    legacy->forward(toks.data(), n, 0, true, lp.data());
    report("backend gptq asym act-order: upload path vs host repack (prompt logits)", rel_err(prompt, {lp.begin(), lp.end()}),
           1e-6);
  }
  persistent_decode_flag() = true;
  const char* env = std::getenv("XLLAMA_DECODE_THREADS");
  const std::string saved = env ? env : "";
  for (const char* threads : {"256", "512"}) {
    setenv("XLLAMA_DECODE_THREADS", threads, 1);
    const unsigned long long launches = decode_step_enqueued();  // before: a backend captures its decode graph
    auto b = create_cuda_backend(c, g, w, o);
    const std::vector<float> fused = decode_all(*b);
    const bool used = decode_step_enqueued() > launches;
    const std::string tag = std::string(" [") + threads + " threads]";
    if (used) vs_truth("persistent decode" + tag, fused);
    else report("backend gptq asym act-order: persistent decode" + tag + " (not taken)", INFINITY, 0);
    report("backend gptq asym act-order: persistent vs 5-kernel decode (fp16 dots)" + tag, rel_err(fused, five_d), 1e-2);
  }
  if (env) setenv("XLLAMA_DECODE_THREADS", saved.c_str(), 1); else unsetenv("XLLAMA_DECODE_THREADS");
  persistent_decode_flag() = flag;
}

// Device-to-device copy bandwidth (bytes read + written per second), as xllama bench measures it.
double copy_bandwidth_gbs() {
  const size_t bytes = (size_t)1 << 30;
  Dev<unsigned char> a(bytes), b(bytes);
  XL_CUDA_CHECK(cudaMemset(a.p, 1, bytes));
  const float ms = median_ms([&] { XL_CUDA_CHECK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice)); }, 3, 10);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

// The persistent decode kernel alone on random weights of a model's shapes (group 128), back to back, against the
// bytes it must read (weights + the KV cache at this length); then one profiled launch: where a block's time
// goes (thread 0's clock per segment, mean over blocks), waiting on the previous phase vs working.
void time_decode_step(const char* name, const ModelConfig& c, int len, double copy_gbs, int threads) {
  const int hid = c.hidden_size, I = c.intermediate_size, H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim,
            NL = c.num_layers, S = len + 8;
  const int Ks[4] = {hid, H * D, hid, I}, Ns[4] = {(H + 2 * KV) * D, hid, 2 * I, hid};
  size_t words = 0, scales = 0;
  for (int i = 0; i < 4; ++i) words += (size_t)Ks[i] / 8 * Ns[i], scales += (size_t)(Ks[i] / 128) * Ns[i];
  Dev<uint32_t> qw(words * NL);
  Dev<__half> sc(scales * NL), norms((size_t)NL * 2 * hid), kc((size_t)NL * KV * S * D), vc((size_t)NL * KV * S * D);
  fill_random_u32(qw.p, qw.n, 11, nullptr);
  fill_half(norms.p, norms.n, 1.f, nullptr);
  fill_random_half(kc.p, kc.n, 12, -1.f, 1.f, nullptr);
  fill_random_half(vc.p, vc.n, 13, -1.f, 1.f, nullptr);
  std::vector<DecodeLayer> layers(NL);
  size_t wo = 0, so = 0;
  for (int l = 0; l < NL; ++l) {
    for (int i = 0; i < 4; ++i) {
      QWeight& q = layers[l].lin[i];
      q.qweight = qw.p + wo, q.scales = sc.p + so, q.K = Ks[i], q.N = Ns[i], q.group_size = 128, q.sym_zero = 8;
      const float a = 1.f / (std::sqrt((float)Ks[i]) * 8.f);
      fill_random_half(sc.p + so, (size_t)(Ks[i] / 128) * Ns[i], 20 + l * 4 + i, 0.5f * a, 1.5f * a, nullptr);
      wo += (size_t)Ks[i] / 8 * Ns[i], so += (size_t)(Ks[i] / 128) * Ns[i];
    }
    layers[l].input_norm = norms.p + (size_t)l * 2 * hid, layers[l].post_norm = norms.p + (size_t)l * 2 * hid + hid;
    layers[l].kcache = kc.p + (size_t)l * KV * S * D, layers[l].vcache = vc.p + (size_t)l * KV * S * D;
  }
  DecodeStep st;
  st.num_layers = NL, st.hidden = hid, st.inter = I, st.heads = H, st.kv_heads = KV, st.head_dim = D, st.max_seq = S;
  st.max_splits = attention_splits(1, H, S), st.eps = 1e-5f, st.threads = threads;
  if (!decode_step_prepare(st, layers)) {
    report(std::string("decode step ") + name + ": kernel fits", INFINITY, 0);
    return;
  }
  Dev<DecodeLayer> dl(layers);
  std::vector<float> inv(D / 2);
  for (int i = 0; i < D / 2; ++i) inv[i] = (float)(1.0 / std::pow(10000.0, 2.0 * i / D));
  Dev<float> dinv(inv), h(hid), qkv((size_t)(H + 2 * KV) * D), gu((size_t)2 * I), work((size_t)H * st.max_splits * (D + 2)),
      ss(1);
  Dev<__half> att((size_t)H * D);
  Dev<unsigned> done(H), counters(decode_step_counters(NL));
  Dev<int> dpos(std::vector<int>{len - 1});
  std::vector<float> h0(hid);
  for (auto& v : h0) v = urand(-1.f, 1.f);
  h.upload(h0);
  XL_CUDA_CHECK(cudaMemset(qkv.p, 0, qkv.n * 4));
  XL_CUDA_CHECK(cudaMemset(gu.p, 0, gu.n * 4));
  XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * 4));
  XL_CUDA_CHECK(cudaMemset(counters.p, 0, counters.n * 4));
  st.layers = dl.p, st.inv_freq = dinv.p, st.pos = dpos.p, st.h = h.p, st.qkv = qkv.p, st.gu = gu.p, st.att = att.p;
  st.work = work.p, st.head_done = done.p, st.final_sum_sq = ss.p, st.counters = counters.p;
  const float us = batch_us([&] { decode_step(st, nullptr); }, 10, 20);
  const double bytes = (double)words * NL * 4 + (double)scales * NL * 2 + 2.0 * NL * KV * (double)len * D * 2;
  const double floor_us = bytes / (copy_gbs * 1e9) * 1e6;
  std::printf("time decode step %-4s len %-5d %d blocks x %d threads x %d stages: %8.1f us/token (%.0f GB/s; floor "
              "%.1f us at %.0f GB/s copy = %.0f%%)\n",
              name, len, st.grid, st.threads, st.stages, us, bytes / (us * 1e-6) / 1e9, floor_us, copy_gbs, 100.0 * floor_us / us);
  Dev<unsigned long long> prof((size_t)st.grid * kProfileSlots);
  st.profile = prof.p;
  decode_step(st, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<unsigned long long> pv = prof.download();
  int clock_khz = 0;
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  const char* names[kProfileSlots] = {"start", "wait qkv", "qkv", "wait attn", "attn", "wait o", "o",
                                      "wait gate/up", "gate/up", "wait down", "down", "end"};
  std::printf("     profile (us per token, mean over blocks, at %d MHz):", clock_khz / 1000);
  for (int k = 0; k < kProfileSlots; ++k) {
    double sum = 0;
    for (int bi = 0; bi < st.grid; ++bi) sum += (double)pv[(size_t)bi * kProfileSlots + k];
    std::printf(" %s %.1f%s", names[k], sum / st.grid / (clock_khz * 1e-3), k + 1 < kProfileSlots ? "," : "\n");
  }
}

// The llama-7b dummy's shapes, and a prompt of random token ids.
ModelConfig llama_7b_config() { return dummy_config(32000, 4096, 11008, 32, 32, 32, 4096); }
ModelConfig llama_13b_config() { return dummy_config(32000, 5120, 13824, 40, 40, 40, 4096); }
ModelConfig llama_70b_config() { return dummy_config(32000, 8192, 28672, 80, 64, 8, 4096); }
std::vector<int32_t> random_tokens(int n, int vocab) {
  std::vector<int32_t> toks(n);
  for (auto& t : toks) t = (int32_t)(rng() % vocab);
  return toks;
}

void bench_backend(const char* name, const ModelConfig& c, int ctx, int prompt, int gen, int chunk = 512) {
  BackendOptions o;
  o.max_seq_len = ctx, o.max_chunk_tokens = chunk;
  size_t free0 = 0, total = 0;
  XL_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  const char* seed = std::getenv("XLLAMA_DUMMY_SEED");  // xllama's CLI builds its dummies with 0x5eed
  auto b = create_cuda_dummy_backend(c, 128, o, seed ? std::strtoul(seed, nullptr, 0) : 1);
  size_t free1 = 0;
  XL_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  const MemoryReport r = b->memory();
  const std::vector<int32_t> toks = random_tokens(prompt, c.vocab_size);
  std::vector<float> logits(c.vocab_size);
  using clk = std::chrono::steady_clock;
  double best_pp = 0, sum_pp = 0;
  const char* reps_env = std::getenv("XLLAMA_BENCH_REPS");  // default 3 (best of); more shows a trend's mean
  const int reps = reps_env ? std::max(1, std::atoi(reps_env)) : 3;
  for (int rep = 0; rep < reps; ++rep) {
    b->clear_cache();
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    auto t0 = clk::now();
    b->forward(toks.data(), prompt, 0, false, logits.data());
    const double sec = std::chrono::duration<double>(clk::now() - t0).count();
    best_pp = std::max(best_pp, prompt / sec);
    sum_pp += prompt / sec;
  }
  if (reps > 3) std::printf("bench %-4s chunk=%d prompt %d: best %.0f mean %.0f t/s over %d\n", name, chunk, prompt,
                            best_pp, sum_pp / reps, reps);
  TokenSampling greedy;
  int32_t tok = toks.back();
  int pos = prompt;
  // each step starts the next (decode pipelining, as xllama bench and generation run it)
  for (int i = 0; i < 8; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy, &greedy);  // capture + warm up
  auto t0 = clk::now();
  for (int i = 0; i < gen; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy, &greedy);
  const double sec = std::chrono::duration<double>(clk::now() - t0).count();
  std::printf("bench %-4s%s ctx=%d: prompt %d tokens %8.0f t/s | decode %6.1f t/s (%.3f ms/token at %d..%d) | "
              "weights %.2f GiB, KV %.2f GiB, scratch %.2f GiB, GPU memory used by the backend %.2f GiB\n",
              name, pdl_enabled() ? "" : " [no PDL]", ctx, prompt, best_pp, gen / sec, sec / gen * 1e3, prompt + 8, pos, r.weights_bytes / 1073741824.0,
              r.kv_cache_bytes / 1073741824.0, r.scratch_bytes / 1073741824.0, (free0 - free1) / 1073741824.0);
}

void tune_gemv_q4();

// The 7B's decode GEMVs and the 70B's MLP ones, one launch at a time (each dot).
void time_decode_gemv_shapes() {
  time_gemv_q4("q+k+v", 4096, 12288, 1);
  time_gemv_q4("o_proj", 4096, 4096, 1);
  time_gemv_q4("gate+up", 4096, 22016, 1);
  time_gemv_q4("down_proj", 11008, 4096, 1);
  time_gemv_q4("70B gate+up", 8192, 57344, 1);
  time_gemv_q4("70B down_proj", 28672, 8192, 1);
}

// Decode's variants side by side: the fp16 dot, the fixed-point dot with the RMSNorm factors applied in the GEMVs,
// and with them deferred to the next kernel (the default). The GEMV
// shapes one launch at a time first, then whole-backend decode on the 7B, 13B and 70B dummies, the variants
// alternated twice over for the spread, then the back-to-back GEMV tuning.
void bench_decode_variants() {
  std::printf("GEMV shapes (group 128, m=1, one launch at a time)\n");
  time_decode_gemv_shapes();
  const bool saved_fixed = gemv_q4_fixed_point_flag(), saved_defer = deferred_norm_flag();
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  struct Variant {
    const char* name;
    bool fixed, defer;
  };
  for (int rep = 0; rep < 2; ++rep)
    for (const Variant& v : {Variant{"fp16 dot", false, false}, Variant{"fixed-point dot, norms in the GEMVs", true, false},
                             Variant{"fixed-point dot, norms deferred (the default)", true, true}}) {
      gemv_q4_fixed_point_flag() = v.fixed, deferred_norm_flag() = v.defer;
      std::printf("[%s]\n", v.name);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
      guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 512, 64); });
      guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 64); });
    }
  gemv_q4_fixed_point_flag() = saved_fixed, deferred_norm_flag() = saved_defer;
  tune_gemv_q4();
}

// The decode attention alone (RoPE fused, one row) at the 7B's and 70B's head counts and bench's depths, for both
// softmax updates: us per launch, back to back (XLLAMA_PROFILE_ONCE: two launches per case, untimed, for ncu -k).
void time_decode_attention() {
  struct Case {
    const char* name;
    int H, KV, pos;
  };
  const Case cases[] = {{"7B", 32, 32, 40}, {"7B", 32, 32, 551}, {"7B", 32, 32, 2087},
                        {"70B", 64, 8, 40}, {"70B", 64, 8, 551}, {"70B", 64, 8, 2087}};
  const int D = 128, S = 4096;
  const bool saved = attention_batch_flag();
  for (const Case& c : cases)
    for (bool batch : {false, true}) {
      attention_batch_flag() = batch;
      const int width = (c.H + 2 * c.KV) * D;
      Dev<float> qkv(width), inv(D / 2), work((size_t)c.H * 64 * (D + 2));
      Dev<__half> kc((size_t)c.KV * S * D), vc((size_t)c.KV * S * D), out((size_t)c.H * D);
      Dev<int> pos(std::vector<int>{c.pos});
      Dev<unsigned> done(c.H);
      XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
      XL_CUDA_CHECK(cudaMemset(qkv.p, 0, qkv.n * 4));
      XL_CUDA_CHECK(cudaMemset(inv.p, 0, inv.n * 4));
      fill_random_half(kc.p, kc.n, 1, -1.f, 1.f, nullptr);
      fill_random_half(vc.p, vc.n, 2, -1.f, 1.f, nullptr);
      const int splits = attention_splits(1, c.H, S);
      auto run = [&] {
        attention_rope(qkv.p, inv.p, kc.p, vc.p, 1, c.H, c.KV, D, S, pos.p, splits, work.p, done.p, out.p, nullptr);
      };
      const float us = std::getenv("XLLAMA_PROFILE_ONCE") ? (run(), run(), 0.f) : batch_us(run);
      XL_CUDA_CHECK(cudaDeviceSynchronize());
      const double kv_mb = 2.0 * c.KV * (c.pos + 1) * D * 2 / 1e6;
      std::printf("time attention %-4s H=%d KV=%d len %4d %-6s splits %2d: %7.2f us  (%.1f MB of K/V: %5.0f GB/s)\n",
                  c.name, c.H, c.KV, c.pos + 1, batch ? "batch" : "1 by 1", splits, us, kv_mb, kv_mb * 1e3 / us);
    }
  attention_batch_flag() = saved;
}

// Whole-backend decode at the depths xllama bench reports (positions 9..137 after a 1-token prompt, 520..648, and
// 2056..2120; the 70B at 2056..2088 too) on the 7B, 13B and 70B dummies, for the settings the environment selects:
// run once per build or setting, alternated, to compare side by side.
void bench_decode_depths() {
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 1, 128); });
  guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
  guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 64, 2048); });
  guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 1, 64); });
  guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 512, 64); });
  guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 1, 32); });
  guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 32); });
  guarded("bench 70B", [&] { bench_backend("70B", c70, 4096, 2048, 32, 2048); });
}

// ---- the decode timeline (--timeline; cuda/kernel_trace.cuh, a build with -DXLLAMA_KERNEL_TRACE=ON) ----
// What the hooks recorded over some decode steps: every launch's release record (in release order), and per
// launch slot the last block's end and block 0's stage marks (the last replay's).
struct DecodeTrace {
  std::vector<KernelTrace> launches;
  std::vector<unsigned long long> ends, marks;
};

DecodeTrace record_decode_trace(Backend& b, int32_t& tok, int& pos, int steps) {
  const unsigned cap = 1u << 16;
  Dev<KernelTrace> rec(cap);
  Dev<unsigned> count(std::vector<unsigned>{0});
  Dev<unsigned long long> ends(std::vector<unsigned long long>(kTraceSlots, 0)),
      marks(std::vector<unsigned long long>(kTraceSlots * kTraceMarks, 0));
  XL_CUDA_CHECK(cudaDeviceSynchronize());  // the warm-up steps are not traced
  set_kernel_trace({rec.p, count.p, cap, ends.p, marks.p});
  TokenSampling greedy;
  for (int i = 0; i < steps; ++i) tok = b.forward_sample(&tok, 1, pos++, greedy, &greedy);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  set_kernel_trace({});
  DecodeTrace t{rec.download(), ends.download(), marks.download()};
  t.launches.resize(std::min(count.download()[0], cap));
  // %gridid does not follow launch order in a graph; one stream's kernels are released in order
  std::sort(t.launches.begin(), t.launches.end(),
            [](const KernelTrace& a, const KernelTrace& x) { return a.t_released < x.t_released; });
  return t;
}

// One kind of launch (its grid and block size), its times summed over the trace, in microseconds.
struct LaunchKind {
  std::string name;
  int n = 0;
  double until_next = 0;  // release to the next launch's release
  double waited = 0;      // block 0 at its wait until released
  double resident = 0;    // the previous launch's release until block 0 reached its wait
  int staged = 0;         // launches with block 0's marks: release -> mark 0 -> mark 1 -> mark 2
  double mark[3] = {0, 0, 0};
  // marks 3.. from the release: a GEMV's first input arrived; the attention's q, norm factor, new rows, merge weights
  int late_n[kTraceMarks] = {};
  double late[kTraceMarks] = {};
  int ended = 0;  // launches with block ends: release -> the last block's end -> the next release
  double end = 0, after_end = 0;
};

std::vector<LaunchKind> summarize_decode_trace(const DecodeTrace& t) {
  const std::vector<KernelTrace>& r = t.launches;
  const auto us = [](unsigned long long a, unsigned long long b) { return ((double)a - (double)b) * 1e-3; };
  // A graph's kernels keep their %gridid on every replay: the ends and marks are the last replay's, so each is
  // joined with its gridid's last launch only.
  std::map<unsigned long long, size_t> last_of;
  for (size_t i = 0; i < r.size(); ++i) last_of[r[i].gridid] = i;
  std::vector<LaunchKind> kinds;
  for (size_t i = 0; i + 1 < r.size(); ++i) {
    char name[96];
    std::snprintf(name, sizeof name, "grid %u,%u,%u x %u", r[i].grid[0], r[i].grid[1], r[i].grid[2], r[i].threads);
    auto k = std::find_if(kinds.begin(), kinds.end(), [&](const LaunchKind& x) { return x.name == name; });
    if (k == kinds.end()) kinds.push_back({name}), k = kinds.end() - 1;
    k->n++;
    k->until_next += us(r[i + 1].t_released, r[i].t_released);
    k->waited += us(r[i].t_released, r[i].t_reached);
    if (i) k->resident += us(r[i].t_reached, r[i - 1].t_released);
    if (last_of[r[i].gridid] != i) continue;
    const size_t slot = r[i].gridid & (kTraceSlots - 1);
    const unsigned long long* m = &t.marks[slot * kTraceMarks];
    if (m[2]) {
      k->staged++;
      k->mark[0] += us(m[0], r[i].t_released), k->mark[1] += us(m[1], m[0]), k->mark[2] += us(m[2], m[1]);
    }
    for (int j = 3; j < kTraceMarks; ++j)
      if (m[j]) k->late_n[j]++, k->late[j] += us(m[j], r[i].t_released);
    if (t.ends[slot]) {
      k->ended++;
      k->end += us(t.ends[slot], r[i].t_released), k->after_end += us(r[i + 1].t_released, t.ends[slot]);
    }
  }
  return kinds;
}

// A dummy CUDA backend of shape c (group size 128, seed 1) after a prompt of random tokens.
struct PromptedDummy {
  std::unique_ptr<Backend> backend;
  std::vector<int32_t> prompt;
  std::vector<float> logits;
};
PromptedDummy dummy_after_prompt(const ModelConfig& c, int ctx, int chunk, int prompt_len) {
  BackendOptions o;
  o.max_seq_len = ctx, o.max_chunk_tokens = chunk;
  PromptedDummy d{create_cuda_dummy_backend(c, 128, o, 1), random_tokens(prompt_len, c.vocab_size),
                  std::vector<float>(c.vocab_size)};
  d.backend->forward(d.prompt.data(), prompt_len, 0, false, d.logits.data());
  return d;
}

void decode_timeline(const char* name, const ModelConfig& c, int ctx, int prompt) {
  const PromptedDummy d = dummy_after_prompt(c, ctx, 512, prompt);
  Backend* b = d.backend.get();
  TokenSampling greedy;
  int32_t tok = d.prompt.back();
  int pos = prompt;
  for (int i = 0; i < 8; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy, &greedy);  // capture + warm up
  const int steps = 16, first_pos = pos;
  const DecodeTrace t = record_decode_trace(*b, tok, pos, steps);
  if (t.launches.size() < 2) throw std::runtime_error("timeline: no launches recorded");
  const double span_ms = (double)(t.launches.back().t_released - t.launches.front().t_released) * 1e-6 / steps;
  std::printf("timeline %s at %d..%d: %zu launches, %.3f ms per token\n", name, first_pos, pos, t.launches.size(),
              span_ms);
  std::printf("  %-24s %8s %9s %10s %9s %9s | block 0 after release: staged, dot, reduce | last end, then\n",
              "launch", "per step", "us each", "us / step", "waited", "resident");
  for (const LaunchKind& k : summarize_decode_trace(t)) {
    std::printf("  %-24s %8.1f %9.2f %10.1f %9.2f %9.2f |", k.name.c_str(), (double)k.n / steps, k.until_next / k.n,
                k.until_next / steps, k.waited / k.n, k.resident / k.n);
    if (k.staged)
      std::printf(" %6.2f %6.2f %6.2f", k.mark[0] / k.staged, k.mark[1] / k.staged, k.mark[2] / k.staged);
    if (k.ended) std::printf(" | %6.2f %6.2f", k.end / k.ended, k.after_end / k.ended);
    for (int j = 3; j < kTraceMarks; ++j)
      if (k.late_n[j]) std::printf(" | m%d %5.2f", j, k.late[j] / k.late_n[j]);
    std::printf("\n");
  }
}

void decode_timelines() {
  if (!kKernelTraceBuilt) {
    std::printf("--timeline needs a build with -DXLLAMA_KERNEL_TRACE=ON\n");
    ++failures;
    return;
  }
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  guarded("timeline 7B", [&] { decode_timeline("7B", c7, 2048, 1); });
  guarded("timeline 7B", [&] { decode_timeline("7B", c7, 2048, 512); });
  guarded("timeline 7B", [&] { decode_timeline("7B", c7, 4096, 2048); });
  guarded("timeline 13B", [&] { decode_timeline("13B", c13, 2048, 1); });
  guarded("timeline 70B", [&] { decode_timeline("70B", c70, 2048, 1); });
  guarded("timeline 70B", [&] { decode_timeline("70B", c70, 4096, 2048); });
}

// Where a decode step's time goes inside its graph: the step with parts left out (decode_ablation(); the logits are
// wrong, the timing is not), each against the full step, on the 7B (twice over) and the 70B, for the decode
// variant the switches select (XLLAMA_DEFER_NORM=0: the norms in the GEMVs).
void bench_ablations() {
  const ModelConfig c7 = llama_7b_config(), c70 = llama_70b_config();
  struct Part {
    const char* name;
    unsigned parts;
  };
  const Part parts[] = {{"full step", 0},
                        {"without attention", kAblateAttention},
                        {"without the sums of squares in o_proj and down_proj", kAblateSumsOfSquares},
                        {"without the RMSNorm in the q/k/v and gate/up staging", kAblateNormStaging},
                        {"without all three", kAblateAttention | kAblateSumsOfSquares | kAblateNormStaging},
                        {"full step", 0}};
  std::printf("decode ablations%s\n", deferred_norm_flag() ? " [deferred norms]" : " [norms in the GEMVs]");
  for (int rep = 0; rep < 2; ++rep)
    for (const Part& p : parts) {
      decode_ablation() = p.parts;
      std::printf("[%s]\n", p.name);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 1, 128); });
      guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
      if (rep == 0) guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 64); });
    }
  decode_ablation() = 0;
}

// Prompt-path settings side by side: the dequantization tile (read when a backend is created) on the 7B and
// 70B dummies at 512 tokens, then the prompt chunk size on the 7B at 2048 tokens; twice over for the spread.
void bench_prompt_settings() {
  const ModelConfig c7 = llama_7b_config();
  const ModelConfig c70 = llama_70b_config();
  for (int rep = 0; rep < 2; ++rep)
    for (const char* mib : {"64", "128", "256", "512"}) {
      setenv("XLLAMA_DEQUANT_MIB", mib, 1);
      std::printf("[prompt: dequantization tile %s MiB]\n", mib);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 8); });
      guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 8); });
    }
  unsetenv("XLLAMA_DEQUANT_MIB");
  for (int rep = 0; rep < 2; ++rep)
    for (int chunk : {512, 1024, 2048}) {
      std::printf("[prompt: chunks of %d tokens]\n", chunk);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 8, chunk); });
    }
}

#ifdef XLLAMA_HAVE_CUBLAS
// A prompt path GEMM shape on random operands: x [m, K] times a dequantized tile [K, N], into fp16 (overwritten, as
// q/k/v and gate/up are) or fp32 (accumulated, as o_proj and down_proj are), through cublasGemmEx.
struct PromptGemmCase {
  int K, N, m;
  bool f32;
  Dev<__half> x, w;
  Dev<uint8_t> y;
  cudaDataType_t y_type;
  float one = 1.f, beta;
  cublasHandle_t handle = nullptr;
  PromptGemmCase(int K_, int N_, int m_, bool f32_, unsigned seed)
      : K(K_), N(N_), m(m_), f32(f32_), x((size_t)m_ * K_), w((size_t)K_ * N_), y((size_t)m_ * N_ * (f32_ ? 4 : 2)),
        y_type(f32_ ? CUDA_R_32F : CUDA_R_16F), beta(f32_ ? 1.f : 0.f) {
    fill_random_half(x.p, x.n, seed, -1.f, 1.f, nullptr);
    fill_random_half(w.p, w.n, seed + 1, -0.05f, 0.05f, nullptr);
    cublasCreate(&handle);
  }
  ~PromptGemmCase() { cublasDestroy(handle); }
  size_t row_bytes() const { return (size_t)N * (f32 ? 4 : 2); }
  // One GEMM into `out` (m rows of N), with an SM-count target where one is given (0: every SM).
  void run(void* out, int sm_target = -1) {
    if (sm_target >= 0) cublasSetSmCountTarget(handle, sm_target);
    cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, w.p, CUDA_R_16F, N, x.p, CUDA_R_16F, K, &beta, out,
                 y_type, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
};

// The prompt path's GEMM shape through cublasGemmEx's default choice against every algorithm cublasLt's heuristic
// offers for it (up to 32), each timed: whether picking the algorithm per shape would pay.
void time_gemm_algos(const char* what, int K, int N, int m, bool f32) {
  PromptGemmCase g(K, N, m, f32, 12);
  const float dflt = median_ms([&] { g.run(g.y.p); }, 3, 20);
  cublasLtHandle_t lt;
  cublasLtCreate(&lt);
  cublasLtMatmulDesc_t op;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, N, K, N);  // the tile, column-major N x K
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_16F, K, m, K);  // x^T
  cublasLtMatrixLayoutCreate(&lc, g.y_type, N, m, N);
  const size_t ws_bytes = (size_t)32 << 20;
  Dev<uint8_t> ws(ws_bytes);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes);
  cublasLtMatmulHeuristicResult_t res[32];
  int n = 0;
  cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 32, res, &n);
  float first = -1.f, best = 1e30f;
  int best_i = -1;
  std::string all;
  for (int i = 0; i < n; ++i) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const float t = median_ms([&] {
      cublasLtMatmul(lt, op, &g.one, g.w.p, la, g.x.p, lb, &g.beta, g.y.p, lc, g.y.p, lc, &res[i].algo, ws.p, ws_bytes,
                     nullptr);
    }, 3, 20);
    if (i == 0) first = t;
    if (t < best) best = t, best_i = i;
    char buf[48];
    std::snprintf(buf, sizeof buf, " %.1f", t * 1e3);
    all += buf;
  }
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const double flops = 2.0 * m * (double)K * N;
  std::printf("gemm algos %-9s %5dx%-5d m=%4d %s: GemmEx %7.1f us (%5.0f TFLOP/s) | Lt heuristic #0 %7.1f | best of %d "
              "#%d %7.1f us (%5.0f TFLOP/s, %.3f of GemmEx) | all:%s\n",
              what, K, N, m, f32 ? "f32" : "f16", dflt * 1e3, flops / (dflt * 1e-3) / 1e12, first * 1e3, n, best_i,
              best * 1e3, flops / (best * 1e-3) / 1e12, best / dflt, all.c_str());
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(lt);
}

// cublasGemmEx's time at SM-count targets below the GPU's: where each shape's wave cliff is (gemm_sm_targets.h).
void time_gemm_sm_targets(const char* what, int K, int N, int m, bool f32) {
  PromptGemmCase g(K, N, m, f32, 12);
  std::string all;
  for (int target : {0, 128, 124, 120, 116, 112, 108, 104, 100, 96}) {
    const float t = median_ms([&] { g.run(g.y.p, target); }, 3, 15);
    char buf[48];
    std::snprintf(buf, sizeof buf, " %d:%.1f", target, t * 1e3);
    all += buf;
  }
  std::printf("gemm sm %-9s %5dx%-5d m=%4d %s:%s\n", what, K, N, m, f32 ? "f32" : "f16", all.c_str());
}
void time_gemm_sm_shapes() {
  for (int m : {512, 1024, 2048}) {
    time_gemm_sm_targets("7B qkv", 4096, 12288, m, false);
    time_gemm_sm_targets("7B o", 4096, 4096, m, true);
    time_gemm_sm_targets("7B gu half", 4096, 11008, m, false);
    time_gemm_sm_targets("7B down", 11008, 4096, m, true);
  }
  time_gemm_sm_targets("13B qkv", 5120, 15360, 2048, false);
  time_gemm_sm_targets("70B qkv tile", 8192, 5120, 2048, false);
  time_gemm_sm_targets("70B gu tile", 8192, 8192, 2048, false);
  time_gemm_sm_targets("70B down tile", 28672, 2048, 2048, true);
}

// GemmSmTargets on a real shape: the target it keeps is 0 or within its candidate range, and cuBLAS's output at
// that target is the same, bit for bit, as on every SM (the 13B down_proj tile at 512 tokens is fastest on 108 SMs,
// where cuBLAS changes kernels and its output differs: the tuner must pass over it).
void check_gemm_sm_targets(int K, int N, int m, bool f32) {
  PromptGemmCase g(K, N, m, f32, 21);  // fp32 outputs accumulate, as o_proj and down_proj do
  const size_t bytes = g.y.n;
  Dev<uint8_t> y0(bytes), yt(bytes);
  int sms = 0;
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  GemmSmTargets targets(sms);
  const GemmSmTargets::Gemm timed{[&](int target) { g.run(g.y.p, target); }, g.y.p, m, g.row_bytes(), g.row_bytes()};
  const int t = targets.tune(GemmSmTargets::shape_of(m, N, K, f32, f32), nullptr, timed);
  const bool in_range = t == 0 || (t >= sms * 3 / 4 && t < sms);
  XL_CUDA_CHECK(cudaMemset(y0.p, 0, bytes));
  XL_CUDA_CHECK(cudaMemset(yt.p, 0, bytes));
  g.run(y0.p, 0);
  g.run(yt.p, t);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint8_t> a = y0.download(), b = yt.download();
  char name[160];
  std::snprintf(name, sizeof name, "gemm at its SM target (%d of %d) == on every SM %dx%d m=%d%s (differs)", t, sms,
                K, N, m, f32 ? " fp32 accumulating" : "");
  report(name, !in_range || std::memcmp(a.data(), b.data(), bytes) != 0, 0);
}

// The prompt path's GEMMs as the backend chunks them (128 MiB tiles): the 7B at 512 and 2048 tokens, the 70B's
// gate/up tile at 2048.
void time_gemm_algo_shapes() {
  for (int m : {512, 2048}) {
    time_gemm_algos("7B qkv", 4096, 12288, m, false);
    time_gemm_algos("7B o", 4096, 4096, m, true);
    time_gemm_algos("7B gu half", 4096, 11008, m, false);
    time_gemm_algos("7B down", 11008, 4096, m, true);
  }
  time_gemm_algos("70B qkv tile", 8192, 5120, 2048, false);
  time_gemm_algos("70B gu tile", 8192, 8192, 2048, false);
  time_gemm_algos("70B down tile", 28672, 2048, 2048, true);
}
#endif

// A 7B gate/up tile's GEMM at 512 tokens (cuBLAS on a high-priority stream) with the next tile's dequantization on a
// low-priority stream beside it, against the two one after the other; then whole prompts with XLLAMA_DEQUANT_AHEAD
// off and on, side by side twice.
void bench_dequant_ahead() {
#ifdef XLLAMA_HAVE_CUBLAS
  {
    const int K = 4096, N = 11008;
    HostGptq h = make_gptq(K, N, 128, false, true);
    DevQ d(h, 1);
    int least = 0, greatest = 0;
    XL_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    // Blocking streams: median_ms's events on the legacy stream wait for both.
    cudaStream_t hi, lo;
    XL_CUDA_CHECK(cudaStreamCreateWithPriority(&hi, cudaStreamDefault, greatest));
    XL_CUDA_CHECK(cudaStreamCreateWithPriority(&lo, cudaStreamDefault, least));
    cublasHandle_t hb;
    cublasCreate(&hb);
    cublasSetStream(hb, hi);
    for (int m : {512, 2048}) {
      Dev<__half> x((size_t)m * K), y((size_t)m * N), deq((size_t)K * N), deq2((size_t)K * N);
      fill_random_half(x.p, x.n, 12, -1.f, 1.f, nullptr);
      dequant_q4(d.q, 0, N, deq.p, nullptr);
      const float one = 1.f, zero = 0.f;
      const auto gemm = [&] {
        cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, deq.p, CUDA_R_16F, N, x.p, CUDA_R_16F, K, &zero,
                     y.p, CUDA_R_16F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      };
      const float g = median_ms(gemm, 3, 20);
      const float dq = median_ms([&] { dequant_q4(d.q, 0, N, deq2.p, hi); }, 3, 20);
      const float serial = median_ms([&] {
        dequant_q4(d.q, 0, N, deq2.p, hi);
        gemm();
      }, 3, 20);
      const float beside = median_ms([&] {
        gemm();
        dequant_q4(d.q, 0, N, deq2.p, lo, /*beside=*/true);
      }, 3, 20);
      const float beside2 = median_ms([&] {  // two GEMMs, the dequantization beside the first
        gemm();
        dequant_q4(d.q, 0, N, deq2.p, lo, /*beside=*/true);
        gemm();
      }, 3, 20);
      std::printf("time %dx%d m=%d: gemm %7.1f us, dequant %6.1f us, one after the other %7.1f us, dequant beside "
                  "the gemm %7.1f us, beside the first of two gemms %7.1f us (2 gemms alone %7.1f)\n",
                  K, N, m, g * 1e3, dq * 1e3, serial * 1e3, beside * 1e3, beside2 * 1e3, 2 * g * 1e3);
    }
    cublasDestroy(hb);
    XL_CUDA_CHECK(cudaStreamDestroy(hi));
    XL_CUDA_CHECK(cudaStreamDestroy(lo));
  }
#endif
  const ModelConfig c7 = llama_7b_config();
  const ModelConfig c13 = llama_13b_config();
  const ModelConfig c70 = llama_70b_config();
  for (int rep = 0; rep < 2; ++rep)
    for (const char* on : {"0", "1"}) {
      setenv("XLLAMA_DEQUANT_AHEAD", on, 1);
      std::printf("[prompt: XLLAMA_DEQUANT_AHEAD=%s]\n", on);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 512, 8, 512); });
      guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 8, 2048); });
      guarded("bench 13B", [&] { bench_backend("13B", c13, 4096, 2048, 8, 2048); });
      guarded("bench 70B", [&] { bench_backend("70B", c70, 4096, 512, 8, 512); });
      guarded("bench 70B", [&] { bench_backend("70B", c70, 4096, 2048, 8, 2048); });
    }
  unsetenv("XLLAMA_DEQUANT_AHEAD");
}

// Prompt speeds of the dummies (7B at 512 and 2048 tokens, 13B and 70B at 2048; each chunk as long as the prompt),
// after the prompt attention alone at 7B and 70B shapes, with the fused 4-bit GEMMs and without, side by side.
void bench_prompt_speeds() {
  const ModelConfig c7 = llama_7b_config();
  const ModelConfig c13 = llama_13b_config();
  const ModelConfig c70 = llama_70b_config();
  for (int m : {512, 2048}) time_attention_prefill(32, 32, 128, m);
  time_attention_prefill(64, 8, 128, 2048);
  for (int rep = 0; rep < 2; ++rep)
    for (const char* fused : {"1", "0"}) {  // the 4-bit GEMMs fused (Hopper) or dequantized + cuBLAS, side by side
      setenv("XLLAMA_FUSED_PROMPT_GEMM", fused, 1);
      std::printf("[prompt: XLLAMA_FUSED_PROMPT_GEMM=%s]\n", fused);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 512, 8, 512); });
      guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 8, 2048); });
      guarded("bench 13B", [&] { bench_backend("13B", c13, 4096, 2048, 8, 2048); });
      guarded("bench 70B", [&] { bench_backend("70B", c70, 4096, 2048, 8, 2048); });
    }
  unsetenv("XLLAMA_FUSED_PROMPT_GEMM");
}

// The persistent decode kernel alone at 7B / 13B / 70B shapes, both block sizes.
void time_decode_steps(bool quick = false) {
  const ModelConfig c7 = llama_7b_config();
  const ModelConfig c13 = llama_13b_config();
  const ModelConfig c70 = llama_70b_config();
  std::printf("\npersistent decode kernel alone (random weights, group 128)\n");
  const double copy = copy_bandwidth_gbs();
  if (quick) {  // 7B at length 128 only (a profiler's run); XLLAMA_DECODE_THREADS picks one block size
    const char* t = std::getenv("XLLAMA_DECODE_THREADS");
    if (t && *t) time_decode_step("7B", c7, 128, copy, std::atoi(t));
    else for (int threads : {256, 512}) time_decode_step("7B", c7, 128, copy, threads);
    return;
  }
  for (int threads : {256, 512}) {
    for (int len : {128, 2048}) guarded("decode step 7B", [&] { time_decode_step("7B", c7, len, copy, threads); });
    guarded("decode step 13B", [&] { time_decode_step("13B", c13, 128, copy, threads); });
    for (int len : {128, 2048}) guarded("decode step 70B", [&] { time_decode_step("70B", c70, len, copy, threads); });
  }
}

// One 512-token prompt chunk or one decode step of the 7B dummy between cudaProfilerStart/Stop, for
// `ncu --profile-from-start off`: the per-kernel breakdown of issue 13.
void profile_step(bool decode, int prompt = 512) {
  PromptedDummy d = dummy_after_prompt(llama_7b_config(), 4096, prompt, prompt);
  Backend* b = d.backend.get();
  TokenSampling greedy;
  int32_t tok = d.prompt.back();
  int pos = prompt;
  for (int i = 0; i < 8; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy);  // capture + warm up
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  XL_CUDA_CHECK(cudaProfilerStart());
  if (decode) {
    tok = b->forward_sample(&tok, 1, pos++, greedy);
  } else {
    b->clear_cache();
    b->forward(d.prompt.data(), prompt, 0, false, d.logits.data());
  }
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  XL_CUDA_CHECK(cudaProfilerStop());
  if (decode) std::printf("profiled one decode step at position %d\n", pos - 1);
  else std::printf("profiled one %d-token prompt chunk\n", prompt);
}

// ---- tuning: every GEMV variant on every decode shape, timed as a graph would run them (back to back) ----

void tune_gemv_q4() {
  struct Shape {
    const char* name;
    int K, N;
    bool silu;
  };
  const Shape shapes[] = {
      {"7B q+k+v", 4096, 12288, false},     {"7B o_proj", 4096, 4096, false},
      {"7B gate+up", 4096, 22016, false},   {"7B down (silu)", 11008, 4096, true},
      {"13B q+k+v", 5120, 15360, false},    {"13B o_proj", 5120, 5120, false},
      {"13B gate+up", 5120, 27648, false},  {"13B down (silu)", 13824, 5120, true},
      {"70B q+k+v", 8192, 10240, false},    {"70B o_proj", 8192, 8192, false},
      {"70B gate+up", 8192, 57344, false},  {"70B down (silu)", 28672, 8192, true},
  };
  std::printf("\ntune gemv_q4 (m=1, group 128; us per launch, back to back; h/f = fp16/fixed-point dot, then packed rows per warp)\n");
  for (const Shape& sh : shapes) {
    const int K = sh.K, N = sh.N, G = K / 128;
    Dev<uint32_t> qw((size_t)K / 8 * N);
    Dev<__half> sc((size_t)G * N), x(K);
    Dev<float> gu(2 * (size_t)K), y(N);
    fill_random_u32(qw.p, qw.n, 1, nullptr);
    fill_random_half(sc.p, sc.n, 2, 0.001f, 0.002f, nullptr);
    fill_random_half(x.p, x.n, 3, -1.f, 1.f, nullptr);
    XL_CUDA_CHECK(cudaMemset(gu.p, 0, gu.n * 4));
    QWeight q;
    q.qweight = qw.p, q.scales = sc.p, q.K = K, q.N = N, q.group_size = 128, q.sym_zero = 8;
    const void* xp = sh.silu ? (const void*)gu.p : (const void*)x.p;
    const int xs = sh.silu ? 2 * K : K;
    const double gb = ((double)qw.n * 4 + sc.n * 2) / 1e9;
    auto time_cfg = [&](const GemvQ4Config& c) {
      return batch_us([&] { gemv_q4(q, xp, sh.silu ? GemvInput::SiluGateUp : GemvInput::Half, 1, xs, y.p, N, nullptr, c); });
    };
    const GemvQ4Config def = gemv_q4_resolve(q, {});
    const float t_def = time_cfg(def);
    GemvQ4Config best = def;
    float t_best = t_def;
    std::string all;
    for (const GemvQ4Config& c : gemv_q4_candidates()) {
      if (c.rows_per_warp == 0) continue;  // the rule: timed above
      const float t = time_cfg(c);
      char buf[48];
      std::snprintf(buf, sizeof buf, " %c%d=%.1f", c.dot == GemvDot::Half ? 'h' : 'f', c.rows_per_warp, t);
      all += buf;
      if (t < t_best) t_best = t, best = c;
    }
    std::printf("tune %-16s %5dx%-5d rule r%-3d %6.1f us %5.0f GB/s | best %c%-3d %6.1f us %5.0f GB/s\n", sh.name,
                K, N, def.rows_per_warp, t_def, gb / (t_def * 1e-6), best.dot == GemvDot::Half ? 'h' : 'f',
                best.rows_per_warp, t_best, gb / (t_best * 1e-6));
    std::printf("     all:%s\n", all.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool timing = true, tune = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-timing") == 0) timing = false;
    if (std::strcmp(argv[i], "--tune") == 0) tune = true;
    if (std::strcmp(argv[i], "--profile-step") == 0 && i + 1 < argc) {
      const bool decode = std::strcmp(argv[i + 1], "decode") == 0;
      const int prompt = std::strcmp(argv[i + 1], "prefill2048") == 0 ? 2048 : 512;
      guarded("profile step", [&] { profile_step(decode, prompt); });
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--prompt-gemm") == 0) {  // the prompt GEMM's checks, then its shapes timed
      guarded("prompt gemm 512x384", [] { check_gemm_q4(512, 384, 128, 40, false); });
      guarded("prompt gemm 512x384 act-order", [] { check_gemm_q4(512, 384, 64, 77, true); });
      guarded("prompt gemm 1024x768", [] { check_gemm_q4(1024, 768, 32, 300, false); });
      guarded("prompt gemm timings", time_prompt_gemms);
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
#ifdef XLLAMA_HAVE_CUBLAS
    if (std::strcmp(argv[i], "--gemm-sm") == 0) {  // cublasGemmEx's time per SM-count target
      guarded("gemm sm targets", time_gemm_sm_shapes);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--gemm-algos") == 0) {  // cublasGemmEx's choice against cublasLt's candidates
      guarded("gemm algorithms", time_gemm_algo_shapes);
      return failures ? 1 : 0;
    }
#endif
    if (std::strcmp(argv[i], "--bench-dequant-ahead") == 0) {  // the prompt's dequantization on a side stream
      guarded("bench dequant ahead", bench_dequant_ahead);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-prompt") == 0) {  // prompt speeds (run per build or setting to compare)
      if (i + 1 < argc && std::strcmp(argv[i + 1], "7b") == 0) {  // the 7B's 512 and 2048 only, as the backend runs
        const ModelConfig c7 = llama_7b_config();
        guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 512, 8, 512); });
        guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 512, 8, 2048); });  // the CLI's chunk
        guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 8, 2048); });
        return failures ? 1 : 0;
      }
      if (i + 1 < argc && std::strcmp(argv[i + 1], "dummies") == 0) {  // unfused, every dummy at 512 and 2048
        for (const ModelConfig& c : {llama_7b_config(), llama_13b_config(), llama_70b_config()}) {
          const char* name = c.hidden_size == 4096 ? "7B" : c.hidden_size == 5120 ? "13B" : "70B";
          guarded("bench", [&] { bench_backend(name, c, 4096, 512, 8, 512); });
          guarded("bench", [&] { bench_backend(name, c, 4096, 2048, 8, 2048); });
        }
        return failures ? 1 : 0;
      }
      guarded("bench prompt speeds", bench_prompt_speeds);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--backend-paths") == 0) {  // only the backend's path checks (decode pipelining too)
      check_backend_paths_every_setting();
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--prompt-attention") == 0) {  // only the prompt attention's checks
      guarded("prompt attention", check_prompt_attention);
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--decode-attention") == 0) {  // only the decode attention's checks
      guarded("decode attention", check_decode_attention);
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-ablate") == 0) {  // decode steps with parts left out (timing only)
      guarded("bench ablations", bench_ablations);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--time-attention") == 0) {
      guarded("time decode attention", time_decode_attention);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--timeline") == 0) {
      guarded("decode timelines", decode_timelines);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-depths") == 0) {  // decode at three depths, for the environment's settings
      guarded("bench decode depths", bench_decode_depths);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-decode") == 0) {  // decode's variants, side by side
      guarded("bench decode variants", bench_decode_variants);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--decode-step") == 0) {  // only the persistent decode kernel's timings (profiling)
      const bool quick = i + 1 < argc && std::strcmp(argv[i + 1], "quick") == 0;
      guarded("decode steps", [quick] { time_decode_steps(quick); });
      return failures ? 1 : 0;
    }
  }
  try {
    cudaDeviceProp prop{};
    XL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (%d SMs)\n%-52s %12s  %s\n", prop.name, prop.multiProcessorCount, "kernel",
                "max rel err", "result");
    check_permute_q4(512, 384, 64);
    check_permute_q4(4096, 1000, 128);
    check_gemv_q4(4096, 1024, 128, 1, false, false, 1);
    check_gemv_q4(4096, 512, 128, 8, false, false, 1);
    check_gemv_q4(512, 384, 64, 3, true, false, 1);
    check_gemv_q4(512, 384, 32, 5, true, true, 1);
    check_gemv_q4(1024, 256, 128, 2, false, true, 0);  // gptq_v2 zeros
    check_gemv_q4(64, 192, 32, 1, false, false, 1);    // the stories260K shapes
    // Grids of more than one wave (on the H200's 132 SMs): the 7B's gate/up (1.7 waves, the uncapped kernel as it
    // is), the 13B's q/k/v (the 7-blocks-per-SM kernel, reshaped into one wave; 13B down_proj below)
    check_gemv_q4(4096, 22016, 128, 1, false, false, 1);
    check_gemv_q4(5120, 15360, 128, 1, true, true, 1);
    check_gemv_q4(192, 64, 64, 7, true, false, 1);
    check_gemv_q4(2048, 256, 128, 2, false, true, 1, 4000.f);  // large activations must not overflow fp16
    check_gemv_q4(4096, 1024, 128, 1, false, false, 1, 1.f, true);
    check_gemv_q4(4096, 512, 128, 3, true, true, 1, 1.f, true);
    check_gemv_q4_nonfinite();
    check_gemv_q4_silu(1024, 256, 128, 1, false);
    check_gemv_q4_silu(512, 128, 64, 4, true);
    check_gemv_q4_silu(13824, 5120, 128, 1, true);  // more than one wave: reshaped into one (see above)
    check_gemv_q4_silu(28672, 8192, 128, 1, false);  // the 70B down_proj: 4.5 waves, the 7-block kernel as it is
    for (int m = 1; m <= kGemvMaxRows; ++m) {
      check_gemv_q4_rmsnorm(m % 2 ? 512 : 1024, 384, 128, m, m % 3 == 0);
      check_gemv_q4_sum_sq(m % 2 ? 512 : 64, 320, 64, m, GemvInput::Half);  // K = 64: one block owns all of K
      check_gemv_q4_sum_sq(1024, 256, 128, m, GemvInput::SiluGateUp);
      check_embed(m, 4096, 300);
      check_gemv_f16_rmsnorm(m % 2 ? 4096 : 520, 1003, m);  // N % 8 != 0: the last block has idle warps
    }
    check_embed(1, 64, 300);      // stories260K: fewer 16-byte pieces than threads in a warp
    check_embed(2, 40960, 50);    // rows wider than one round of loads
    check_gemv_f16_rmsnorm(8192, 264, kGemvMaxRows);  // 3 rows per launch fit the staging area: 3 + 3 + 2
    check_gemv_q4_rmsnorm(4096, 1024, 128, 1, false);  // the 7B hidden size
    check_gemv_q4_sum_sq(4096, 4096, 128, 1, GemvInput::Half);
    check_dequant_q4_exact(512, 384, 128, false, true, 0, 384);
    check_dequant_q4_exact(1024, 768, 32, false, false, 128, 640);  // a tile of columns, symmetric
    check_dequant_q4_exact(512, 384, 64, true, true, 0, 384);
    check_dequant_q4_exact(256, 40, 128, false, true, 4, 36);       // columns not in 8s: the generic kernel
    check_gemm_q4(512, 384, 128, 40, false);
    check_gemm_q4(512, 384, 64, 77, true);
    check_gemm_q4(1024, 768, 32, 300, false);  // two groups per k64 step; three token tiles, the last partial
#ifdef XLLAMA_HAVE_CUBLAS
    check_gemm_sm_targets(4096, 11008, 512, false);  // a 7B gate/up half at 512 tokens: 116 of the H200's 132
    check_gemm_sm_targets(11008, 4096, 2048, true);   // 7B down_proj at 2048
    check_gemm_sm_targets(13824, 2560, 512, true);    // a 13B down_proj tile at 512 (108 in the CLI)
#endif
    check_dense(4096, 1000, 1, false);
    check_dense(4096, 1000, 4, false);
    check_dense(172, 64, 3, false);  // K not a multiple of 8
    check_dense(256, 200, 70, true);
    check_rmsnorm(3, 4096);
    check_rmsnorm(2, 64);
    check_rmsnorm(12, 4096);  // prompt rows: one block per row (vectorized)
    check_rmsnorm(40, 5120);  // the 13B hidden size
    check_rmsnorm(17, 8192);  // the 70B hidden size: 8 float4 per thread
    check_rmsnorm(9, 8196);   // too long for the vectorized kernel: the scalar one
    check_rmsnorm(11, 100);   // short rows: most threads idle
    check_silu(3, 11008);
    check_silu(70, 11008, true);  // a prompt chunk's fp16 gate/up
    check_silu(5, 10, true);      // I % 4 != 0: scalar loads
    check_rope(2, 4, 2, 128, 1000, 1100);
    check_rope(3, 8, 4, 8, 7, 16);
    check_rope(70, 8, 2, 128, 30, 128, true);  // a prompt chunk's fp16 q/k/v
    check_rope(4, 6, 3, 64, 5, 16, true);      // head_dim 64: 16 heads per stride, 12 in all
    check_rope(3, 2, 1, 6, 4, 16, true);       // head_dim 6 (D % 4 != 0): one frequency per thread
    check_prompt_attention();
    {  // both block sizes, then the other softmax update
      const int threads = attention_threads_flag();
      for (int t : {threads, threads >= 256 ? 128 : 256}) {
        attention_threads_flag() = t;
        check_decode_attention();
      }
      attention_threads_flag() = threads;
      attention_batch_flag() = !attention_batch_flag();
      check_decode_attention();
      attention_batch_flag() = !attention_batch_flag();
    }
    check_sampling(32000);
    check_sampling(128256);
    check_sampling(512);
    check_sampling(1001);  // vocab % 4 != 0: the tail after the 16-byte loads
    check_token_nll(1, 512, 0.f);
    check_token_nll(64, 32000, 0.f);
    check_token_nll(7, 128256, 0.f);
    check_token_nll(5, 32000, 1e4f);   // max-subtraction: exp of the raw logits would overflow
    check_token_nll(3, 1000, -1e4f);
    check_backend_paths_every_setting();
    guarded("backend gptq", check_backend_gptq);
    if (timing) {
      std::printf("\n7B decode shapes (group 128; bytes = qweight + scales)\n");
      time_decode_gemv_shapes();
      time_gemv_q4("gate+up", 4096, 22016, 4);
      time_gemv_f16("lm_head", 4096, 32000);
      time_lm_head_rmsnorm(4096, 32000);
      time_attention(32, 32, 128, 2048);
      time_attention(64, 8, 128, 2048);
      time_attention(32, 32, 128, 16384);
      for (int len : {128, 600, 2048}) time_attention_split_rule(32, 32, 128, len, 2048);
      time_attention_prefill(32, 32, 128, 512);
      std::printf("\nwhole backend on dummy models (group 128, greedy decode on the device)\n");
      const ModelConfig c7 = llama_7b_config();
      const ModelConfig c70 = llama_70b_config();
      const ModelConfig c13 = llama_13b_config();
      time_decode_steps();
      const bool persistent = persistent_decode_flag();
      for (bool on : {persistent, !persistent}) {
        persistent_decode_flag() = on;
        const char* tag = on ? "[persistent decode]" : "[5-kernel decode]";
        std::printf("%s\n", tag);
        guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
        guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 512, 64); });
        guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 64); });
      }
      persistent_decode_flag() = persistent;
      const bool pdl = pdl_enabled();
      set_pdl_enabled(!pdl);
      guarded("bench 7B (PDL switched)", [&] { bench_backend("7B", c7, 2048, 512, 128); });
      set_pdl_enabled(pdl);
    }
    if (tune) {
      guarded("tune gemv_q4", tune_gemv_q4);
      guarded("prompt settings", bench_prompt_settings);
    }
  } catch (const std::exception& e) {
    std::printf("kernel check aborted: %s\n", e.what());
    return 2;
  }
  std::printf("\n%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
