// The prompt path's fused 4-bit GEMM (Hopper, sm_90a; see cuda/gemm_q4_wgmma.h). Built for sm_90a alone (its own
// library in CMakeLists.txt): wgmma and setmaxnreg are not part of plain sm_90.
//
// y^T = W^T x^T as wgmma sees it: A = the weights (output features), dequantized by each consumer thread into its
// own A fragment registers; B = 128 input rows (tokens) of x in shared memory; the fp32 accumulators stay in
// registers until the end. The dequantized value is scale * (q - zero) rounded to fp16 once, exactly what
// dequant_q4 writes for cuBLAS, so only the order of the fp32 sums differs from the unfused path.
//
// Which k a fragment register holds is the GEMM's choice, as long as B agrees: a thread's fragment registers of the
// k16 step j hold nibbles (j, j + 4) of packed words t and t + 4 (t = lane % 4) of its two rows, which is what
// dequant_word gives, so gemm_q4_wgmma_input reorders x's columns to match once per GEMM (a few MB), and lays each
// (128-token tile, k64 step) out as one contiguous 16 KB block already in the 128-byte swizzle wgmma reads.
//
// Roles (warp specialisation): warps 0-7 are two consumer warpgroups, each owning two m64 slices (128 output
// features) of the block's 256; warpgroup 2 is the producer: lane 0 of each of its warps copies a share of each k64
// step (the x block of 16 KB, the 8 packed weight rows, scales and zeros) into a stage with bulk copies
// (cp.async.bulk, completing on the stage's mbarrier). Consumers wait for a stage, dequantize a slice's fragments
// while the previous slice's wgmmas run, and hand the stage back once its last wgmmas are done. Everything a block
// reads from global memory is one contiguous range per copy; the x block (the bigger operand: fp16 against 4-bit
// weights) is read from L2 once per 128-token x 256-feature tile and k64 step.
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/bulk_pipeline.cuh"
#include "cuda/sm90a/wgmma_m64n128k16.cuh"
#include "cuda/sm90a/wgmma_m64n256k16.cuh"

namespace xllama::cuda {
namespace {

constexpr int kTokensPerBlock = 128;  // input rows (B columns): one m64n128 wgmma per slice and k16
constexpr int kStepK = 64;            // k per stage: one 128-byte swizzle row of x per token
constexpr int kXBlockHalves = kTokensPerBlock * kStepK;  // one (token tile, k64 step) block of the reordered x
constexpr int kRowsPerBlock = 256;   // output features: two consumer warpgroups x two m64 slices
constexpr int kSlices = 2;            // m64 slices per consumer warpgroup
constexpr int kConsumerWarps = 8;     // warpgroups 0 and 1
constexpr int kThreads = 384;         // + the producer warpgroup
constexpr int kProducerWarps = 4;     // lane 0 of each copies its share of a stage
constexpr int kConsumerRegs = 232, kProducerRegs = 40;  // setmaxnreg: 2 x 128 x 232 + 128 x 40 <= 64K

// One stage's shared memory, in bytes from its (1024-aligned) start: the x block first (the swizzle's atoms are
// 1024-aligned), then the 8 packed weight rows, two groups' scales and zeros.
constexpr int kWordPitch = kRowsPerBlock + 8;  // words per packed row (= 8 mod 32: conflict-free fragment reads)
constexpr int kXBytes = kXBlockHalves * 2;
constexpr int kWordsOffset = kXBytes;
constexpr int kScalesOffset = kWordsOffset + 8 * kWordPitch * 4;
constexpr int kZerosOffset = kScalesOffset + 2 * kRowsPerBlock * 2;
constexpr int kStageBytes = (kZerosOffset + 2 * kRowsPerBlock + 1023) / 1024 * 1024;
constexpr int kStages = 8;
constexpr size_t kSmemBytes = (size_t)kStages * kStageBytes + 2 * kStages * sizeof(uint64_t) + 1024;
static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");

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
template <int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// The producers: lane 0 of each producer warp fills its share of stage after stage (warp 0: the x block, scales and
// zeros; warps 1-3: the packed weight rows, 3 + 3 + 2), each announcing its own bytes on the stage's mbarrier: one
// thread's copies are issued one after the other, four threads' side by side. The steps start at `rot` (and wrap):
// blocks of different row tiles start at different steps, so they read different x blocks at any one time rather
// than all the same one (2-6% faster than every block starting at step 0), while the blocks sharing a weight tile
// (one rot) still read it together.
__device__ __forceinline__ void produce(const QWeight& w, const __half* __restrict__ xtile, int n0, int s_begin,
                                        int s_end, int rot, uint8_t* smem, uint64_t* full, uint64_t* empty, int pw) {
  constexpr int kRowsPerWarp = (8 + kProducerWarps - 2) / (kProducerWarps - 1);
  const int r_begin = pw == 0 ? 0 : (pw - 1) * kRowsPerWarp;
  const int r_end = pw == 0 ? 0 : min(8, r_begin + kRowsPerWarp);
  const bool params = pw == 0;
  const unsigned bytes = (params ? kXBytes + 2 * kRowsPerBlock * 2 + (w.zeros ? 2 * kRowsPerBlock : 0) : 0) +
                         (r_end - r_begin) * kRowsPerBlock * 4;
  const int n = s_end - s_begin;
  for (int i = 0; i < n; ++i) {
    const int s = s_begin + (i + rot) % n;
    const int st = i % kStages;
    mbar_wait(&empty[st], ((i / kStages) & 1) ^ 1);
    uint8_t* stage = smem + st * kStageBytes;
    const int k0 = s * kStepK;
    mbar_arrive_expect_tx(&full[st], bytes);
    for (int r = r_begin; r < r_end; ++r)
      bulk_copy_to_shared(stage + kWordsOffset + r * kWordPitch * 4, w.qweight + (size_t)(k0 / 8 + r) * w.N + n0,
                          kRowsPerBlock * 4, &full[st]);
    if (!params) continue;
    bulk_copy_to_shared(stage, xtile + (size_t)s * kXBlockHalves, kXBytes, &full[st]);
    // the groups of k0 and k0 + 32 (the same one for group sizes of 64 or more)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int g = (k0 + 32 * h) / w.group_size;
      bulk_copy_to_shared(stage + kScalesOffset + h * kRowsPerBlock * 2, w.scales + (size_t)g * w.N + n0,
                          kRowsPerBlock * 2, &full[st]);
      if (w.zeros)
        bulk_copy_to_shared(stage + kZerosOffset + h * kRowsPerBlock, w.zeros + (size_t)g * w.N + n0, kRowsPerBlock,
                            &full[st]);
    }
  }
}

// A fragments of one k64 step for the thread's rows `row` and row + 8 of the tile: a[j] for k16 step j =
// {row words t, row + 8 words t, row words t + 4, row + 8 words t + 4}, nibbles (j, j + 4).
__device__ __forceinline__ void dequantize_step(const QWeight& w, const uint8_t* stage, int row0, int t,
                                                uint32_t (&a)[4][4]) {
  const uint32_t* words = reinterpret_cast<const uint32_t*>(stage + kWordsOffset);
  const __half* scales = reinterpret_cast<const __half*>(stage + kScalesOffset);
  const uint8_t* zeros = stage + kZerosOffset;
#pragma unroll
  for (int f = 0; f < 4; ++f) {  // fragment register f: row0 + 8 (f & 1), word t + 4 (f >> 1)
    const int row = row0 + 8 * (f & 1), h = f >> 1;
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

// One k64 step of a consumer warpgroup: wait for its stage, then per slice: wait until at most one wgmma group is
// pending (so the group two back, which used this slice's register set, is done), hand back the stage whose last
// group that was, dequantize, issue 4 wgmmas. (Two groups pending with three register sets was 13% slower.)
__device__ __forceinline__ void consume_step(const QWeight& w, int i, uint8_t* smem, uint64_t* full, uint64_t* empty,
                                             int row0, int t, float (&acc)[kSlices][64],
                                             uint32_t (&a)[kSlices][4][4]) {
  const int st = i % kStages;
  mbar_wait(&full[st], (i / kStages) & 1);
  const uint8_t* stage = smem + st * kStageBytes;
  const uint64_t desc = sw128_desc(smem_addr(stage));
#pragma unroll
  for (int sl = 0; sl < kSlices; ++sl) {
    wgmma_wait<1>();
    if (sl == kSlices - 1 && i > 0) {  // step i - 1's last group is done: its stage is free
      __syncwarp();
      if ((threadIdx.x & 31) == 0) mbar_arrive(&empty[(i - 1) % kStages]);
    }
    uint32_t(&frag)[4][4] = a[sl];
    dequantize_step(w, stage, row0 + 64 * sl, t, frag);
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < 4; ++j) wgmma_m64n128k16_rs(acc[sl], frag[j], desc + 2 * j);  // + 32 bytes per k16
    wgmma_commit();
  }
}

__device__ __forceinline__ void consume(const QWeight& w, int n_steps, uint8_t* smem, uint64_t* full, uint64_t* empty,
                                        int row0, int t, float (&acc)[kSlices][64]) {
  uint32_t a[kSlices][4][4];
  for (int i = 0; i < n_steps; ++i) consume_step(w, i, smem, full, empty, row0, t, acc, a);
  wgmma_wait<0>();
}

// grid (token tiles, N / rows, K splits); split z takes steps [z * steps_per_split, ...). Splits > 1 add their
// partial sums into y (fp32 accumulate only).
template <class T>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_q4_wgmma_kernel(QWeight w, const __half* __restrict__ xp, int m, T* __restrict__ y, int y_stride,
                         bool accumulate, int steps_per_split) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  // aligned by offsetting smem_raw itself (not through an integer), so the compiler still knows the accesses are to
  // shared memory and uses LDS rather than generic loads
  uint8_t* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * kStageBytes);
  uint64_t* empty = full + kStages;
  const int tile = blockIdx.x, tok0 = tile * kTokensPerBlock, n0 = blockIdx.y * kRowsPerBlock;
  const int steps = w.K / kStepK;
  const int s_begin = blockIdx.z * steps_per_split, s_end = min(steps, s_begin + steps_per_split);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], kProducerWarps);
      mbar_init(&empty[s], kConsumerWarps);
    }
    fence_mbar_init();
  }
  __syncthreads();
  wait_for_previous_kernel();
  if (warp >= kConsumerWarps) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegs));
    const int pw = warp - kConsumerWarps;
    if (lane == 0)
      produce(w, xp + (size_t)tile * steps * kXBlockHalves, n0, s_begin, s_end, blockIdx.y, smem, full, empty, pw);
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kConsumerRegs));
  const int g = lane >> 2, t = lane & 3;
  // this thread's first A row (output feature) in the block: warpgroup, then 16 rows per warp; slices add 64
  const int row0 = (warp >> 2) * 64 * kSlices + (warp & 3) * 16 + g;
  float acc[kSlices][64];
#pragma unroll
  for (int sl = 0; sl < kSlices; ++sl) {
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[sl][i] = 0.f;
    fence_accumulators(acc[sl]);
  }
  consume(w, s_end - s_begin, smem, full, empty, row0, t, acc);
#pragma unroll
  for (int sl = 0; sl < kSlices; ++sl) {
    fence_accumulators(acc[sl]);
    // acc[4 c + e]: row row0 + 64 sl + 8 (e >> 1), token 8 c + 2 t + (e & 1)
#pragma unroll
    for (int c = 0; c < kTokensPerBlock / 8; ++c) {
      const int tok = tok0 + 8 * c + 2 * t;
      T* p = y + (size_t)tok * y_stride + n0 + row0 + 64 * sl;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (tok + (e & 1) >= m) continue;
        T* q = p + (e & 1) * (size_t)y_stride + 8 * (e >> 1);
        if constexpr (std::is_same_v<T, float>) {
          // Accumulating: reductions in L2 (red.add), issued without waiting, where loading each old value first
          // keeps the loads' latency in the block's tail. With one split it is the same y + v as a load and a store.
          if (accumulate) {
            atomicAdd(q, acc[sl][4 * c + e]);
            continue;
          }
        }
        *q = T(acc[sl][4 * c + e]);
      }
    }
  }
#endif
}

// ---- EXPERIMENT (XLLAMA_FUSED_GEMM_VARIANT=2): one m64n256 slice per consumer warpgroup, so each dequantized A
// value serves 256 tokens instead of 128: blocks of 128 output features x 256 tokens (two 128-token x blocks per
// step), 6 stages of 37 KB. Each k16 step's A fragment is dequantized just before its wgmma (two register sets, one
// commit group per wgmma), from the step's 4 packed words per thread.
namespace wide {
constexpr int kTokens = 256, kRows = 128;
// Shared memory: the ring's x blocks (1024-aligned for the swizzle), then the ring's weight words, scales and zeros
// (kept apart so that padding each stage to 1024 bytes doesn't cost a stage).
constexpr int kXBytesW = 2 * kXBlockHalves * 2;
constexpr int kPitch = kRows + 8;  // 8 mod 32: conflict-free word reads
constexpr int kWordsOff = 0;       // within a stage's parameters
constexpr int kScalesOff = kWordsOff + 8 * kPitch * 4;
constexpr int kZerosOff = kScalesOff + 2 * kRows * 2;
constexpr int kParams = (kZerosOff + 2 * kRows + 127) / 128 * 128;
constexpr int kRing = 6;
constexpr size_t kSmem = (size_t)kRing * (kXBytesW + kParams) + 2 * kRing * sizeof(uint64_t) + 1024;
static_assert(kSmem <= 227 * 1024, "shared memory per block");

__device__ __forceinline__ void produce(const QWeight& w, const __half* __restrict__ xp, int tile, int steps, int n0,
                                        int s_begin, int s_end, int rot, uint8_t* smem, uint64_t* full,
                                        uint64_t* empty, int pw, int ablate) {
  constexpr int kRowsPerWarp = 3;
  const int r_begin = pw == 0 ? 0 : (pw - 1) * kRowsPerWarp;
  const int r_end = pw == 0 ? 0 : min(8, r_begin + kRowsPerWarp);
  const bool params = pw == 0;
  const unsigned full_bytes =
      (params ? kXBytesW + 2 * kRows * 2 + (w.zeros ? 2 * kRows : 0) : 0) + (r_end - r_begin) * kRows * 4;
  const int n = s_end - s_begin;
  for (int i = 0; i < n; ++i) {
    const bool skip_x = (ablate & 1) && i >= kRing, skip_w = (ablate & 2) && i >= kRing;
    const unsigned bytes = full_bytes - (skip_x && params ? kXBytesW : 0) - (skip_w ? (r_end - r_begin) * kRows * 4 : 0);
    const int s = s_begin + (i + rot) % n;
    const int st = i % kRing;
    mbar_wait(&empty[st], ((i / kRing) & 1) ^ 1);
    uint8_t* stage = smem + kRing * kXBytesW + st * kParams;
    const int k0 = s * kStepK;
    mbar_arrive_expect_tx(&full[st], bytes);
    for (int r = r_begin; r < (skip_w ? r_begin : r_end); ++r)
      bulk_copy_to_shared(stage + kWordsOff + r * kPitch * 4, w.qweight + (size_t)(k0 / 8 + r) * w.N + n0, kRows * 4,
                          &full[st]);
    if (!params) continue;
#pragma unroll
    for (int half = 0; half < (skip_x ? 0 : 2); ++half)
      bulk_copy_to_shared(smem + st * kXBytesW + half * kXBlockHalves * 2,
                          xp + ((size_t)(2 * tile + half) * steps + s) * kXBlockHalves, kXBlockHalves * 2, &full[st]);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int g = (k0 + 32 * h) / w.group_size;
      bulk_copy_to_shared(stage + kScalesOff + h * kRows * 2, w.scales + (size_t)g * w.N + n0, kRows * 2, &full[st]);
      if (w.zeros)
        bulk_copy_to_shared(stage + kZerosOff + h * kRows, w.zeros + (size_t)g * w.N + n0, kRows, &full[st]);
    }
  }
}

// Nibbles (j, j + 4) of a packed word as dequant_word's d[j]: exact (q - zero) values.
__device__ __forceinline__ __half2 nibble_pair(uint32_t word, int j, __half2 z1024, __half2 zneg64) {
  const uint32_t src = j >= 2 ? word >> 8 : word;
  uint32_t h = lop3_and_or(src, (j & 1) ? 0x00f000f0u : 0x000f000fu, 0x64006400u);
  return (j & 1) ? __hfma2(*reinterpret_cast<__half2*>(&h), __float2half2_rn(0.0625f), zneg64)
                 : __hsub2(*reinterpret_cast<__half2*>(&h), z1024);
}

// Step i into register set a (a static array per parity: a dynamically chosen set would be copied into the same
// temporaries every step, which the previous step's wgmmas may still be reading).
__device__ __forceinline__ void wide_step(const QWeight& w, int i, uint8_t* smem, uint64_t* full, uint64_t* empty,
                                          int row0, int t, float (&acc)[128], uint32_t (&a)[4][4], int ablate) {
    const int st = i % kRing;
    mbar_wait(&full[st], (i / kRing) & 1);
    const uint8_t* stage = smem + kRing * kXBytesW + st * kParams;
    const uint64_t desc = sw128_desc(smem_addr(smem + st * kXBytesW));
    const uint32_t* words = reinterpret_cast<const uint32_t*>(stage + kWordsOff);
    const __half* scales = reinterpret_cast<const __half*>(stage + kScalesOff);
    const uint8_t* zeros = stage + kZerosOff;
    wgmma_wait<1>();  // step i - 2's group, which read this register set, is done
    if (i > 1) {
      __syncwarp();
      if ((threadIdx.x & 31) == 0) mbar_arrive(&empty[(i - 2) % kRing]);
    }
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      const int row = row0 + 8 * (f & 1), h = f >> 1;
      const uint32_t word = words[(t + 4 * h) * kPitch + row];
      const int z = w.zeros ? zeros[h * kRows + row] : w.sym_zero;
      const uint16_t zb = 0x6400 | z;
      const __half2 z1024 = __halves2half2(__ushort_as_half(zb), __ushort_as_half(zb));
      const __half2 zneg64 = __float2half2_rn(-(64.f + (float)z));
      const __half2 sc = __half2half2(scales[h * kRows + row]);
      if (ablate & 4) {
#pragma unroll
        for (int j = 0; j < 4; ++j) a[j][f] = word;
        continue;
      }
      __half2 d[4];
      dequant_word(word, z1024, zneg64, d);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const __half2 v = __hmul2(d[j], sc);
        a[j][f] = *reinterpret_cast<const uint32_t*>(&v);
      }
    }
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < 4; ++j) wgmma_m64n256k16_rs(acc, a[j], desc + 2 * j);
    wgmma_commit();
}

__device__ __forceinline__ void consume(const QWeight& w, int n_steps, uint8_t* smem, uint64_t* full,
                                        uint64_t* empty, int row0, int t, float (&acc)[128], int ablate) {
  uint32_t frag0[4][4], frag1[4][4];
  for (int i = 0; i < n_steps; i += 2) {
    wide_step(w, i, smem, full, empty, row0, t, acc, frag0, ablate);
    if (i + 1 < n_steps) wide_step(w, i + 1, smem, full, empty, row0, t, acc, frag1, ablate);
  }
  wgmma_wait<0>();
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1)
    kernel(QWeight w, const __half* __restrict__ xp, int m, T* __restrict__ y, int y_stride, bool accumulate,
           int steps_per_split, int ablate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kRing * (kXBytesW + kParams));
  uint64_t* empty = full + kRing;
  const int tile = blockIdx.x, tok0 = tile * kTokens, n0 = blockIdx.y * kRows;
  const int steps = w.K / kStepK;
  const int s_begin = blockIdx.z * steps_per_split, s_end = min(steps, s_begin + steps_per_split);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kRing; ++s) {
      mbar_init(&full[s], kProducerWarps);
      mbar_init(&empty[s], kConsumerWarps);
    }
    fence_mbar_init();
  }
  __syncthreads();
  wait_for_previous_kernel();
  if (warp >= kConsumerWarps) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegs));
    if (lane == 0)
      produce(w, xp, tile, steps, n0, s_begin, s_end, blockIdx.y, smem, full, empty, warp - kConsumerWarps, ablate);
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kConsumerRegs));
  const int g = lane >> 2, t = lane & 3;
  const int row0 = (warp >> 2) * 64 + (warp & 3) * 16 + g;
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
  fence_accumulators(acc);
  consume(w, s_end - s_begin, smem, full, empty, row0, t, acc, ablate);
  fence_accumulators(acc);
  // acc[4 c + e]: row row0 + 8 (e >> 1), token tok0 + 8 c + 2 t + (e & 1)
#pragma unroll
  for (int c = 0; c < kTokens / 8; ++c) {
    const int tok = tok0 + 8 * c + 2 * t;
    T* p = y + (size_t)tok * y_stride + n0 + row0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (tok + (e & 1) >= m) continue;
      T* q = p + (e & 1) * (size_t)y_stride + 8 * (e >> 1);
      if constexpr (std::is_same_v<T, float>) {
        if (accumulate) {
          atomicAdd(q, acc[4 * c + e]);
          continue;
        }
      }
      *q = T(acc[4 * c + e]);
    }
  }
#endif
}
}  // namespace wide

// out: the reordered x, one contiguous block per (128-token tile, k64 step) with token r's 16-byte chunk c at
// chunk c ^ (r % 8) of its 128-byte row (the swizzle wgmma reads); rows from m up to the tile's end are zero.
// Each value is gathered on its own (through perm with act-order); a thread per 16-byte output chunk. (Reading a
// 64-column span as 8 x 16 bytes per thread instead was 2-3x slower.)
__global__ void gemm_q4_wgmma_input_kernel(const __half* __restrict__ x, int m, int m_pad, int K, int x_stride,
                                           const int* __restrict__ perm, __half* __restrict__ out) {
  wait_for_previous_kernel();
  const int steps = K / kStepK;
  const size_t total = (size_t)m_pad * K / 8;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / (K / 8)), c0 = (int)(i % (K / 8)) * 8;
    const int span = c0 & ~63, j = (c0 & 63) >> 4;
    uint4 o = make_uint4(0, 0, 0, 0);
    if (r < m) {
      __half* oh = reinterpret_cast<__half*>(&o);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const int p = (c0 & 15) + e;
        const int k = span + 8 * (p >> 1) + j + 4 * (p & 1);
        oh[e] = x[(size_t)r * x_stride + (perm ? perm[k] : k)];
      }
    }
    const int tile = r / kTokensPerBlock, rr = r % kTokensPerBlock, chunk = (c0 & 63) >> 3;
    const size_t block = (size_t)tile * steps + c0 / kStepK;
    *reinterpret_cast<uint4*>(out + block * kXBlockHalves + rr * kStepK + ((chunk ^ (rr & 7)) << 3)) = o;
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

namespace {
// EXPERIMENT: 0 = 256 features x 128 tokens per block (landed), 2 = 128 x 256 (m64n256 wgmmas).
int fused_variant() {
  static const int v = [] {
    const char* e = std::getenv("XLLAMA_FUSED_GEMM_VARIANT");
    return e ? std::atoi(e) : 0;
  }();
  return v;
}
int wide_tiles(int m) { return (m + wide::kTokens - 1) / wide::kTokens; }
int token_tiles(int m) { return (m + kTokensPerBlock - 1) / kTokensPerBlock; }
}  // namespace

bool gemm_q4_wgmma_fits(const QWeight& w) {
  return w.K % kStepK == 0 && w.N % kRowsPerBlock == 0 && w.group_size > 0 && w.group_size % 32 == 0 &&
         aligned16(w.qweight) && aligned16(w.scales) && (!w.zeros || aligned16(w.zeros));
}

size_t gemm_q4_wgmma_input_halves(int m, int K) {
  if (fused_variant() == 2) return (size_t)wide_tiles(m) * wide::kTokens * K;
  return (size_t)token_tiles(m) * kTokensPerBlock * K;
}

void gemm_q4_wgmma_input(const __half* x, int m, int K, int x_stride, const int* perm, __half* out, cudaStream_t s) {
  const int m_pad = fused_variant() == 2 ? wide_tiles(m) * wide::kTokens : token_tiles(m) * kTokensPerBlock;
  const size_t total = (size_t)m_pad * K / 8;
  const int blocks = (int)std::min<size_t>((total + 255) / 256, 4096);
  launch(gemm_q4_wgmma_input_kernel, blocks, 256, 0, s, x, m, m_pad, K, x_stride, perm, out);
  XL_CUDA_LAUNCH_CHECK();
}

GemmQ4WgmmaPlan gemm_q4_wgmma_plan(const QWeight& w, int m, bool can_split) {
  int device = 0, sms = 132;
  if (cudaGetDevice(&device) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const long blocks = fused_variant() == 2 ? (long)wide_tiles(m) * (w.N / wide::kRows)
                                           : (long)token_tiles(m) * (w.N / kRowsPerBlock);
  const int steps = w.K / kStepK;
  GemmQ4WgmmaPlan plan{1};
  // K splits fill the SMs when there are fewer tiles than SMs (each split keeps at least 16 steps)
  while (can_split && blocks * (plan.splits + 1) <= sms && steps / (plan.splits + 1) >= 16) ++plan.splits;
  return plan;
}

template <class T>
void gemm_q4_wgmma(const QWeight& w, const __half* xp, int m, T* y, int y_stride, bool accumulate, cudaStream_t s,
                   GemmQ4WgmmaPlan plan) {
  const bool can_split = std::is_same_v<T, float> && accumulate;
  if (plan.splits <= 0) plan = gemm_q4_wgmma_plan(w, m, can_split);
  const int splits = can_split ? plan.splits : 1;
  const int steps = w.K / kStepK, per_split = (steps + splits - 1) / splits;
  // Token tiles vary fastest: the blocks that share a weight tile run together and read it from DRAM once.
  const dim3 grid(token_tiles(m), w.N / kRowsPerBlock, (steps + per_split - 1) / per_split);
  if (fused_variant() == 2) {
    const dim3 wgrid(wide_tiles(m), w.N / wide::kRows, grid.z);
    XL_CUDA_CHECK(
        cudaFuncSetAttribute(wide::kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)wide::kSmem));
    static const int ablate = [] {
      const char* e = std::getenv("XLLAMA_FUSED_ABLATE");
      return e ? std::atoi(e) : 0;
    }();
    launch(wide::kernel<T>, wgrid, kThreads, wide::kSmem, s, w, xp, m, y, y_stride, accumulate, per_split, ablate);
    XL_CUDA_LAUNCH_CHECK();
    return;
  }
  XL_CUDA_CHECK(
      cudaFuncSetAttribute(gemm_q4_wgmma_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kSmemBytes));
  launch(gemm_q4_wgmma_kernel<T>, grid, kThreads, kSmemBytes, s, w, xp, m, y, y_stride, accumulate, per_split);
  XL_CUDA_LAUNCH_CHECK();
}
template void gemm_q4_wgmma(const QWeight&, const __half*, int, float*, int, bool, cudaStream_t, GemmQ4WgmmaPlan);
template void gemm_q4_wgmma(const QWeight&, const __half*, int, __half*, int, bool, cudaStream_t, GemmQ4WgmmaPlan);

}  // namespace xllama::cuda
