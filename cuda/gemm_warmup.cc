#include "cuda/gemm_warmup.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cuda/cublas_gemm.h"
#include "cuda/env_switch.h"

namespace xllama::cuda {

bool gemm_warmup_setting() { return env_switch_on("XLLAMA_GEMM_WARMUP"); }

GemmWarmup::GemmWarmup(int device, cudaStream_t stream, std::vector<WarmGemm> gemms)
    : device_(device), stream_(stream), gemms_(std::move(gemms)) {
#ifdef XLLAMA_HAVE_CUBLAS
  if (!gemms_.empty()) thread_ = std::thread([this] { run(); });
#endif
}

GemmWarmup::~GemmWarmup() {
  if (thread_.joinable()) thread_.join();
}

std::string GemmWarmup::finish() {
  if (!thread_.joinable()) return report_;
  const auto t0 = std::chrono::steady_clock::now();
  thread_.join();
  char waited[64];
  std::snprintf(waited, sizeof waited, ", the load waited %.0f ms for it",
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return report_ + waited;
}

#ifdef XLLAMA_HAVE_CUBLAS
namespace {
// Free memory the warm-up leaves to the load besides its scratch: the weights that did not fit the arena, the
// act-order permutation scratch.
constexpr size_t kHeadroomBytes = (size_t)1 << 30;

// The thread's resources, released however it ends.
struct WarmResources {
  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  void* a = nullptr;
  void* b = nullptr;
  void* c = nullptr;
  ~WarmResources() {
    if (stream) cudaStreamSynchronize(stream);  // (the caller's stream: not destroyed here)
    if (handle) cublasDestroy(handle);
    for (void* p : {a, b, c})
      if (p) cudaFree(p);
  }
};
}  // namespace

void GemmWarmup::run() {
  const auto t0 = std::chrono::steady_clock::now();
  if (cudaSetDevice(device_) != cudaSuccess) return void(cudaGetLastError());
  size_t a_bytes = 0, b_bytes = 0, c_bytes = 0;
  for (const WarmGemm& g : gemms_) {
    a_bytes = std::max(a_bytes, (size_t)g.m * g.lda * 2);
    b_bytes = std::max(b_bytes, (size_t)(g.b_kn ? g.K : g.N) * g.ldb * 2);
    c_bytes = std::max(c_bytes, (size_t)g.m * g.ldc * (g.c_f32 ? 4 : 2));
  }
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || free_b < a_bytes + b_bytes + c_bytes + kHeadroomBytes) {
    cudaGetLastError();
    report_ = "prompt GEMM warm-up skipped (too little free GPU memory)";
    return;
  }
  WarmResources r;
  r.stream = stream_;
  bool ok = cublasCreate(&r.handle) == CUBLAS_STATUS_SUCCESS && cublasSetStream(r.handle, r.stream) == CUBLAS_STATUS_SUCCESS &&
            cudaMalloc(&r.a, a_bytes) == cudaSuccess && cudaMalloc(&r.b, b_bytes) == cudaSuccess &&
            cudaMalloc(&r.c, c_bytes) == cudaSuccess && cudaMemsetAsync(r.a, 0, a_bytes, r.stream) == cudaSuccess &&
            cudaMemsetAsync(r.b, 0, b_bytes, r.stream) == cudaSuccess &&
            cudaMemsetAsync(r.c, 0, c_bytes, r.stream) == cudaSuccess;
  int calls = 0;
  for (size_t i = 0; ok && i < gemms_.size(); ++i) {
    const WarmGemm& g = gemms_[i];
    const GemmOperands op{static_cast<const __half*>(r.a), g.lda, static_cast<const __half*>(r.b), g.ldb, g.b_kn,
                          r.c, g.ldc, g.c_f32, g.m, g.N, g.K, g.beta};
    ok = cublas_gemm(r.handle, op) == CUBLAS_STATUS_SUCCESS;
    calls += ok;
  }
  ok = cudaStreamSynchronize(r.stream) == cudaSuccess && ok;
  if (!ok) cudaGetLastError();
  char text[160];
  std::snprintf(text, sizeof text, "prompt GEMM warm-up %d call%s in %.0f ms on its own thread%s", calls,
                calls == 1 ? "" : "s",
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                ok ? "" : " (stopped at a failed call)");
  report_ = text;
}
#else
void GemmWarmup::run() {}
#endif

}  // namespace xllama::cuda
