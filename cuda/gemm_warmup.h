// cuBLAS pays for a process's first GEMMs on the host: on the H200 (docs/PERF-NOTES.md, session 36) ~100 ms for the
// first one with an fp16 output, ~50 ms for the first with an fp32 output, ~3 ms for each kernel it has not run
// before (a new shape, a new SM count target). A process's first prompt chunk paid all of it: a 7B's first
// 512-token chunk took ~235 ms where the next ones take ~14. GemmWarmup makes the prompt path's GEMM calls once, on
// a thread of its own while the weights upload (its own handle and scratch; a few ms of GPU work), so that
// cost overlaps the load. Best effort: without room on the GPU for its scratch, or after a failed call, it stops
// and the first prompt pays as before.
#pragma once
#include <cuda_runtime.h>

#include <string>
#include <thread>
#include <vector>

namespace xllama::cuda {

// One prompt GEMM as cublas_gemm() makes it on every SM, without its memory.
struct WarmGemm {
  int m, N, K, lda, ldb, ldc;
  bool b_kn, c_f32;
  float beta;
};

// XLLAMA_GEMM_WARMUP: "0" leaves cuBLAS's first calls to the first prompt.
bool gemm_warmup_setting();

class GemmWarmup {
 public:
  // Starts the thread on `device` (a no-op without cuBLAS), its GEMMs on `stream`, the caller's, alive until
  // finish() returns. The caller passes its main stream, which the load's own work shares (the warm-up's GPU work
  // is a few ms): with the warm-up on a stream of its own (session 38) or on the stage's low-priority side stream,
  // every decode step from the process's seventh decode sequence on ran ~1.6% slower in the probe's process on three
  // H200s (docs/PERF-NOTES.md, session 39; bench's process on a fourth did not); on the main stream it did not, at
  // no measurable cost.
  GemmWarmup(int device, cudaStream_t stream, std::vector<WarmGemm> gemms);
  ~GemmWarmup();  // waits for the thread
  GemmWarmup(const GemmWarmup&) = delete;
  GemmWarmup& operator=(const GemmWarmup&) = delete;

  // Waits for the thread; says what it did, for `--verbose`'s load line.
  std::string finish();

 private:
  void run();

  int device_;
  cudaStream_t stream_;
  std::vector<WarmGemm> gemms_;
  std::thread thread_;
  std::string report_;
};

}  // namespace xllama::cuda
