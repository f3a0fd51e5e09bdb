// `xllama_kernel_check --release-latency`: what a load right after a kernel boundary costs, and of what. Sessions
// 17-19 saw every decode GEMV's first input (an L2 hit: the previous kernel's output) come back ~0.9 us after its
// release and found no cause (docs/PERF-NOTES.md, session 41). Here a producer streams ~100 MB and writes a small
// output X; a consumer, launched after it (with programmatic dependent launch or without), first requests weights as
// the GEMVs do before their wait, then loads X, then Y (in L2, not written by the producer), then Z (cold), each
// timed by clock64 once its value is there, in warp 0 or 1 of blocks 0-7. Without PDL the consumer's blocks start
// at the boundary, so their own weight loads are still in flight when X is requested, as in the decode graph.
#include "tools/kernel-check/suites.h"

#include <algorithm>
#include <vector>

#include "cuda/bulk_pipeline.cuh"
#include "cuda/cp_async.cuh"
#include "cuda/launch.h"

namespace xllama::kcheck {

namespace {

constexpr int kProbeThreads = 128;  // a GEMV block's
constexpr int kPreloads = 8;        // 16-byte loads per thread before the wait: a GEMV warp's first batch
constexpr int kTimedBlocks = 8;

// What the consumer requests before its wait, and which warp is timed (warp 0 unless said).
enum class Preload {
  None,                      // nothing
  EveryWarp,                 // kPreloads weight loads per thread
  AllButWarp0TimedWarp0,     // the same in warps 1-3 only; warp 0, without loads of its own, timed
  AllButWarp0TimedWarp1,     // the same, warp 1 timed
  PrefetchL2,                // the weights as L2 prefetches (loaded after the timing)
  CpAsync,                   // the weights by cp.async into shared memory
  EveryWarpInputByBulkCopy,  // as EveryWarp, but X (256 bytes per block) comes by a bulk copy into shared memory
};

__device__ __forceinline__ long long clock_now() {
  long long t;
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(t));
  return t;
}
// clock64 read once v has arrived (the read is predicated on the value).
__device__ __forceinline__ long long clock_after(float v) {
  long long t;
  asm volatile("{ .reg .pred p; setp.eq.f32 p, %1, %1;\n @p mov.u64 %0, %%clock64;\n @!p mov.u64 %0, 0; }"
               : "=l"(t)
               : "f"(v));
  return t;
}

__global__ void release_producer(const uint4* __restrict__ w, size_t per_block, float* x, const float* y, int nx,
                                 float* sink) {
  wait_for_previous_kernel();
  const float yv = y[(blockIdx.x * kProbeThreads + threadIdx.x) % nx];  // y into L2
  const uint4* wb = w + (size_t)blockIdx.x * per_block;
  unsigned acc = 0;
  for (size_t i = threadIdx.x; i < per_block; i += kProbeThreads) {
    const uint4 q = __ldg(wb + i);
    acc ^= q.x ^ q.y ^ q.z ^ q.w;
  }
  for (int i = threadIdx.x; i < 32; i += kProbeThreads) x[(blockIdx.x * 32 + i) % nx] = (float)(acc & 1) + yv;
  if (acc == 0x12345678u) sink[0] = yv;
}

// X's 64 floats for this block by one bulk copy (the copy engine) into shared memory, waited for on an mbarrier.
__device__ __forceinline__ float input_by_bulk_copy(const float* x, int nx, float* dst, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const float* src = x + (blockIdx.x * 64) % nx;
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(bar, 256u);
    bulk_copy_to_shared(dst, src, 256u, bar);
  }
  mbar_wait(bar, 0);
  return dst[(threadIdx.x * 13) % 64];
#else
  return __ldcg(x + (blockIdx.x * 64 + (threadIdx.x * 13) % 64) % nx);
#endif
}

__global__ void release_consumer(const uint4* __restrict__ w, size_t per_block, Preload mode, const float* x,
                                 const float* y, const float* z, int nx, long long* times, float* sink) {
  __shared__ uint4 staged[kPreloads * kProbeThreads];
  __shared__ __align__(16) float x_staged[64];
  __shared__ __align__(8) uint64_t x_bar;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (mode == Preload::EveryWarpInputByBulkCopy && threadIdx.x == 0) {
    mbar_init(&x_bar, 1);
    fence_mbar_init();
  }
  __syncthreads();
#endif
  const uint4* wb = w + (size_t)blockIdx.x * per_block;
  uint4 pre[kPreloads];
#pragma unroll
  for (int i = 0; i < kPreloads; ++i) pre[i] = make_uint4(0, 0, 0, 0);
  const bool loads = mode == Preload::EveryWarp || mode == Preload::EveryWarpInputByBulkCopy ||
                     ((mode == Preload::AllButWarp0TimedWarp0 || mode == Preload::AllButWarp0TimedWarp1) &&
                      warp > 0);
  if (loads) {
#pragma unroll
    for (int i = 0; i < kPreloads; ++i) pre[i] = __ldg(wb + threadIdx.x + i * kProbeThreads);
  } else if (mode == Preload::PrefetchL2) {
#pragma unroll
    for (int i = 0; i < kPreloads; ++i)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(wb + threadIdx.x + i * kProbeThreads));
  } else if (mode == Preload::CpAsync) {
#pragma unroll
    for (int i = 0; i < kPreloads; ++i)
      cp_async16(staged + threadIdx.x + i * kProbeThreads, wb + threadIdx.x + i * kProbeThreads);
    cp_async_commit();
  }
  const long long t0 = clock_now();
  wait_for_previous_kernel();
  const long long t1 = clock_now();
  const int idx = (blockIdx.x * 97 + threadIdx.x * 13) % nx;
  const float xv =
      mode == Preload::EveryWarpInputByBulkCopy ? input_by_bulk_copy(x, nx, x_staged, &x_bar) : __ldcg(x + idx);
  const long long t2 = clock_after(xv);
  const float yv = __ldcg(y + (idx + (int)xv) % nx);
  const long long t3 = clock_after(yv);
  const float zv = __ldcg(z + (size_t)blockIdx.x * 4096 + threadIdx.x * 32 + (int)yv);
  const long long t4 = clock_after(zv);
  if (mode == Preload::PrefetchL2) {
#pragma unroll
    for (int i = 0; i < kPreloads; ++i) pre[i] = __ldg(wb + threadIdx.x + i * kProbeThreads);
  } else if (mode == Preload::CpAsync) {
    cp_async_wait<0>();
#pragma unroll
    for (int i = 0; i < kPreloads; ++i) pre[i] = staged[threadIdx.x + i * kProbeThreads];
  }
  unsigned acc = 0;
#pragma unroll
  for (int i = 0; i < kPreloads; ++i) acc ^= pre[i].x ^ pre[i].y ^ pre[i].z ^ pre[i].w;
  for (size_t i = threadIdx.x + kPreloads * kProbeThreads; i < per_block; i += kProbeThreads) acc ^= __ldg(wb + i).x;
  const int timed_warp = mode == Preload::AllButWarp0TimedWarp1 ? 1 : 0;
  if (warp == timed_warp && lane == 0 && blockIdx.x < kTimedBlocks) {
    long long* t = times + blockIdx.x * 4;
    t[0] = t1 - t0, t[1] = t2 - t1, t[2] = t3 - t2, t[3] = t4 - t3;
  }
  if (acc == 0x12345678u) sink[1] = xv + yv + zv;
}

}  // namespace

void time_release_latency() {
  int sms = 0, khz = 0;
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0));
  const int blocks = 2 * sms;
  const size_t per_block = (size_t)kPreloads * kProbeThreads * 24;  // ~400 KB per block, ~100 MB per launch
  const int nx = 8192, runs = 30, warm = 5, z_slices = 64;
  const size_t z_slice = (size_t)blocks * 4096 + 8192;
  Dev<uint4> w(per_block * blocks), w2(per_block * blocks);
  Dev<float> x(nx), y(nx), z(z_slice * z_slices), sink(2);
  Dev<long long> times((size_t)kTimedBlocks * 4);
  XL_CUDA_CHECK(cudaMemset(w.p, 1, w.n * sizeof(uint4)));
  XL_CUDA_CHECK(cudaMemset(w2.p, 2, w2.n * sizeof(uint4)));
  XL_CUDA_CHECK(cudaMemset(x.p, 0, x.n * 4));
  XL_CUDA_CHECK(cudaMemset(y.p, 0, y.n * 4));
  XL_CUDA_CHECK(cudaMemset(z.p, 0, z.n * 4));
  const struct {
    Preload mode;
    const char* name;
  } modes[] = {{Preload::None, "no loads before the wait"},
               {Preload::EveryWarp, "every warp loads 8 before the wait"},
               {Preload::AllButWarp0TimedWarp0, "warps 1-3 load, warp 0 timed"},
               {Preload::AllButWarp0TimedWarp1, "warps 1-3 load, warp 1 timed"},
               {Preload::PrefetchL2, "every warp prefetches 8 into L2"},
               {Preload::CpAsync, "every warp cp.async's 8 into smem"},
               {Preload::EveryWarpInputByBulkCopy, "every warp loads 8, X by a bulk copy"}};
  const bool pdl = pdl_enabled();
  std::printf("release latency: consumer's cycles (median of blocks 0-%d over %d runs), %d MHz clock:\n",
              kTimedBlocks - 1, runs - warm, khz / 1000);
  std::printf("%-42s %19s %19s %19s %19s\n", "", "its wait", "X (producer's)", "Y (in L2)", "Z (cold)");
  for (bool on : {false, true}) {
    set_pdl_enabled(on && pdl);
    if (on && !pdl) break;  // (a GPU without programmatic dependent launch)
    for (const auto& m : modes) {
      std::vector<long long> all[4];
      for (int run = 0; run < runs; ++run) {
        launch(release_producer, blocks, kProbeThreads, 0, nullptr, (const uint4*)w.p, per_block, x.p,
               (const float*)y.p, nx, sink.p);
        launch(release_consumer, blocks, kProbeThreads, 0, nullptr, (const uint4*)w2.p, per_block, m.mode,
               (const float*)x.p, (const float*)y.p, (const float*)(z.p + (size_t)(run % z_slices) * z_slice), nx,
               times.p, sink.p);
        XL_CUDA_LAUNCH_CHECK();
        const std::vector<long long> t = times.download();
        if (run >= warm)
          for (int b = 0; b < kTimedBlocks; ++b)
            for (int k = 0; k < 4; ++k) all[k].push_back(t[b * 4 + k]);
      }
      std::printf("%-6s %-35s", on ? "PDL" : "no PDL", m.name);  // (42 columns)
      for (auto& v : all) {
        std::sort(v.begin(), v.end());
        const long long med = v[v.size() / 2];
        std::printf(" %7lld (%5.0f ns)", med, med * 1e6 / khz);
      }
      std::printf("\n");
    }
  }
  set_pdl_enabled(pdl);
}

}  // namespace xllama::kcheck
