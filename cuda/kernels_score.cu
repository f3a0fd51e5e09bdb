// Scoring for perplexity on the device: each logits row is reduced to the negative log-likelihood of one
// target token, so the logits never leave the GPU (a 2048-row chunk of a 128k vocabulary is 1 GiB of them).
#include <cfloat>
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace xllama::cuda {

namespace {

constexpr int kThreads = 512;

// max (op = 0) or sum (op = 1) over the block; every thread gets the result.
template <int op>
__device__ __forceinline__ float block_reduce(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = op == 0 ? fmaxf(v, other) : v + other;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? shared[lane] : (op == 0 ? -INFINITY : 0.f);
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = op == 0 ? fmaxf(v, other) : v + other;
  }
  __syncthreads();  // `shared` is reused by the next reduction
  return v;
}

// One block per row: the row's max, then sum(exp(x - max)) in float (every term <= 1, so nothing
// overflows whatever the logits' scale), then log(sum) - (x[target] - max).
__global__ void __launch_bounds__(kThreads)
    token_nll_kernel(const float* __restrict__ logits, int vocab, const int* __restrict__ targets,
                     float* __restrict__ nll) {
  wait_for_previous_kernel();
  __shared__ float shared[kThreads / 32];
  const int row = blockIdx.x;
  const int target = targets[row];
  if (target < 0 || target >= vocab) {  // not scored (the host refuses ids >= vocab before launching)
    if (threadIdx.x == 0) nll[row] = 0.f;
    return;
  }
  const float* x = logits + (size_t)row * vocab;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += kThreads) m = fmaxf(m, x[i]);
  m = block_reduce<0>(m, shared);
  float s = 0.f;
  for (int i = threadIdx.x; i < vocab; i += kThreads) s += __expf(x[i] - m);
  s = block_reduce<1>(s, shared);
  if (threadIdx.x == 0) nll[row] = logf(s) - (x[target] - m);
}

}  // namespace

void token_nll(const float* logits, int rows, int vocab, const int* targets, float* nll, cudaStream_t s) {
  if (rows <= 0) return;
  launch(token_nll_kernel, rows, kThreads, 0, s, logits, vocab, targets, nll);
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
