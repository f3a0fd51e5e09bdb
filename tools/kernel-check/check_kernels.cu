// The kernel check's per-kernel checks: every CUDA kernel of the backend on fresh random inputs against a
// float64 (or exact) host reference.
#include "backend/token_penalties.h"
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

// The fused Hopper GEMM (dequantization in the A fragments), where this GPU runs it, against the float64
// reference: fp32 accumulate (twice: 2 ref) and fp16 overwrite, with whole tiles per block and with stream-K at
// several block counts (tiles cut at different steps, blocks holding only a tile's middle), each stream-K run
// twice to show the scratch is left as found and the result is the same bits.
void check_gemm_q4_wgmma(const QWeight& q, const Dev<__half>& dx, int m, const std::vector<double>& ref,
                         bool act_order) {
  if (!gemm_q4_wgmma_supported()) {
    std::printf("prefill gemm (fused wgmma): skipped, this GPU does not run sm_90a code\n");
    return;
  }
  if (!gemm_q4_wgmma_fits(q)) throw std::runtime_error("check_gemm_q4_wgmma: shape does not fit the kernel");
  Dev<__half> xw(gemm_q4_wgmma_input_halves(m, q.K));
  xw.poison();
  gemm_q4_wgmma_input(dx.p, m, q.K, q.K, q.perm, xw.p, nullptr);
  Dev<uint8_t> scratch(gemm_q4_wgmma_scratch_bytes());
  XL_CUDA_CHECK(cudaMemset(scratch.p, 0, scratch.n));
  const int tiles = gemm_q4_wgmma_tiles(m, q.N), units = tiles * (q.K / 64);
  int sms = 0;
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  std::vector<int> plans{tiles, 0};  // whole tiles, the plan's pick
  for (int b : {3, 7, tiles + 1, 2 * tiles + 3})
    if (b < units && b <= sms && b != tiles) plans.push_back(b);
  std::vector<double> ref2(ref);
  for (double& v : ref2) v *= 2;
  const char* order = act_order ? " act-order" : "";
  const char* asym = q.zeros ? " asym" : "";
  char name[160];
  for (int blocks : plans) {
    const GemmQ4WgmmaPlan plan{blocks};
    Dev<float> dy((size_t)m * q.N);
    XL_CUDA_CHECK(cudaMemset(dy.p, 0, dy.n * 4));
    gemm_q4_wgmma(q, xw.p, m, dy.p, q.N, true, scratch.p, nullptr, plan);
    gemm_q4_wgmma(q, xw.p, m, dy.p, q.N, true, scratch.p, nullptr, plan);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    std::snprintf(name, sizeof name, "prefill gemm (fused wgmma, %d blocks, accumulated twice) %dx%d m=%d%s%s",
                  blocks, q.K, q.N, m, order, asym);
    report(name, rel_err(dy.download(), ref2), 4e-3);
    Dev<__half> dyh((size_t)m * q.N);
    dyh.poison();
    gemm_q4_wgmma(q, xw.p, m, dyh.p, q.N, false, scratch.p, nullptr, plan);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<__half> first = dyh.download();
    std::snprintf(name, sizeof name, "prefill gemm (fused wgmma, %d blocks, fp16 out) %dx%d m=%d%s%s", blocks, q.K,
                  q.N, m, order, asym);
    report(name, rel_err(first, ref), 4e-3);
    dyh.poison();
    gemm_q4_wgmma(q, xw.p, m, dyh.p, q.N, false, scratch.p, nullptr, plan);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<__half> again = dyh.download();
    std::snprintf(name, sizeof name, "prefill gemm (fused wgmma, %d blocks, fp16 out) run twice, same bits", blocks);
    report(name, std::memcmp(first.data(), again.data(), first.size() * sizeof(__half)) == 0 ? 0.0 : INFINITY, 0.0);
    // Rows 8 halves apart take the bulk copies from shared memory; a stride of N + 2 the half2 register stores: the
    // same bits, and nothing written between the rows.
    const int padded = q.N + 2;
    Dev<__half> dyp((size_t)m * padded);
    dyp.poison();
    gemm_q4_wgmma(q, xw.p, m, dyp.p, padded, false, scratch.p, nullptr, plan);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<__half> strided = dyp.download();
    int differ = 0;
    for (int i = 0; i < m; ++i) {
      uint16_t gap[2];  // poison() fills with 0xff bytes
      std::memcpy(gap, &strided[(size_t)i * padded + q.N], sizeof gap);
      differ += std::memcmp(&strided[(size_t)i * padded], &first[(size_t)i * q.N], q.N * sizeof(__half)) != 0 ||
                gap[0] != 0xffff || gap[1] != 0xffff;
    }
    std::snprintf(name, sizeof name,
                  "prefill gemm (fused wgmma, %d blocks, fp16 out) bulk stores = register stores (rows differing)",
                  blocks);
    report(name, differ, 0);
  }
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
  Dev<unsigned long long> best(1);
  Dev<unsigned> done(1);
  Dev<int> out(1), feed(2);  // feed: [pos, token]
  XL_CUDA_CHECK(cudaMemset(best.p, 0, sizeof(unsigned long long)));
  XL_CUDA_CHECK(cudaMemset(done.p, 0, sizeof(unsigned)));
  const GreedyPick pick{best.p, done.p, out.p, feed.p + 1, feed.p};
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
    bad += got != ref || got != std::min(a, b) || f[1] != got || f[0] != 101 + t || best.download()[0] != 0 ||
           done.download()[0] != 0;
    ++runs;
  }
  report("lm_head greedy pick (fed, ties, NaN, reset) " + std::to_string(K) + "x" + std::to_string(N) +
             " (mismatches/" + std::to_string(runs) + ")",
         bad, 0);
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
void check_silu(int m, int I, bool half_input) {
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

void check_rope(int m, int H, int KV, int D, int pos, int S, bool half_input) {
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

// ... and with RoPE fused, where heads of head_dim 128 may take the tensor-core kernel instead.
const char* attn_rope_tag(int H, int KV, int D) {
  return attention_mma_applies(H, KV, D) ? " [tensor cores]" : attn_threads_tag();
}

// Causal attention in float64: query rows q ([m][H][D], row i at position pos + i) against the caches k, v
// ([KV][S][D]), row i seeing positions 0..pos + i; [m][H][D].
std::vector<double> attention_reference(const std::vector<double>& q, const std::vector<double>& k,
                                        const std::vector<double>& v, int m, int H, int KV, int D, int S, int pos) {
  std::vector<double> ref((size_t)m * H * D);
  const double scale = 1.0 / std::sqrt((double)D);
  for (int i = 0; i < m; ++i)
    for (int h = 0; h < H; ++h) {
      const int kvh = h / (H / KV), L = pos + i + 1;
      std::vector<double> sc(L);
      double mx = -1e300, sum = 0;
      for (int p = 0; p < L; ++p) {
        double d = 0;
        for (int t = 0; t < D; ++t) d += q[((size_t)i * H + h) * D + t] * k[((size_t)kvh * S + p) * D + t];
        sc[p] = d * scale, mx = std::max(mx, sc[p]);
      }
      for (auto& e : sc) sum += (e = std::exp(e - mx));
      for (int t = 0; t < D; ++t) {
        double o = 0;
        for (int p = 0; p < L; ++p) o += sc[p] * v[((size_t)kvh * S + p) * D + t];
        ref[((size_t)i * H + h) * D + t] = o / sum;
      }
    }
  return ref;
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
  const std::vector<double> ref = attention_reference(rq, rk, rv, m, H, KV, D, S, pos);
  const int splits = attention_rope_splits(m, H, KV, D, S);
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
                attn_rope_tag(H, KV, D));
  report(name, e, 3e-3);

}

void check_attention(int m, int H, int KV, int D, int len_after, int S, bool prefill_splits,
                     int min_keys) {
  // Rows are positions len_after - m .. len_after - 1; the cache holds len_after positions.
  const int pos = len_after - m;
  std::vector<__half> q = rand_half((size_t)m * H * D, -1.f, 1.f), kc = rand_half((size_t)KV * S * D, -1.f, 1.f),
                      vc = rand_half((size_t)KV * S * D, -1.f, 1.f);
  auto as_double = [](const std::vector<__half>& x) {
    std::vector<double> d(x.size());
    for (size_t i = 0; i < x.size(); ++i) d[i] = to_d(x[i]);
    return d;
  };
  const std::vector<double> ref =
      attention_reference(as_double(q), as_double(kc), as_double(vc), m, H, KV, D, S, pos);
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
  // for the tensor-core kernel: the first position, a second split of one key, 6 heads per KV
  // head, 64 splits of two rounds each, 3 heads per KV head (an even split count), the 13B's heads at depth 2048
  check_attention_rope(1, 64, 8, 128, 0, 64);
  check_attention_rope(1, 16, 2, 128, 128, 256);
  check_attention_rope(3, 48, 8, 128, 700, 1024);
  check_attention_rope(1, 32, 4, 128, 16383, 16384);
  check_attention_rope(1, 24, 8, 128, 900, 1024);
  check_attention_rope(1, 40, 40, 128, 2047, 4096);
  check_attention_rope(1, 32, 32, 128, 2100, 2200);  // the 7B's heads past 2048: 8 splits of three rounds
  check_attention_rope(3, 32, 32, 128, 1500, 2048);  // 2 splits of 6 rounds, the new rows in the last one
  check_attention_rope(1, 32, 32, 128, 1030, 1100);  // second rounds of one key, the new row in the last
  check_attention_rope(1, 8, 1, 128, 8200, 8300);    // 64 splits of a second round of one or two keys, G = 8
  check_attention_rope(4, 32, 32, 128, 1050, 1200);  // 2 splits of 5 rounds, the last of 14-15 keys, new rows in it
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
