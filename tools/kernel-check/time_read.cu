// The kernel check's reading probes: what DRAM gives a kernel that only reads, alone and chained as a decode layer's
// GEMVs are, against the copy bandwidth that `xllama bench`'s floors use. They bound what the decode kernels can
// reach when nothing but their reads counted (docs/PERF-NOTES.md, session 66).
#include "cuda/graph_capture.h"
#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

namespace {

// p[i], p[i + stride], ... below n, folded into `fold`, with U loads in flight a lane.
template <int U>
__device__ __forceinline__ uint32_t read_folded(const uint4* __restrict__ p, size_t n, size_t i, size_t stride,
                                                uint32_t fold) {
  for (; i + (U - 1) * stride < n; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = __ldcs(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < U; ++u) fold ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) {
    const uint4 v = __ldcs(p + i);
    fold ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  return fold;
}

// The warp's folds, folded, into the warp's own word of out.
__device__ __forceinline__ void store_warp_fold(uint32_t* out, uint32_t fold) {
  fold = __reduce_xor_sync(0xffffffffu, fold);
  if ((threadIdx.x & 31) == 0) out[(blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32] = fold;
}

// A pure streaming read: every lane keeps U 16-byte loads in flight, a grid of `waves` x the resident blocks walks
// the buffer, and each warp stores what it read, folded, in a word of its own (so no load is dropped; one address
// taking every warp's atomic would serialize them, ~1 ns each, a tail of several µs). What the decode GEMVs and the
// lm_head could reach if nothing but reading bounded them; launched back to back without programmatic dependent
// launch, so each time includes a launch's gap.
template <int U>
__global__ void __launch_bounds__(256) read_ceiling_kernel(const uint4* __restrict__ p, size_t n, uint32_t* out) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  store_warp_fold(out, read_folded<U>(p, n, blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride, 0u));
}

// Each launch reads the next n-element window of the pool, so that a window smaller than L2 is not read from L2
// (the pool is several times L2's size; the decode weights stream through once a token the same way).
template <int U>
float read_ceiling_us(const uint4* pool, size_t pool_n, size_t n, uint32_t* out, int waves) {
  const int blocks = waves * resident_blocks(reinterpret_cast<const void*>(read_ceiling_kernel<U>), 256, 0);
  const size_t windows = std::max<size_t>(1, pool_n / n);
  size_t next = 0;
  return batch_us([&] {
    read_ceiling_kernel<U><<<blocks, 256>>>(pool + (next++ % windows) * n, n, out);
  });
}

// A decode layer's four GEMVs as pure reads in one graph, 32 layers a launch: each kernel (256 threads, one wave)
// requests its first U loads a lane, then, as the GEMVs do (wait_for_previous_kernel), waits for the kernel before it
// to finish before reading the rest. NO_WAIT: it never waits (every read free to overlap the kernel before: what a
// decode kernel could stream if nothing it read depended on the kernel before).
template <bool NO_WAIT>
__global__ void __launch_bounds__(256) read_chained_kernel(const uint4* __restrict__ p, size_t n, uint32_t* out) {
  constexpr int U = 8;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  uint32_t fold = 0;
  uint4 first[U];
#pragma unroll
  for (int u = 0; u < U; ++u) first[u] = i + u * stride < n ? __ldcs(p + i + u * stride) : make_uint4(0, 0, 0, 0);
  if (NO_WAIT) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  } else {
    wait_for_previous_kernel();
  }
#pragma unroll
  for (int u = 0; u < U; ++u) fold ^= first[u].x ^ first[u].y ^ first[u].z ^ first[u].w;
  store_warp_fold(out, read_folded<U>(p, n, i + U * stride, stride, fold));
}

// The 7B's, 13B's and 70B's layers (q/k/v, o_proj, gate/up, down: 4-bit weights and fp16 group-128 scales, as ncu
// counted the 7B's), 32 layers a graph: with the waits, without them, and without PDL.
void time_read_chained(double copy, const uint4* pool, size_t pool_n, uint32_t* out) {
  struct Shape { const char* name; double mb[4]; };
  const Shape shapes[] = {{"7B", {25.96, 8.65, 46.51, 23.25}},
                          {"13B", {40.55, 13.52, 72.99, 36.50}},
                          {"70B", {43.25, 34.60, 242.2, 121.1}}};
  cudaStream_t s = nullptr;
  XL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const int blocks = resident_blocks(reinterpret_cast<const void*>(read_chained_kernel<false>), 256, 0);
  const bool saved_pdl = pdl_flag();
  for (const Shape& sh : shapes) {
    double layer_bytes = 0;
    for (double mb : sh.mb) layer_bytes += mb * 1e6;
    const int layers = 32;
    std::printf("time read chained %s layer (%.1f MB, %.2f us at the copy bandwidth):", sh.name, layer_bytes / 1e6,
                layer_bytes / (copy * 1e3));
    for (int variant = 0; variant < 3; ++variant) {  // waits, no waits, no PDL
      pdl_flag() = variant != 2;
      size_t offset = 0;
      const cudaGraphExec_t exec = cuda::capture_graph(s, [&] {
        for (int l = 0; l < layers; ++l)
          for (double mb : sh.mb) {
            const size_t n = (size_t)(mb * 1e6) / 16;
            if (offset + n > pool_n) offset = 0;
            if (variant == 1) launch(read_chained_kernel<true>, blocks, 256, 0, s, pool + offset, n, out);
            else launch(read_chained_kernel<false>, blocks, 256, 0, s, pool + offset, n, out);
            offset += n;
          }
      });
      const float ms = median_ms([&] {  // (the launch and the synchronization: ~0.3 us a layer of the 32)
        XL_CUDA_CHECK(cudaGraphLaunch(exec, s));
        XL_CUDA_CHECK(cudaStreamSynchronize(s));
      }, 3, 20);
      XL_CUDA_CHECK(cudaGraphExecDestroy(exec));
      const double us = ms * 1e3 / layers;
      std::printf("  %s %.2f us (%.1f%% of copy)", variant == 0 ? "waits" : variant == 1 ? "no waits" : "no PDL", us,
                  100.0 * layer_bytes / (us * 1e3) / copy);
    }
    std::printf("\n");
  }
  pdl_flag() = saved_pdl;
  XL_CUDA_CHECK(cudaStreamDestroy(s));
}

}  // namespace

void time_read_ceiling() {
  const double copy = copy_bandwidth_gbs();
  std::printf("time read ceiling: copy bandwidth %.0f GB/s (read + written, as bench measures it)\n", copy);
  const int most_blocks = 4 * std::max(resident_blocks(reinterpret_cast<const void*>(read_ceiling_kernel<4>), 256, 0),
                                       resident_blocks(reinterpret_cast<const void*>(read_ceiling_kernel<8>), 256, 0));
  Dev<uint32_t> out((size_t)most_blocks * 256 / 32);  // a word per warp
  const size_t pool_n = (size_t)2 << 30 >> 4;  // 2 GiB
  Dev<uint4> pool(pool_n);
  XL_CUDA_CHECK(cudaMemset(pool.p, 1, pool_n * 16));
  for (const double mb : {8.4, 25.2, 46.1, 262.1, 1024.0}) {
    const size_t n = (size_t)(mb * 1e6) / 16;
    std::printf("time read ceiling %7.1f MB:", mb);
    for (const int waves : {1, 4}) {
      const float us4 = read_ceiling_us<4>(pool.p, pool_n, n, out.p, waves),
                  us8 = read_ceiling_us<8>(pool.p, pool_n, n, out.p, waves);
      const double gbs = (double)n * 16 / std::min(us4, us8) * 1e-3;
      std::printf("  %d wave%s %.1f / %.1f us (U 4 / 8), %.0f GB/s = %.1f%% of copy", waves, waves > 1 ? "s" : "", us4,
                  us8, gbs, 100.0 * gbs / copy);
    }
    std::printf("\n");
  }
  time_read_chained(copy, pool.p, pool_n, out.p);
}

}  // namespace xllama::kcheck
