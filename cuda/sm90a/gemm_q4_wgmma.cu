// The prompt path's fused 4-bit GEMM (Hopper, sm_90a; see cuda/gemm_q4_wgmma.h). Built for sm_90a alone (its own
// library in CMakeLists.txt): wgmma is not part of plain sm_90.
//
// y^T = W^T x^T as wgmma sees it: A = the weights (128 output features per block, two warpgroups of 64), dequantized
// by each thread into its own A fragment registers; B = 128 input rows (tokens) of x in shared memory; the fp32
// accumulators stay in registers until the end. The dequantized value is scale * (q - zero) rounded to fp16 once,
// exactly what dequant_q4 writes for cuBLAS, so only the order of the fp32 sums differs from the unfused path.
//
// Which k a fragment register holds is the GEMM's choice, as long as B agrees: a thread's fragment registers of the
// k16 step j hold nibbles (j, j + 4) of packed words t and t + 4 (t = lane % 4) of its two rows, which is what
// dequant_word gives, so gemm_q4_wgmma_input reorders x's columns to match once per GEMM (a few MB).
//
// Pipeline: kStages shared-memory stages of one k64 step each (x tile in the 128-byte-swizzled K-major layout
// wgmma reads, the 8 packed words x 128 columns, their scales and zeros), filled by cp.async kStages - 2 steps
// ahead; each step's 4 wgmmas are in flight while the thread dequantizes the next step into the other register set.
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "cuda/cp_async.cuh"
#include "cuda/cuda_check.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/sm90a/wgmma_m64n128k16.cuh"

namespace xllama::cuda {
namespace {

constexpr int kRowsPerBlock = 128;    // output features (A rows): 2 warpgroups x 64
constexpr int kTokensPerBlock = 128;  // input rows (B columns): one m64n128 wgmma per warpgroup and k16
constexpr int kStepK = 64;            // k per stage: one 128-byte swizzle row of x per token
constexpr int kStages = 5;
constexpr int kThreads = 256;
constexpr int kWordPitch = kRowsPerBlock + 8;  // words per packed row in shared memory: conflict-free fragment reads

// One stage's shared memory, in bytes from its (1024-aligned) start.
constexpr int kXBytes = kTokensPerBlock * 128;
constexpr int kWordsOffset = kXBytes;
constexpr int kScalesOffset = kWordsOffset + 8 * kWordPitch * 4;
constexpr int kZerosOffset = kScalesOffset + 2 * kRowsPerBlock * 2;
constexpr int kStageBytes = (kZerosOffset + 2 * kRowsPerBlock + 1023) / 1024 * 1024;
constexpr size_t kSmemBytes = (size_t)kStages * kStageBytes + 1024;  // + alignment slack

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// Shared-memory matrix descriptor of a K-major tile with 128-byte rows in the 128-byte swizzle (8-row atoms of
// 1024 bytes): start address, stride between 8-row groups 1024 bytes, layout type 1 (128B swizzle).
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) {
  return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}
// Keeps the compiler from moving accumulator reads or writes across the asynchronous wgmmas.
__device__ __forceinline__ void fence_accumulators(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

// Stage `step` of the block's tiles into `stage` (every thread issues its share of 16-byte copies).
__device__ __forceinline__ void load_stage(const QWeight& w, const __half* __restrict__ xp, int m, int tok0, int n0,
                                           int step, uint8_t* stage) {
  const int tid = threadIdx.x, K = w.K;
  const int k0 = step * kStepK;
  // x: 128 tokens x 8 chunks of 16 bytes, chunk c of row r at chunk c ^ (r % 8) (the 128-byte swizzle)
#pragma unroll
  for (int i = 0; i < kTokensPerBlock * 8 / kThreads; ++i) {
    const int idx = tid + i * kThreads, r = idx >> 3, c = idx & 7;
    const int tok = tok0 + r;
    const bool valid = tok < m;
    const __half* src = xp + (size_t)(valid ? tok : 0) * K + k0 + c * 8;
    cp_async16_or_zero(stage + r * 128 + ((c ^ (r & 7)) << 4), src, valid);
  }
  // packed words: 8 rows (k0 / 8 ..) x 128 columns = 8 x 32 chunks, one per thread
  {
    const int r = tid >> 5, c = tid & 31;
    cp_async16(stage + kWordsOffset + (r * kWordPitch + c * 4) * 4,
               w.qweight + (size_t)(k0 / 8 + r) * w.N + n0 + c * 4);
  }
  // the groups of k0 and k0 + 32 (the same one for group sizes of 64 or more): scales 2 x 16 chunks, zeros 2 x 8
  if (tid < 32) {
    const int h = tid >> 4, c = tid & 15, g = (k0 + 32 * h) / w.group_size;
    cp_async16(stage + kScalesOffset + (h * kRowsPerBlock + c * 8) * 2, w.scales + (size_t)g * w.N + n0 + c * 8);
  } else if (w.zeros && tid < 48) {
    const int h = (tid - 32) >> 3, c = tid & 7, g = (k0 + 32 * h) / w.group_size;
    cp_async16(stage + kZerosOffset + h * kRowsPerBlock + c * 16, w.zeros + (size_t)g * w.N + n0 + c * 16);
  }
}

// A fragments of one k64 step for a thread's rows ra and ra + 8: a[j] for k16 step j =
// {row ra words t, row ra + 8 words t, row ra words t + 4, row ra + 8 words t + 4}, nibbles (j, j + 4).
__device__ __forceinline__ void dequantize_step(const QWeight& w, const uint8_t* stage, int ra, int t,
                                                uint32_t (&a)[4][4]) {
  const uint32_t* words = reinterpret_cast<const uint32_t*>(stage + kWordsOffset);
  const __half* scales = reinterpret_cast<const __half*>(stage + kScalesOffset);
  const uint8_t* zeros = stage + kZerosOffset;
#pragma unroll
  for (int f = 0; f < 4; ++f) {  // fragment register f: row ra + 8 (f & 1), word t + 4 (f >> 1)
    const int row = ra + 8 * (f & 1), h = f >> 1;
    const uint32_t word = words[(t + 4 * h) * kWordPitch + row];
    const int z = w.zeros ? zeros[h * kRowsPerBlock + row] : w.sym_zero;
    const uint16_t zb = 0x6400 | z;
    const __half2 z1024 = __halves2half2(__ushort_as_half(zb), __ushort_as_half(zb));
    const __half2 zneg64 = __float2half2_rn(-(64.f + (float)z));
    const __half2 s = __half2half2(scales[h * kRowsPerBlock + row]);
    __half2 d[4];
    dequant_word(word, z1024, zneg64, d);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __half2 v = __hmul2(d[j], s);
      a[j][f] = *reinterpret_cast<const uint32_t*>(&v);
    }
  }
}

// One k64 step: wait for its stage, refill the stage two steps back, dequantize, issue the 4 wgmmas, and wait for
// the previous step's (so its registers and stage are free).
template <int BUF>
__device__ __forceinline__ void gemm_step(const QWeight& w, const __half* __restrict__ xp, int m, int tok0, int n0,
                                          int step, int steps, uint8_t* smem, int ra, int t, float (&acc)[64],
                                          uint32_t (&a)[2][4][4]) {
  cp_async_wait<kStages - 3>();
  fence_proxy_async();  // this thread's copies (generic proxy) before the tensor cores read them (async proxy)
  __syncthreads();      // everyone's copies landed, and every warpgroup is done with step - 2's stage
  const int refill = step + kStages - 2;
  if (refill < steps) load_stage(w, xp, m, tok0, n0, refill, smem + (refill % kStages) * kStageBytes);
  cp_async_commit();
  const uint8_t* stage = smem + (step % kStages) * kStageBytes;
  dequantize_step(w, stage, ra, t, a[BUF]);
  wgmma_fence();
  const uint64_t desc = sw128_desc(smem_addr(stage));
#pragma unroll
  for (int j = 0; j < 4; ++j) wgmma_m64n128k16_rs(acc, a[BUF][j], desc + 2 * j);  // + 32 bytes per k16
  wgmma_commit();
  wgmma_wait<1>();
}

template <class T>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_q4_wgmma_kernel(QWeight w, const __half* __restrict__ xp, int m, T* __restrict__ y, int y_stride,
                         bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~(uintptr_t)1023);
  const int tok0 = blockIdx.x * kTokensPerBlock, n0 = blockIdx.y * kRowsPerBlock;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int ra = (warp >> 2) * 64 + (warp & 3) * 16 + g;  // this thread's first A row (output feature) in the block
  const int steps = w.K / kStepK;
  wait_for_previous_kernel();
#pragma unroll
  for (int s = 0; s < kStages - 2; ++s) {
    if (s < steps) load_stage(w, xp, m, tok0, n0, s, smem + s * kStageBytes);
    cp_async_commit();
  }
  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.f;
  uint32_t a[2][4][4];
  fence_accumulators(acc);
  // Two steps per iteration (the two register sets). Careful when changing it: with the zero a loop constant, the
  // conditional second step makes ptxas serialize the wgmmas (C7513); an unconditional pair and an odd last step
  // after the loop does not (docs/PERF-NOTES.md, session 19).
  for (int s = 0; s < steps; s += 2) {
    gemm_step<0>(w, xp, m, tok0, n0, s, steps, smem, ra, t, acc, a);
    if (s + 1 < steps) gemm_step<1>(w, xp, m, tok0, n0, s + 1, steps, smem, ra, t, acc, a);
  }
  wgmma_wait<0>();
  fence_accumulators(acc);
  // acc[4 c + e]: row ra + 8 (e >> 1), token 8 c + 2 t + (e & 1)
#pragma unroll
  for (int c = 0; c < kTokensPerBlock / 8; ++c)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int tok = tok0 + 8 * c + 2 * t + (e & 1);
      if (tok >= m) continue;
      T* p = y + (size_t)tok * y_stride + n0 + ra + 8 * (e >> 1);
      const float v = acc[4 * c + e];
      if constexpr (std::is_same_v<T, float>) {
        *p = accumulate ? *p + v : v;
      } else {
        *p = __float2half(v);
      }
    }
#endif
}

__global__ void gemm_q4_wgmma_input_kernel(const __half* __restrict__ x, int m, int K, int x_stride,
                                           const int* __restrict__ perm, __half* __restrict__ out) {
  wait_for_previous_kernel();
  const size_t total = (size_t)m * K / 8;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / (K / 8)), c0 = (int)(i % (K / 8)) * 8;
    const int span = c0 & ~63, j = (c0 & 63) >> 4;
    uint4 o;
    __half* oh = reinterpret_cast<__half*>(&o);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int p = (c0 & 15) + e;
      const int k = span + 8 * (p >> 1) + j + 4 * (p & 1);
      oh[e] = x[(size_t)r * x_stride + (perm ? perm[k] : k)];
    }
    *reinterpret_cast<uint4*>(out + (size_t)r * K + c0) = o;
  }
}

__global__ void gemm_q4_wgmma_probe_kernel() {}

}  // namespace

bool gemm_q4_wgmma_supported() {
  static std::atomic<int> cache[64];  // per device: 0 not asked yet, 1 no, 2 yes
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return false;
  const int known = cache[device].load(std::memory_order_relaxed);
  if (known != 0) return known == 2;
  int major = 0, minor = 0;
  cudaFuncAttributes attr{};
  // The library holds sm_90a code only: any other GPU finds no image for the probe.
  const bool yes = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                   cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
                   major == 9 && minor == 0 &&
                   cudaFuncGetAttributes(&attr, gemm_q4_wgmma_probe_kernel) == cudaSuccess;
  cudaGetLastError();
  cache[device].store(yes ? 2 : 1, std::memory_order_relaxed);
  return yes;
}

bool gemm_q4_wgmma_fits(const QWeight& w) {
  return w.K % kStepK == 0 && w.N % kRowsPerBlock == 0 && w.group_size > 0 && w.group_size % 32 == 0 &&
         aligned16(w.qweight) && aligned16(w.scales) && (!w.zeros || aligned16(w.zeros));
}

void gemm_q4_wgmma_input(const __half* x, int m, int K, int x_stride, const int* perm, __half* out, cudaStream_t s) {
  const size_t total = (size_t)m * K / 8;
  const int blocks = (int)std::min<size_t>((total + 255) / 256, 4096);
  launch(gemm_q4_wgmma_input_kernel, blocks, 256, 0, s, x, m, K, x_stride, perm, out);
  XL_CUDA_LAUNCH_CHECK();
}

template <class T>
void gemm_q4_wgmma(const QWeight& w, const __half* xp, int m, T* y, int y_stride, bool accumulate, cudaStream_t s) {
  XL_CUDA_CHECK(cudaFuncSetAttribute(gemm_q4_wgmma_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)kSmemBytes));
  // Token tiles vary fastest: the blocks that share a weight tile run together and read it from DRAM once.
  const dim3 grid((m + kTokensPerBlock - 1) / kTokensPerBlock, w.N / kRowsPerBlock);
  launch(gemm_q4_wgmma_kernel<T>, grid, kThreads, kSmemBytes, s, w, xp, m, y, y_stride, accumulate);
  XL_CUDA_LAUNCH_CHECK();
}
template void gemm_q4_wgmma(const QWeight&, const __half*, int, float*, int, bool, cudaStream_t);
template void gemm_q4_wgmma(const QWeight&, const __half*, int, __half*, int, bool, cudaStream_t);

}  // namespace xllama::cuda
