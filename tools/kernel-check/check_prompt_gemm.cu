// The kernel check's checks of the prompt path's 4-bit GEMMs against a float64 host reference: the dequantization
// (exact), dequantization + GEMM, and the fused Hopper GEMM.
#include <cstring>

#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

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
    {  // rows 4 floats apart take the bulk reductions, N + 1 the register reductions: the same bits
      const int padded = q.N + 1;
      Dev<float> dyp((size_t)m * padded);
      XL_CUDA_CHECK(cudaMemset(dyp.p, 0, dyp.n * 4));
      gemm_q4_wgmma(q, xw.p, m, dyp.p, padded, true, scratch.p, nullptr, plan);
      gemm_q4_wgmma(q, xw.p, m, dyp.p, padded, true, scratch.p, nullptr, plan);
      XL_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> a = dy.download(), b = dyp.download();
      int differ = 0;
      for (int i = 0; i < m; ++i)
        differ += std::memcmp(&a[(size_t)i * q.N], &b[(size_t)i * padded], q.N * sizeof(float)) != 0 ||
                  b[(size_t)i * padded + q.N] != 0.f;
      std::snprintf(name, sizeof name, "prefill gemm (fused wgmma, %d blocks, accumulated twice) stride N = N + 1 (rows differing)", blocks);
      report(name, differ, 0);
    }
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

}  // namespace xllama::kcheck
