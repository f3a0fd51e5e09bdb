// The prompt path's fused 4-bit GEMM on Hopper: y = x W^T with W dequantized in registers straight into the tensor
// cores' A operand (wgmma, sm_90a), so no fp16 copy of the weights is written or read. Built only for sm_90a
// (cuda/sm90a/); on any other GPU gemm_q4_wgmma_supported() is false and the backend dequantizes + runs cuBLAS.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/kernels.h"

#include <cstddef>
#include <stdexcept>

namespace xllama::cuda {

// Tiles are 128 output features x 256 tokens; the stream-K schedule runs one block per SM, at most
// kGemmQ4WgmmaMaxBlocks (an H100's or H200's 132), each handing on at most one fp32 partial tile.
constexpr int kGemmQ4WgmmaTileTokens = 256;
constexpr int kGemmQ4WgmmaMaxBlocks = 132;
constexpr size_t kGemmQ4WgmmaPartialBytes = (size_t)128 * kGemmQ4WgmmaTileTokens * 4;

// The kernel's tiles take a linear of K inputs, N outputs and this quantization group (gemm_q4_wgmma_fits adds the
// pointers' alignment). Build-independent, like the sizes below: a stage holds the stream-K scratch where a 4-bit
// layer linear has such a shape (cli/engine/gpu-footprint.ts mirrors it).
constexpr bool gemm_q4_wgmma_shape_fits(int K, int N, int group_size) {
  return K % 64 == 0 && N % 128 == 0 && group_size > 0 && group_size % 32 == 0;
}
// Tiles of a GEMM of m rows and N outputs (the whole-tile schedule's block count).
constexpr int gemm_q4_wgmma_tiles(int m, int N) {
  return (m + kGemmQ4WgmmaTileTokens - 1) / kGemmQ4WgmmaTileTokens * (N / 128);
}
// The kernel's input buffer, in fp16 values: m rows rounded up to whole token tiles (the same in every build, so
// memory estimates don't depend on it).
inline size_t gemm_q4_wgmma_input_halves(int m, int K) {
  return (size_t)((m + kGemmQ4WgmmaTileTokens - 1) / kGemmQ4WgmmaTileTokens) * kGemmQ4WgmmaTileTokens * K;
}
// Bytes of the stream-K scratch (partial tiles, a flag per block, two ticket counters), to be allocated zeroed, one
// per stream that may run these GEMMs at the same time. The same on every GPU.
constexpr size_t gemm_q4_wgmma_scratch_bytes() {
  return kGemmQ4WgmmaMaxBlocks * kGemmQ4WgmmaPartialBytes + (kGemmQ4WgmmaMaxBlocks + 2) * sizeof(unsigned);
}

// How many blocks share the work (tiles x k64 steps): the number of tiles (each block one whole tile), or fewer,
// one per SM at most (stream-K: blocks take equal shares of the steps, cutting tiles where they must; needs the
// scratch). 0: gemm_q4_wgmma_plan's pick.
struct GemmQ4WgmmaPlan {
  int blocks = 0;
};

#ifdef XLLAMA_HAVE_SM90A
// The current GPU runs the kernel (compute capability 9.0 and this build holds its sm_90a code).
bool gemm_q4_wgmma_supported();
// The weight suits the kernel: gemm_q4_wgmma_shape_fits, and every pointer it reads 16-byte aligned.
bool gemm_q4_wgmma_fits(const QWeight& w);
// Whether this GEMM is expected to run faster fused than as dequantization + cuBLAS (the backend's default path),
// from the H200 measurements in docs/PERF-NOTES.md (session 44).
bool gemm_q4_wgmma_preferred(const QWeight& w, int m, bool accumulate);
// The kernel's input: x[i, perm[k(c)]] (perm may be null) in the column order its A fragments take (within each
// 64-column span, c = 16 j + p holds k = 8 (p / 2) + j + 4 (p % 2)), laid out in blocks of 256 rows x 64 columns
// (zero rows past m); out holds gemm_q4_wgmma_input_halves(m, K) halves.
void gemm_q4_wgmma_input(const __half* x, int m, int K, int x_stride, const int* perm, __half* out, cudaStream_t s);
// The schedule that fills this GPU's SMs best for m rows.
GemmQ4WgmmaPlan gemm_q4_wgmma_plan(const QWeight& w, int m);
// y[i, n] (+)= sum_k xp[i, k] W(k, n) for i < m; accumulate adds into y (fp32 only), else y is overwritten. xp is
// gemm_q4_wgmma_input's output; scratch: gemm_q4_wgmma_scratch_bytes() zeroed bytes (null: whole tiles only). T:
// float or __half. Needs gemm_q4_wgmma_supported() and gemm_q4_wgmma_fits(w). The result doesn't depend on the
// schedule's timing: tiles cut between blocks are summed in a fixed order.
template <class T>
void gemm_q4_wgmma(const QWeight& w, const __half* xp, int m, T* y, int y_stride, bool accumulate, void* scratch,
                   cudaStream_t s, GemmQ4WgmmaPlan plan = {});
// Process-wide switch: fp32 output tiles leave through shared memory, added into y by bulk reductions, where y's rows
// are 16-byte aligned, instead of by each thread's reductions from registers: the same bits, a 13B down_proj at 512
// tokens 129 -> 118 us on the H200 (docs/PERF-NOTES.md, session 50). On unless XLLAMA_WGMMA_FP32_BULK=0; the kernel
// check flips it to compare.
bool& gemm_q4_wgmma_fp32_bulk_flag();
#else
// A build without sm_90a code (nvcc older than 12.0, or XLLAMA_SM90A=OFF): no GPU runs the kernel.
inline bool gemm_q4_wgmma_supported() { return false; }
inline bool gemm_q4_wgmma_fits(const QWeight&) { return false; }
inline bool gemm_q4_wgmma_preferred(const QWeight&, int, bool) { return false; }
inline void gemm_q4_wgmma_input(const __half*, int, int, int, const int*, __half*, cudaStream_t) {
  throw std::logic_error("gemm_q4_wgmma_input: this build has no sm_90a code");
}
inline GemmQ4WgmmaPlan gemm_q4_wgmma_plan(const QWeight&, int) { return {}; }
inline bool& gemm_q4_wgmma_fp32_bulk_flag() {
  static bool on = false;
  return on;
}
template <class T>
void gemm_q4_wgmma(const QWeight&, const __half*, int, T*, int, bool, void*, cudaStream_t, GemmQ4WgmmaPlan = {}) {
  throw std::logic_error("gemm_q4_wgmma: this build has no sm_90a code");
}
#endif

}  // namespace xllama::cuda
