// Shared-memory pipelines of Hopper's bulk copies (sm_90; used by the persistent decode kernel and the fused prompt
// GEMM): a producer copies contiguous global ranges into a stage with cp.async.bulk, completing on the stage's
// mbarrier by byte count; consumers wait on it (and may hand the stage back through another mbarrier). The fused
// GEMM also stores its fp16 tiles the other way, from shared memory (bulk_copy_to_global). No tensor maps: every
// range copied is contiguous. The PTX compiles to nothing below sm_90 (callers run only on Hopper).
#pragma once
#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define XLLAMA_BULK_PTX 1
#endif

namespace xllama::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned arrivals) {
#ifdef XLLAMA_BULK_PTX
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
#endif
}
// Makes the initialised barriers visible to the copy engine (async proxy) before the first copy names them.
__device__ __forceinline__ void fence_mbar_init() {
#ifdef XLLAMA_BULK_PTX
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
// One arrival that also announces `bytes` of copies still to land before the phase completes.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, unsigned bytes) {
#ifdef XLLAMA_BULK_PTX
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#ifdef XLLAMA_BULK_PTX
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
#endif
}
// Waits until the phase of parity `parity` has completed (a fresh barrier counts parity 1 as completed).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, unsigned parity) {
#ifdef XLLAMA_BULK_PTX
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}
// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global memory into this block's shared memory.
__device__ __forceinline__ void bulk_copy_to_shared(void* dst, const void* src, unsigned bytes, uint64_t* bar) {
#ifdef XLLAMA_BULK_PTX
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
#endif
}

// The other direction: `bytes` (a multiple of 16; both addresses 16-byte aligned) of this block's shared memory into
// global memory, as a bulk group of its own. Shared memory written by this block's threads must first be fenced for
// the copy engine (fence_async_shared by each writer, then a barrier).
__device__ __forceinline__ void bulk_copy_to_global(void* dst, const void* src, unsigned bytes) {
#ifdef XLLAMA_BULK_PTX
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst), "r"(smem_addr(src)),
               "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
#endif
}
// The same, adding the fp32 values into global memory's (element by element, in the memory system).
__device__ __forceinline__ void bulk_reduce_add_f32(float* dst, const void* src, unsigned bytes) {
#ifdef XLLAMA_BULK_PTX
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;" ::"l"(dst),
               "r"(smem_addr(src)), "r"(bytes)
               : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
#endif
}
__device__ __forceinline__ void fence_async_shared() {
#ifdef XLLAMA_BULK_PTX
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}
// Waits until this thread's bulk copies to global memory have read their shared memory (kReadOnly: it may be
// written again) or are complete.
template <bool kReadOnly>
__device__ __forceinline__ void bulk_wait() {
#ifdef XLLAMA_BULK_PTX
  if constexpr (kReadOnly) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
  else asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
#endif
}
// Four 8 x 8 fp16 matrices from the mma fragment layout (lane 4 g + t holds row g, columns 2t and 2t + 1 of each)
// into shared memory transposed: lanes 8 j + r give the address of matrix j's column r (16 contiguous bytes).
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, uint32_t m0, uint32_t m1, uint32_t m2, uint32_t m3) {
#ifdef XLLAMA_BULK_PTX
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(m0),
               "r"(m1), "r"(m2), "r"(m3)
               : "memory");
#endif
}

}  // namespace xllama::cuda
