// The kernel check's checks of the decode path's linear kernels against a float64 (or exact) host reference: the
// act-order permutations, the 4-bit GEMVs (with their norms, SiLU, sums of squares and zero fills), the one-launch
// MLP, the embedding, the fp16 GEMV and GEMM, and the lm_head's greedy pick.
#include <cstring>

#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

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

// 0 .. n-1 in an order shuffled by seed.
std::vector<int> shuffled_indices(int n, unsigned seed) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), std::mt19937(seed));
  return v;
}

// The prompt path's act-order column gather, out[i, k] = x[i, perm[k]], exactly: the shared-memory kernel (rows
// that fit in 48 KB, 16-byte aligned) and the generic one (a row too wide, or an odd stride).
void check_gather_columns(int m, int K, int x_stride) {
  const std::vector<int> perm = shuffled_indices(K, K + m);
  const std::vector<__half> x = rand_half((size_t)m * x_stride, -1.f, 1.f);
  Dev<__half> dx(x), out((size_t)m * K);
  Dev<int> dp(perm);
  out.poison();
  gather_columns(dx.p, m, K, x_stride, dp.p, out.p, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<__half> got = out.download();
  size_t bad = 0;
  for (int i = 0; i < m; ++i)
    for (int k = 0; k < K; ++k)
      bad += __half_as_ushort(got[(size_t)i * K + k]) != __half_as_ushort(x[(size_t)i * x_stride + perm[k]]);
  report("gather_columns " + std::to_string(m) + "x" + std::to_string(K) + " stride " + std::to_string(x_stride) +
             " (values differing)",
         (double)bad, 0);
}

// The load path's column permutation (the act-order fold of down_proj's order into gate/up's columns), exactly:
// words, halves and bytes, in two halves of N / 2 columns each.
void check_permute_columns(int rows, int N) {
  const std::vector<int> perm = shuffled_indices(N / 2, rows + N);
  Dev<int> dp(perm);
  size_t bad = 0;
  for (int elem : {4, 2, 1}) {
    std::vector<uint8_t> in((size_t)rows * N * elem);
    std::mt19937 g(elem);
    for (auto& b : in) b = (uint8_t)g();
    Dev<uint8_t> din(in), dout(in.size());
    dout.poison();
    permute_columns(din.p, dout.p, rows, N, elem, dp.p, 2, nullptr);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<uint8_t> got = dout.download();
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < N; ++j) {
        const int b0 = j / (N / 2) * (N / 2), src = b0 + perm[j - b0];
        bad += std::memcmp(&got[((size_t)r * N + j) * elem], &in[((size_t)r * N + src) * elem], elem) != 0;
      }
  }
  report("permute_columns " + std::to_string(rows) + "x" + std::to_string(N) + " in two halves (elements differing)",
         (double)bad, 0);
}

// x uniform in +-x_range; with outliers, every 61st input 50x larger (as LLM activations have a few channels far
// above the rest): the fixed-point dot's blocks of 32 then hold one large and 31 small inputs. Each dot is
// reported on its own (every split of K).
void check_gemv_q4(int K, int N, int gs, int m, bool act_order, bool asym, int offset, float x_range,
                   bool outliers) {
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

// The one-launch decode MLP (mlp_decode): h_out = h + down(SiLU(gate) * up) of rmsnorm(h), against float64 (the norm
// unrounded, as the deferred path multiplies; SiLU * up rounded to fp16 as silu_mul does), and against the two GEMVs
// it replaces (gate/up with the deferred norm, then the SiLU-gated down_proj adding into h). The MLP part is compared
// (h_out - h), in two launches; the zero fills are checked too.
void check_mlp_decode(int hid, int I, int gs, bool act_order, bool asym) {
  HostGptq hgu = make_gptq(hid, 2 * I, gs, act_order, asym), hd = make_gptq(I, hid, gs, false, asym);
  DevQ dgu(hgu, 1), dd(hd, 1);
  std::vector<float> h(hid);
  for (auto& v : h) v = urand(-3.f, 3.f);
  std::vector<__half> nw = rand_half(hid, 0.5f, 1.5f);
  const float eps = 1e-5f;
  char name[160];
  std::snprintf(name, sizeof name, "mlp_decode %d -> %d g%d%s%s", hid, I, gs, act_order ? " act-order" : "",
                asym ? " asym" : "");
  if (!mlp_decode_fits(dgu.q, dd.q)) {
    report(std::string(name) + " fits", 1, 0);
    return;
  }
  double ss = 0;
  for (float v : h) ss += (double)v * v;
  const double r = 1.0 / std::sqrt(ss / hid + eps);
  std::vector<double> act(I), ref(hid, 0.0);
  for (int j = 0; j < I; ++j) {
    double g = 0, u = 0;
    for (int k = 0; k < hid; ++k) {
      const double x = h[k] * r * to_d(nw[k]);
      g += x * hgu.w(k, j, 1), u += x * hgu.w(k, I + j, 1);
    }
    act[j] = to_d(__float2half((float)(g / (1 + std::exp(-g)) * u)));
  }
  for (int j = 0; j < I; ++j)
    for (int n = 0; n < hid; ++n) ref[n] += act[j] * hd.w(j, n, 1);
  Dev<float> dh(h), dout(hid), dgu_out((size_t)2 * I), dss(1), dchain(h);
  Dev<__half> dnw(nw);
  PoisonedZeroFills z(333, 77);
  double worst = 0;
  for (int launch = 0; launch < 2; ++launch) {  // twice: the second run must not see anything of the first
    XL_CUDA_CHECK(cudaMemset(dout.p, 0, dout.n * 4));
    mlp_decode(dgu.q, dd.q, dnw.p, eps, dh.p, dout.p, nullptr, z.fill_a(), z.fill_b());
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> part = dout.download();
    for (int n = 0; n < hid; ++n) part[n] -= h[n];
    worst = std::max(worst, rel_err(part, ref));
  }
  report(name, z.all_zero() ? worst : INFINITY, 1e-3);
  // The two GEMVs it replaces, on the same inputs.
  XL_CUDA_CHECK(cudaMemset(dgu_out.p, 0, dgu_out.n * 4));
  XL_CUDA_CHECK(cudaMemset(dss.p, 0, 4));
  GemvFusion fgu;
  fgu.in_sum_sq = dss.p, fgu.in_norm = dnw.p, fgu.eps = eps;
  gemv_q4(dgu.q, dh.p, GemvInput::RmsNormDeferred, 1, hid, dgu_out.p, 2 * I, nullptr, {}, fgu);
  GemvFusion fd;
  fd.in_sum_sq = dss.p, fd.norm_dim = hid, fd.eps = eps;
  gemv_q4(dd.q, dgu_out.p, GemvInput::SiluGateUp, 1, 2 * I, dchain.p, hid, nullptr, {}, fd);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> chain = dchain.download(), fused = dout.download();
  std::vector<double> chain_part(hid);
  for (int n = 0; n < hid; ++n) chain_part[n] = (double)chain[n] - h[n], fused[n] -= h[n];
  report("  against gate/up + down_proj (two launches)", rel_err(fused, chain_part), 1e-4);
}

// The 7B's and 13B's shapes, stories260K-g32's (groups of 32: two per block of 64 features; a column pass of 16
// threads), asymmetric zeros, act-order gate/up.
void check_mlp_decode_shapes() {
  check_mlp_decode(4096, 11008, 128, false, false);
  check_mlp_decode(5120, 13824, 128, true, true);
  check_mlp_decode(64, 192, 32, false, true);
  check_mlp_decode(1024, 2816, 64, true, false);
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

// the decode lm_head in one wave (default) against gemv_f16_kernel's waves
// (XLLAMA_LM_HEAD_WAVE=0), one row: the same logits bit for bit, and the same pick.
void check_lm_head_wave_bits(int K, int N) {
  std::vector<__half> w = rand_half((size_t)N * K, -0.05f, 0.05f), b = rand_half(N, -0.5f, 0.5f),
                      nw = rand_half(K, 0.5f, 1.5f);
  std::vector<float> h(K), ss(1);
  for (auto& v : h) v = urand(-3.f, 3.f);
  rmsnorm_row_ref(h.data(), nw, K, 1e-5f, &ss[0]);
  Dev<__half> dw(w), db(b), dnw(nw);
  Dev<float> dh(h), dss(ss), dy(N);
  GreedyPickState state;
  Dev<int>& out = state.out;
  const GreedyPick pick = state.get();
  std::vector<float> logits[2];
  int picks[2];
  const bool saved = lm_head_wave_flag();
  for (int wave = 0; wave < 2; ++wave) {
    lm_head_wave_flag() = wave;
    dy.poison(), out.poison();
    gemv_f16_rmsnorm(dw.p, db.p, K, N, dh.p, K, dss.p, dnw.p, 1e-5f, 1, dy.p, N, nullptr, &pick);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    logits[wave] = dy.download(), picks[wave] = out.download()[0];
  }
  lm_head_wave_flag() = saved;
  const bool same = std::memcmp(logits[0].data(), logits[1].data(), N * sizeof(float)) == 0 && picks[0] == picks[1];
  report("lm_head in one wave = in waves, bits and pick " + std::to_string(K) + "x" + std::to_string(N), !same, 0);
}

// The decode lm_head's own greedy pick (GreedyPick): over the logits it wrote, the first index of the largest
// non-NaN one, fed to the next step (tokens[0], pos + 1), its state back at 0 after each launch. Launches in turn:
// two equal largest logits in different blocks, then in one block (the lower index must win), then a NaN column
// and a smaller largest logit than before (a pick state left over would give the earlier pick).
void check_lm_head_pick(int K, int N) {
  std::vector<__half> w = rand_half((size_t)N * K, -0.05f, 0.05f), nw = rand_half(K, 0.5f, 1.5f);
  std::vector<float> h(K), ss(1);
  for (auto& v : h) v = urand(-3.f, 3.f);
  rmsnorm_row_ref(h.data(), nw, K, 1e-5f, &ss[0]);
  Dev<__half> dw((size_t)N * K), db(N), dnw(nw);
  Dev<float> dh(h), dss(ss), dy(N);
  GreedyPickState state;
  Dev<int>& out = state.out;
  Dev<int>& feed = state.feed;  // [pos, token]
  const GreedyPick pick = state.get(true);
  int bad = 0, runs = 0;
  const int pairs[3][2] = {{N / 3, N / 2}, {16, 17}, {N - 1, 5}};
  for (int t = 0; t < 3; ++t) {
    const int a = pairs[t][0], b = pairs[t][1];
    std::vector<__half> bias = rand_half(N, -0.5f, 0.5f);
    const float top = 100.f - 20.f * t;  // each launch's largest logit below the one before
    bias[a] = bias[b] = __float2half(top);
    if (t == 2) bias[N / 4] = __float2half(NAN);
    for (int k = 0; k < K; ++k) w[(size_t)b * K + k] = w[(size_t)a * K + k];  // the same logit, bit for bit
    dw.upload(w), db.upload(bias), feed.upload({100 + t, -1});
    out.poison(), dy.poison();
    gemv_f16_rmsnorm(dw.p, db.p, K, N, dh.p, K, dss.p, dnw.p, 1e-5f, 1, dy.p, N, nullptr, &pick);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<float> y = dy.download();
    int ref = -1;
    for (int n = 0; n < N; ++n)
      if (!std::isnan(y[n]) && (ref < 0 || y[n] > y[ref])) ref = n;
    const int got = out.download()[0];
    const std::vector<int> f = feed.download();
    bad += got != ref || got != std::min(a, b) || f[1] != got || f[0] != 101 + t || state.best.download()[0] != 0 ||
           state.done.download()[0] != 0;
    ++runs;
  }
  report("lm_head greedy pick (fed, ties, NaN, reset) " + std::to_string(K) + "x" + std::to_string(N) +
             " (mismatches/" + std::to_string(runs) + ")",
         bad, 0);
}

}  // namespace xllama::kcheck
