// Linear-layer kernels: dense fp16 GEMV (lm_head, dense layers), dequantization + tensor-core GEMM
// (prompt chunks). The 4-bit GEMV lives in kernels_gemv_q4.cu.
#include <mma.h>

#include <algorithm>
#include <stdexcept>

#include "cuda/cuda_check.h"
#include "cuda/device_query.h"
#include "cuda/env_switch.h"
#include "cuda/greedy_pick.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/stream_load.cuh"

namespace xllama::cuda {

namespace {

// ---- dense fp16 GEMV: one warp per output column, 16-byte loads along K ----
constexpr int kF16Warps = 8;

// NORM (gemv_f16_rmsnorm): the block stages x = rmsnorm(h) for its rows in shared memory once, after the
// wait (rmsnorm_kernel's formula and fp16 rounding, from the row sums of squares), 4 values per step.
struct F16NormInput {
  const float* h = nullptr;
  int h_stride = 0;
  const float* sum_sq = nullptr;
  const __half* norm = nullptr;
  float eps = 0.f;
};

template <int M>
__device__ __forceinline__ void stage_rmsnorm(const F16NormInput& in, int K, __half* xs) {
  const int quads = K / 4;
#pragma unroll 4
  for (int i = threadIdx.x; i < M * quads; i += blockDim.x) {
    const int mi = i / quads, k = (i - mi * quads) * 4;
    const float r = rsqrtf(in.sum_sq[mi] / (float)K + in.eps);
    const float4 v = *reinterpret_cast<const float4*>(in.h + (size_t)mi * in.h_stride + k);
    const uint2 wraw = *reinterpret_cast<const uint2*>(in.norm + k);
    const __half* w = reinterpret_cast<const __half*>(&wraw);
    uint2 o;
    __half* oh = reinterpret_cast<__half*>(&o);
    oh[0] = __float2half(v.x * r * __half2float(w[0]));
    oh[1] = __float2half(v.y * r * __half2float(w[1]));
    oh[2] = __float2half(v.z * r * __half2float(w[2]));
    oh[3] = __float2half(v.w * r * __half2float(w[3]));
    *reinterpret_cast<uint2*>(xs + (size_t)mi * K + k) = o;
  }
}

// GreedyPick (one row): the block's best column by argmax's rule folded into pick.best, then the last block to count
// itself done writes the pick (the threadfence reduction: every block's fold is visible before its count).
__device__ __forceinline__ void pick_greedy(float v, int n, bool active, const GreedyPick& pick) {
  __shared__ float col_v[kF16Warps];
  __shared__ int col_n[kF16Warps];
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) col_v[warp] = v, col_n[warp] = active ? n : kNoPick;
  __syncthreads();
  if (threadIdx.x != 0) return;
  float best = -INFINITY;
  int bi = kNoPick;
  for (int w = 0; w < kF16Warps; ++w)
    if (col_n[w] != kNoPick && greedy_takes(col_v[w], col_n[w], best, bi)) best = col_v[w], bi = col_n[w];
  if (bi != kNoPick) atomicMax(pick.best, greedy_key(best, bi));
  __threadfence();
  if (atomicAdd(pick.done, 1u) != gridDim.x - 1) return;  // not the last block
  __threadfence();
  const int token = greedy_key_index(atomicExch(pick.best, 0ull));
  *pick.done = 0;
  *pick.out = token;
  if (pick.tokens) pick.tokens[0] = token, *pick.pos += 1;
}

// NORM writes y instead of adding to it: each warp owns its column's whole dot product. evict_first: the weight
// loads' L2 policy (weight_evict_first_flag()). PICK (NORM, one row): the greedy pick as well (pick_greedy).
template <int M, bool VEC, bool NORM, bool PICK = false>
__global__ void __launch_bounds__(kF16Warps * 32)
    gemv_f16_kernel(const __half* __restrict__ W, const __half* __restrict__ bias, int K, int N, const __half* x,
                    int x_stride, float* __restrict__ y, int y_stride, F16NormInput norm_in, bool evict_first,
                    GreedyPick pick) {
  static_assert(!NORM || VEC, "the staged input is read 16 bytes at a time");
  static_assert(!PICK || (NORM && M == 1), "the pick is of one row's logits");
  extern __shared__ __align__(16) __half xs[];  // NORM: [M][K]
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kF16Warps + (threadIdx.x >> 5);
  const bool active = n < N;
  if (!NORM && !active) return;  // NORM: every thread helps stage x first (PICK: and takes part in the pick)
  float acc[M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) acc[mi] = 0.f;
  const __half* wr = W + (size_t)n * K;
  if (VEC) {
    const int chunks = K / 8;
    const uint4* wp = reinterpret_cast<const uint4*>(wr);
    constexpr int U = 4;
    uint4 wv[U];
    const uint64_t policy = weight_stream_policy(evict_first);
#pragma unroll
    for (int u = 0; u < U; ++u)  // the first batch streams in while the previous kernel drains
      if (active && lane + u * 32 < chunks) wv[u] = load_stream(wp + lane + u * 32, policy);
    wait_for_previous_kernel();
    if (NORM) {
      stage_rmsnorm<M>(norm_in, K, xs);
      __syncthreads();
      if (!PICK && !active) return;
      x = xs, x_stride = K;
    }
    for (int c0 = lane; (!PICK || active) && c0 < chunks; c0 += 32 * U) {
      if (c0 != lane) {
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (c0 + u * 32 < chunks) wv[u] = load_stream(wp + c0 + u * 32, policy);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + u * 32;
        if (c >= chunks) break;
        const __half2* w2 = reinterpret_cast<const __half2*>(&wv[u]);
#pragma unroll
        for (int mi = 0; mi < M; ++mi) {
          uint4 xv = *reinterpret_cast<const uint4*>(x + (size_t)mi * x_stride + c * 8);
          const __half2* x2 = reinterpret_cast<const __half2*>(&xv);
          float s = 0.f;
#pragma unroll
          for (int t = 0; t < 4; ++t) {
            float2 a = __half22float2(w2[t]), b = __half22float2(x2[t]);
            s = fmaf(a.x, b.x, fmaf(a.y, b.y, s));
          }
          acc[mi] += s;
        }
      }
    }
  } else {
    wait_for_previous_kernel();
    for (int k = lane; k < K; k += 32) {
      const float wv = __half2float(wr[k]);
      const __half* xk = x + k;
#pragma unroll
      for (int mi = 0; mi < M; ++mi) {
        acc[mi] = fmaf(wv, __half2float(*xk), acc[mi]);
        xk += x_stride;
      }
    }
  }
#pragma unroll
  for (int mi = 0; mi < M; ++mi) {
    float v = acc[mi];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0 && (!PICK || active)) {
      float* dst = y + (size_t)mi * y_stride + n;
      v += bias ? __half2float(bias[n]) : 0.f;
      *dst = NORM ? v : *dst + v;
    }
    if (PICK) pick_greedy(v, n, active, pick);  // (lane 0's v: the bias added)
  }
}

// The decode lm_head (one row, the final RMSNorm folded in) in one wave: as many blocks as the GPU holds at once, each
// staging x once, its warps walking columns n, n + warps, ... of the grid. A warp requests its next batch of weights
// (its column's next, or its next column's first) before it multiplies the current one, so its loads stay in flight
// across columns, where gemv_f16_kernel's warp (one column each, ~4 waves of 4,000 blocks on the 7B) idles on each
// new block's staging with one batch in flight (82-83% of the DRAM's peak in ncu, session 46). The same dot
// products in the same order (each lane's chunks ascending, the same shuffles): the same logits bit for bit.
// 5 blocks an SM: 48 registers without spills (60 unbounded: 4 blocks; 6 blocks spill).
template <bool PICK>
__global__ void __launch_bounds__(kF16Warps * 32, 5)
    lm_head_wave_kernel(const __half* __restrict__ W, const __half* __restrict__ bias, int K, int N,
                        float* __restrict__ y, F16NormInput norm_in, bool evict_first, GreedyPick pick) {
  extern __shared__ __align__(16) __half xs[];  // [K]
  constexpr int U = 4;                           // a batch: 32 U chunks of 8 values of one column
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, stride = gridDim.x * kF16Warps;
  const int chunks = K / 8, batches = (chunks + 32 * U - 1) / (32 * U);
  const uint64_t policy = weight_stream_policy(evict_first);
  const auto load = [&](int n, int b, uint4(&wv)[U]) {
    const uint4* wp = reinterpret_cast<const uint4*>(W + (size_t)n * K);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = b * 32 * U + lane + u * 32;
      if (n < N && c < chunks) wv[u] = load_stream(wp + c, policy);
    }
  };
  int n = blockIdx.x * kF16Warps + warp;
  uint4 cur[U];
  load(n, 0, cur);  // the first batch streams in while the previous kernel drains
  wait_for_previous_kernel();
  stage_rmsnorm<1>(norm_in, K, xs);
  __syncthreads();
  float best = -INFINITY;  // PICK: the best of this warp's columns (lane 0's)
  int best_n = kNoPick;
  for (; n < N; n += stride) {  // warp-uniform
    float acc = 0.f;
    for (int b = 0; b < batches; ++b) {
      uint4 next[U];
      if (b + 1 < batches) load(n, b + 1, next);
      else load(n + stride, 0, next);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = b * 32 * U + lane + u * 32;
        if (c >= chunks) break;
        const __half2* w2 = reinterpret_cast<const __half2*>(&cur[u]);
        const uint4 xv = *reinterpret_cast<const uint4*>(xs + c * 8);
        const __half2* x2 = reinterpret_cast<const __half2*>(&xv);
        float s = 0.f;
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          const float2 a = __half22float2(w2[t]), xf = __half22float2(x2[t]);
          s = fmaf(a.x, xf.x, fmaf(a.y, xf.y, s));
        }
        acc += s;
      }
#pragma unroll
      for (int u = 0; u < U; ++u) cur[u] = next[u];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) {
      const float v = acc + (bias ? __half2float(bias[n]) : 0.f);
      y[n] = v;
      if (PICK && greedy_takes(v, n, best, best_n)) best = v, best_n = n;
    }
  }
  if (PICK) pick_greedy(best, best_n, best_n != kNoPick, pick);
}

template <bool PICK>
void launch_lm_head_wave(const __half* W, const __half* bias, int K, int N, const F16NormInput& in, float* y,
                         cudaStream_t s, const GreedyPick& pick) {
  const size_t smem = (size_t)K * sizeof(__half);
  const int threads = kF16Warps * 32;
  const int blocks = std::min((N + kF16Warps - 1) / kF16Warps,
                              resident_blocks(reinterpret_cast<const void*>(lm_head_wave_kernel<PICK>), threads, smem));
  launch(lm_head_wave_kernel<PICK>, std::max(1, blocks), threads, smem, s, W, bias, K, N, y, in,
         weight_evict_first_flag(), pick);
  XL_CUDA_LAUNCH_CHECK();
}

template <int M>
void launch_gemv_f16(const __half* W, const __half* bias, int K, int N, const __half* x, int x_stride, float* y,
                     int y_stride, cudaStream_t s) {
  const bool vec = (K % 8 == 0) && (x_stride % 8 == 0) && aligned16(W) && aligned16(x);
  dim3 grid((N + kF16Warps - 1) / kF16Warps);
  const bool evict_first = weight_evict_first_flag();
  if (vec)
    launch(gemv_f16_kernel<M, true, false>, grid, kF16Warps * 32, 0, s, W, bias, K, N, x, x_stride, y, y_stride,
           F16NormInput{}, evict_first, GreedyPick{});
  else
    launch(gemv_f16_kernel<M, false, false>, grid, kF16Warps * 32, 0, s, W, bias, K, N, x, x_stride, y, y_stride,
           F16NormInput{}, evict_first, GreedyPick{});
  XL_CUDA_LAUNCH_CHECK();
}

template <int M>
void launch_gemv_f16_rmsnorm(const __half* W, const __half* bias, int K, int N, const F16NormInput& in, float* y,
                             int y_stride, cudaStream_t s, const GreedyPick* pick = nullptr) {
  dim3 grid((N + kF16Warps - 1) / kF16Warps);
  const size_t smem = (size_t)M * K * sizeof(__half);
  if constexpr (M == 1) {
    if (lm_head_wave_flag()) {
      if (pick) launch_lm_head_wave<true>(W, bias, K, N, in, y, s, *pick);
      else launch_lm_head_wave<false>(W, bias, K, N, in, y, s, GreedyPick{});
      return;
    }
    if (pick) {
      launch(gemv_f16_kernel<1, true, true, true>, grid, kF16Warps * 32, smem, s, W, bias, K, N,
             static_cast<const __half*>(nullptr), 0, y, y_stride, in, weight_evict_first_flag(), *pick);
      XL_CUDA_LAUNCH_CHECK();
      return;
    }
  }
  launch(gemv_f16_kernel<M, true, true>, grid, kF16Warps * 32, smem, s, W, bias, K, N,
         static_cast<const __half*>(nullptr), 0, y, y_stride, in, weight_evict_first_flag(), GreedyPick{});
  XL_CUDA_LAUNCH_CHECK();
}

// ---- dequantization for the prompt path ----
__global__ void dequant_q4_kernel(QWeight w, int n0, int n1, __half* __restrict__ out) {
  wait_for_previous_kernel();
  const int nc = n1 - n0;
  const size_t total = (size_t)(w.K / 8) * nc;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / nc), cl = (int)(i % nc), n = n0 + cl;
    const uint32_t word = w.qweight[(size_t)r * w.N + n];
    const int g = (r * 8) / w.group_size;
    const float sc = __half2float(w.scales[(size_t)g * w.N + n]);
    const int z = w.zeros ? w.zeros[(size_t)g * w.N + n] : w.sym_zero;
#pragma unroll
    for (int j = 0; j < 8; ++j)
      out[(size_t)(r * 8 + j) * nc + cl] = __float2half(sc * (float)((int)((word >> (4 * j)) & 15) - z));
  }
}

// The same, 8 columns per thread (N and n0, n1 multiples of 8): 16-byte loads and stores. The values come from
// fp16 magic numbers (dequant_column_pair) and one __hmul2 by the scale: (q - zero) is exact in fp16 and the product
// rounds once, so every half equals __float2half(scale * (q - zero)) bit for bit, without two conversions per value
// (both versions run near the memory's speed; this one 2-3% faster on the H200, docs/PERF-NOTES.md session 22).
__global__ void dequant_q4_x8_kernel(QWeight w, int n0, int n1, __half* __restrict__ out) {
  wait_for_previous_kernel();
  const int nc = n1 - n0, c8 = nc / 8;
  const unsigned total = (unsigned)(w.K / 8) * (unsigned)c8;  // < 2^31: dequant_q4 sends larger ranges elsewhere
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int r = (int)(i / c8), cl = (int)(i - (unsigned)r * c8) * 8, n = n0 + cl;
    const uint4* qp = reinterpret_cast<const uint4*>(w.qweight + (size_t)r * w.N + n);
    const uint4 qa = qp[0], qb = qp[1];
    const uint32_t words[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
    const int g = (r * 8) / w.group_size;
    const uint4 sraw = *reinterpret_cast<const uint4*>(w.scales + (size_t)g * w.N + n);
    const __half2* s2 = reinterpret_cast<const __half2*>(&sraw);
    uint2 zraw = make_uint2(0, 0);
    if (w.zeros) zraw = *reinterpret_cast<const uint2*>(w.zeros + (size_t)g * w.N + n);
    const uint8_t* zb = reinterpret_cast<const uint8_t*>(&zraw);
    uint4 o[8];  // output rows r*8 .. r*8+7, 8 columns each
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      const int za = w.zeros ? zb[2 * p] : w.sym_zero, zc = w.zeros ? zb[2 * p + 1] : w.sym_zero;
      const __half2 z1024 = __halves2half2(__ushort_as_half((uint16_t)(0x6400 | za)),
                                           __ushort_as_half((uint16_t)(0x6400 | zc)));
      const __half2 zneg64 = __floats2half2_rn(-(64.f + (float)za), -(64.f + (float)zc));
      __half2 d[8];
      dequant_column_pair(words[2 * p], words[2 * p + 1], z1024, zneg64, d);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const __half2 v = __hmul2(d[j], s2[p]);
        reinterpret_cast<uint32_t*>(&o[j])[p] = *reinterpret_cast<const uint32_t*>(&v);
      }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) *reinterpret_cast<uint4*>(out + (size_t)(r * 8 + j) * nc + cl) = o[j];
  }
}

__global__ void gather_columns_kernel(const __half* __restrict__ x, int m, int K, int x_stride,
                                      const int* __restrict__ perm, __half* __restrict__ out) {
  wait_for_previous_kernel();
  const size_t total = (size_t)m * K;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / K), k = (int)(i % K);
    out[i] = x[(size_t)r * x_stride + perm[k]];
  }
}

// The same for rows whose K values fit in shared memory: a block reads each of its rows with 16-byte loads, then
// gathers from shared memory, so the permutation's random reads never reach L2 (one request per value there: an
// act-order 7B's prompt chunks ran ~14% slower than without act-order on the H200; docs/PERF-NOTES.md, session 30).
// K, x_stride multiples of 8, x and out 16-byte aligned (gather_columns checks).
constexpr int kGatherThreads = 256;
__global__ void __launch_bounds__(kGatherThreads)
    gather_columns_smem_kernel(const __half* __restrict__ x, int m, int K, int x_stride, const int* __restrict__ perm,
                               __half* __restrict__ out) {
  extern __shared__ uint4 row_raw[];
  const __half* row = reinterpret_cast<const __half*>(row_raw);
  wait_for_previous_kernel();
  for (int r = blockIdx.x; r < m; r += gridDim.x) {
    const uint4* src = reinterpret_cast<const uint4*>(x + (size_t)r * x_stride);
    for (int i = threadIdx.x; i < K / 8; i += kGatherThreads) row_raw[i] = src[i];
    __syncthreads();
    uint4* dst = reinterpret_cast<uint4*>(out + (size_t)r * K);
    for (int i = threadIdx.x; i < K / 8; i += kGatherThreads) {
      const int4 p0 = __ldg(reinterpret_cast<const int4*>(perm) + 2 * i);
      const int4 p1 = __ldg(reinterpret_cast<const int4*>(perm) + 2 * i + 1);
      uint4 o;
      __half* oh = reinterpret_cast<__half*>(&o);
      oh[0] = row[p0.x], oh[1] = row[p0.y], oh[2] = row[p0.z], oh[3] = row[p0.w];
      oh[4] = row[p1.x], oh[5] = row[p1.y], oh[6] = row[p1.z], oh[7] = row[p1.w];
      dst[i] = o;
    }
    __syncthreads();  // the row is read before the next one overwrites it
  }
}

template <class T>
__global__ void add_bias_kernel(T* y, int m, int N, int y_stride, const __half* bias) {
  wait_for_previous_kernel();
  const size_t total = (size_t)m * N;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    T& v = y[(i / N) * y_stride + i % N];
    v = (T)((float)v + __half2float(bias[i % N]));
  }
}

// How the WMMA GEMM leaves its result: fp32 outputs accumulate (the caller zeroes them for a plain product),
// fp16 outputs (prompt projections read once) are overwritten.
__device__ __forceinline__ void store_result(float& c, float v) { c += v; }
__device__ __forceinline__ void store_result(__half& c, float v) { c = __float2half(v); }

// ---- WMMA GEMM: 64x64 tile, K step 32, 4 warps of 32x32 ----
constexpr int BM = 64, BN = 64, BK = 32;
template <class T>
__global__ void __launch_bounds__(128) gemm_wmma_kernel(const __half* __restrict__ A, int lda,
                                                        const __half* __restrict__ B, int ldb, bool b_kn,
                                                        T* __restrict__ C, int ldc, int m, int N, int K) {
  wait_for_previous_kernel();
  using namespace nvcuda;
  __shared__ __align__(128) __half As[BM][BK + 8];
  __shared__ __align__(128) __half Bs[BK][BN + 8];
  __shared__ __align__(128) float Cs[BM][BN + 4];
  const int tid = threadIdx.x, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  const __half zero = __float2half(0.f);
  for (int k0 = 0; k0 < K; k0 += BK) {
    for (int i = tid; i < BM * BK; i += 128) {
      const int r = i / BK, k = i % BK, gr = row0 + r, gk = k0 + k;
      As[r][k] = (gr < m && gk < K) ? A[(size_t)gr * lda + gk] : zero;
    }
    if (b_kn) {
      for (int i = tid; i < BK * BN; i += 128) {
        const int k = i / BN, n = i % BN, gk = k0 + k, gn = col0 + n;
        Bs[k][n] = (gk < K && gn < N) ? B[(size_t)gk * ldb + gn] : zero;
      }
    } else {
      for (int i = tid; i < BK * BN; i += 128) {
        const int n = i / BK, k = i % BK, gk = k0 + k, gn = col0 + n;
        Bs[k][n] = (gk < K && gn < N) ? B[(size_t)gn * ldb + gk] : zero;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[wm * 32 + i * 16][kk], BK + 8);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[kk][wn * 32 + j * 16], BN + 8);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], BN + 4, wmma::mem_row_major);
  __syncthreads();
  for (int i = tid; i < BM * BN; i += 128) {
    const int r = i / BN, n = i % BN, gr = row0 + r, gn = col0 + n;
    if (gr < m && gn < N) store_result(C[(size_t)gr * ldc + gn], Cs[r][n]);
  }
}

int grid_for(size_t total, int threads) {
  return (int)std::min<size_t>((total + threads - 1) / threads, 65535);
}

}  // namespace

bool& lm_head_wave_flag() {
  static bool on = env_switch_on("XLLAMA_LM_HEAD_WAVE");
  return on;
}

void gemv_f16(const __half* W, const __half* bias, int K, int N, const __half* x, int m, int x_stride, float* y,
              int y_stride, cudaStream_t s) {
  for (int r = 0; r < m; r += 4) {
    const int mm = std::min(4, m - r);
    const __half* xr = x + (size_t)r * x_stride;
    float* yr = y + (size_t)r * y_stride;
    switch (mm) {
      case 1: launch_gemv_f16<1>(W, bias, K, N, xr, x_stride, yr, y_stride, s); break;
      case 2: launch_gemv_f16<2>(W, bias, K, N, xr, x_stride, yr, y_stride, s); break;
      case 3: launch_gemv_f16<3>(W, bias, K, N, xr, x_stride, yr, y_stride, s); break;
      default: launch_gemv_f16<4>(W, bias, K, N, xr, x_stride, yr, y_stride, s); break;
    }
  }
}

bool gemv_f16_rmsnorm_supported(const __half* W, int K, const float* h, int h_stride) {
  return K % 8 == 0 && (size_t)K * sizeof(__half) <= kGemvF16NormSmem && h_stride % 4 == 0 && aligned16(W) &&
         aligned16(h);
}

void gemv_f16_rmsnorm(const __half* W, const __half* bias, int K, int N, const float* h, int h_stride,
                      const float* sum_sq, const __half* norm, float eps, int m, float* y, int y_stride,
                      cudaStream_t s, const GreedyPick* pick) {
  if (!gemv_f16_rmsnorm_supported(W, K, h, h_stride) || (reinterpret_cast<uintptr_t>(norm) & 7) != 0)
    throw std::invalid_argument("gemv_f16_rmsnorm: unsupported shape or alignment");
  if (pick && (m != 1 || !pick->best || !pick->done || !pick->out || !pick->tokens != !pick->pos))
    throw std::invalid_argument("gemv_f16_rmsnorm: a pick is of one row, with its state, output and whole feed");
  // Rows per launch: up to 4, as many as fit the staging area.
  const int per = std::min<int>(4, kGemvF16NormSmem / ((size_t)K * sizeof(__half)));
  for (int r = 0; r < m; r += per) {
    const int mm = std::min(per, m - r);
    const F16NormInput in{h + (size_t)r * h_stride, h_stride, sum_sq + r, norm, eps};
    float* yr = y + (size_t)r * y_stride;
    switch (mm) {
      case 1: launch_gemv_f16_rmsnorm<1>(W, bias, K, N, in, yr, y_stride, s, pick); break;  // (a pick: m is 1)
      case 2: launch_gemv_f16_rmsnorm<2>(W, bias, K, N, in, yr, y_stride, s); break;
      case 3: launch_gemv_f16_rmsnorm<3>(W, bias, K, N, in, yr, y_stride, s); break;
      default: launch_gemv_f16_rmsnorm<4>(W, bias, K, N, in, yr, y_stride, s); break;
    }
  }
}

void dequant_q4(const QWeight& w, int n0, int n1, __half* out, cudaStream_t s, bool beside) {
  // x8 counts its items in 32 bits; a larger range (none in a real model) takes the generic kernel.
  const bool x8 = w.N % 8 == 0 && n0 % 8 == 0 && n1 % 8 == 0 && (size_t)(w.K / 8) * ((n1 - n0) / 8) < (1u << 31);
  const size_t total = (size_t)(w.K / 8) * (x8 ? (n1 - n0) / 8 : n1 - n0);
  void (*kernel)(QWeight, int, int, __half*) = x8 ? dequant_q4_x8_kernel : dequant_q4_kernel;
  // Beside: a plain launch, not launch(): with programmatic serialization the next dequantization's blocks would
  // take SM slots while they wait for this one, slots a GEMM's blocks need.
  if (beside)
    kernel<<<grid_for(total, 256), 256, 0, s>>>(w, n0, n1, out);
  else
    launch(kernel, grid_for(total, 256), 256, 0, s, w, n0, n1, out);
  XL_CUDA_LAUNCH_CHECK();
}

void gather_columns(const __half* x, int m, int K, int x_stride, const int* perm, __half* out, cudaStream_t s) {
  const size_t row_bytes = (size_t)K * sizeof(__half);
  if (K % 8 == 0 && x_stride % 8 == 0 && aligned16(x) && aligned16(out) && aligned16(perm) && row_bytes <= 48 * 1024) {
    launch(gather_columns_smem_kernel, std::min(m, 4096), kGatherThreads, row_bytes, s, x, m, K, x_stride, perm, out);
    XL_CUDA_LAUNCH_CHECK();
    return;
  }
  launch(gather_columns_kernel, grid_for((size_t)m * K, 256), 256, 0, s, x, m, K, x_stride, perm, out);
  XL_CUDA_LAUNCH_CHECK();
}

template <class T>
void add_bias(T* y, int m, int N, int y_stride, const __half* bias, cudaStream_t s) {
  launch(add_bias_kernel<T>, grid_for((size_t)m * N, 256), 256, 0, s, y, m, N, y_stride, bias);
  XL_CUDA_LAUNCH_CHECK();
}
template void add_bias(float*, int, int, int, const __half*, cudaStream_t);
template void add_bias(__half*, int, int, int, const __half*, cudaStream_t);

template <class T>
void gemm_f16_wmma(const __half* A, int lda, const __half* B, int ldb, bool b_kn, T* C, int ldc, int m, int N, int K,
                   cudaStream_t s) {
  dim3 grid((N + BN - 1) / BN, (m + BM - 1) / BM);
  launch(gemm_wmma_kernel<T>, grid, 128, 0, s, A, lda, B, ldb, b_kn, C, ldc, m, N, K);
  XL_CUDA_LAUNCH_CHECK();
}
template void gemm_f16_wmma(const __half*, int, const __half*, int, bool, float*, int, int, int, int, cudaStream_t);
template void gemm_f16_wmma(const __half*, int, const __half*, int, bool, __half*, int, int, int, int, cudaStream_t);

}  // namespace xllama::cuda
