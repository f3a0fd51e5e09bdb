// Kernel launches with programmatic dependent launch (PDL, sm_90): the next kernel of a decode step is
// launched while the previous one drains, and waits in wait_for_previous_kernel() before touching its
// outputs. This hides most of the per-kernel launch gap inside a graph. XLLAMA_NO_PDL=1 turns it off.
// Hopper-only: the device side compiles to nothing below sm_90, and the host sets the launch attribute only
// where the GPU honours it and runs code compiled with the wait (see current_device_runs_pdl_code()).
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>

#include "cuda/cuda_check.h"
#include "cuda/device_query.h"
#include "cuda/env_switch.h"
#include "cuda/kernel_trace.cuh"

namespace xllama::cuda {

// Every kernel launched through launch() calls this before reading anything an earlier kernel wrote.
// Once every block of this kernel is past the wait, the next kernel may be launched: its blocks take free
// SM slots during this kernel's tail and start streaming their weights (they wait for this one to finish
// before reading its outputs).
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned long long reached = trace_wait_reached();
  asm volatile("griddepcontrol.wait;" ::: "memory");
  trace_wait_released(reached);
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Process-wide switch (the kernel check flips it to compare); starts from XLLAMA_NO_PDL.
inline bool& pdl_flag() {
  static bool on = !env_switch_set("XLLAMA_NO_PDL");
  return on;
}
inline bool pdl_enabled() { return pdl_flag() && current_device_runs_pdl_code(); }
inline void set_pdl_enabled(bool on) { pdl_flag() = on; }

template <class... KArgs, class... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  XL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
}

}  // namespace xllama::cuda
