// CUDA error checking that turns every failure into an xllama::BackendError (never a crash).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "backend/backend.h"

namespace xllama::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  std::string code = (err == cudaErrorMemoryAllocation) ? "out_of_memory" : "cuda_error";
  throw BackendError(code, std::string("CUDA error at ") + file + ":" + std::to_string(line) + " (" + what +
                               "): " + cudaGetErrorString(err));
}

}  // namespace xllama::cuda

#define XL_CUDA_CHECK(expr)                                                              \
  do {                                                                                   \
    cudaError_t xl_err_ = (expr);                                                        \
    if (xl_err_ != cudaSuccess) ::xllama::cuda::throw_cuda_error(xl_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: catches bad launch configurations right away.
#define XL_CUDA_LAUNCH_CHECK() XL_CUDA_CHECK(cudaGetLastError())
