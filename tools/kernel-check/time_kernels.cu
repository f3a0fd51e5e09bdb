// The kernel check's timings of single kernels: the decode GEMVs, the lm_head, the attention, the prompt GEMMs.
#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

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
  // A decode step's end as it was (the fused lm_head, then the argmax kernel) against the lm_head that picks.
  GreedyPickState state;
  Dev<int>& out = state.out;
  const GreedyPick pick = state.get();
  const float then_argmax = batch_us([&] {
    gemv_f16_rmsnorm(w.p, nullptr, K, N, h.p, K, ss.p, nw.p, 1e-5f, 1, y.p, N, nullptr);
    argmax(y.p, N, out.p, nullptr);
  });
  const float picking =
      batch_us([&] { gemv_f16_rmsnorm(w.p, nullptr, K, N, h.p, K, ss.p, nw.p, 1e-5f, 1, y.p, N, nullptr, &pick); });
  std::printf("time lm_head %dx%d m=1 back to back: rmsnorm + gemv_f16 %.1f us, fused %.1f us; + argmax %.1f us, "
              "picking %.1f us\n", K, N, two, fused, then_argmax, picking);
  // the lm_head in one wave against its waves, alternated in this process
  const bool saved = lm_head_wave_flag();
  for (int round = 0; round < 3; ++round) {
    std::printf("time lm_head %dx%d picking, round %d:", K, N, round);
    for (const bool wave : {false, true}) {
      lm_head_wave_flag() = wave;
      const float us =
          batch_us([&] { gemv_f16_rmsnorm(w.p, nullptr, K, N, h.p, K, ss.p, nw.p, 1e-5f, 1, y.p, N, nullptr, &pick); });
      std::printf(" %s %.1f us (%.0f GB/s)", wave ? "one wave" : "waves", us, (double)N * K * 2 / us * 1e-3);
    }
    std::printf("\n");
  }
  lm_head_wave_flag() = saved;
  time_picks(N);
}

// The pick kernels alone on logits spread as a model's are (the lm_head's in time_lm_head_rmsnorm are all near 0).
void time_picks(int N) {
  Dev<float> y(N);
  Dev<int> out(1);
  std::vector<float> spread(N);
  for (auto& v : spread) v = urand(-10.f, 20.f);
  y.upload(spread);
  const float arg = batch_us([&] { argmax(y.p, N, out.p, nullptr); });
  TopKPickScratch scratch(N);
  const float top_k =
      batch_us([&] { sample_top_k(y.p, N, {0.8f, 40, 0.95f, 0.05f, 0.5f}, scratch.get(), out.p, nullptr); });
  TokenSampling typical{0.8f, 40, 0.95f, 0.05f, 0.5f};
  typical.typical_p = 0.9f;
  const float top_k_typical = batch_us([&] { sample_top_k(y.p, N, typical, scratch.get(), out.p, nullptr); });
  const float walk_p =
      batch_us([&] { sample_top_k(y.p, N, {0.8f, 0, 0.95f, 0.f, 0.5f}, scratch.get(), out.p, nullptr); });
  const float walk_pm =
      batch_us([&] { sample_top_k(y.p, N, {0.8f, 0, 0.95f, 0.05f, 0.5f}, scratch.get(), out.p, nullptr); });
  const float walk_t = batch_us([&] { sample_top_k(y.p, N, {0.8f, 0, 1.f, 0.f, 0.5f}, scratch.get(), out.p, nullptr); });
  const float walk_k =
      batch_us([&] { sample_top_k(y.p, N, {0.8f, 100, 0.95f, 0.05f, 0.5f}, scratch.get(), out.p, nullptr); });
  // A row peaked as a model's (24 logits well above the rest): top-k 0's draws end within the top lists.
  std::vector<float> peaked = spread;
  for (int j = 0; j < 24; ++j) peaked[(size_t)j * (N / 24)] = 24.f + (float)j * 0.25f;
  y.upload(peaked);
  XL_CUDA_CHECK(cudaMemset(scratch.get().state + 2, 0, sizeof(uint32_t)));  // the flat row's misses forgotten
  const auto peaked_pair = [&](const TokenSampling& d) {
    walk_lists_flag() = false;
    const float walked = batch_us([&] { sample_top_k(y.p, N, d, scratch.get(), out.p, nullptr); });
    walk_lists_flag() = true;
    return std::make_pair(walked, batch_us([&] { sample_top_k(y.p, N, d, scratch.get(), out.p, nullptr); }));
  };
  const auto pk_p = peaked_pair({0.8f, 0, 0.95f, 0.f, 0.5f}), pk_pm = peaked_pair({0.8f, 0, 0.95f, 0.05f, 0.5f}),
             pk_t = peaked_pair({0.8f, 0, 1.f, 0.f, 0.5f});
  y.upload(spread);
  std::printf("time pick vocab %d back to back: argmax %.1f us, top-k 40 + top-p + min-p %.1f us (+ typical-p %.1f us); "
              "walked: top-k 0 + top-p %.1f us, + min-p %.1f us, temperature alone %.1f us, top-k 100 + top-p + min-p "
              "%.1f us\n",
              N, arg, top_k, top_k_typical, walk_p, walk_pm, walk_t, walk_k);
  std::printf("time pick vocab %d, a peaked row, top-k 0, walked -> from the top lists: top-p %.1f -> %.1f us, + min-p "
              "%.1f -> %.1f us, temperature alone %.1f -> %.1f us\n",
              N, pk_p.first, pk_p.second, pk_pm.first, pk_pm.second, pk_t.first, pk_t.second);
}

// One decode row's attention inputs on random values: q, a cache of S positions, the split work area, and the
// position len - 1 (the row's live length is len).
struct DecodeAttentionCase {
  int H, KV, D, S, splits;
  Dev<__half> q, kc, vc, out;
  Dev<float> work;
  Dev<unsigned> done;
  Dev<int> dp;
  DecodeAttentionCase(int H_, int KV_, int D_, int len, int S_)
      : H(H_), KV(KV_), D(D_), S(S_), splits(attention_splits(1, H_, S_)), q((size_t)H_ * D_),
        kc((size_t)KV_ * S_ * D_), vc((size_t)KV_ * S_ * D_), out((size_t)H_ * D_),
        work((size_t)H_ * splits * (D_ + 2)), done(H_), dp(std::vector<int>{len - 1}) {
    fill_random_half(q.p, q.n, 6, -1.f, 1.f, nullptr);
    fill_random_half(kc.p, kc.n, 7, -1.f, 1.f, nullptr);
    fill_random_half(vc.p, vc.n, 8, -1.f, 1.f, nullptr);
    XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
  }
  void run(int min_keys = kAttnMinKeysPerSplit) {
    attention(q.p, kc.p, vc.p, 1, H, KV, D, S, dp.p, splits, work.p, done.p, out.p, nullptr, min_keys);
  }
};

void time_attention(int H, int KV, int D, int len) {
  DecodeAttentionCase c(H, KV, D, len, len);
  const float ms = median_ms([&] { c.run(); });
  std::printf("time attention decode H=%d KV=%d D=%d len=%-6d splits=%-3d %8.1f us  %7.0f GB/s\n", H, KV, D, len,
              c.splits, ms * 1e3, (double)(c.kc.n + c.vc.n) * 2 / (ms * 1e-3) / 1e9);
}

// Back to back (as a graph replays it) at a live length below the cache size: the fixed grid (every split
// live, as before the live rule) against minimum keys per split of 32, 64 (the backend's) and 128.
void time_attention_split_rule(int H, int KV, int D, int len, int S) {
  DecodeAttentionCase c(H, KV, D, len, S);
  std::printf("time attention decode H=%d D=%d len=%-5d (grid %d splits), back to back, min keys per split:", H, D,
              len, c.splits);
  for (int keys : {1, 32, 64, 128}) {
    const float us = batch_us([&] { c.run(keys); });
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
// kernel, on its plan's schedule and on whole tiles) against dequantization + cuBLAS and cuBLAS alone (the weights
// already dequantized: what the backend's dequantization ahead on a side stream approaches), side by side; the
// output as the backend has it: fp16 overwritten (q/k/v, gate/up) or fp32 accumulated (o_proj and down_proj add
// into the residual stream).
void time_prompt_gemm(const char* what, int K, int N, int m, bool half_out) {
  HostGptq h = make_gptq(K, N, 128, false, false);
  DevQ d(h, 1);
  Dev<__half> x((size_t)m * K), xw(gemm_q4_wgmma_input_halves(m, K)), deq((size_t)K * N), yh((size_t)m * N);
  fill_random_half(x.p, x.n, 12, -1.f, 1.f, nullptr);
  Dev<float> y((size_t)m * N);
  XL_CUDA_CHECK(cudaMemset(y.p, 0, y.n * 4));
  Dev<uint8_t> scratch(gemm_q4_wgmma_scratch_bytes());
  XL_CUDA_CHECK(cudaMemset(scratch.p, 0, scratch.n));
  const double flops = 2.0 * m * (double)K * N;
  float fused = -1.f, unfused = -1.f, whole = -1.f, cublas_only = -1.f;
  int blocks = 0;
  const int tiles = gemm_q4_wgmma_tiles(m, N);
  auto run_fused = [&](GemmQ4WgmmaPlan plan) {
    gemm_q4_wgmma_input(x.p, m, K, K, nullptr, xw.p, nullptr);
    if (half_out)
      gemm_q4_wgmma(d.q, xw.p, m, yh.p, N, false, scratch.p, nullptr, plan);
    else
      gemm_q4_wgmma(d.q, xw.p, m, y.p, N, true, scratch.p, nullptr, plan);
  };
  if (gemm_q4_wgmma_supported() && gemm_q4_wgmma_fits(d.q)) {
    blocks = gemm_q4_wgmma_plan(d.q, m).blocks;
    fused = median_ms([&] { run_fused({}); }, 3, 20);
    if (blocks != tiles) whole = median_ms([&] { run_fused(GemmQ4WgmmaPlan{tiles}); }, 3, 20);
  }
#ifdef XLLAMA_HAVE_CUBLAS
  cublasHandle_t hb;
  cublasCreate(&hb);
  const float one = 1.f, zero = 0.f;
  auto run_cublas = [&] {
    if (half_out)
      cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, deq.p, CUDA_R_16F, N, x.p, CUDA_R_16F, K, &zero, yh.p,
                   CUDA_R_16F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    else
      cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, deq.p, CUDA_R_16F, N, x.p, CUDA_R_16F, K, &one, y.p,
                   CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  unfused = median_ms([&] {
    dequant_q4(d.q, 0, N, deq.p, nullptr);
    run_cublas();
  }, 3, 20);
  cublas_only = median_ms(run_cublas, 3, 20);
  cublasDestroy(hb);
#endif
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  std::printf("time prompt gemm %-8s %5dx%-5d m=%4d %s | fused (%4d blocks, %4d tiles) %7.1f us %6.1f TFLOP/s | "
              "dequant+cuBLAS %7.1f us | cuBLAS alone %7.1f us | fused/unfused %.3f | fused/cuBLAS %.3f",
              what, K, N, m, half_out ? "fp16" : "fp32+", blocks, tiles, fused * 1e3, flops / (fused * 1e-3) / 1e12,
              unfused * 1e3, cublas_only * 1e3, fused / unfused, fused / cublas_only);
  if (whole > 0) std::printf(" | whole tiles %7.1f us", whole * 1e3);
  std::printf("\n");
}

// fp32-accumulating fused GEMMs with register and with bulk reductions (gemm_q4_wgmma_fp32_bulk_flag), alternated.
void time_fused_fp32_variants() {
  struct Shape { const char* what; int K, N, m; };
  for (const Shape& sh : {Shape{"7B o", 4096, 4096, 512}, Shape{"7B down", 11008, 4096, 512},
                          Shape{"13B o", 5120, 5120, 512}, Shape{"13B down", 13824, 5120, 512},
                          Shape{"13B down", 13824, 5120, 1024}, Shape{"70B o", 8192, 8192, 1024},
                          Shape{"70B down", 28672, 8192, 1024}}) {
    HostGptq h = make_gptq(sh.K, sh.N, 128, false, false);
    DevQ d(h, 1);
    Dev<__half> x((size_t)sh.m * sh.K), xw(gemm_q4_wgmma_input_halves(sh.m, sh.K));
    fill_random_half(x.p, x.n, 12, -1.f, 1.f, nullptr);
    Dev<float> y((size_t)sh.m * sh.N);
    XL_CUDA_CHECK(cudaMemset(y.p, 0, y.n * 4));
    Dev<uint8_t> scratch(gemm_q4_wgmma_scratch_bytes());
    XL_CUDA_CHECK(cudaMemset(scratch.p, 0, scratch.n));
    gemm_q4_wgmma_input(x.p, sh.m, sh.K, sh.K, nullptr, xw.p, nullptr);
    const bool saved = gemm_q4_wgmma_fp32_bulk_flag();
    double sum[2] = {0, 0};
    std::printf("time fused fp32 %-8s m=%4d:", sh.what, sh.m);
    for (int round = 0; round < 5; ++round)
      for (int v = 0; v < 2; ++v) {
        gemm_q4_wgmma_fp32_bulk_flag() = v;
        const float ms = median_ms([&] { gemm_q4_wgmma(d.q, xw.p, sh.m, y.p, sh.N, true, scratch.p, nullptr); }, 3, 20);
        sum[v] += ms * 1e3;
        std::printf(" %s %.1f", v ? "bulk" : "regs", ms * 1e3);
      }
    std::printf(" | mean regs %.1f bulk %.1f us\n", sum[0] / 5, sum[1] / 5);
    gemm_q4_wgmma_fp32_bulk_flag() = saved;
  }
}

void time_prompt_gemms() {
  for (int m : {512, 2048}) {
    time_prompt_gemm("7B qkv", 4096, 12288, m, true);
    time_prompt_gemm("7B o", 4096, 4096, m, false);
    time_prompt_gemm("7B gu", 4096, 22016, m, true);
    time_prompt_gemm("7B down", 11008, 4096, m, false);
  }
  time_prompt_gemm("70B qkv", 8192, 10240, 2048, true);
  time_prompt_gemm("70B o", 8192, 8192, 2048, false);
  time_prompt_gemm("70B gu", 8192, 57344, 2048, true);
  time_prompt_gemm("70B down", 28672, 8192, 2048, false);
}

}  // namespace xllama::kcheck
