// The kernel check's cuBLAS prompt GEMM shapes: cuBLAS's algorithms against cublasLt's candidates, the time per
// SM-count target, and the SM-count tuner's bit-for-bit check (cuBLAS builds only).
#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

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
  const auto shape = GemmSmTargets::shape_of(m, N, K, f32, f32), one_tile = GemmSmTargets::shape_of(128, N, K, f32, f32);
  // The schedule: every SM through the first chunk a shape comes in (once per layer), timed in the next; a shape of
  // one token tile never timed.
  int wrong = 0;
  targets.begin_chunk();
  wrong += targets.target(shape) != 0;
  wrong += targets.target(shape) != 0;
  wrong += targets.target(one_tile) != 0;
  targets.begin_chunk();
  wrong += targets.target(one_tile) != 0;
  wrong += targets.target(shape) != -1;
  const int t = targets.tune(shape, nullptr, timed);
  targets.begin_chunk();
  wrong += targets.target(shape) != t;
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
  report("gemm SM targets: every SM in a shape's first chunk, timed in its second, kept after (wrong answers)", wrong, 0);
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

}  // namespace xllama::kcheck
