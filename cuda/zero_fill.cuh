// Device side of ZeroFill (kernels.h): the blocks of a grid share the zeroing of a few small buffers.
#pragma once
#include "cuda/kernels.h"

namespace xllama::cuda {

__device__ __forceinline__ void zero_fill(const ZeroFill& z) {
  const size_t blocks = (size_t)gridDim.x * gridDim.y * gridDim.z;
  const size_t block = ((size_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  for (size_t i = block * blockDim.x + threadIdx.x; i < z.n; i += blocks * blockDim.x) z.p[i] = 0.f;
}

}  // namespace xllama::cuda
