// A timeline of a decode step inside its graph, for `xllama_kernel_check --timeline` (docs/PERF-NOTES.md,
// session 16). ncu times kernels one at a time; inside a graph, programmatic dependent launch overlaps them, and
// what costs time is when each kernel is released (its wait returns: the previous kernel has completed) and how
// long it runs after that. Compiled in only with -DXLLAMA_KERNEL_TRACE=ON (CMake): otherwise every hook is empty
// and the kernels are those of a normal build.
//   - wait_for_previous_kernel(): block (0,0,0) records when it reached the wait and when the wait released it;
//   - trace_mark(k): block (0,0,0) marks stage k (0..kTraceMarks-1) of its own work (0..2: the stages the summary
//     chains; 3..: times from the release); trace_mark_arrived(k, v) marks it once the load of v has returned;
//   - trace_block_end(): every block's end, the latest kept per launch.
// Launches are keyed by %gridid, which a graph's kernel keeps on every replay: marks and ends hold the last replay's.
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "cuda/cuda_check.h"

namespace xllama::cuda {

struct KernelTrace {
  unsigned long long gridid, t_reached, t_released;  // ns (%globaltimer)
  unsigned grid[3], threads;
};
constexpr unsigned long long kTraceSlots = 1ull << 20;  // launches keyed by gridid & (kTraceSlots - 1)
constexpr int kTraceMarks = 8;
struct TraceSink {
  KernelTrace* rec = nullptr;  // [cap], filled in release order (not sorted)
  unsigned* count = nullptr;
  unsigned cap = 0;
  unsigned long long* ends = nullptr;   // [kTraceSlots]: the latest block end per launch
  unsigned long long* marks = nullptr;  // [kTraceSlots][kTraceMarks]: block 0's stage marks
};

#ifdef XLLAMA_KERNEL_TRACE
constexpr bool kKernelTraceBuilt = true;
// One copy per translation unit (no relocatable device code): set_kernel_trace sets them all.
static __constant__ TraceSink g_trace_sink;

__device__ __forceinline__ unsigned long long trace_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned long long trace_gridid() {
  unsigned long long g;
  asm volatile("mov.u64 %0, %%gridid;" : "=l"(g));
  return g;
}
__device__ __forceinline__ bool trace_block_zero() {
  return g_trace_sink.rec && (threadIdx.x | threadIdx.y | blockIdx.x | blockIdx.y | blockIdx.z) == 0;
}
__device__ __forceinline__ unsigned long long trace_wait_reached() { return trace_block_zero() ? trace_now() : 0; }
__device__ __forceinline__ void trace_wait_released(unsigned long long reached) {
  if (!trace_block_zero()) return;
  const unsigned long long t = trace_now();
  const unsigned i = atomicAdd(g_trace_sink.count, 1u);
  if (i >= g_trace_sink.cap) return;
  KernelTrace& r = g_trace_sink.rec[i];
  r.gridid = trace_gridid(), r.t_reached = reached, r.t_released = t;
  r.grid[0] = gridDim.x, r.grid[1] = gridDim.y, r.grid[2] = gridDim.z, r.threads = blockDim.x;
}
__device__ __forceinline__ unsigned long long& trace_mark_slot(int k) {
  return g_trace_sink.marks[(trace_gridid() & (kTraceSlots - 1)) * kTraceMarks + k];
}
__device__ __forceinline__ void trace_mark(int k) {
  if (trace_block_zero()) trace_mark_slot(k) = trace_now();
}
// Mark k once v has arrived (thread 0 of block 0): the timer read is predicated on v, so it waits for v's load
// (0 if v is NaN).
__device__ __forceinline__ void trace_mark_arrived(int k, float v) {
  if (!trace_block_zero()) return;
  unsigned long long t;
  asm volatile(
      "{ .reg .pred p; setp.eq.f32 p, %1, %1;\n"
      "  @p mov.u64 %0, %%globaltimer;\n"
      "  @!p mov.u64 %0, 0; }"
      : "=l"(t)
      : "f"(v));
  trace_mark_slot(k) = t;
}
__device__ __forceinline__ void trace_block_end() {
  if (g_trace_sink.rec && threadIdx.x == 0)
    atomicMax(g_trace_sink.ends + (trace_gridid() & (kTraceSlots - 1)), trace_now());
}

namespace trace_detail {
using Setter = void (*)(const TraceSink&);
inline std::vector<Setter>& setters() {
  static std::vector<Setter> v;
  return v;
}
[[maybe_unused]] static void set_sink(const TraceSink& s) { XL_CUDA_CHECK(cudaMemcpyToSymbol(g_trace_sink, &s, sizeof s)); }
[[maybe_unused]] static const bool registered = (setters().push_back(&set_sink), true);
}  // namespace trace_detail
// Points every translation unit's hooks at s (an empty sink turns them off).
inline void set_kernel_trace(const TraceSink& s) {
  for (auto f : trace_detail::setters()) f(s);
}
#else
constexpr bool kKernelTraceBuilt = false;
__device__ __forceinline__ unsigned long long trace_wait_reached() { return 0; }
__device__ __forceinline__ void trace_wait_released(unsigned long long) {}
__device__ __forceinline__ void trace_mark(int) {}
__device__ __forceinline__ void trace_mark_arrived(int, float) {}
__device__ __forceinline__ void trace_block_end() {}
inline void set_kernel_trace(const TraceSink&) {}
#endif

}  // namespace xllama::cuda
