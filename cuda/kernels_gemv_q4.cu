// Fused 4-bit GPTQ GEMV for decode (1..8 rows): y[i, :] += x[i, :] . W (+ bias).
//
// A block of 4 warps owns 128 output columns (32 lanes x 4, one 16-byte load per packed row) and a slice of
// packed rows; its warps split the slice, keep 8 packed rows in flight (the first 8 loaded before waiting for the
// previous kernel; with the fixed-point dot each slot refilled as soon as its row is used) and are reduced in shared
// memory (gemv_q4_tiles_kernel, where that fits a grid into one wave, takes 2-3 column slices per block). Slices of
// K are summed with atomicAdd; a block that owns the whole of K adds without atomics (deterministic). Decode
// fusions (GemvFusion): the input can be the RMSNorm of the fp32 residual stream (normalized while staging, from
// each row's sum of squares), and a GEMV that adds into the residual stream can sum each row's squares for the next
// one: the last block of a column slice to finish (a counter per slice) squares the slice's final values. How many
// rows each warp should take depends on the shape; gemv_q4_resolve holds the rule from the sweeps
// (xllama_kernel_check --tune, docs/PERF-NOTES.md).
// (Session 2's register ring, with the fp16 dot and scales staged in shared memory, lost on the H100; with the
// fixed-point dot it won on the H200 in session 23: docs/PERF-NOTES.md.)
// Two ways to do the dot products (GemvDot in kernels.h): fp16 pairs (dequant_word + hfma2), or the input as
// 16-bit fixed point per 32 inputs times the nibbles by dp2a, which takes ~8 instructions per 8 weights instead of
// ~20: on the H200 decode is bound by that arithmetic as much as by the bytes (docs/PERF-NOTES.md, session 9).
#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cp_async.cuh"
#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"
#include "cuda/gemv_q4_fixed.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/q4_fixed_point.cuh"
#include "cuda/stream_load.cuh"
#include "cuda/zero_fill.cuh"

namespace xllama::cuda {

namespace {

constexpr int kWarps = 4;
constexpr size_t kSmemLimit = 48 * 1024;
// Most column slices one block of gemv_q4_tiles_kernel takes: on the H200, 3 took 13B decode 1.4% further than 2
// (its gate/up: 2,160 one-slice blocks of 792 resident become 720), the 7B and 70B within noise (docs/PERF-NOTES.md,
// session 23).
constexpr int kMaxColumnSlices = 3;

// A warp's later groups (groups of 32 or 64 inputs, or a warp's rows across a group boundary): their raw scales (and
// zeros) are copied into shared memory before the GEMV's wait, each lane its own 8 bytes (and 4), read back by that
// lane only, group g in slot g % kStagedGroups. Their loads in the loop otherwise waited on L2 (or DRAM) once per
// group, mid-loop. On the H200 side by side: 7B GPTQ folders g32 677.9 -> 703.2 t/s, g32 act-order 635.0 -> 659.6,
// g64 act-order 671.4 -> 692.7, the 13B dummy (g128; its warps of 24 rows span two groups) 436.3 -> 449.4, the 7B
// dummy 765.6 -> 774.6 (docs/PERF-NOTES.md, session 31). gemv_q4_tiles_kernel, whose registers have no room for
// it (it spilled), prefetches them into L2 instead.
constexpr int kStagedGroups = 8;  // a warp's rows span at most 8 groups (launch_m checks)
__shared__ uint2 g_staged_sc[kWarps][kStagedGroups][32];
__shared__ uint32_t g_staged_z[kWarps][kStagedGroups][32];
__device__ __forceinline__ unsigned staged_slot(int g) { return (unsigned)g % kStagedGroups; }
template <bool SYM>
__device__ __forceinline__ void stage_later_groups(const QWeight& w, int g0, int g1, int c, int slot) {
  const int lane = threadIdx.x & 31;
  for (int g = g0 + 1; g <= g1; ++g) {
    const unsigned s = staged_slot(g);
    cp_async_small<8>(&g_staged_sc[slot][s][lane], w.scales + (size_t)g * w.N + c);
    if (!SYM) cp_async_small<4>(&g_staged_z[slot][s][lane], w.zeros + (size_t)g * w.N + c);
  }
  cp_async_commit();
}
// fixed_dot_row's GroupLoad for the groups stage_later_groups copied (slot: the warp).
struct StagedGroupLoad {
  int slot;
  __device__ __forceinline__ int group(const QWeight& w, int n) const { return group_of(w, n); }
  __device__ __forceinline__ void operator()(const QWeight&, int g, int, uint2& sraw, uint32_t& zw, bool sym) const {
    const int lane = threadIdx.x & 31;
    const unsigned s = staged_slot(g);
    sraw = g_staged_sc[slot][s][lane];
    if (!sym) zw = g_staged_z[slot][s][lane];
  }
};

// The scales (and zeros) of groups g0 + 1 .. g1 for the 4 columns from c, into L2, requested before a GEMV's wait
// by a kernel with no registers to spare for staging them in shared memory (gemv_q4_tiles_kernel): their in-loop
// loads then wait on L2 instead of DRAM. Done by every GEMV kernel, it took 7B g32 decode on the H200 from 656.5 to
// 677.3 t/s, before the shared-memory staging replaced it where it fits (docs/PERF-NOTES.md, session 31).
__device__ __forceinline__ void prefetch_later_groups(const QWeight& w, int g0, int g1, int c) {
  for (int g = g0 + 1; g <= g1; ++g) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(w.scales + (size_t)g * w.N + c));
    if (w.zeros) asm volatile("prefetch.global.L2 [%0];" ::"l"(w.zeros + (size_t)g * w.N + c));
  }
}

// Shared memory: x staging, [M][block_rows * 4] half2 (16 bytes per packed row), or for fixed point the same
// 16 bytes per packed row plus [M][block_rows / 4] (scale, sum) pairs; the warp reduction [warps][M][128] float
// reuses it.
inline size_t smem_bytes(int M, int block_rows, bool fixed) {
  const size_t staging = (size_t)M * block_rows * 16 + (fixed ? (size_t)M * (block_rows / kFixedBlockRows) * 8 : 0);
  return std::max(staging, (size_t)kWarps * M * kCols * 4);
}

// Input value k (checkpoint order) of row mi as the GEMV multiplies it; IN is how x becomes the input (GemvInput
// in kernels.h). r: the row's RMSNorm factor (RmsNorm input only).
template <GemvInput IN>
__device__ __forceinline__ float gemv_input(const QWeight& w, const void* __restrict__ xv, int x_stride,
                                            const GemvFusion& f, int mi, int k, float r) {
  if (IN == GemvInput::SiluGateUp) {
    const float* gr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
    return silu_gate_input(gr[k] * r, gr[w.K + k] * r);  // silu_mul rounds to fp16
  } else if (IN == GemvInput::RmsNorm) {
    const float* hr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
    return rmsnorm_input(hr[k], r, f.in_norm[k]);  // rmsnorm_kernel's formula and rounding
  } else if (IN == GemvInput::RmsNormDeferred) {
    const float* hr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
    return hr[k] * __half2float(f.in_norm[k]);  // no fp16 rounding: unnormalized values may exceed its range
  } else {
    return __half2float(static_cast<const __half*>(xv)[(size_t)mi * x_stride + k]);
  }
}

// The factor gemv_input multiplies row mi by: RmsNorm's, or (SiluGateUp after a RmsNormDeferred gate/up) the one
// the gate/up GEMV left out; 1 (exact) otherwise.
template <GemvInput IN>
__device__ __forceinline__ float rmsnorm_factor(const QWeight& w, const GemvFusion& f, int mi) {
  if (IN == GemvInput::RmsNorm) return rsqrtf(f.in_sum_sq[mi] / (float)w.K + f.eps);
  if (IN == GemvInput::SiluGateUp && f.in_sum_sq) return rsqrtf(f.in_sum_sq[mi] / (float)f.norm_dim + f.eps);
  return 1.f;
}

// RmsNormDeferred: a block of the first column slice sums the squares of each input row over its slice of K (the
// slices cover K once) while it stages them, and adds them to f.in_sum_sq, one atomic per block and row, its warps'
// partials added in order (so a K that one block covers sums the same way every time). stage_x_fixed leaves the
// warps' partials; call add_slice_sum_sq after a __syncthreads.
template <int M>
__device__ __forceinline__ void add_slice_sum_sq(const GemvFusion& f, const float (&partial)[kWarps][M]) {
  if (threadIdx.x >= M) return;
  float ss = 0.f;
#pragma unroll
  for (int wi = 0; wi < kWarps; ++wi) ss += partial[wi][threadIdx.x];
  atomicAdd(const_cast<float*>(f.in_sum_sq) + threadIdx.x, ss);
}

// x for packed rows [r0, r0 + nr), read through the act-order permutation and stored (times 1/16) as the
// pairs dequant_word produces. The 1/16 is exact except for tiny (subnormal) values.
template <int M, GemvInput IN>
__device__ __forceinline__ void stage_x(const QWeight& w, const void* __restrict__ xv, int x_stride,
                                        const GemvFusion& f, int r0, int nr, int block_rows, __half2* xs) {
  for (int i = threadIdx.x; i < M * nr * 4; i += blockDim.x) {
    const int mi = i / (nr * 4), rem = i - mi * nr * 4, rr = rem >> 2, s = rem & 3;
    int k0 = (r0 + rr) * 8 + s, k1 = k0 + 4;
    if (w.perm) k0 = w.perm[k0], k1 = w.perm[k1];
    const float r = rmsnorm_factor<IN>(w, f, mi);
    const float a0 = gemv_input<IN>(w, xv, x_stride, f, mi, k0, r);
    const float a1 = gemv_input<IN>(w, xv, x_stride, f, mi, k1, r);
    xs[mi * block_rows * 4 + rem] = __floats2half2_rn(a0 * kXScale, a1 * kXScale);
  }
}

// x for packed rows [r0, r0 + nr) in fixed point (q4_fixed_point.cuh), read through the act-order permutation:
// 16 bytes per packed row in xq, and per block of 4 packed rows (scale, sum of v) in xb.
// sum_squares (RmsNormDeferred): also each row's sum of squares of h over the staged inputs, per warp into partial.
template <int M, GemvInput IN>
__device__ __forceinline__ void stage_x_fixed(const QWeight& w, const void* __restrict__ xv, int x_stride,
                                              const GemvFusion& f, int r0, int nr, int block_rows,
                                              unsigned char* xq, float2* xb, bool sum_squares,
                                              float (&partial)[kWarps][M]) {
  const int items = M * nr * 4;  // a multiple of 16: nr is a multiple of 4
  float ss[M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) ss[mi] = 0.f;
  for (int base = 0; base < items; base += blockDim.x) {  // uniform trip count: the shuffles need whole warps
    const int i = base + threadIdx.x;
    const bool live = i < items;
    const int mi = live ? i / (nr * 4) : 0, rem = i - mi * nr * 4, rr = rem >> 2, s = rem & 3;
    float a0 = 0.f, a1 = 0.f;
    if (live) {
      const int row_k = (r0 + rr) * 8 + s;  // input row_k of the weight's rows (row_k + 4 the other)
      int k0 = row_k, k1 = row_k + 4;
      if (w.perm) k0 = w.perm[k0], k1 = w.perm[k1];
      if (IN == GemvInput::RmsNormDeferred) {  // the squares from the same loads (no second pass over h)
        const float* hr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
        const float h0 = hr[k0], h1 = hr[k1];
        const int n0 = f.in_norm_rows ? row_k : k0, n1 = f.in_norm_rows ? row_k + 4 : k1;  // (act-order)
        a0 = h0 * __half2float(f.in_norm[n0]), a1 = h1 * __half2float(f.in_norm[n1]);
#pragma unroll
        for (int r = 0; r < M; ++r)
          if (r == mi) ss[r] = fmaf(h0, h0, fmaf(h1, h1, ss[r]));
      } else {
        const float r = rmsnorm_factor<IN>(w, f, mi);
        a0 = gemv_input<IN>(w, xv, x_stride, f, mi, k0, r);
        a1 = gemv_input<IN>(w, xv, x_stride, f, mi, k1, r);
      }
    }
    if (base == 0 && live) trace_mark_arrived(3, a0);  // (--timeline: the first input arrived)
    int v0, v1;
    const FixedBlock blk = quantize_fixed_pair(a0, a1, v0, v1);
    if (!live) continue;
    if ((i & 15) == 0)
      xb[mi * (block_rows / kFixedBlockRows) + rr / kFixedBlockRows] = make_float2(blk.scale, __int_as_float(blk.sum));
    store_fixed_pair(xq + ((size_t)mi * block_rows + rr) * 16, s, v0, v1);
  }
  if (IN != GemvInput::RmsNormDeferred || !sum_squares) return;  // (uniform over the block)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    float v = ss[mi];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[warp][mi] = v;
  }
}

// A K slice's share of its 128 columns, from the warps' partials red ([warps][M][128]), added to y 4 columns per
// atomic (y 16-byte aligned, rows too). The K slices of a column slice finish together and their adds queue at
// the L2; a quarter as many operations took 7B decode from 1.447 to 1.415 ms per token on the H200, 13B and 70B
// 1-2% (docs/PERF-NOTES.md, session 16).
template <int M>
__device__ __forceinline__ void add_k_slice_by_4(const float* red, const QWeight& w, float* __restrict__ y,
                                                 int y_stride, int col0) {
  for (int i = threadIdx.x; i < M * kCols / 4; i += blockDim.x) {
    const int mi = i / (kCols / 4), col = (i % (kCols / 4)) * 4, n = col0 + col;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) {
      const float4 t = *reinterpret_cast<const float4*>(red + (wi * M + mi) * kCols + col);
      v.x += t.x, v.y += t.y, v.z += t.z, v.w += t.w;
    }
    float vs[4] = {v.x, v.y, v.z, v.w};
    if (w.bias && blockIdx.y == 0)
      for (int j = 0; j < 4 && n + j < w.N; ++j) vs[j] += __half2float(w.bias[n + j]);
    float* dst = y + (size_t)mi * y_stride + n;
    if (n + 3 < w.N)
      atomic_add4(dst, make_float4(vs[0], vs[1], vs[2], vs[3]));
    else
      for (int j = 0; j < 4 && n + j < w.N; ++j) atomicAdd(dst + j, vs[j]);
  }
}

// Sums the warps' partial columns in shared memory and adds them to y (atomically when K is split).
template <int M>
__device__ __forceinline__ void reduce_and_add(const float acc[M][4], unsigned char* smem_raw, const QWeight& w,
                                               float* __restrict__ y, int y_stride, int col0) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  __syncthreads();  // the staging area is reused for the reduction (or the previous tile's reduction is read)
  float* red = reinterpret_cast<float*>(smem_raw);  // [warps][M][128]
#pragma unroll
  for (int mi = 0; mi < M; ++mi)
#pragma unroll
    for (int j = 0; j < 4; ++j) red[(warp * M + mi) * kCols + lane * 4 + j] = acc[mi][j];
  __syncthreads();
  const bool whole_k = gridDim.y == 1;
  if (!whole_k && ((reinterpret_cast<uintptr_t>(y) | ((uintptr_t)y_stride * sizeof(float))) % 16) == 0) {
    add_k_slice_by_4<M>(red, w, y, y_stride, col0);
    return;
  }
  for (int i = tid; i < M * kCols; i += blockDim.x) {
    const int mi = i / kCols, col = i % kCols, n = col0 + col;
    if (n >= w.N) continue;
    float v = 0.f;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) v += red[(wi * M + mi) * kCols + col];
    if (w.bias && blockIdx.y == 0) v += __half2float(w.bias[n]);
    float* dst = y + (size_t)mi * y_stride + n;
    if (whole_k)
      *dst += v;
    else
      atomicAdd(dst, v);
  }
}

// GemvFusion::out_sum_sq: once every K slice of this block's columns has been added (the last block of the
// column slice to finish sees them all), adds each row's sum of squares over those columns.
template <int M>
__device__ __forceinline__ void add_row_sum_sq(const GemvFusion& f, const QWeight& w, const float* y, int y_stride,
                                               int col0) {
  __shared__ bool last;
  __threadfence();  // this block's additions are visible before it counts itself done
  __syncthreads();
  if (gridDim.y > 1) {
    if (threadIdx.x == 0) {
      unsigned* counter = f.col_done + blockIdx.x;
      last = atomicAdd(counter, 1u) == gridDim.y - 1;
      if (last) *counter = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
  }  // else this block owns the whole of K: each thread reads back the columns it wrote itself
  const int n = col0 + threadIdx.x, lane = threadIdx.x & 31;  // one column per thread (blockDim == kCols)
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    const float v = n < w.N ? __ldcg(y + (size_t)mi * y_stride + n) : 0.f;
    float sq = v * v;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    if (lane == 0) atomicAdd(f.out_sum_sq + mi, sq);
  }
}

// One-row decode with symmetric zeros and the fp16 dot (the latency-bound case: more resident blocks hide more of
// it) caps registers at 64 for 8 blocks per SM instead of the 7 that 72 registers allow, without spills: +2% decode
// on the H200 (docs/PERF-NOTES.md, session 6). Asymmetric zeros would spill at 64. Loading the first group's scales
// before the wait as well lost there (the registers it takes cost a block per SM). The fixed-point dot keeps 6
// blocks per SM (at most 80 registers; 78-80 without spills, with the first group's scales held from before the
// wait since session 18): capped at 64 it spills, and the 7B decoded 8% slower, the 70B 1% faster (session 10); left
// to itself, the asymmetric-zeros kernel with the deferred norm took 82 once the weight loads carried an L2 policy
// (session 17), one block per SM fewer. CAPPED (one row, fixed point): a copy
// capped at 72 registers for 7 blocks per SM, no spills; it pays only where the grid takes more than one wave
// (gemv_q4_fit_to_gpu).
template <int M, bool SYM, bool FIXED, bool CAPPED>
constexpr int gemv_min_blocks_per_sm() {
  return M == 1 && SYM && !FIXED ? 8 : CAPPED ? 7 : M == 1 && FIXED ? 6 : 1;
}

// FIXED: the fixed-point dot (stage_x_fixed, dot_row_fixed) instead of fp16 pairs; then warps take multiples of
// 4 packed rows (whole blocks of 32 inputs), which launch_m's slices allow.
template <int M, bool SYM, GemvInput IN, bool FIXED, bool CAPPED = false>
__global__ void __launch_bounds__(kWarps * 32, gemv_min_blocks_per_sm<M, SYM, FIXED, CAPPED>())
    gemv_q4_kernel(QWeight w, const void* __restrict__ xv, int x_stride, float* __restrict__ y, int y_stride,
                   int block_rows, GemvFusion f) {
  static_assert(kWarps * 32 == kCols, "add_row_sum_sq takes one column per thread");
  static_assert(kBatchRows % kFixedBlockRows == 0, "a batch holds whole fixed-point blocks");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int U = kBatchRows;
  const int r0 = blockIdx.y * block_rows;
  const int nr = min(block_rows, w.K / 8 - r0);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int col0 = blockIdx.x * kCols, c = col0 + lane * 4;
  const int split = (nr + kWarps - 1) / kWarps;
  const int per_warp = FIXED ? (split + kFixedBlockRows - 1) / kFixedBlockRows * kFixedBlockRows : split;
  const int wr0 = min(nr, warp * per_warp), wr1 = min(nr, wr0 + per_warp);
  const uint4* qp = reinterpret_cast<const uint4*>(w.qweight + (size_t)(r0 + wr0) * w.N + c);
  const size_t row_step = w.N / 4;  // in uint4
  // Weights never depend on earlier kernels: the first batch streams in while the previous kernel drains.
  uint4 q[U];
  const uint64_t policy = weight_stream_policy(f.evict_first);
  if (c < w.N) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (wr0 + u < wr1) q[u] = load_stream(qp + (size_t)u * row_step, policy);
  }
  // The first group's scales (and zeros) before the wait as well: FIXED takes them into registers (most warps read
  // one group, so no scale load is left between the staging and the first block's sum: 7B decode -1.1% on the H200,
  // docs/PERF-NOTES.md session 18); the fp16 dot, which has no registers to spare, into L2 (+1.2%, session 7).
  uint2 sraw0 = make_uint2(0, 0);
  uint32_t zw0 = 0;
  if (c < w.N && wr0 < wr1) {
    if (FIXED) {
      const int g = group_of(w, (r0 + wr0) * 8);
      sraw0 = group_scales_raw(w, g, c);
      if (!SYM) zw0 = group_zeros_raw(w, g, c);
      stage_later_groups<SYM>(w, g, group_of(w, (r0 + wr1 - 1) * 8), c, warp);
    } else {
      const int g = ((r0 + wr0) * 8) / w.group_size;
      asm volatile("prefetch.global.L2 [%0];" ::"l"(w.scales + (size_t)g * w.N + c));
      if (!SYM) asm volatile("prefetch.global.L2 [%0];" ::"l"(w.zeros + (size_t)g * w.N + c));
    }
  }
  wait_for_previous_kernel();
  zero_fill(f.zero[0]);
  zero_fill(f.zero[1]);
  float2* xb = reinterpret_cast<float2*>(smem_raw + (size_t)M * block_rows * 16);  // FIXED: [M][block_rows / 4]
  const bool sums_slice = IN == GemvInput::RmsNormDeferred && blockIdx.x == 0;
  __shared__ float slice_partial[kWarps][M];
  if (FIXED) stage_x_fixed<M, IN>(w, xv, x_stride, f, r0, nr, block_rows, smem_raw, xb, sums_slice, slice_partial);
  else stage_x<M, IN>(w, xv, x_stride, f, r0, nr, block_rows, reinterpret_cast<__half2*>(smem_raw));
  __syncthreads();
  trace_mark(0);  // (--timeline: the input staged)
  if (sums_slice) add_slice_sum_sq<M>(f, slice_partial);

  float acc[M][4];
#pragma unroll
  for (int mi = 0; mi < M; ++mi)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[mi][j] = 0.f;
  // FIXED: each lane keeps U loads in flight through its arithmetic: once a row's 16 bytes have been used, its slot
  // is refilled with the row U further on (a ring), where the batch after the first used to be requested only once
  // the whole first batch was summed. On the H200, side by side: 7B decode -3%, 13B -4%, 70B -3.5 to -5%
  // (docs/PERF-NOTES.md, session 23).
  if (FIXED) cp_async_wait<0>();  // the staged groups (each lane reads back only what it copied)
  if (c < w.N) {
    FixedDotState<M> st;  // FIXED
    int cur_g = -1;       // Half
    float sc[4];
    __half2 z2[8];
    for (int rr = wr0; rr < wr1; rr += U) {
      const int left = wr1 - rr;  // the warp's rows from rr on
      const unsigned next0 = (unsigned)(rr - wr0 + U) * (unsigned)row_step;  // slot 0's next row, in uint4
      if (!FIXED && rr != wr0) {  // (the fp16 dot, capped at 64 registers, has none to spare for a ring)
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (rr + u < wr1) q[u] = load_stream(qp + (size_t)(rr - wr0 + u) * row_step, policy);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (FIXED ? u >= left : rr + u >= wr1) break;
        if (FIXED) {
          fixed_dot_row<M, SYM>(w, r0, rr + u, u, c, q[u], smem_raw, xb, block_rows, sraw0, zw0, st, acc,
                                StagedGroupLoad{warp});
        } else {
          const int g = ((r0 + rr + u) * 8) / w.group_size;
          if (g != cur_g) {
            cur_g = g;
            group_params<SYM>(group_scales_raw(w, g, c), SYM ? 0u : group_zeros_raw(w, g, c), w.sym_zero, sc, z2);
          }
          accumulate_row<M>(q[u], z2, sc, reinterpret_cast<const __half2*>(smem_raw), block_rows, (rr + u) * 4, acc);
        }
        // (Offsets in 32 bits, from one product per batch, and bounds against `left`: a warp's rows x N / 4 always
        // fit, and the 64-bit product and the two index sums per row cost the 7B ~1.2% of its decode on the H200,
        // docs/PERF-NOTES.md session 32.)
        if (FIXED && U + u < left) q[u] = load_stream(qp + (next0 + u * (unsigned)row_step), policy);
      }
    }
  }
  trace_mark(1);  // (--timeline: the dot products done)
  reduce_and_add<M>(acc, smem_raw, w, y, y_stride, col0);
  trace_mark(2);
  trace_block_end();
  if (f.out_sum_sq) add_row_sum_sq<M>(f, w, y, y_stride, col0);
}

// A one-row fixed-point GEMV whose block takes `tiles` column slices of one K slice in turn: it stages its input
// once, keeps each warp's ring of loads running from one slice into the next (the next slice's first rows and first
// group's scales are requested while this slice's last rows are summed), and reduces each slice in its own shared
// memory after the staged input (red_offset bytes in). Every warp's rows are a whole number of batches, so a row keeps
// its ring slot from one slice to the next. gemv_q4_tiles_for decides where it runs: a grid of one-slice blocks 1-3
// waves long that as many slices per block fit into one nearly full wave (the 7B's gate/up: 1,376 blocks of 792
// resident become 688 of two slices; the 13B's gate/up and the 70B's o_proj take three). On the H200 the 7B decoded
// 1.6-1.9% faster with it, the 13B 1.4% more with three (docs/PERF-NOTES.md, session 23); more slices per block (the
// 70B's 9-wave gate/up as 10 slices) lost to the one-slice kernel's extra block per SM. Symmetric zeros only
// (tiles_for).
template <GemvInput IN>
__global__ void __launch_bounds__(kWarps * 32, gemv_min_blocks_per_sm<1, true, true, false>())
    gemv_q4_tiles_kernel(QWeight w, const void* __restrict__ xv, int x_stride, float* __restrict__ y, int y_stride,
                         int block_rows, GemvFusion f, int tiles, int red_offset) {
  constexpr int M = 1, U = kBatchRows;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int r0 = blockIdx.y * block_rows;
  const int nr = min(block_rows, w.K / 8 - r0);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int cols = (w.N + kCols - 1) / kCols;
  const int cb0 = blockIdx.x * tiles, nt = min(tiles, cols - cb0);
  const int split = (nr + kWarps - 1) / kWarps;
  const int per_warp = (split + kFixedBlockRows - 1) / kFixedBlockRows * kFixedBlockRows;
  const int wr0 = min(nr, warp * per_warp), wr1 = min(nr, wr0 + per_warp), nw = wr1 - wr0;
  const size_t row_step = w.N / 4;  // in uint4
  const uint32_t* wrows = w.qweight + (size_t)(r0 + wr0) * w.N + lane * 4;  // + the slice's first column
  const int g_first = group_of(w, (r0 + wr0) * 8);
  const uint64_t policy = weight_stream_policy(f.evict_first);
  // The first slice's first batch and first group's scales before the wait, as gemv_q4_kernel loads them.
  uint4 q[U];
  uint2 sraw_first = make_uint2(0, 0);  // (symmetric zeros only: tiles_for)
  int c = cb0 * kCols + lane * 4;
  if (c < w.N && nw > 0) {
    const uint4* qp = reinterpret_cast<const uint4*>(wrows + (size_t)cb0 * kCols);
#pragma unroll
    for (int u = 0; u < U; ++u) q[u] = load_stream(qp + (size_t)u * row_step, policy);
    sraw_first = group_scales_raw(w, g_first, c);
    const int g_last = group_of(w, (r0 + wr1 - 1) * 8);  // (every slice's)
    for (int t = 0; t < nt && c + t * kCols < w.N; ++t) prefetch_later_groups(w, g_first, g_last, c + t * kCols);
  }
  wait_for_previous_kernel();
  zero_fill(f.zero[0]);
  zero_fill(f.zero[1]);
  float2* xb = reinterpret_cast<float2*>(smem_raw + (size_t)M * block_rows * 16);
  const bool sums_slice = IN == GemvInput::RmsNormDeferred && blockIdx.x == 0;
  __shared__ float slice_partial[kWarps][M];
  stage_x_fixed<M, IN>(w, xv, x_stride, f, r0, nr, block_rows, smem_raw, xb, sums_slice, slice_partial);
  __syncthreads();
  trace_mark(0);  // (--timeline: the input staged)
  if (sums_slice) add_slice_sum_sq<M>(f, slice_partial);
  for (int t = 0; t < nt; ++t) {
    const int col0 = (cb0 + t) * kCols;
    c = col0 + lane * 4;
    const uint4* qp = reinterpret_cast<const uint4*>(wrows + (size_t)col0);
    const bool next_live = t + 1 < nt && c + kCols < w.N;
    float acc[M][4] = {{0.f, 0.f, 0.f, 0.f}};
    if (c < w.N) {
      FixedDotState<M> st;
      for (int rr = 0; rr < nw; rr += U) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          fixed_dot_row<M, true>(w, r0, wr0 + rr + u, u, c, q[u], smem_raw, xb, block_rows, sraw_first, 0u, st, acc,
                                 GlobalGroupLoadByDivisor{});
          // The row this slot takes next: U on in this slice, or (a row keeps its slot) the same place in the next.
          // (One address expression: a separate one per slot for the next slice kept 8 more pointers live, and a
          // pointer per batch made it spill.)
          const int next = rr + U + u;
          const bool in_next = next >= nw;
          if (!in_next || next_live)
            q[u] = load_stream(
                qp + (in_next ? kCols / 4 : 0) + (unsigned)(in_next ? next - nw : next) * (unsigned)row_step, policy);
          if (in_next && next_live && u == 0)  // (this slice's first group is in st by now)
            sraw_first = group_scales_raw(w, g_first, c + kCols);
        }
      }
    }
    if (t == nt - 1) trace_mark(1);  // (--timeline: the last slice's dot products done)
    reduce_and_add<M>(acc, smem_raw + red_offset, w, y, y_stride, col0);
  }
  trace_mark(2);
  trace_block_end();
}

// Whether the fixed-point dot can take this weight: its blocks of 32 inputs must not straddle packed-row slices
// or groups, and its kernels find groups by group_of.
bool fixed_point_fits(const QWeight& w) { return w.K % 32 == 0 && w.group_size % 32 == 0 && group_of_exact(w); }

using GemvKernel = void (*)(QWeight, const void*, int, float*, int, int, GemvFusion);

// Blocks of a GEMV kernel the current GPU holds at once.
int resident_gemv_blocks(GemvKernel kernel, size_t smem) {
  return std::max(1, resident_blocks(reinterpret_cast<const void*>(kernel), kWarps * 32, smem));
}

// Packed rows per warp up to which a grid is reshaped into one wave (gemv_q4_fit_to_gpu): on the H200 one wave won
// at 19-24 (13B q/k/v and down_proj, 70B q/k/v and o_proj) and lost at 26 (7B gate/up) (docs/PERF-NOTES.md,
// session 14).
constexpr int kOneWaveMaxRowsPerWarp = 24;
// Waves of the uncapped kernel from which the capped one runs a grid that stays several waves long: on the H200 it
// took 4% off the 70B's decode through its gate/up and down_proj (9 and 4.5 waves); at 1.7-2.7 waves (7B and 13B
// gate/up) it cost 0.5-1%.
constexpr int kManyWaves = 4;

// Whether a one-row fixed-point GEMV whose grid is `cols` x `splits` blocks runs the capped kernel (7 blocks per SM
// instead of 6), and how many K slices it takes (may lower `splits`). A grid that fits in one wave of the uncapped
// kernel stays as it is. Otherwise the capped kernel runs it if that fits it in one wave, as it is or with fewer K
// slices of at most kOneWaveMaxRowsPerWarp rows per warp, or if it is kManyWaves waves long. On the H200: 13B
// decode -3%, 70B -4 to -5%, 7B unchanged (only its gate/up is over one wave, and the cap there cost 1%)
// (docs/PERF-NOTES.md, session 14).
bool gemv_q4_fit_to_gpu(GemvKernel uncapped, GemvKernel capped, size_t smem, int cols, int packed_rows, int align,
                        int& splits) {
  const size_t uncapped_blocks = resident_gemv_blocks(uncapped, smem);
  if ((size_t)cols * splits <= uncapped_blocks) return false;
  const int max_splits = resident_gemv_blocks(capped, smem) / cols;
  if (max_splits >= splits) return true;
  if (max_splits >= 1) {
    const int br = ((packed_rows + max_splits - 1) / max_splits + align - 1) / align * align;
    if (br <= kWarps * kOneWaveMaxRowsPerWarp) {
      splits = (packed_rows + br - 1) / br;
      return true;
    }
  }
  return (size_t)cols * splits >= kManyWaves * uncapped_blocks;
}

// How gemv_q4_tiles_kernel runs a one-row grid (tiles 1: it does not).
struct GemvTiles {
  int tiles = 1, splits = 0, block_rows = 0, red_offset = 0;
  size_t smem = 0;
};

// Column slices per block for gemv_q4_tiles_kernel: as many as the waves (at most kMaxColumnSlices) that a grid of
// cols x splits one-slice blocks takes on the uncapped kernel, where that many times fewer blocks still fill 85% of
// one wave; else none (a wave far from full leaves bandwidth unused, and longer grids run best on the 7-blocks-per-SM
// kernel: the 70B's 9-wave gate/up as 10 slices per block lost the ring's gain).
GemvTiles gemv_q4_tiles_for(GemvKernel uncapped, const void* tiles_kernel, size_t smem, int cols, int packed_rows,
                            int splits) {
  GemvTiles t;
  const size_t blocks = (size_t)cols * splits, one_wave = resident_gemv_blocks(uncapped, smem);
  const int tiles = (int)((blocks + one_wave - 1) / one_wave);
  if (blocks <= one_wave || tiles > kMaxColumnSlices) return t;
  int br = (packed_rows + splits - 1) / splits;
  br = (br + kFixedBlockRows - 1) / kFixedBlockRows * kFixedBlockRows;
  const int red_offset = (int)((smem_bytes(1, br, true) + 15) / 16 * 16);
  const size_t tiles_smem = red_offset + (size_t)kWarps * kCols * sizeof(float);
  const size_t grouped = (size_t)((cols + tiles - 1) / tiles) * splits;
  const size_t resident = std::max(1, resident_blocks(tiles_kernel, kWarps * 32, tiles_smem));
  if (grouped > resident || grouped * 100 < resident * 85) return t;
  // The kernel's ring needs each warp's rows (as gemv_q4_tiles_kernel splits a slice of nr) to be whole batches.
  auto whole_batches = [](int nr) {
    const int split = (nr + kWarps - 1) / kWarps;
    const int per_warp = (split + kFixedBlockRows - 1) / kFixedBlockRows * kFixedBlockRows;
    for (int wi = 0; wi < kWarps; ++wi) {
      const int r0 = std::min(nr, wi * per_warp), r1 = std::min(nr, r0 + per_warp);
      if ((r1 - r0) % kBatchRows != 0) return false;
    }
    return true;
  };
  const int slices = (packed_rows + br - 1) / br;
  if (!whole_batches(br) || !whole_batches(packed_rows - (slices - 1) * br)) return t;
  t.tiles = tiles, t.splits = slices, t.block_rows = br, t.red_offset = red_offset, t.smem = tiles_smem;
  return t;
}

// block_rows before balancing: 4 warps x rows_per_warp packed rows, fewer when x would exceed 48 KB of shared memory.
int initial_block_rows(int M, int packed_rows, const GemvQ4Config& cfg) {
  const bool fixed = cfg.dot == GemvDot::Fixed;
  const int align = fixed ? kFixedBlockRows : 1;
  int br = std::min(packed_rows, std::max(1, kWarps * cfg.rows_per_warp));
  while (br > align && smem_bytes(M, br, fixed) > kSmemLimit) br /= 2;
  return br;
}

// Whether (and how) a one-row launch takes gemv_q4_tiles_kernel: the rule's fixed-point config only, and not where
// the GEMV squares its outputs (add_row_sum_sq counts one column slice per block).
// Symmetric zeros only: with asymmetric ones the tiles kernel spills (20 bytes at 80 registers on sm_90).
template <bool SYM, GemvInput IN>
GemvTiles tiles_for(const QWeight& w, const GemvQ4Config& cfg, bool out_sum_sq) {
  if constexpr (!SYM) {
    return {};
  } else {
    if (cfg.dot != GemvDot::Fixed || !cfg.fit_to_gpu || out_sum_sq) return {};
    const int packed_rows = w.K / 8, br = initial_block_rows(1, packed_rows, cfg);
    return gemv_q4_tiles_for(gemv_q4_kernel<1, SYM, IN, true>,
                             reinterpret_cast<const void*>(gemv_q4_tiles_kernel<IN>), smem_bytes(1, br, true),
                             (w.N + kCols - 1) / kCols, packed_rows, (packed_rows + br - 1) / br);
  }
}

template <int M, bool SYM, GemvInput IN>
void launch_m(const QWeight& w, const void* x, int x_stride, float* y, int y_stride, const GemvQ4Config& cfg,
              const GemvFusion& f, cudaStream_t s) {
  // block_rows balanced so the slices are about equal (for fixed point, whole blocks of 4 packed rows).
  const bool fixed = cfg.dot == GemvDot::Fixed;  // resolved by gemv_q4_resolve
  if (IN == GemvInput::RmsNormDeferred && (!fixed || w.bias))
    throw std::runtime_error("gemv_q4: a deferred RMSNorm needs the fixed-point dot and no bias");
  const int align = fixed ? kFixedBlockRows : 1;
  const int packed_rows = w.K / 8;
  int br = initial_block_rows(M, packed_rows, cfg);
  int splits = (packed_rows + br - 1) / br;
  const int cols = (w.N + kCols - 1) / kCols;
  GemvKernel kernel = gemv_q4_kernel<M, SYM, IN, true>;
  if constexpr (IN != GemvInput::RmsNormDeferred)  // (fixed-point only: no fp16 instantiation)
    if (!fixed) kernel = gemv_q4_kernel<M, SYM, IN, false>;
  if constexpr (M == 1 && SYM) {
    if (fixed) {
      const GemvTiles t = tiles_for<SYM, IN>(w, cfg, f.out_sum_sq != nullptr);
      if (t.tiles > 1) {
        launch(gemv_q4_tiles_kernel<IN>, dim3((cols + t.tiles - 1) / t.tiles, t.splits), kWarps * 32, t.smem, s, w,
               x, x_stride, y, y_stride, t.block_rows, f, t.tiles, t.red_offset);
        XL_CUDA_LAUNCH_CHECK();
        return;
      }
    }
  }
  if constexpr (M == 1)
    if (fixed && cfg.fit_to_gpu && gemv_q4_fit_to_gpu(kernel, gemv_q4_kernel<M, SYM, IN, true, true>,
                                                      smem_bytes(M, br, fixed), cols, packed_rows, align, splits))
      kernel = gemv_q4_kernel<M, SYM, IN, true, true>;
  br = (packed_rows + splits - 1) / splits;
  br = (br + align - 1) / align * align;
  const dim3 grid(cols, (packed_rows + br - 1) / br);
  if (fixed) {  // a warp's groups fit stage_later_groups' slots (rows per warp stay <= 32: the rule and --tune)
    const int per_warp = ((br + kWarps - 1) / kWarps + kFixedBlockRows - 1) / kFixedBlockRows * kFixedBlockRows;
    // A warp starts on a 32-input boundary, at worst group_size - 32 inputs into a group.
    const int most_groups = (w.group_size - 32 + per_warp * 8 - 1) / w.group_size + 1;
    if (most_groups > kStagedGroups) throw std::runtime_error("gemv_q4: a warp's rows span more groups than it stages");
  }
  launch(kernel, grid, kWarps * 32, smem_bytes(M, br, fixed), s, w, x, x_stride, y, y_stride, br, f);
  XL_CUDA_LAUNCH_CHECK();
}

template <bool SYM, GemvInput IN>
void dispatch_m(const QWeight& w, const void* x, int m, int x_stride, float* y, int y_stride,
                const GemvQ4Config& cfg, const GemvFusion& f, cudaStream_t s) {
  switch (m) {
    case 1: return launch_m<1, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
    case 2: return launch_m<2, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
    case 3: return launch_m<3, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
    case 4: return launch_m<4, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
    case 5: return launch_m<5, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
    case 6: return launch_m<6, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
    case 7: return launch_m<7, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
    default: return launch_m<8, SYM, IN>(w, x, x_stride, y, y_stride, cfg, f, s);
  }
}

template <GemvInput IN>
void dispatch_sym(const QWeight& w, const void* x, int m, int x_stride, float* y, int y_stride,
                  const GemvQ4Config& cfg, const GemvFusion& f, cudaStream_t s) {
  if (w.zeros) dispatch_m<false, IN>(w, x, m, x_stride, y, y_stride, cfg, f, s);
  else dispatch_m<true, IN>(w, x, m, x_stride, y, y_stride, cfg, f, s);
}

}  // namespace

bool& gemv_q4_fixed_point_flag() {
  static bool on = [] {
    const char* v = std::getenv("XLLAMA_GEMV_DOT");
    return !(v && std::string(v) == "half");
  }();
  return on;
}

std::vector<GemvQ4Config> gemv_q4_candidates() {
  std::vector<GemvQ4Config> c;
  for (GemvDot dot : {GemvDot::Half, GemvDot::Fixed}) {
    for (int rpw : {4, 8, 16, 32}) c.push_back({rpw, dot});
    c.push_back({0, dot});  // the rule, fitted to the GPU
  }
  return c;
}

GemvQ4Config gemv_q4_resolve(const QWeight& w, GemvQ4Config cfg) {
  if (cfg.dot == GemvDot::Default) cfg.dot = gemv_q4_fixed_point_flag() ? GemvDot::Fixed : GemvDot::Half;
  if (cfg.dot == GemvDot::Fixed && !fixed_point_fits(w)) cfg.dot = GemvDot::Half;
  if (cfg.rows_per_warp <= 0) {
    cfg.fit_to_gpu = true;
    const int K = w.K, N = w.N;
    if (cfg.dot == GemvDot::Fixed)
      // 16 packed rows per warp where K or N is 10k or more: on the H200 within 3% of the best on every 7B,
      // 13B and 70B shape, 8 on the square o_proj matrices (docs/PERF-NOTES.md session 10)
      cfg.rows_per_warp = (K >= 10000 || N >= 10000) ? 16 : 8;
    else
      // fp16 dot: 8 was best or within 3% on every 7B/13B/70B shape; 16 won (by ~1-2%) on the biggest MLP
      // matrices
      cfg.rows_per_warp = (K >= 20000 || N >= 20000) ? 16 : 8;
  }
  return cfg;
}

bool& deferred_norm_flag() {
  static bool on = env_switch_on("XLLAMA_DEFER_NORM");
  return on;
}

bool& weight_evict_first_flag() {
  static bool on = env_switch_on("XLLAMA_WEIGHT_EVICT_FIRST");
  return on;
}

bool gemv_q4_defers_norm(const QWeight& w) { return !w.bias && gemv_q4_resolve(w, {}).dot == GemvDot::Fixed; }

int gemv_q4_column_slices_per_block(const QWeight& w, GemvInput input) {
  const GemvQ4Config cfg = gemv_q4_resolve(w, {});
  const bool sym = !w.zeros;
  GemvTiles t;
  switch (input) {
    case GemvInput::Half: t = sym ? tiles_for<true, GemvInput::Half>(w, cfg, false)
                                  : tiles_for<false, GemvInput::Half>(w, cfg, false); break;
    case GemvInput::SiluGateUp: t = sym ? tiles_for<true, GemvInput::SiluGateUp>(w, cfg, false)
                                        : tiles_for<false, GemvInput::SiluGateUp>(w, cfg, false); break;
    case GemvInput::RmsNorm: t = sym ? tiles_for<true, GemvInput::RmsNorm>(w, cfg, false)
                                     : tiles_for<false, GemvInput::RmsNorm>(w, cfg, false); break;
    case GemvInput::RmsNormDeferred: t = sym ? tiles_for<true, GemvInput::RmsNormDeferred>(w, cfg, false)
                                             : tiles_for<false, GemvInput::RmsNormDeferred>(w, cfg, false); break;
  }
  return t.tiles;
}

void gemv_q4(const QWeight& w_in, const void* x, GemvInput input, int m, int x_stride, float* y, int y_stride,
             cudaStream_t s, const GemvQ4Config& cfg_in, const GemvFusion& fusion) {
  const GemvQ4Config cfg = gemv_q4_resolve(w_in, cfg_in);
  QWeight w = w_in;
  if (cfg.dot == GemvDot::Fixed) w.group_div = group_divisor(w.group_size);  // (fixed_point_fits: exact)
  const size_t x_elem = input == GemvInput::Half ? sizeof(__half) : sizeof(float);
  for (int r = 0; r < m; r += kGemvMaxRows) {
    const int mm = std::min(kGemvMaxRows, m - r);
    const void* xr = static_cast<const char*>(x) + (size_t)r * x_stride * x_elem;
    float* yr = y + (size_t)r * y_stride;
    GemvFusion f = fusion;  // this chunk's rows; the first chunk does the zeroing
    f.evict_first = weight_evict_first_flag();
    if (f.in_sum_sq) f.in_sum_sq += r;
    if (f.out_sum_sq) f.out_sum_sq += r;
    if (r > 0) f.zero[0] = f.zero[1] = ZeroFill{};
    switch (input) {
      case GemvInput::Half: dispatch_sym<GemvInput::Half>(w, xr, mm, x_stride, yr, y_stride, cfg, f, s); break;
      case GemvInput::SiluGateUp:
        dispatch_sym<GemvInput::SiluGateUp>(w, xr, mm, x_stride, yr, y_stride, cfg, f, s);
        break;
      case GemvInput::RmsNorm: dispatch_sym<GemvInput::RmsNorm>(w, xr, mm, x_stride, yr, y_stride, cfg, f, s); break;
      case GemvInput::RmsNormDeferred:
        dispatch_sym<GemvInput::RmsNormDeferred>(w, xr, mm, x_stride, yr, y_stride, cfg, f, s);
        break;
    }
  }
}

}  // namespace xllama::cuda
