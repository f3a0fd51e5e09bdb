// Causal attention for prompt chunks on the tensor cores (flash-attention style, mma.sync m16n8k16 with fp16
// inputs and fp32 accumulation). A block of 4 warps takes 64 query rows of one head; each warp owns 16 rows
// and walks 64-key tiles of K and V staged in shared memory, with the online softmax in registers.
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace xllama::cuda {

namespace {

constexpr int kRowsPerBlock = 64, kKeysPerTile = 64, kThreads = 128;

// c += a (16x16, row major) . b (16x8, column major); fragments as the PTX ISA lays them out.
__device__ __forceinline__ void mma_16x8x16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 fp16 matrices from shared memory, transposed (lane i gives the address of row i % 8 of matrix i / 8).
__device__ __forceinline__ void ldmatrix_x4_trans(const __half* p, uint32_t r[4]) {
  const uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

// Fragment coordinates: lane = 4 g + t; accumulator element i sits at row g + 8 (i / 2), column 2 t + i % 2.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_prefill_mma_kernel(const __half* __restrict__ q, const __half* __restrict__ kc,
                                 const __half* __restrict__ vc, int m, int H, int KV, int S,
                                 const int* __restrict__ pos, __half* __restrict__ out) {
  constexpr int LD = D + 8;  // padded rows: the 8 rows a fragment load touches fall in different banks
  constexpr int KCH = D / 16, OT = D / 8, NT = kKeysPerTile / 8;
  __shared__ __align__(16) __half ks[kKeysPerTile * LD];
  __shared__ __align__(16) __half vs[kKeysPerTile * LD];
  wait_for_previous_kernel();
  const int head = blockIdx.x, r0 = blockIdx.y * kRowsPerBlock;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int p0 = *pos;
  const int kvh = head / (H / KV);
  const float scale = rsqrtf((float)D) * 1.4426950408889634f;  // log2(e): softmax with exp2
  const int wrow = r0 + warp * 16;                               // the warp's first query row
  const int qpos[2] = {p0 + wrow + g, p0 + wrow + g + 8};        // positions of the thread's two rows

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

  const int kend = p0 + min(m, r0 + kRowsPerBlock);  // keys the block's last row sees
  const __half* kbase = kc + (size_t)kvh * S * D;
  const __half* vbase = vc + (size_t)kvh * S * D;
  for (int t0 = 0; t0 < kend; t0 += kKeysPerTile) {
    __syncthreads();  // the previous tile is consumed
    for (int i = tid; i < kKeysPerTile * (D / 8); i += kThreads) {
      const int j = i / (D / 8), c = (i % (D / 8)) * 8, p = t0 + j;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);  // keys past the end: zeros, masked
      if (p < kend) {
        kv = *reinterpret_cast<const uint4*>(kbase + (size_t)p * D + c);
        vv = *reinterpret_cast<const uint4*>(vbase + (size_t)p * D + c);
      }
      *reinterpret_cast<uint4*>(ks + j * LD + c) = kv;
      *reinterpret_cast<uint4*>(vs + j * LD + c) = vv;
    }
    __syncthreads();
    if (t0 > p0 + wrow + 15) continue;  // the whole tile is after the warp's last row (warp-uniform)

    // S = Q K^T for 16 rows x 64 keys
    float sc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
      const __half* kr = ks + (nt * 8 + g) * LD + 2 * t;
#pragma unroll
      for (int kk = 0; kk < KCH; ++kk) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kr + kk * 16);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(kr + kk * 16 + 8);
        mma_16x8x16(sc[nt], qa[kk], b0, b1);
      }
    }
    // causal mask, scale, row maxima (a row's 64 scores are spread over the 4 lanes of its quad)
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = t0 + nt * 8 + 2 * t + (i & 1);
        const float v = key <= qpos[i >> 1] ? sc[nt][i] * scale : -INFINITY;
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

}  // namespace

void attention_prefill(const __half* q, const __half* kcache, const __half* vcache, int m, int H, int KV, int D,
                       int S, const int* pos, __half* out, cudaStream_t s) {
  const dim3 grid(H, (m + kRowsPerBlock - 1) / kRowsPerBlock);
  if (D == 128) {
    launch(attention_prefill_mma_kernel<128>, grid, kThreads, 0, s, q, kcache, vcache, m, H, KV, S, pos, out);
  } else if (D == 64) {
    launch(attention_prefill_mma_kernel<64>, grid, kThreads, 0, s, q, kcache, vcache, m, H, KV, S, pos, out);
  } else {
    return attention(q, kcache, vcache, m, H, KV, D, S, pos, 1, nullptr, nullptr, out, s);
  }
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
