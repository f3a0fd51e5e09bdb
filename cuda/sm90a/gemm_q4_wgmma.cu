// The prompt path's fused 4-bit GEMM (Hopper, sm_90a; see cuda/gemm_q4_wgmma.h). Built for sm_90a alone (its own
// library in CMakeLists.txt): wgmma and setmaxnreg are not part of plain sm_90.
//
// y^T = W^T x^T as wgmma sees it: A = the weights (output features), dequantized by each consumer thread into its
// own A fragment registers; B = 256 input rows (tokens) of x in shared memory; the fp32 accumulators stay in
// registers until the tile is done. The dequantized value is scale * (q - zero) rounded to fp16 once, exactly what
// dequant_q4 writes for cuBLAS, so only the order of the fp32 sums differs from the unfused path.
//
// Which k a fragment register holds is the GEMM's choice, as long as B agrees: a thread's fragment registers of the
// k16 step j hold nibbles (j, j + 4) of packed words t and t + 4 (t = lane % 4) of its two rows, which is what
// dequant_word gives, so gemm_q4_wgmma_input reorders x's columns to match once per GEMM (a few MB), and lays each
// (256-token tile, k64 step) out as one contiguous 32 KB block already in the 128-byte swizzle wgmma reads.
//
// Tiles are 128 output features x 256 tokens: each consumer warpgroup owns one m64n256 slice (128 accumulators a
// thread), so every dequantized value feeds 256 tokens (session 44: 4-7% faster than 256 x 128 tiles, which
// dequantized each value for 128). Roles (warp specialisation): warps 0-7 are the two consumer warpgroups;
// warpgroup 2 is the producer: lane 0 of each of its warps copies a share of each k64 step (the x block, the 8
// packed weight rows, scales and zeros) into a stage with bulk copies (cp.async.bulk, completing on the stage's
// mbarrier). Consumers wait for a stage, dequantize a step's fragments while the previous step's wgmmas run, and
// hand the stage back once its wgmmas are done. A finished fp16 tile leaves through shared memory by bulk copies
// (store_tile_bulk), so the consumers go on to their next tile while it is written.
//
// The schedule (GemmQ4WgmmaPlan): the work is tiles x k64 steps, "units" in a row, and block v takes units
// [v U / G, (v + 1) U / G). With G = tiles every block computes one whole tile; with fewer blocks (one per SM:
// stream-K) a block's range may start inside a tile and end inside another, so the last wave is not left mostly
// idle (7B q/k/v at 512 tokens: 192 tiles on 132 SMs). A block computes the tile its range ends in first and hands
// that fp32 partial on (through the scratch, with a flag), then its whole tiles, then the tile its range starts
// in, whose sum it finishes: its own partial plus those of the blocks before it, in a fixed order (the result
// doesn't depend on timing). Blocks take their index v from a ticket in the order they start and wait only for
// lower tickets (blocks already running, which hand their partial on first), so no wait can outlast a block
// that never got an SM.
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/bulk_pipeline.cuh"
#include "cuda/mma_m16n8k16.cuh"
#include "cuda/sm90a/wgmma_m64n256k16.cuh"

namespace xllama::cuda {
namespace {

constexpr int kTileTokens = kGemmQ4WgmmaTileTokens;  // input rows (B columns): one m64n256 wgmma per consumer
                                                     // warpgroup and k16
constexpr int kTileRows = 128;    // output features: two consumer warpgroups x m64
constexpr int kStepK = 64;        // k per stage: one 128-byte swizzle row of x per token
constexpr int kXBlockHalves = kTileTokens * kStepK;  // one (token tile, k64 step) block of the reordered x: 32 KB
constexpr int kXBytes = kXBlockHalves * 2;
constexpr int kConsumerWarps = 8;  // warpgroups 0 and 1
constexpr int kConsumerThreads = kConsumerWarps * 32;
constexpr int kThreads = 384;      // + the producer warpgroup
constexpr int kProducerWarps = 4;  // lane 0 of each copies its share of a stage
constexpr int kConsumerRegs = 232, kProducerRegs = 40;  // setmaxnreg: 2 x 128 x 232 + 128 x 40 <= 64K
constexpr int kAccumulators = 128;                      // per consumer thread: 64 x 256 fp32 over 128 threads

// Shared memory: the stages' x blocks first (1024-aligned for the swizzle's atoms), then each stage's parameters:
// the 8 packed weight rows, two groups' scales and zeros (kept apart so that padding a stage to 1024 bytes doesn't
// cost a stage: 6 fit in 227 KB), then with bulk stores the tile staging area (SmemLayout), then the mbarriers.
constexpr int kWordPitch = kTileRows + 8;  // words per packed row (= 8 mod 32: conflict-free fragment reads)
constexpr int kWordsOffset = 0;            // within a stage's parameters
constexpr int kScalesOffset = kWordsOffset + 8 * kWordPitch * 4;
constexpr int kZerosOffset = kScalesOffset + 2 * kTileRows * 2;
constexpr int kParamBytes = (kZerosOffset + 2 * kTileRows + 127) / 128 * 128;
// Tiles are stored through shared memory (kBulkStore, store_tile_bulk): each consumer warpgroup's 64 rows, a token's
// 64 values contiguous, 128 tokens at a time in fp16 and 64 in fp32, rows padded by 16 bytes so that a warp's writes
// fall in all 32 banks. Its 36 KB cost a stage: 5 instead of 6 (as fast: session 47).
template <class T>
constexpr int kStagingTokens = std::is_same_v<T, __half> ? 128 : 64;
template <class T>
constexpr int kStagingPitch = 64 * (int)sizeof(T) + 16;
constexpr int kStagingGroupBytes = std::max(kStagingTokens<__half> * kStagingPitch<__half>,
                                            kStagingTokens<float> * kStagingPitch<float>);
template <bool kBulkStore>
struct SmemLayout {
  static constexpr int stages = kBulkStore ? 5 : 6;
  static constexpr size_t params = (size_t)stages * kXBytes;
  static constexpr size_t staging = params + (size_t)stages * kParamBytes;
  static constexpr size_t barriers = staging + (kBulkStore ? 2 * kStagingGroupBytes : 0);
  static constexpr size_t bytes = barriers + 2 * stages * sizeof(uint64_t) + 1024;  // + the 1024-byte alignment
  static_assert(bytes <= 227 * 1024, "shared memory per block");
  static_assert(staging % 16 == 0 && kStagingGroupBytes % 16 == 0, "bulk copies and stmatrix rows: 16-byte aligned");
};

// The stream-K scratch (gemm_q4_wgmma_scratch_bytes): an fp32 partial tile per block (the one it hands on), a flag
// per block (that partial is written), and the ticket counters.
constexpr size_t kPartialFloats = (size_t)kConsumerThreads * kAccumulators;
static_assert(kPartialFloats * 4 == kGemmQ4WgmmaPartialBytes && kTileRows == 128, "the header's scratch size");

struct Schedule {
  int tok_tiles;  // tiles: (row tile, token tile), token tiles varying fastest
  int steps;      // k64 steps per tile
  long long units;
  int blocks;
  float* partials;  // null: one whole tile per block
  unsigned* flags;
  unsigned* tickets;  // [next ticket, blocks finished]
};

__device__ __forceinline__ long long range_begin(const Schedule& sc, int v) {
  return (long long)v * sc.units / sc.blocks;
}

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

// One tile's part that a block computes: units [a, b) of tile `tile` (unit u is step (u + row tile) % steps:
// blocks of different row tiles start at different steps, so they read different x blocks at any one time rather
// than all the same one; 2-6% faster than all starting at step 0).
struct Segment {
  int tile, a, b;
  __device__ int row_tile(const Schedule& sc) const { return tile / sc.tok_tiles; }
  __device__ int tok_tile(const Schedule& sc) const { return tile % sc.tok_tiles; }
  __device__ int step(const Schedule& sc, int unit) const { return (unit + row_tile(sc)) % sc.steps; }
};
// Calls f(segment) for each tile part in block v's range, in the order the block computes them: the part of the
// tile the range ends in (unless whole), the whole tiles, the part of the tile the range starts in (unless whole).
template <class F>
__device__ __forceinline__ void for_each_segment(const Schedule& sc, int v, F&& f) {
  const long long begin = range_begin(sc, v), end = range_begin(sc, v + 1);
  const int first = (int)(begin / sc.steps), last = (int)((end - 1) / sc.steps);
  const int a = (int)(begin - (long long)first * sc.steps), b = (int)(end - (long long)last * sc.steps);
  if (first == last) {
    f(Segment{first, a, b});
    return;
  }
  if (b < sc.steps) f(Segment{last, 0, b});
  for (int tile = a > 0 ? first + 1 : first; tile < (b < sc.steps ? last : last + 1); ++tile)
    f(Segment{tile, 0, sc.steps});
  if (a > 0) f(Segment{first, a, sc.steps});
}

// The producers: lane 0 of each producer warp fills its share of stage after stage (warp 0: the x block, scales and
// zeros; warps 1-3: the packed weight rows, 3 + 3 + 2), each announcing its own bytes on the stage's mbarrier: one
// thread's copies are issued one after the other, four threads' side by side. The producers, not the copies, were
// what consumers waited for (session 45's profile: their lanes busy issuing, the consumers' waits for a full stage
// 14% of the kernel's samples), so a step costs no division: its index is counted on, a group found by a shift,
// and with one group per step (kOneGroup: group sizes that are multiples of 64) its scales and zeros copied once.
template <bool kOneGroup, int kStages>
__device__ __forceinline__ void produce(const QWeight& w, const __half* __restrict__ xp, const Schedule& sc, int v,
                                        uint8_t* smem, uint64_t* full, uint64_t* empty, int pw) {
  constexpr int kRowsPerWarp = (8 + kProducerWarps - 2) / (kProducerWarps - 1);
  constexpr int kGroups = kOneGroup ? 1 : 2;  // the groups of k0 and k0 + 32 (two where 64 k cross a group: 32, 96)
  const int r_begin = pw == 0 ? 0 : (pw - 1) * kRowsPerWarp;
  const int r_end = pw == 0 ? 0 : min(8, r_begin + kRowsPerWarp);
  const bool params = pw == 0;
  const unsigned bytes = (params ? kXBytes + kGroups * kTileRows * 2 + (w.zeros ? kGroups * kTileRows : 0) : 0) +
                         (r_end - r_begin) * kTileRows * 4;
  // GPTQ's group sizes are powers of two (32-128, or K's 4096 for one group): a shift; others divide
  const int gs = w.group_size, group_shift = (gs & (gs - 1)) == 0 ? __ffs(gs) - 1 : -1;
  uint8_t* param_base = smem + kStages * kXBytes;
  int i = 0;  // stages filled so far (the ring runs on across segments)
  for_each_segment(sc, v, [&](const Segment& g) {
    const int n0 = g.row_tile(sc) * kTileRows;
    const __half* xtile = xp + (size_t)g.tok_tile(sc) * sc.steps * kXBlockHalves;
    int s = g.step(sc, g.a);  // g.step(sc, unit), counted on
    for (int unit = g.a; unit < g.b; ++unit, ++i, s = s + 1 == sc.steps ? 0 : s + 1) {
      const int st = i % kStages;
      mbar_wait(&empty[st], ((i / kStages) & 1) ^ 1);
      uint8_t* stage = param_base + st * kParamBytes;
      const int k0 = s * kStepK;
      mbar_arrive_expect_tx(&full[st], bytes);
      for (int r = r_begin; r < r_end; ++r)
        bulk_copy_to_shared(stage + kWordsOffset + r * kWordPitch * 4, w.qweight + (size_t)(k0 / 8 + r) * w.N + n0,
                            kTileRows * 4, &full[st]);
      if (!params) continue;
      bulk_copy_to_shared(smem + st * kXBytes, xtile + (size_t)s * kXBlockHalves, kXBytes, &full[st]);
#pragma unroll
      for (int h = 0; h < kGroups; ++h) {
        const int k = k0 + 32 * h, grp = group_shift >= 0 ? k >> group_shift : k / gs;
        bulk_copy_to_shared(stage + kScalesOffset + h * kTileRows * 2, w.scales + (size_t)grp * w.N + n0,
                            kTileRows * 2, &full[st]);
        if (w.zeros)
          bulk_copy_to_shared(stage + kZerosOffset + h * kTileRows, w.zeros + (size_t)grp * w.N + n0, kTileRows,
                              &full[st]);
      }
    }
  });
}

// A fragments of one k64 step for the thread's rows `row0` and row0 + 8: a[j] for k16 step j =
// {row0 words t, row0 + 8 words t, row0 words t + 4, row0 + 8 words t + 4}, nibbles (j, j + 4). Words t and t + 4
// are k0 + [0, 32) and k0 + [32, 64): groups h = 0 and 1, the same one with kOneGroup (its zero and scale taken once).
template <bool kOneGroup>
__device__ __forceinline__ void dequantize_step(const QWeight& w, const uint8_t* params, int row0, int t,
                                                uint32_t (&a)[4][4]) {
  constexpr int kGroups = kOneGroup ? 1 : 2;
  const uint32_t* words = reinterpret_cast<const uint32_t*>(params + kWordsOffset);
  const __half* scales = reinterpret_cast<const __half*>(params + kScalesOffset);
  const uint8_t* zeros = params + kZerosOffset;
  __half2 z1024[kGroups][2], zneg64[kGroups][2], s[kGroups][2];  // [group h][row row0 + 8 r]
#pragma unroll
  for (int h = 0; h < kGroups; ++h)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + 8 * r;
      const int z = w.zeros ? zeros[h * kTileRows + row] : w.sym_zero;
      const uint16_t zb = 0x6400 | z;
      z1024[h][r] = __halves2half2(__ushort_as_half(zb), __ushort_as_half(zb));
      zneg64[h][r] = __float2half2_rn(-(64.f + (float)z));
      s[h][r] = __half2half2(scales[h * kTileRows + row]);
    }
#pragma unroll
  for (int f = 0; f < 4; ++f) {  // fragment register f: row0 + 8 (f & 1), word t + 4 (f >> 1)
    const int r = f & 1, h = f >> 1, gh = kOneGroup ? 0 : h;
    const uint32_t word = words[(t + 4 * h) * kWordPitch + row0 + 8 * r];
    __half2 d[4];
    dequant_word(word, z1024[gh][r], zneg64[gh][r], d);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __half2 v = __hmul2(d[j], s[gh][r]);
      a[j][f] = *reinterpret_cast<const uint32_t*>(&v);
    }
  }
}

// The consumer side of stage i (counted over the block's whole range): wait for it; wait until at most one wgmma
// group is pending (so stage i - 2's group, which read this register set, is done) and hand stage i - 2 back if it
// belongs to this segment (first: the segment's first stage); dequantize; issue the step's 4 wgmmas as one group.
// `a` must be a different array for odd and even i: a set picked at run time is copied into the same registers
// every step, while the previous step's wgmmas may still read them (ptxas doesn't warn; one of two suspects in
// session 43's wrong results).
template <bool kOneGroup, int kStages>
__device__ __forceinline__ void consume_step(const QWeight& w, int i, int first, uint8_t* smem, uint64_t* full,
                                             uint64_t* empty, int row0, int t, float (&acc)[kAccumulators],
                                             uint32_t (&a)[4][4]) {
  const int st = i % kStages;
  mbar_wait(&full[st], (i / kStages) & 1);
  const uint64_t desc = sw128_desc(smem_addr(smem + st * kXBytes));
  wgmma_wait<1>();
  if (i - 2 >= first) {
    __syncwarp();
    if ((threadIdx.x & 31) == 0) mbar_arrive(&empty[(i - 2) % kStages]);
  }
  dequantize_step<kOneGroup>(w, smem + kStages * kXBytes + st * kParamBytes, row0, t, a);
  wgmma_fence();
#pragma unroll
  for (int j = 0; j < 4; ++j) wgmma_m64n256k16_rs(acc, a[j], desc + 2 * j);  // + 32 bytes per k16
  wgmma_commit();
}

// Stages [i0, i1) into acc (zeroed first); all their wgmmas done and every stage handed back on return.
template <bool kOneGroup, int kStages>
__device__ __forceinline__ void consume_segment(const QWeight& w, int i0, int i1, uint8_t* smem, uint64_t* full,
                                                uint64_t* empty, int row0, int t, float (&acc)[kAccumulators],
                                                uint32_t (&even)[4][4], uint32_t (&odd)[4][4]) {
#pragma unroll
  for (int k = 0; k < kAccumulators; ++k) acc[k] = 0.f;
  fence_accumulators(acc);
  int i = i0;
  if (i < i1 && (i & 1)) consume_step<kOneGroup, kStages>(w, i++, i0, smem, full, empty, row0, t, acc, odd);
  for (; i + 1 < i1; i += 2) {
    consume_step<kOneGroup, kStages>(w, i, i0, smem, full, empty, row0, t, acc, even);
    consume_step<kOneGroup, kStages>(w, i + 1, i0, smem, full, empty, row0, t, acc, odd);
  }
  if (i < i1) consume_step<kOneGroup, kStages>(w, i++, i0, smem, full, empty, row0, t, acc, even);
  wgmma_wait<0>();
  fence_accumulators(acc);
  __syncwarp();
  if ((threadIdx.x & 31) == 0)
    for (int j = max(i0, i1 - 2); j < i1; ++j) mbar_arrive(&empty[j % kStages]);
}

// The consumer warps' own barrier (the producer warps have left).
__device__ __forceinline__ void consumer_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kConsumerThreads) : "memory"); }

// Partial tiles in global memory, laid out so that a warp's 16-byte accesses are contiguous: float4 j of thread
// tid at (j * 256 + tid) * 4.
__device__ __forceinline__ void store_partial(float* p, const float (&acc)[kAccumulators]) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int j = 0; j < kAccumulators / 4; ++j)
    __stcg(reinterpret_cast<float4*>(p) + j * kConsumerThreads + tid,
           make_float4(acc[4 * j], acc[4 * j + 1], acc[4 * j + 2], acc[4 * j + 3]));
}
__device__ __forceinline__ void add_partial(const float* p, float (&acc)[kAccumulators]) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int j = 0; j < kAccumulators / 4; ++j) {
    const float4 q = __ldcg(reinterpret_cast<const float4*>(p) + j * kConsumerThreads + tid);
    acc[4 * j] += q.x, acc[4 * j + 1] += q.y, acc[4 * j + 2] += q.z, acc[4 * j + 3] += q.w;
  }
}

// A partial handed on: written, then flagged (release) once every consumer thread's stores are out.
__device__ __forceinline__ void publish_partial(const Schedule& sc, int v, const float (&acc)[kAccumulators]) {
  store_partial(sc.partials + (size_t)v * kPartialFloats, acc);
  __threadfence();
  consumer_sync();
  if (threadIdx.x == 0) asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(sc.flags + v), "r"(1u) : "memory");
}

// Adds to `acc` (block v's part of tile `tile`) the partials that the blocks before v computed of it, from v - 1
// down (a fixed order): each waited for, then its flag cleared for the next GEMM.
__device__ __forceinline__ void add_partials_before(const Schedule& sc, int v, int tile,
                                                    float (&acc)[kAccumulators]) {
  const long long tile_begin = (long long)tile * sc.steps;
  for (int u = v - 1; u >= 0 && range_begin(sc, u + 1) > tile_begin; --u) {
    if (threadIdx.x == 0) {
      unsigned ready = 0;
      do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(ready) : "l"(sc.flags + u) : "memory");
      } while (ready == 0);
      sc.flags[u] = 0;
    }
    consumer_sync();
    add_partial(sc.partials + (size_t)u * kPartialFloats, acc);
  }
}

// acc[4 c + e]: row row0 + 8 (e >> 1), token tok0 + 8 c + 2 t + (e & 1). Accumulating: reductions in L2
// (red.add; one writer per value), issued without waiting, where loading each old value first keeps the loads'
// latency in the block's tail. fp16 with `pairs` (y 4-byte aligned, y_stride even): lanes 4 apart hold adjacent
// rows, so each pair swaps a token's values and stores two rows as one half2 (half the store instructions).
template <class T>
__device__ __forceinline__ void store_tile(const float (&acc)[kAccumulators], T* __restrict__ y, int y_stride,
                                           int m, int tok0, int n0, int row0, int t, bool accumulate, bool pairs) {
  if constexpr (std::is_same_v<T, __half>) {
    if (pairs) {
      // row0 even: rows (row0, row0 + 1) of token tok; odd: rows (row0 - 1, row0) of token tok + 1 (and + 8)
      const bool odd = row0 & 1;
#pragma unroll
      for (int c = 0; c < kTileTokens / 8; ++c) {
        // (row0, tok), (row0, tok + 1), (row0 + 8, tok), (row0 + 8, tok + 1)
        const float a0 = acc[4 * c], a1 = acc[4 * c + 1], a2 = acc[4 * c + 2], a3 = acc[4 * c + 3];
        const float got0 = __shfl_xor_sync(0xffffffffu, odd ? a0 : a1, 4);
        const float got8 = __shfl_xor_sync(0xffffffffu, odd ? a2 : a3, 4);
        const int tok = tok0 + 8 * c + 2 * t + odd;
        if (tok >= m) continue;
        __half2* q = reinterpret_cast<__half2*>(y + (size_t)tok * y_stride + n0 + row0 - odd);
        q[0] = odd ? __floats2half2_rn(got0, a1) : __floats2half2_rn(a0, got0);
        q[4] = odd ? __floats2half2_rn(got8, a3) : __floats2half2_rn(a2, got8);  // 8 rows on
      }
      return;
    }
  }
#pragma unroll
  for (int c = 0; c < kTileTokens / 8; ++c) {
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
}

// A consumer warpgroup's own barrier (ids 2 and 3; 1 is both warpgroups').
__device__ __forceinline__ void group_sync(int group) {
  asm volatile("bar.sync %0, %1;" ::"r"(2 + group), "n"(kConsumerThreads / 2) : "memory");
}

// An fp16 tile (acc as store_tile has it) through shared memory: each consumer warpgroup puts its 64 rows of 128
// tokens at a time into its staging area with stmatrix (transposed, so a token's 64 values are contiguous), then each
// of its threads hands one token's 128 bytes to the copy engine, which writes whole lines while the warpgroup goes on
// to its next segment. The same values and rounding as store_tile (whose half2 stores fill half of each 32-byte
// sector). Before the area is written again, every thread's copies out of it have read it; the block waits for its
// last copies before it ends. Measured 0.5-2% faster per GEMM than store_tile and ~1% on 7B prompts of 512-1024
// tokens (session 47): session 45's 3.4 us per tile store was mostly not the stores' own.
// fp32 (accumulate: added into y by the copy engine, one writer per value as with store_tile's reductions):
// each thread writes its values to the area one by one (acc[4 c + e]: row g + 8 (e >> 1) of its warp's 16, token
// 8 c + 2 t + (e & 1)), 64 tokens at a time, and 64 threads hand a token's 256 bytes on.
template <class T>
__device__ __forceinline__ void store_tile_bulk(const float (&acc)[kAccumulators], T* __restrict__ y, int y_stride,
                                                int m, int tok0, int n0, uint8_t* staging, bool accumulate) {
  constexpr bool kHalf = std::is_same_v<T, __half>;
  constexpr int kTokens = kStagingTokens<T>, kPitch = kStagingPitch<T>, kRowBytes = 64 * (int)sizeof(T);
  const int group = threadIdx.x >> 7, gt = threadIdx.x & 127, gwarp = gt >> 5, lane = threadIdx.x & 31;
  uint8_t* area = staging + group * kStagingGroupBytes;
  // fp16, stmatrix x4: lane 8 j + r addresses row r (a token) of matrix j: tokens + 8 (j >> 1), features + 8 (j & 1)
  const int j = lane >> 3, r = lane & 7;
  const uint32_t row_addr = smem_addr(area) + (8 * (j >> 1) + r) * kPitch + (16 * gwarp + 8 * (j & 1)) * 2;
  // fp32: this thread's value (token 2 t, row g) of each token group
  const int g = lane >> 2, t = lane & 3;
  const uint32_t value_addr = smem_addr(area) + 2 * t * kPitch + (16 * gwarp + g) * 4;
#pragma unroll
  for (int h = 0; h < kTileTokens / kTokens; ++h) {
    bulk_wait<true>();
    group_sync(group);
    if constexpr (kHalf) {
#pragma unroll
      for (int q = 0; q < kTokens / 16; ++q) {
        const int c = (kTokens / 8) * h + 2 * q;  // acc's token groups c, c + 1: tokens 16 q + [0, 16) here
        stmatrix_x4_trans(row_addr + 16 * q * kPitch, pack_half2(acc[4 * c], acc[4 * c + 1]),
                          pack_half2(acc[4 * c + 2], acc[4 * c + 3]), pack_half2(acc[4 * c + 4], acc[4 * c + 5]),
                          pack_half2(acc[4 * c + 6], acc[4 * c + 7]));
      }
    } else {
#pragma unroll
      for (int q = 0; q < kTokens / 8; ++q) {
        const int c = (kTokens / 8) * h + q;  // acc's token group c: tokens 8 q + [0, 8) here
#pragma unroll
        for (int e = 0; e < 4; ++e)
          asm volatile("st.shared.f32 [%0], %1;" ::"r"(value_addr + (8 * q + (e & 1)) * kPitch + 8 * (e >> 1) * 4),
                       "f"(acc[4 * c + e])
                       : "memory");
      }
    }
    fence_async_shared();
    group_sync(group);
    const int tok = tok0 + kTokens * h + gt;
    if (gt < kTokens && tok < m) {
      T* dst = y + (size_t)tok * y_stride + n0 + 64 * group;
      if constexpr (!kHalf)
        if (accumulate) {
          bulk_reduce_add_f32(dst, area + gt * kPitch, kRowBytes);
          continue;
        }
      bulk_copy_to_global(dst, area + gt * kPitch, kRowBytes);
    }
  }
}

// kBulkStore: the output stored by store_tile_bulk (y and y's rows 16-byte aligned), a stage fewer.
template <class T, bool kOneGroup, bool kBulkStore>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_q4_wgmma_kernel(QWeight w, const __half* __restrict__ xp, int m, T* __restrict__ y, int y_stride,
                         bool accumulate, bool pairs, Schedule sc) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  // aligned by offsetting smem_raw itself (not through an integer), so the compiler still knows the accesses are to
  // shared memory and uses LDS rather than generic loads
  uint8_t* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  using Layout = SmemLayout<kBulkStore>;
  constexpr int kStages = Layout::stages;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + Layout::barriers);
  uint64_t* empty = full + kStages;
  __shared__ int ticket;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], kProducerWarps);
      mbar_init(&empty[s], kConsumerWarps);
    }
    fence_mbar_init();
  }
  wait_for_previous_kernel();
  if (threadIdx.x == 0) ticket = sc.partials ? (int)atomicAdd(sc.tickets, 1u) : (int)blockIdx.x;
  __syncthreads();
  const int v = ticket;
  if (warp >= kConsumerWarps) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kProducerRegs));
    if (lane == 0) produce<kOneGroup, kStages>(w, xp, sc, v, smem, full, empty, warp - kConsumerWarps);
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kConsumerRegs));
  const int g8 = lane >> 2, t = lane & 3;
  // this thread's first A row (output feature) in the tile: warpgroup (64 rows), then 16 rows per warp
  const int row0 = (warp >> 2) * 64 + (warp & 3) * 16 + g8;
  float acc[kAccumulators];
  uint32_t even[4][4], odd[4][4];
  int i = 0;  // stages consumed so far
  for_each_segment(sc, v, [&](const Segment& g) {
    consume_segment<kOneGroup, kStages>(w, i, i + g.b - g.a, smem, full, empty, row0, t, acc, even, odd);
    i += g.b - g.a;
    if (g.b < sc.steps) {  // a block after v finishes this tile
      publish_partial(sc, v, acc);
      return;
    }
    if (g.a > 0) add_partials_before(sc, v, g.tile, acc);
    if constexpr (kBulkStore)
      store_tile_bulk(acc, y, y_stride, m, g.tok_tile(sc) * kTileTokens, g.row_tile(sc) * kTileRows,
                      smem + Layout::staging, accumulate);
    else
      store_tile(acc, y, y_stride, m, g.tok_tile(sc) * kTileTokens, g.row_tile(sc) * kTileRows, row0, t, accumulate,
                 pairs);
  });
  if constexpr (kBulkStore) bulk_wait<false>();
  if (sc.partials) {  // the last block to finish resets the tickets for the next GEMM
    consumer_sync();
    if (threadIdx.x == 0 && atomicAdd(sc.tickets + 1, 1u) == (unsigned)sc.blocks - 1) {
      sc.tickets[0] = 0;
      sc.tickets[1] = 0;
      __threadfence();
    }
  }
#endif
}

// out: the reordered x, one contiguous block per (256-token tile, k64 step) with token r's 16-byte chunk c at
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
    const int tile = r / kTileTokens, rr = r % kTileTokens, chunk = (c0 & 63) >> 3;
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
int token_tiles(int m) { return (m + kTileTokens - 1) / kTileTokens; }
// The stream-K blocks on the current GPU: its SMs, at most kGemmQ4WgmmaMaxBlocks (asked once per device: every
// prompt GEMM's plan needs it).
int sm_count() {
  static std::atomic<int> cache[64];  // per device: 0 not asked yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) return kGemmQ4WgmmaMaxBlocks;
  int sms = cache[device].load(std::memory_order_relaxed);
  if (sms == 0) {
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) sms = 132;
    sms = std::max(1, std::min(sms, kGemmQ4WgmmaMaxBlocks));
    cache[device].store(sms, std::memory_order_relaxed);
  }
  return sms;
}
}  // namespace

bool gemm_q4_wgmma_fits(const QWeight& w) {
  static_assert(kStepK == 64 && kTileRows == 128, "the header's tile shape (shape_fits, tiles)");
  return gemm_q4_wgmma_shape_fits(w.K, w.N, w.group_size) && aligned16(w.qweight) && aligned16(w.scales) &&
         (!w.zeros || aligned16(w.zeros));
}

void gemm_q4_wgmma_input(const __half* x, int m, int K, int x_stride, const int* perm, __half* out, cudaStream_t s) {
  const int m_pad = token_tiles(m) * kTileTokens;
  const size_t total = (size_t)m_pad * K / 8;
  const int blocks = (int)std::min<size_t>((total + 255) / 256, 4096);
  launch(gemm_q4_wgmma_input_kernel, blocks, 256, 0, s, x, m, m_pad, K, x_stride, perm, out);
  XL_CUDA_LAUNCH_CHECK();
}

// Measured on the H200 (docs/PERF-NOTES.md, sessions 44-45, prompt chunks of 64-2048 rows): the unfused path's
// dequantization costs the same at any row count, so the fused kernel wins at short chunks (7B: +15% at 64-256
// rows, +10% at 512; 13B +5% and 70B +11% at 1024, the 7B even there) and loses at 2048 (7B -4%, 13B -5%, 70B
// -4%). fp32-accumulating GEMMs (o_proj, down_proj) pay a fixed ~10 us more for their output and partial sums,
// which small ones (7B o_proj at 512 rows: 31 units a block) don't earn back.
bool gemm_q4_wgmma_preferred(const QWeight& w, int m, bool accumulate) {
  if (m > 1024) return false;
  const long long units = (long long)gemm_q4_wgmma_tiles(m, w.N) * (w.K / kStepK);
  return !accumulate || units >= 96LL * sm_count();
}

GemmQ4WgmmaPlan gemm_q4_wgmma_plan(const QWeight& w, int m) {
  const long long tiles = gemm_q4_wgmma_tiles(m, w.N), steps = w.K / kStepK;
  const long long sms = sm_count();
  // Whole tiles take ceil(tiles / SMs) waves of `steps`; stream-K takes units / SMs each, plus about two units'
  // time to hand partials on and sum them. Stream-K when that is 3% faster (and a block has 8 units or more).
  const long long whole = (tiles + sms - 1) / sms * steps;
  const long long streamed = (tiles * steps + sms - 1) / sms + 2;
  if (whole * 100 > streamed * 103 && tiles * steps >= 8 * sms) return {(int)sms};
  return {(int)tiles};
}

namespace {
// The kernel's shared-memory allowance, set once per instantiation (`slot`) and device: cudaFuncSetAttribute is a
// host call the prompt path would otherwise repeat before every fused GEMM. K: the kernels' pointer type (one per T);
// slot: one group + 2 bulk.
template <class K>
void allow_shared_memory_once(K kernel, int slot, size_t bytes) {
  static std::atomic<unsigned long long> done[4];  // a bit per device (ids 0-63; others set it every time)
  int device = 0;
  XL_CUDA_CHECK(cudaGetDevice(&device));
  const unsigned long long bit = device >= 0 && device < 64 ? 1ull << device : 0;
  if (bit && (done[slot].load(std::memory_order_relaxed) & bit)) return;
  XL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  done[slot].fetch_or(bit, std::memory_order_relaxed);
}
}  // namespace

bool& gemm_q4_wgmma_fp32_bulk_flag() {
  static bool on = env_switch_on("XLLAMA_WGMMA_FP32_BULK");
  return on;
}

template <class T>
void gemm_q4_wgmma(const QWeight& w, const __half* xp, int m, T* y, int y_stride, bool accumulate, void* scratch,
                   cudaStream_t s, GemmQ4WgmmaPlan plan) {
  const int tiles = gemm_q4_wgmma_tiles(m, w.N), steps = w.K / kStepK;
  if (plan.blocks <= 0) plan = gemm_q4_wgmma_plan(w, m);
  if (!scratch || plan.blocks > sm_count()) plan.blocks = tiles;  // stream-K needs the scratch, a block per SM
  Schedule sc{token_tiles(m), steps, (long long)tiles * steps, std::min(plan.blocks, tiles * steps), nullptr,
              nullptr, nullptr};
  if (sc.blocks != tiles) {
    sc.partials = static_cast<float*>(scratch);
    sc.flags = reinterpret_cast<unsigned*>(sc.partials + (size_t)kGemmQ4WgmmaMaxBlocks * kPartialFloats);
    sc.tickets = sc.flags + kGemmQ4WgmmaMaxBlocks;
  }
  // one quantization group per k64 step (group sizes that are multiples of 64): one set of scales and zeros
  const bool one_group = w.group_size % kStepK == 0;
  // the output by bulk copies where every token's row is 16-byte aligned, else from registers (fp16 as half2 stores
  // where every pair of features is 4-byte aligned)
  const bool bulk = y_stride % (16 / sizeof(T)) == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0 &&
                    (std::is_same_v<T, __half> || gemm_q4_wgmma_fp32_bulk_flag());
  const bool pairs = std::is_same_v<T, __half> && y_stride % 2 == 0 && reinterpret_cast<uintptr_t>(y) % 4 == 0;
  auto kernel = one_group ? gemm_q4_wgmma_kernel<T, true, false> : gemm_q4_wgmma_kernel<T, false, false>;
  if (bulk) kernel = one_group ? gemm_q4_wgmma_kernel<T, true, true> : gemm_q4_wgmma_kernel<T, false, true>;
  const size_t bytes = bulk ? SmemLayout<true>::bytes : SmemLayout<false>::bytes;
  allow_shared_memory_once(kernel, one_group + 2 * bulk, bytes);
  launch(kernel, sc.blocks, kThreads, bytes, s, w, xp, m, y, y_stride, accumulate, pairs, sc);
  XL_CUDA_LAUNCH_CHECK();
}
template void gemm_q4_wgmma(const QWeight&, const __half*, int, float*, int, bool, void*, cudaStream_t,
                            GemmQ4WgmmaPlan);
template void gemm_q4_wgmma(const QWeight&, const __half*, int, __half*, int, bool, void*, cudaStream_t,
                            GemmQ4WgmmaPlan);

}  // namespace xllama::cuda
