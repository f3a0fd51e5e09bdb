// The prompt path's one cuBLAS call, shared by the stage's GEMMs and their warm-up (gemm_warmup.h), so that the
// warm-up asks cuBLAS for exactly what the prompt will.
#pragma once
#ifdef XLLAMA_HAVE_CUBLAS
#include <cublas_v2.h>
#include <cuda_fp16.h>

namespace xllama::cuda {

// C[m, N] = beta C + A[m, K] . B with B(k, n) = b_kn ? B[k*ldb + n] : B[n*ldb + k]; C is fp32 (c_f32) or fp16.
struct GemmOperands {
  const __half* A;
  int lda;
  const __half* B;
  int ldb;
  bool b_kn;
  void* C;
  int ldc;
  bool c_f32;
  int m, N, K;
  float beta;
};

// Enqueues g on the handle's stream. Column-major view: C^T (N x m) = op(B) (N x K) . A^T (K x m).
inline cublasStatus_t cublas_gemm(cublasHandle_t handle, const GemmOperands& g) {
  const float one = 1.f;
  return cublasGemmEx(handle, g.b_kn ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, g.N, g.m, g.K, &one, g.B, CUDA_R_16F,
                      g.ldb, g.A, CUDA_R_16F, g.lda, &g.beta, g.C, g.c_f32 ? CUDA_R_32F : CUDA_R_16F, g.ldc,
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

}  // namespace xllama::cuda
#endif
