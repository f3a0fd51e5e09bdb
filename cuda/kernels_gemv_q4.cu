// Fused 4-bit GPTQ GEMV for decode (1..8 rows): y[i, :] += x[i, :] . W (+ bias).
//
// A block of 4 warps owns 128 output columns (32 lanes x 4, one 16-byte load per packed row) and a slice of
// packed rows; its warps split the slice, load 8 packed rows at a time (the first 8 before waiting for the
// previous kernel) and are reduced in shared memory. Slices of K are summed with atomicAdd; a block that
// owns the whole of K adds without atomics (deterministic). Decode fusions (GemvFusion): the input can be
// the RMSNorm of the fp32 residual stream (normalized while staging, from each row's sum of squares), and a
// GEMV that adds into the residual stream can sum each row's squares for the next one: the last block of a
// column slice to finish (a counter per slice) squares the slice's final values. How many rows each warp
// should take depends on the shape; gemv_q4_rows_per_warp is the rule from the H100 sweep
// (xllama_kernel_check --tune, docs/PERF-NOTES.md).
// (A variant that kept 8 loads in flight per lane as a register ring, with scales staged in shared memory,
// lost on every 7B/13B/70B shape but one on the H100: docs/PERF-NOTES.md.)
#include <algorithm>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/stream_load.cuh"
#include "cuda/zero_fill.cuh"

namespace xllama::cuda {

namespace {

constexpr int kCols = 128;  // output columns per block
constexpr int kWarps = 4;
constexpr int kBatchRows = 8;  // packed rows a warp loads before using them
constexpr size_t kSmemLimit = 48 * 1024;
// Shared memory: x staging [M][block_rows * 4] half2; the warp reduction [warps][M][128] float reuses it.
inline size_t smem_bytes(int M, int block_rows) {
  return std::max((size_t)M * block_rows * 16, (size_t)kWarps * M * kCols * 4);
}

// x for packed rows [r0, r0 + nr), read through the act-order permutation and stored (times 1/16) as the
// pairs dequant_word produces; IN is how x becomes the input (GemvInput in kernels.h).
template <int M, GemvInput IN>
__device__ __forceinline__ void stage_x(const QWeight& w, const void* __restrict__ xv, int x_stride,
                                        const GemvFusion& f, int r0, int nr, int block_rows, __half2* xs) {
  for (int i = threadIdx.x; i < M * nr * 4; i += blockDim.x) {
    const int mi = i / (nr * 4), rem = i - mi * nr * 4, rr = rem >> 2, s = rem & 3;
    int k0 = (r0 + rr) * 8 + s, k1 = k0 + 4;
    if (w.perm) k0 = w.perm[k0], k1 = w.perm[k1];
    if (IN == GemvInput::SiluGateUp) {
      const float* gr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
      const float ga = gr[k0], gb = gr[k1];
      // silu_mul rounds to fp16 first; the 1/16 below is exact except for tiny (subnormal) values
      const float a0 = silu_gate_input(ga, gr[w.K + k0]);
      const float a1 = silu_gate_input(gb, gr[w.K + k1]);
      xs[mi * block_rows * 4 + rem] = __floats2half2_rn(a0 * kXScale, a1 * kXScale);
    } else if (IN == GemvInput::RmsNorm) {
      // rmsnorm_kernel's formula and rounding
      const float* hr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
      const float r = rsqrtf(f.in_sum_sq[mi] / (float)w.K + f.eps);
      const float a0 = rmsnorm_input(hr[k0], r, f.in_norm[k0]);
      const float a1 = rmsnorm_input(hr[k1], r, f.in_norm[k1]);
      xs[mi * block_rows * 4 + rem] = __floats2half2_rn(a0 * kXScale, a1 * kXScale);
    } else {
      const __half* xr = static_cast<const __half*>(xv) + (size_t)mi * x_stride;
      xs[mi * block_rows * 4 + rem] =
          __floats2half2_rn(__half2float(xr[k0]) * kXScale, __half2float(xr[k1]) * kXScale);
    }
  }
}

// Sums the warps' partial columns in shared memory and adds them to y (atomically when K is split).
template <int M>
__device__ __forceinline__ void reduce_and_add(const float acc[M][4], unsigned char* smem_raw, const QWeight& w,
                                               float* __restrict__ y, int y_stride, int col0) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  __syncthreads();  // the staging area is reused for the reduction
  float* red = reinterpret_cast<float*>(smem_raw);  // [warps][M][128]
#pragma unroll
  for (int mi = 0; mi < M; ++mi)
#pragma unroll
    for (int j = 0; j < 4; ++j) red[(warp * M + mi) * kCols + lane * 4 + j] = acc[mi][j];
  __syncthreads();
  const bool whole_k = gridDim.y == 1;
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

// One-row decode with symmetric zeros (the latency-bound case: more resident blocks hide more of it) caps
// registers at 64 for 8 blocks per SM instead of the 7 that 72 registers allow, without spills: +2% decode on the
// H200 (docs/PERF-NOTES.md, session 6). Asymmetric zeros would spill at 64. Loading the first group's scales
// before the wait as well lost there (the registers it takes cost a block per SM).
template <int M, bool SYM, GemvInput IN>
__global__ void __launch_bounds__(kWarps * 32, M == 1 && SYM ? 8 : 1)
    gemv_q4_kernel(QWeight w, const void* __restrict__ xv, int x_stride, float* __restrict__ y, int y_stride,
                   int block_rows, GemvFusion f) {
  static_assert(kWarps * 32 == kCols, "add_row_sum_sq takes one column per thread");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int U = kBatchRows;
  __half2* xs = reinterpret_cast<__half2*>(smem_raw);  // [M][block_rows * 4]
  const int r0 = blockIdx.y * block_rows;
  const int nr = min(block_rows, w.K / 8 - r0);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int col0 = blockIdx.x * kCols, c = col0 + lane * 4;
  const int per_warp = (nr + kWarps - 1) / kWarps;
  const int wr0 = min(nr, warp * per_warp), wr1 = min(nr, wr0 + per_warp);
  const uint4* qp = reinterpret_cast<const uint4*>(w.qweight + (size_t)(r0 + wr0) * w.N + c);
  const size_t row_step = w.N / 4;  // in uint4
  // Weights never depend on earlier kernels: the first batch streams in while the previous kernel drains.
  uint4 q[U];
  if (c < w.N) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (wr0 + u < wr1) q[u] = load_stream(qp + (size_t)u * row_step);
  }
  // The first group's scales (and zeros) into L2 before the wait: no registers held, and the first read of them
  // after the x staging hits L2 instead of memory (+1.2% 7B decode on the H200, docs/PERF-NOTES.md session 7).
  if (c < w.N && wr0 < wr1) {
    const int g = ((r0 + wr0) * 8) / w.group_size;
    asm volatile("prefetch.global.L2 [%0];" ::"l"(w.scales + (size_t)g * w.N + c));
    if (!SYM) asm volatile("prefetch.global.L2 [%0];" ::"l"(w.zeros + (size_t)g * w.N + c));
  }
  wait_for_previous_kernel();
  zero_fill(f.zero[0]);
  zero_fill(f.zero[1]);
  stage_x<M, IN>(w, xv, x_stride, f, r0, nr, block_rows, xs);
  __syncthreads();

  float acc[M][4];
#pragma unroll
  for (int mi = 0; mi < M; ++mi)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[mi][j] = 0.f;
  if (c < w.N) {
    int cur_g = -1;
    float sc[4];
    __half2 z2[8];
    for (int rr = wr0; rr < wr1; rr += U) {
      if (rr != wr0) {
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (rr + u < wr1) q[u] = load_stream(qp + (size_t)(rr - wr0 + u) * row_step);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (rr + u >= wr1) break;
        const int g = ((r0 + rr + u) * 8) / w.group_size;
        if (g != cur_g) {
          cur_g = g;
          const uint2 sraw = *reinterpret_cast<const uint2*>(w.scales + (size_t)g * w.N + c);
          const uint32_t zw = SYM ? 0u : *reinterpret_cast<const uint32_t*>(w.zeros + (size_t)g * w.N + c);
          group_params<SYM>(sraw, zw, w.sym_zero, sc, z2);
        }
        accumulate_row<M>(q[u], z2, sc, xs, block_rows, (rr + u) * 4, acc);
      }
    }
  }
  reduce_and_add<M>(acc, smem_raw, w, y, y_stride, col0);
  if (f.out_sum_sq) add_row_sum_sq<M>(f, w, y, y_stride, col0);
}

template <int M, bool SYM, GemvInput IN>
void launch_m(const QWeight& w, const void* x, int x_stride, float* y, int y_stride, const GemvQ4Config& cfg,
              const GemvFusion& f, cudaStream_t s) {
  // block_rows = 4 warps x rows_per_warp packed rows (fewer when x would exceed 48 KB of shared memory),
  // then balanced so the slices are about equal.
  const int packed_rows = w.K / 8;
  int br = std::min(packed_rows, std::max(1, kWarps * cfg.rows_per_warp));
  while (br > 1 && smem_bytes(M, br) > kSmemLimit) br /= 2;
  const int splits = (packed_rows + br - 1) / br;
  br = (packed_rows + splits - 1) / splits;
  const dim3 grid((w.N + kCols - 1) / kCols, splits);
  launch(gemv_q4_kernel<M, SYM, IN>, grid, kWarps * 32, smem_bytes(M, br), s, w, x, x_stride, y, y_stride, br, f);
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

std::vector<GemvQ4Config> gemv_q4_candidates() {
  std::vector<GemvQ4Config> c;
  for (int rpw : {4, 8, 16, 32}) c.push_back({rpw});
  return c;
}

int gemv_q4_rows_per_warp(int K, int N) {
  // 8 was best or within 3% on every 7B/13B/70B shape; 16 won (by ~1-2%) on the biggest MLP matrices.
  return (K >= 20000 || N >= 20000) ? 16 : 8;
}

void gemv_q4(const QWeight& w, const void* x, GemvInput input, int m, int x_stride, float* y, int y_stride,
             cudaStream_t s, const GemvQ4Config& cfg_in, const GemvFusion& fusion) {
  GemvQ4Config cfg = cfg_in;
  if (cfg.rows_per_warp <= 0) cfg.rows_per_warp = gemv_q4_rows_per_warp(w.K, w.N);
  const size_t x_elem = input == GemvInput::Half ? sizeof(__half) : sizeof(float);
  for (int r = 0; r < m; r += kGemvMaxRows) {
    const int mm = std::min(kGemvMaxRows, m - r);
    const void* xr = static_cast<const char*>(x) + (size_t)r * x_stride * x_elem;
    float* yr = y + (size_t)r * y_stride;
    GemvFusion f = fusion;  // this chunk's rows; the first chunk does the zeroing
    if (f.in_sum_sq) f.in_sum_sq += r;
    if (f.out_sum_sq) f.out_sum_sq += r;
    if (r > 0) f.zero[0] = f.zero[1] = ZeroFill{};
    switch (input) {
      case GemvInput::Half: dispatch_sym<GemvInput::Half>(w, xr, mm, x_stride, yr, y_stride, cfg, f, s); break;
      case GemvInput::SiluGateUp:
        dispatch_sym<GemvInput::SiluGateUp>(w, xr, mm, x_stride, yr, y_stride, cfg, f, s);
        break;
      case GemvInput::RmsNorm: dispatch_sym<GemvInput::RmsNorm>(w, xr, mm, x_stride, yr, y_stride, cfg, f, s); break;
    }
  }
}

}  // namespace xllama::cuda
