// Causal attention for prompt chunks on the tensor cores (flash-attention style, mma.sync m16n8k16 with fp16
// inputs and fp32 accumulation). A block of 4 warps takes 64 query rows of one head; each warp owns 16 rows
// and walks 64-key tiles of K and V, with the online softmax in registers. The tiles go through a two-stage
// shared-memory ring filled with cp.async: the next tile streams in while the current one is multiplied
// (at 170-220 registers a thread only two blocks fit on an SM, too few to hide synchronous loads). Bounding the
// registers for three blocks spilled and measured no better on the H200 (docs/PERF-NOTES.md, session 8).
#include <cmath>

#include "cuda/cp_async.cuh"
#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/mma_m16n8k16.cuh"

namespace xllama::cuda {

namespace {

constexpr int kRowsPerBlock = 64, kKeysPerTile = 64, kThreads = 128, kStages = 2;

// Four 8x8 fp16 matrices from shared memory (lane i gives the address of row i % 8 of matrix i / 8); .trans
// hands each lane a column pair instead of a row pair.
__device__ __forceinline__ void ldmatrix_x4(const __half* p, uint32_t r[4]) {
  const uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(const __half* p, uint32_t r[4]) {
  const uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Padded rows: the 8 rows an ldmatrix touches fall in different banks.
template <int D>
constexpr int kLd = D + 8;
template <int D>
constexpr size_t kSmemBytes = (size_t)kStages * 2 * kKeysPerTile * kLd<D> * sizeof(__half);

// Fragment coordinates: lane = 4 g + t; accumulator element i sits at row g + 8 (i / 2), column 2 t + i % 2.
// Grid (heads, row tiles); row tiles run from the last (most keys) to the first, so the long blocks start first
// and the short ones fill the tail.
template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    attention_prefill_mma_kernel(const __half* __restrict__ q, const __half* __restrict__ kc,
                                 const __half* __restrict__ vc, int m, int H, int KV, int S,
                                 const int* __restrict__ pos, __half* __restrict__ out) {
  constexpr int LD = kLd<D>, KCH = D / 16, OT = D / 8, NT = kKeysPerTile / 8, TILE = kKeysPerTile * LD;
  extern __shared__ __align__(16) __half smem[];  // [stage][K, V][key][LD]
  wait_for_previous_kernel();
  const int head = blockIdx.x, r0 = (gridDim.y - 1 - blockIdx.y) * kRowsPerBlock;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int p0 = *pos;
  const int kvh = head / (H / KV);
  const float scale = rsqrtf((float)D) * 1.4426950408889634f;  // log2(e): softmax with exp2
  const int wrow = r0 + warp * 16;                               // the warp's first query row
  const int qpos[2] = {p0 + wrow + g, p0 + wrow + g + 8};        // positions of the thread's two rows

  const int kend = p0 + min(m, r0 + kRowsPerBlock);  // keys the block's last row sees
  const __half* kbase = kc + (size_t)kvh * S * D;
  const __half* vbase = vc + (size_t)kvh * S * D;
  // Tile t0 into ring stage `stage`: 16-byte copies; keys past kend become zeros (masked, and 0 * V stays 0).
  auto fill = [&](int stage, int t0) {
    __half* ks = smem + stage * 2 * TILE;
    __half* vs = ks + TILE;
    for (int i = tid; i < kKeysPerTile * (D / 8); i += kThreads) {
      const int j = i / (D / 8), c = (i % (D / 8)) * 8, p = t0 + j;
      const bool live = p < kend;
      const size_t off = (size_t)(live ? p : 0) * D + c;
      cp_async16_or_zero(ks + j * LD + c, kbase + off, live);
      cp_async16_or_zero(vs + j * LD + c, vbase + off, live);
    }
    cp_async_commit();
  };
  fill(0, 0);

  uint32_t qa[KCH][4];
#pragma unroll
  for (int kk = 0; kk < KCH; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = wrow + g + (i & 1) * 8, col = kk * 16 + 2 * t + (i >> 1) * 8;
      qa[kk][i] = row < m ? *reinterpret_cast<const uint32_t*>(q + ((size_t)row * H + head) * D + col) : 0u;
    }
  float o[OT][4];
#pragma unroll
  for (int j = 0; j < OT; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};

  for (int t0 = 0, stage = 0; t0 < kend; t0 += kKeysPerTile, stage ^= 1) {
    if (t0 + kKeysPerTile < kend) fill(stage ^ 1, t0 + kKeysPerTile);  // its stage was released at the loop's end
    else cp_async_commit();                                            // an empty group keeps the count
    cp_async_wait<1>();
    __syncthreads();
    const __half* ks = smem + stage * 2 * TILE;
    const __half* vs = ks + TILE;
    if (t0 <= p0 + wrow + 15) {  // else the whole tile is after the warp's last row (warp-uniform)
      // S = Q K^T for 16 rows x 64 keys; one ldmatrix gives the B fragments of 8 keys for two 16-dim steps
      float sc[NT][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
        const __half* kr = ks + (nt * 8 + (lane & 7)) * LD + (lane >> 3) * 8;
#pragma unroll
        for (int kk = 0; kk < KCH; kk += 2) {
          uint32_t b[4];
          ldmatrix_x4(kr + kk * 16, b);
          mma_16x8x16(sc[nt], qa[kk], b[0], b[1]);
          mma_16x8x16(sc[nt], qa[kk + 1], b[2], b[3]);
        }
      }
      // scale; the causal mask only where the tile reaches past the warp's first row (warp-uniform)
      float mx[2] = {-INFINITY, -INFINITY};
      const bool diagonal = t0 + kKeysPerTile - 1 > p0 + wrow;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int key = t0 + nt * 8 + 2 * t + (i & 1);
          const float v = !diagonal || key <= qpos[i >> 1] ? sc[nt][i] * scale : -INFINITY;
          sc[nt][i] = v;
          mx[i >> 1] = fmaxf(mx[i >> 1], v);
        }
      float alpha[2], mnew[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        mnew[r] = fmaxf(mrow[r], mx[r]);  // finite: key 0 is in every row's first tile
        alpha[r] = exp2f(mrow[r] - mnew[r]);
        mrow[r] = mnew[r];
        lrow[r] *= alpha[r];  // per-lane partial sums; the quad is summed at the end
      }
#pragma unroll
      for (int j = 0; j < OT; ++j) o[j][0] *= alpha[0], o[j][1] *= alpha[0], o[j][2] *= alpha[1], o[j][3] *= alpha[1];
      // P = exp2(S - max) as fp16 A fragments: the accumulator layout of two key tiles is one A fragment
      uint32_t pa[kKeysPerTile / 16][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        float p[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          p[i] = exp2f(sc[nt][i] - mnew[i >> 1]);
          lrow[i >> 1] += p[i];
        }
        pa[nt / 2][(nt % 2) * 2 + 0] = pack_half2(p[0], p[1]);
        pa[nt / 2][(nt % 2) * 2 + 1] = pack_half2(p[2], p[3]);
      }
      // O += P V: V fragments through ldmatrix.trans (V is [key][dim] in shared memory)
#pragma unroll
      for (int kk = 0; kk < kKeysPerTile / 16; ++kk) {
        const __half* vrow = vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
        for (int j = 0; j < D / 16; ++j) {
          uint32_t b[4];
          ldmatrix_x4_trans(vrow + j * 16, b);
          mma_16x8x16(o[2 * j], pa[kk], b[0], b[1]);
          mma_16x8x16(o[2 * j + 1], pa[kk], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next iteration refills it
  }
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = lrow[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = 1.f / l;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = wrow + g + r * 8;
    if (row >= m) continue;
    __half* orow = out + ((size_t)row * H + head) * D + 2 * t;
#pragma unroll
    for (int j = 0; j < OT; ++j)
      *reinterpret_cast<__half2*>(orow + j * 8) = __floats2half2_rn(o[j][2 * r] * inv[r], o[j][2 * r + 1] * inv[r]);
  }
}

template <int D>
void launch_prefill(const __half* q, const __half* kcache, const __half* vcache, int m, int H, int KV, int S,
                    const int* pos, __half* out, cudaStream_t s) {
  const dim3 grid(H, (m + kRowsPerBlock - 1) / kRowsPerBlock);
  XL_CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_mma_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)kSmemBytes<D>));
  launch(attention_prefill_mma_kernel<D>, grid, kThreads, kSmemBytes<D>, s, q, kcache, vcache, m, H, KV, S, pos, out);
}

}  // namespace

void attention_prefill(const __half* q, const __half* kcache, const __half* vcache, int m, int H, int KV, int D,
                       int S, const int* pos, __half* out, cudaStream_t s) {
  if (D == 128) {
    launch_prefill<128>(q, kcache, vcache, m, H, KV, S, pos, out, s);
  } else if (D == 64) {
    launch_prefill<64>(q, kcache, vcache, m, H, KV, S, pos, out, s);
  } else {
    return attention(q, kcache, vcache, m, H, KV, D, S, pos, 1, nullptr, nullptr, out, s);
  }
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
