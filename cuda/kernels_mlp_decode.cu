// The one-row decode MLP in one launch: h_out = h_in + down(SiLU(gate(x)) * up(x)), x = rmsnorm(h_in). Opt-in
// (XLLAMA_FUSED_MLP=1): on the H200 it is slower than the two GEMV launches it replaces (docs/PERF-NOTES.md, session
// 28: 7B 1.320 against 1.295 ms per token at its best shape, 13B 2.335 against 2.276). Kept for the next attempt.
//
// Each block owns CHUNK (64 or 32) intermediate features: it computes their gate and up sums over the whole of K
// (a lane set covers gate's CHUNK columns and up's, 4 per lane; the sets and warps split K), applies the RMSNorm
// factor and SiLU, and multiplies the results by down_proj's CHUNK / 8 packed rows that read them, adding a partial
// sum into each of h_out's columns. No block waits for another: there is no kernel boundary between the MLP's two
// GEMVs. The fixed-point blocks of 32 intermediate inputs are the ones the SiLU-gated down_proj GEMV stages, so the
// products are the same; only the float additions come in another order.
//
// What it loses to the two launches, measured: the whole of K staged per block (8-10 rounds of loads; batched
// here, which took 0.08 ms off a 7B token), fewer warps streaming than the GEMV grids keep in flight (all blocks
// in one wave: 172 blocks of 8 warps on the 7B were 0.17 ms per token slower than of 12), and every block's
// atomics into every column (twice as many with 32 features per block: slower again). The GEMVs' preloads before
// their wait, which stream during the previous kernel's tail, hide most of the boundary it removes.
//
// h_in is read by every block while other blocks add into h_out, so they must be different buffers (the backend
// alternates two) and h_out zero before the launch; block 0 adds h_in into h_out (the residual).
#include <cstdio>
#include <cstdlib>

#include "cuda/cuda_check.h"
#include "cuda/device_query.h"
#include "cuda/env_switch.h"
#include "cuda/gemv_q4_fixed.cuh"
#include "cuda/kernel_trace.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/q4_fixed_point.cuh"
#include "cuda/stream_load.cuh"
#include "cuda/zero_fill.cuh"

namespace xllama::cuda {

namespace {

constexpr int kStageRounds = 4;  // staging: each thread's loads for this many rounds issued before any is quantized

// Dynamic shared memory: gate/up's staged input (stage_x_fixed's layout) for K = hid.
inline size_t mlp_smem_bytes(int hid) { return (size_t)(hid / 8) * 16 + (size_t)(hid / 32) * 8; }

// Blocks per SM the launch bounds ask for: 8 warps x 3 or 12 warps x 2 at 80 registers.
constexpr int mlp_min_blocks(int warps) { return warps <= 8 ? 3 : 2; }

// gate/up's input, h * norm (the factor deferred) as fixed point in stage_x_fixed's layout, and the warps' sums of
// h^2 in partial. Unlike stage_x_fixed, every thread's loads for kStageRounds rounds are issued before the first is
// quantized: the whole of K is staged here, 8-10 rounds of a block, each an L2 round trip when done one at a time.
// hid % 64 == 0: each warp's items are all live or all not (the quantization shuffles take whole warps).
template <int WARPS>
__device__ __forceinline__ void stage_mlp_input(const QWeight& gu, const float* __restrict__ h,
                                                const __half* __restrict__ norm, unsigned char* xq, float2* xb,
                                                float (&partial)[WARPS]) {
  constexpr int T = WARPS * 32;
  const int items = gu.K / 2;  // 4 per packed row
  float ss = 0.f;
  for (int base = 0; base < items; base += T * kStageRounds) {
    float a0[kStageRounds], a1[kStageRounds];
#pragma unroll
    for (int j = 0; j < kStageRounds; ++j) {
      const int i = base + j * T + threadIdx.x;
      a0[j] = a1[j] = 0.f;
      if (i < items) {
        int k0 = (i >> 2) * 8 + (i & 3), k1 = k0 + 4;
        if (gu.perm) k0 = gu.perm[k0], k1 = gu.perm[k1];
        const float h0 = h[k0], h1 = h[k1];
        a0[j] = h0 * __half2float(norm[k0]), a1[j] = h1 * __half2float(norm[k1]);
        ss = fmaf(h0, h0, fmaf(h1, h1, ss));
      }
    }
#pragma unroll
    for (int j = 0; j < kStageRounds; ++j) {
      const int i = base + j * T + threadIdx.x;
      if (base + j * T + (int)(threadIdx.x & ~31u) >= items) break;  // (uniform over the warp)
      int v0, v1;
      const FixedBlock blk = quantize_fixed_pair(a0[j], a1[j], v0, v1);
      if ((i & 15) == 0) xb[i >> 4] = make_float2(blk.scale, __int_as_float(blk.sum));
      store_fixed_pair(xq + (i >> 2) * 16, i & 3, v0, v1);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
}

template <int WARPS, int CHUNK, bool SYM_GU, bool SYM_DOWN>
__global__ void __launch_bounds__(WARPS * 32, mlp_min_blocks(WARPS))
    mlp_decode_kernel(QWeight gu, QWeight down, const float* __restrict__ h_in, float* __restrict__ h_out,
                      const __half* __restrict__ norm, float eps, ZeroFill zero0, ZeroFill zero1, bool evict_first) {
  static_assert(CHUNK == 32 || CHUNK == 64, "a lane set covers gate's and up's CHUNK columns, 4 per lane");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kThreads = WARPS * 32;
  constexpr int kSetLanes = CHUNK / 2;           // lanes that cover one packed row of the block's gate/up columns
  constexpr int kSets = 32 / kSetLanes;          // lane sets per warp, each on its own share of the warp's rows
  constexpr int kDownRows = CHUNK / 8;           // down_proj's packed rows per block
  constexpr int kDownCols = kThreads * 4;        // down_proj columns per pass of the block (4 per thread)
  constexpr int U = kBatchRows, UD = kDownRows;  // loads in flight per lane: gate/up, down_proj
  __shared__ __align__(16) float red[WARPS * kSets][2 * CHUNK];
  __shared__ float gate_up[2 * CHUNK];
  __shared__ __align__(16) unsigned char act_q[kDownRows * 16];
  __shared__ float2 act_b[kDownRows / kFixedBlockRows];
  __shared__ float ss_partial[WARPS];
  const int I = down.K, hid = gu.K, nd = down.N;
  const int j0 = blockIdx.x * CHUNK;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int set = lane / kSetLanes, sl = lane % kSetLanes;
  const uint64_t policy = weight_stream_policy(evict_first);

  // gate/up: this lane's 4 columns (the set's first half on gate's, the second on up's), and its set's packed rows
  // of K (whole fixed-point blocks)
  const int cg = sl < kSetLanes / 2 ? j0 + sl * 4 : I + j0 + (sl - kSetLanes / 2) * 4;
  const int nr = hid / 8;
  const int per_set = ((nr + WARPS * kSets - 1) / (WARPS * kSets) + kFixedBlockRows - 1) / kFixedBlockRows *
                      kFixedBlockRows;
  const int wr0 = min(nr, (warp * kSets + set) * per_set), wr1 = min(nr, wr0 + per_set);
  const uint4* qp = reinterpret_cast<const uint4*>(gu.qweight + (size_t)wr0 * gu.N + cg);
  const size_t gu_step = gu.N / 4;  // in uint4
  uint4 q[U];
#pragma unroll
  for (int u = 0; u < U; ++u)
    if (wr0 + u < wr1) q[u] = load_stream(qp + (size_t)u * gu_step, policy);
  uint2 sraw0 = make_uint2(0, 0);
  uint32_t zw0 = 0;
  if (wr0 < wr1) {
    const int g = (wr0 * 8) / gu.group_size;
    sraw0 = group_scales_raw(gu, g, cg);
    if (!SYM_GU) zw0 = group_zeros_raw(gu, g, cg);
  }
  wait_for_previous_kernel();
  zero_fill(zero0);
  zero_fill(zero1);
  float2* xb = reinterpret_cast<float2*>(smem_raw + (size_t)nr * 16);
  stage_mlp_input<WARPS>(gu, h_in, norm, smem_raw, xb, ss_partial);
  __syncthreads();
  trace_mark(0);  // (--timeline: the input staged)

  float acc[1][4] = {{0.f, 0.f, 0.f, 0.f}};
  {
    FixedDotState<1> st;
    for (int rr = wr0; rr < wr1; rr += U) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (rr + u >= wr1) break;
        fixed_dot_row<1, SYM_GU>(gu, 0, rr + u, u, cg, q[u], smem_raw, xb, nr, sraw0, zw0, st, acc);
        if (rr + U + u < wr1) q[u] = load_stream(qp + (size_t)(rr - wr0 + U + u) * gu_step, policy);
      }
    }
  }
  trace_mark(1);  // (--timeline: gate/up's dot products done)

  // down_proj's first pass of rows streams in while gate/up's partials are reduced and the SiLU staged.
  const int dr0 = j0 / 8, gd = j0 / down.group_size;
  const size_t d_step = nd / 4;  // in uint4
  const uint4* dp = reinterpret_cast<const uint4*>(down.qweight + (size_t)dr0 * nd) + threadIdx.x;
  uint2 sraw_d = make_uint2(0, 0);
  uint32_t zw_d = 0;
  if (threadIdx.x * 4 < nd) {
#pragma unroll
    for (int u = 0; u < UD; ++u) q[u] = load_stream(dp + (size_t)u * d_step, policy);
    sraw_d = group_scales_raw(down, gd, threadIdx.x * 4);
    if (!SYM_DOWN) zw_d = group_zeros_raw(down, gd, threadIdx.x * 4);
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) red[warp * kSets + set][sl * 4 + j] = acc[0][j];
  __syncthreads();
  if (threadIdx.x < 2 * CHUNK) {
    float v = 0.f;
#pragma unroll
    for (int wi = 0; wi < WARPS * kSets; ++wi) v += red[wi][threadIdx.x];
    gate_up[threadIdx.x] = v;
  }
  __syncthreads();
  if (warp == 0) {  // CHUNK / 2 items (inputs s and s + 4 of packed row rr): down's input, fixed-point blocks of 32
    float ss = 0.f;
#pragma unroll
    for (int wi = 0; wi < WARPS; ++wi) ss += ss_partial[wi];
    const float r = rsqrtf(ss / (float)hid + eps);  // the RMSNorm factor the staging left out
    const bool live = lane < CHUNK / 2;
    const int rr = lane >> 2, s = lane & 3, k0 = live ? rr * 8 + s : 0, k1 = k0 + 4;
    float a0 = 0.f, a1 = 0.f;
    if (live) {
      a0 = silu_gate_input(gate_up[k0] * r, gate_up[CHUNK + k0] * r);
      a1 = silu_gate_input(gate_up[k1] * r, gate_up[CHUNK + k1] * r);
    }
    int v0, v1;
    const FixedBlock blk = quantize_fixed_pair(a0, a1, v0, v1);  // (whole warp: the shuffles)
    if (live) {
      if ((lane & 15) == 0) act_b[lane >> 4] = make_float2(blk.scale, __int_as_float(blk.sum));
      store_fixed_pair(act_q + rr * 16, s, v0, v1);
    }
  }
  __syncthreads();
  trace_mark(2);  // (--timeline: down_proj's input staged)

  // down_proj: kDownCols columns per pass, each slot of the ring refilled with the same row of the next pass.
  for (int c = threadIdx.x * 4; c < nd; c += kDownCols) {
    const bool next_live = c + kDownCols < nd;
    const uint4* dnext = dp + (size_t)(c + kDownCols) / 4 - threadIdx.x;
    float dacc[1][4] = {{0.f, 0.f, 0.f, 0.f}};
    FixedDotState<1> st;
#pragma unroll
    for (int u = 0; u < UD; ++u) {
      fixed_dot_row<1, SYM_DOWN>(down, dr0, u, u, c, q[u], act_q, act_b, kDownRows, sraw_d, zw_d, st, dacc);
      if (next_live) {
        q[u] = load_stream(dnext + (size_t)u * d_step, policy);
        if (u == 0) {
          sraw_d = group_scales_raw(down, gd, c + kDownCols);
          if (!SYM_DOWN) zw_d = group_zeros_raw(down, gd, c + kDownCols);
        }
      }
    }
    if (blockIdx.x == 0) {
      const float4 hv = *reinterpret_cast<const float4*>(h_in + c);
      dacc[0][0] += hv.x, dacc[0][1] += hv.y, dacc[0][2] += hv.z, dacc[0][3] += hv.w;
    }
    atomic_add4(h_out + c, make_float4(dacc[0][0], dacc[0][1], dacc[0][2], dacc[0][3]));
  }
  trace_block_end();
}

using MlpKernel = void (*)(QWeight, QWeight, const float*, float*, const __half*, float, ZeroFill, ZeroFill, bool);

// A kernel shape: warps per block and intermediate features per block.
struct MlpShape {
  int warps, chunk;
};

template <int WARPS, int CHUNK>
MlpKernel mlp_kernel_of(const QWeight& gu, const QWeight& down) {
  if (gu.zeros)
    return down.zeros ? mlp_decode_kernel<WARPS, CHUNK, false, false> : mlp_decode_kernel<WARPS, CHUNK, false, true>;
  return down.zeros ? mlp_decode_kernel<WARPS, CHUNK, true, false> : mlp_decode_kernel<WARPS, CHUNK, true, true>;
}
MlpKernel mlp_kernel_for(const QWeight& gu, const QWeight& down, MlpShape sh) {
  if (sh.chunk == 32) return sh.warps == 12 ? mlp_kernel_of<12, 32>(gu, down) : mlp_kernel_of<8, 32>(gu, down);
  return sh.warps == 12 ? mlp_kernel_of<12, 64>(gu, down) : mlp_kernel_of<8, 64>(gu, down);
}

// Whether a shape runs these weights in one wave (a second would leave most SMs idle through its end).
bool mlp_shape_fits(const QWeight& gu, const QWeight& down, MlpShape sh) {
  if (down.K % sh.chunk != 0) return false;
  const int resident = resident_blocks(reinterpret_cast<const void*>(mlp_kernel_for(gu, down, sh)), sh.warps * 32,
                                       mlp_smem_bytes(gu.K));
  return down.K / sh.chunk <= resident;
}

// The shape for these weights, or {0, 0}: the first of the measured order that runs them in one wave (12 warps of
// 64 features were fastest on the H200's 7B and 13B; docs/PERF-NOTES.md, session 28). XLLAMA_MLP_SHAPE=W,C
// (measurement) asks for one.
MlpShape mlp_shape(const QWeight& gu, const QWeight& down) {
  static const MlpShape asked = [] {
    const char* v = std::getenv("XLLAMA_MLP_SHAPE");
    int w = 0, c = 0;
    if (v && std::sscanf(v, "%d,%d", &w, &c) == 2 && (w == 8 || w == 12) && (c == 32 || c == 64)) return MlpShape{w, c};
    return MlpShape{0, 0};
  }();
  if (asked.warps) return mlp_shape_fits(gu, down, asked) ? asked : MlpShape{0, 0};
  for (MlpShape sh : {MlpShape{12, 64}, MlpShape{8, 64}, MlpShape{12, 32}, MlpShape{8, 32}})
    if (mlp_shape_fits(gu, down, sh)) return sh;
  return MlpShape{0, 0};
}

}  // namespace

bool& fused_mlp_flag() {
  static bool on = env_switch_set("XLLAMA_FUSED_MLP");
  return on;
}

bool mlp_decode_fits(const QWeight& gate_up, const QWeight& down) {
  const int hid = gate_up.K, I = down.K;
  const bool shapes = gate_up.N == 2 * I && down.N == hid && I % 32 == 0 && hid % 64 == 0 && hid > 0 &&
                      gate_up.group_size % 32 == 0 && down.group_size % 32 == 0;
  // down_proj's rows must be in checkpoint order (a block reads the rows of its own features), no biases, and the
  // staging must fit in shared memory next to the static arrays.
  if (!shapes || down.perm || gate_up.bias || down.bias || mlp_smem_bytes(hid) > 40 * 1024) return false;
  return mlp_shape(gate_up, down).warps > 0;
}

void mlp_decode(const QWeight& gate_up, const QWeight& down, const __half* post_norm, float eps, const float* h_in,
                float* h_out, cudaStream_t s, ZeroFill zero0, ZeroFill zero1) {
  const MlpShape sh = mlp_shape(gate_up, down);
  launch(mlp_kernel_for(gate_up, down, sh), dim3(down.K / sh.chunk), sh.warps * 32, mlp_smem_bytes(gate_up.K), s,
         gate_up, down, h_in, h_out, post_norm, eps, zero0, zero1, weight_evict_first_flag());
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
