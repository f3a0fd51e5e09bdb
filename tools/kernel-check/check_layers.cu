// The kernel check's checks of a layer's other kernels against a float64 host reference: RMSNorm, SiLU, RoPE with the
// KV-cache write, and the decode and prompt attention.
#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

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
// cache (old random positions + the new ones); checks the output and the k, v the kernel wrote. look_ahead: with
// an L2 look-ahead over a buffer of its own (the tensor-core kernel's requests must not change what it computes,
// and compute-sanitizer sees them run).
void check_attention_rope(int m, int H, int KV, int D, int pos, int S, bool look_ahead) {
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
  constexpr size_t kAheadChunks = 8, kAheadStride = 4 << 20, kAheadChunk = 1 << 20;  // a gate/up-like 32 MiB
  Dev<uint32_t> ahead_buf(look_ahead ? kAheadChunks * kAheadStride / sizeof(uint32_t) : 0);
  L2LookAhead ahead;
  if (look_ahead) ahead = {ahead_buf.p, kAheadStride, kAheadChunk, (int)kAheadChunks};
  double e = 0;
  for (int call = 0; call < 2; ++call) {  // the second call relies on the first leaving the counters zero
    out.poison();
    attention_rope(dqkv.p, dinv.p, dk.p, dv.p, m, H, KV, D, S, dp.p, splits, work.p, done.p, out.p, nullptr, {},
                   ahead);
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    e = std::max({e, rel_err(out.download(), ref), rel_err(dk.download(), rk), rel_err(dv.download(), rv)});
  }
  char name[160];
  std::snprintf(name, sizeof name, "attention+rope m=%d H=%d KV=%d D=%d pos=%d splits=%d%s%s", m, H, KV, D, pos,
                splits, attn_rope_tag(H, KV, D), look_ahead ? " +L2 look-ahead" : "");
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
  // with the L2 look-ahead: requested by the blocks without keys (one split of 8 live), by every block at its end
  // (all 8 live), by the blocks without keys of a GQA grid, by no block (one split: 4 requests a block at its end)
  check_attention_rope(1, 32, 32, 128, 40, 2048, true);
  check_attention_rope(1, 32, 32, 128, 2047, 2048, true);
  check_attention_rope(1, 64, 8, 128, 1000, 4096, true);
  check_attention_rope(1, 32, 32, 128, 100, 128, true);
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

}  // namespace xllama::kcheck
