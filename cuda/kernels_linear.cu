// Linear-layer kernels: fused 4-bit GPTQ GEMV (decode), dense fp16 GEMV (lm_head, dense layers),
// dequantization + tensor-core GEMM (prompt chunks).
#include <mma.h>

#include <algorithm>

#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace xllama::cuda {

namespace {

__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  // Weights are read exactly once per token: don't let them evict activations from L1.
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;  // (a & b) | c
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// The 8 nibbles of `word` as four half2 pairs (rows s and s+4, s = 0..3) of exact (q - zero) values:
// (nibble | 0x6400) is the fp16 number 1024 + q, and subtracting 1024 + zero is exact.
__device__ __forceinline__ void dequant_word(uint32_t word, __half2 z1024, __half2 d[4]) {
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    uint32_t h = lop3_and_or(word >> (4 * s), 0x000f000fu, 0x64006400u);
    d[s] = __hsub2(*reinterpret_cast<__half2*>(&h), z1024);
  }
}

constexpr int kGemvWarps = 4;
// x is staged as x/16 so the fp16 sum of four (q - zero) * x products (|q - zero| <= 16) can't overflow
// for |x| < 16k (down_proj inputs can reach thousands); the scale folds 16 back in fp32.
constexpr float kXScale = 0.0625f, kXUnscale = 16.f;
constexpr int kGemvCols = 128;       // 32 lanes x 4 columns (one 16-byte load per packed row)
constexpr int kGemvUnroll = 8;       // packed rows loaded before any is used
constexpr int kGemvMaxBlockRows = 256;  // packed rows per block (bounds shared memory for x)

// Block (x: 128 columns, y: a slice of packed rows). x for the slice is staged in shared memory,
// read through the act-order permutation and stored as the half2 pairs dequant_word produces.
// Each lane accumulates 4 columns x M rows in fp32 (half2 products summed over one word, 8 weights),
// the warps of a block are reduced in shared memory and slices are summed with atomicAdd into y.
// SILU: x is the fp32 gate/up pair [m, 2K] and the input is silu(gate) * up (the MLP's down projection).
template <int M, bool SYM, bool SILU>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_q4_kernel(QWeight w, const void* __restrict__ xv, int x_stride, float* __restrict__ y, int y_stride,
                   int block_rows) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half2* xs = reinterpret_cast<__half2*>(smem_raw);  // [M][block_rows * 4]
  const int packed_rows = w.K / 8;
  const int r0 = blockIdx.y * block_rows;
  const int nr = min(block_rows, packed_rows - r0);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int c = blockIdx.x * kGemvCols + lane * 4;
  const int per_warp = (nr + kGemvWarps - 1) / kGemvWarps;
  const int wr0 = warp * per_warp, wr1 = min(nr, wr0 + per_warp);
  const uint4* qp = reinterpret_cast<const uint4*>(w.qweight + (size_t)(r0 + wr0) * w.N + c);
  const size_t row_step = w.N / 4;  // in uint4
  // Weights never depend on earlier kernels: the first batch streams in while the previous kernel drains.
  uint4 q[kGemvUnroll];
  if (c < w.N) {
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u)
      if (wr0 + u < wr1) q[u] = load_stream(qp + (size_t)u * row_step);
  }
  wait_for_previous_kernel();
  for (int i = tid; i < M * nr * 4; i += blockDim.x) {
    int mi = i / (nr * 4), rem = i - mi * nr * 4, rr = rem >> 2, s = rem & 3;
    int k0 = (r0 + rr) * 8 + s, k1 = k0 + 4;
    if (w.perm) {
      k0 = w.perm[k0];
      k1 = w.perm[k1];
    }
    if (SILU) {
      const float* gr = static_cast<const float*>(xv) + (size_t)mi * x_stride;
      const float g0 = gr[k0], g1 = gr[k1];
      // silu_mul rounds to fp16 first; the 1/16 below is exact except for tiny (subnormal) values
      const float a0 = __half2float(__float2half(g0 / (1.f + __expf(-g0)) * gr[w.K + k0]));
      const float a1 = __half2float(__float2half(g1 / (1.f + __expf(-g1)) * gr[w.K + k1]));
      xs[mi * block_rows * 4 + rem] = __floats2half2_rn(a0 * kXScale, a1 * kXScale);
    } else {
      const __half* xr = static_cast<const __half*>(xv) + (size_t)mi * x_stride;
      xs[mi * block_rows * 4 + rem] =
          __floats2half2_rn(__half2float(xr[k0]) * kXScale, __half2float(xr[k1]) * kXScale);
    }
  }
  __syncthreads();

  float acc[M][4];
#pragma unroll
  for (int mi = 0; mi < M; ++mi)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[mi][j] = 0.f;

  if (c < w.N) {
    int cur_g = -1;
    float sc[4];
    __half2 z2[4];
    for (int rr = wr0; rr < wr1; rr += kGemvUnroll) {
      if (rr != wr0) {
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u)
          if (rr + u < wr1) q[u] = load_stream(qp + (size_t)(rr - wr0 + u) * row_step);
      }
#pragma unroll
      for (int u = 0; u < kGemvUnroll; ++u) {
        if (rr + u >= wr1) break;
        const int g = ((r0 + rr + u) * 8) / w.group_size;
        if (g != cur_g) {
          cur_g = g;
          uint2 sraw = *reinterpret_cast<const uint2*>(w.scales + (size_t)g * w.N + c);
          const __half2* sh = reinterpret_cast<const __half2*>(&sraw);
          float2 s01 = __half22float2(sh[0]), s23 = __half22float2(sh[1]);
          sc[0] = s01.x * kXUnscale, sc[1] = s01.y * kXUnscale, sc[2] = s23.x * kXUnscale, sc[3] = s23.y * kXUnscale;
          if (SYM) {
            uint16_t zb = 0x6400 | w.sym_zero;
#pragma unroll
            for (int j = 0; j < 4; ++j) z2[j] = __halves2half2(__ushort_as_half(zb), __ushort_as_half(zb));
          } else {
            uint32_t zw = *reinterpret_cast<const uint32_t*>(w.zeros + (size_t)g * w.N + c);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              uint16_t zb = 0x6400 | ((zw >> (8 * j)) & 0xff);
              z2[j] = __halves2half2(__ushort_as_half(zb), __ushort_as_half(zb));
            }
          }
        }
        const uint32_t words[4] = {q[u].x, q[u].y, q[u].z, q[u].w};
        const int xo = (rr + u) * 4;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          __half2 d[4];
          dequant_word(words[j], z2[j], d);
#pragma unroll
          for (int mi = 0; mi < M; ++mi) {
            const __half2* xm = xs + mi * block_rows * 4 + xo;
            __half2 p = __hmul2(d[0], xm[0]);
            p = __hfma2(d[1], xm[1], p);
            p = __hfma2(d[2], xm[2], p);
            p = __hfma2(d[3], xm[3], p);
            float2 f = __half22float2(p);
            acc[mi][j] = fmaf(f.x + f.y, sc[j], acc[mi][j]);
          }
        }
      }
    }
  }
  __syncthreads();  // xs is reused for the reduction
  float* red = reinterpret_cast<float*>(smem_raw);  // [warps][M][128]
#pragma unroll
  for (int mi = 0; mi < M; ++mi)
#pragma unroll
    for (int j = 0; j < 4; ++j) red[(warp * M + mi) * kGemvCols + lane * 4 + j] = acc[mi][j];
  __syncthreads();
  for (int i = tid; i < M * kGemvCols; i += blockDim.x) {
    const int mi = i / kGemvCols, col = i % kGemvCols, n = blockIdx.x * kGemvCols + col;
    if (n >= w.N) continue;
    float v = 0.f;
#pragma unroll
    for (int wi = 0; wi < kGemvWarps; ++wi) v += red[(wi * M + mi) * kGemvCols + col];
    if (w.bias && blockIdx.y == 0) v += __half2float(w.bias[n]);
    atomicAdd(y + (size_t)mi * y_stride + n, v);
  }
}

int sm_count() {
  int dev = 0, sms = 0;
  XL_CUDA_CHECK(cudaGetDevice(&dev));
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

template <int M, bool SYM, bool SILU>
void launch_gemv_q4(const QWeight& w, const void* x, int x_stride, float* y, int y_stride, cudaStream_t s) {
  const int sms = sm_count();
  const int packed_rows = w.K / 8;
  const int col_blocks = (w.N + kGemvCols - 1) / kGemvCols;
  // Enough blocks for ~4 per SM, and at least kGemvWarps * 4 packed rows per block.
  int splits = std::max(1, (4 * sms + col_blocks - 1) / col_blocks);
  splits = std::min(splits, std::max(1, packed_rows / (kGemvWarps * 4)));
  splits = std::max(splits, (packed_rows + kGemvMaxBlockRows - 1) / kGemvMaxBlockRows);
  int block_rows = (packed_rows + splits - 1) / splits;
  splits = (packed_rows + block_rows - 1) / block_rows;
  size_t smem = std::max<size_t>((size_t)M * block_rows * 4 * sizeof(__half2),
                                 (size_t)kGemvWarps * M * kGemvCols * sizeof(float));
  dim3 grid(col_blocks, splits);
  launch(gemv_q4_kernel<M, SYM, SILU>, grid, kGemvWarps * 32, smem, s, w, x, x_stride, y, y_stride, block_rows);
  XL_CUDA_LAUNCH_CHECK();
}

template <bool SYM, bool SILU>
void dispatch_gemv_q4(const QWeight& w, const void* x, int m, int x_stride, float* y, int y_stride,
                      cudaStream_t s) {
  switch (m) {
    case 1: return launch_gemv_q4<1, SYM, SILU>(w, x, x_stride, y, y_stride, s);
    case 2: return launch_gemv_q4<2, SYM, SILU>(w, x, x_stride, y, y_stride, s);
    case 3: return launch_gemv_q4<3, SYM, SILU>(w, x, x_stride, y, y_stride, s);
    case 4: return launch_gemv_q4<4, SYM, SILU>(w, x, x_stride, y, y_stride, s);
    case 5: return launch_gemv_q4<5, SYM, SILU>(w, x, x_stride, y, y_stride, s);
    case 6: return launch_gemv_q4<6, SYM, SILU>(w, x, x_stride, y, y_stride, s);
    case 7: return launch_gemv_q4<7, SYM, SILU>(w, x, x_stride, y, y_stride, s);
    default: return launch_gemv_q4<8, SYM, SILU>(w, x, x_stride, y, y_stride, s);
  }
}

// ---- dense fp16 GEMV: one warp per output column, 16-byte loads along K ----
constexpr int kF16Warps = 8;

template <int M, bool VEC>
__global__ void __launch_bounds__(kF16Warps * 32)
    gemv_f16_kernel(const __half* __restrict__ W, const __half* __restrict__ bias, int K, int N,
                    const __half* __restrict__ x, int x_stride, float* __restrict__ y, int y_stride) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kF16Warps + (threadIdx.x >> 5);
  if (n >= N) return;
  float acc[M];
#pragma unroll
  for (int mi = 0; mi < M; ++mi) acc[mi] = 0.f;
  const __half* wr = W + (size_t)n * K;
  if (VEC) {
    const int chunks = K / 8;
    const uint4* wp = reinterpret_cast<const uint4*>(wr);
    constexpr int U = 4;
    uint4 wv[U];
#pragma unroll
    for (int u = 0; u < U; ++u)  // the first batch streams in while the previous kernel drains
      if (lane + u * 32 < chunks) wv[u] = load_stream(wp + lane + u * 32);
    wait_for_previous_kernel();
    for (int c0 = lane; c0 < chunks; c0 += 32 * U) {
      if (c0 != lane) {
#pragma unroll
        for (int u = 0; u < U; ++u)
          if (c0 + u * 32 < chunks) wv[u] = load_stream(wp + c0 + u * 32);
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
    if (lane == 0) y[(size_t)mi * y_stride + n] += v + (bias ? __half2float(bias[n]) : 0.f);
  }
}

template <int M>
void launch_gemv_f16(const __half* W, const __half* bias, int K, int N, const __half* x, int x_stride, float* y,
                     int y_stride, cudaStream_t s) {
  const bool vec = (K % 8 == 0) && (x_stride % 8 == 0) && ((reinterpret_cast<uintptr_t>(W) & 15) == 0) &&
                   ((reinterpret_cast<uintptr_t>(x) & 15) == 0);
  dim3 grid((N + kF16Warps - 1) / kF16Warps);
  if (vec)
    launch(gemv_f16_kernel<M, true>, grid, kF16Warps * 32, 0, s, W, bias, K, N, x, x_stride, y, y_stride);
  else
    launch(gemv_f16_kernel<M, false>, grid, kF16Warps * 32, 0, s, W, bias, K, N, x, x_stride, y, y_stride);
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

__global__ void gather_columns_kernel(const __half* __restrict__ x, int m, int K, int x_stride,
                                      const int* __restrict__ perm, __half* __restrict__ out) {
  wait_for_previous_kernel();
  const size_t total = (size_t)m * K;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / K), k = (int)(i % K);
    out[i] = x[(size_t)r * x_stride + perm[k]];
  }
}

__global__ void add_bias_kernel(float* y, int m, int N, int y_stride, const __half* bias) {
  wait_for_previous_kernel();
  const size_t total = (size_t)m * N;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
    y[(i / N) * y_stride + i % N] += __half2float(bias[i % N]);
}

// ---- WMMA GEMM: 64x64 tile, K step 32, 4 warps of 32x32 ----
constexpr int BM = 64, BN = 64, BK = 32;
__global__ void __launch_bounds__(128) gemm_wmma_kernel(const __half* __restrict__ A, int lda,
                                                        const __half* __restrict__ B, int ldb, bool b_kn,
                                                        float* __restrict__ C, int ldc, int m, int N, int K) {
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
    if (gr < m && gn < N) C[(size_t)gr * ldc + gn] += Cs[r][n];
  }
}

int grid_for(size_t total, int threads) {
  return (int)std::min<size_t>((total + threads - 1) / threads, 65535);
}

}  // namespace

void gemv_q4(const QWeight& w, const __half* x, int m, int x_stride, float* y, int y_stride, cudaStream_t s) {
  for (int r = 0; r < m; r += kGemvMaxRows) {
    const int mm = std::min(kGemvMaxRows, m - r);
    const __half* xr = x + (size_t)r * x_stride;
    float* yr = y + (size_t)r * y_stride;
    if (w.zeros)
      dispatch_gemv_q4<false, false>(w, xr, mm, x_stride, yr, y_stride, s);
    else
      dispatch_gemv_q4<true, false>(w, xr, mm, x_stride, yr, y_stride, s);
  }
}

void gemv_q4_silu(const QWeight& w, const float* gu, int m, float* y, int y_stride, cudaStream_t s) {
  const int x_stride = 2 * w.K;
  for (int r = 0; r < m; r += kGemvMaxRows) {
    const int mm = std::min(kGemvMaxRows, m - r);
    const float* xr = gu + (size_t)r * x_stride;
    float* yr = y + (size_t)r * y_stride;
    if (w.zeros)
      dispatch_gemv_q4<false, true>(w, xr, mm, x_stride, yr, y_stride, s);
    else
      dispatch_gemv_q4<true, true>(w, xr, mm, x_stride, yr, y_stride, s);
  }
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

void dequant_q4(const QWeight& w, int n0, int n1, __half* out, cudaStream_t s) {
  const size_t total = (size_t)(w.K / 8) * (n1 - n0);
  launch(dequant_q4_kernel, grid_for(total, 256), 256, 0, s, w, n0, n1, out);
  XL_CUDA_LAUNCH_CHECK();
}

void gather_columns(const __half* x, int m, int K, int x_stride, const int* perm, __half* out, cudaStream_t s) {
  launch(gather_columns_kernel, grid_for((size_t)m * K, 256), 256, 0, s, x, m, K, x_stride, perm, out);
  XL_CUDA_LAUNCH_CHECK();
}

void add_bias(float* y, int m, int N, int y_stride, const __half* bias, cudaStream_t s) {
  launch(add_bias_kernel, grid_for((size_t)m * N, 256), 256, 0, s, y, m, N, y_stride, bias);
  XL_CUDA_LAUNCH_CHECK();
}

void gemm_f16_wmma(const __half* A, int lda, const __half* B, int ldb, bool b_kn, float* C, int ldc, int m, int N,
                   int K, cudaStream_t s) {
  dim3 grid((N + BN - 1) / BN, (m + BM - 1) / BM);
  launch(gemm_wmma_kernel, grid, 128, 0, s, A, lda, B, ldb, b_kn, C, ldc, m, N, K);
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
