// Whole-token decode for one row as one persistent kernel (DecodeStep in kernels.h), Hopper (sm_90) only.
//
// Why: with one kernel per GEMV, every boundary drains the memory pipe (tail, launch, ramp: ~5 us of dependent
// latency per launch, 5 per layer; docs/PERF-NOTES.md sessions 6-7). Here one block per SM stays resident for the
// whole token and its weight stream never waits on activations: only the arithmetic does, on per-layer counters
// in global memory. Opt-in (XLLAMA_PERSISTENT_DECODE=1): on the H200 it is still 1.3-1.6x slower than the 5-kernel
// path. Session 9 measured why (docs/PERF-NOTES.md): with the weights already in shared memory and no waits, the
// dequantize-and-dot arithmetic alone takes 1.85 ms per 7B token at 16 warps per SM (the floor is 0.8 ms), and
// streaming alone, with no arithmetic, 1.76 ms: per-warp rings of two stages don't overlap the two.
//
// Streams: every warp is its own producer and consumer. A linear's tiles (128 columns x R packed rows, R = 4096 /
// threads, i.e. 4 or 8 KB of 4-bit weights, with their groups' scales and zeros) are numbered strip-major (t =
// column strip * splits + K split); each block takes a contiguous range and each warp a contiguous part of it.
// A warp keeps S stages of its own in shared memory, filled by bulk copies (one per weight row and group row,
// issued by the warp's lanes at once) that complete on the stage's mbarrier; when the warp has computed a stage
// it refills it with its next tile, whichever layer or linear that belongs to. No block barrier per tile, no
// cross-warp reduction: a warp sums its columns over consecutive K splits in registers and adds them to the
// output (vector atomics) when its strip ends. (The first version, one tile per block with block barriers and a
// cross-warp reduction per tile, ran at 21-25% of the floor: session 5's notes.)
// Phases per layer, each waiting for the whole previous phase (counters[layer][phase] = tiles done):
//   q/k/v (RMSNorm of h while staging) -> attention items (head, split), round robin over the blocks ->
//   o_proj (adds into h) -> gate/up (RMSNorm) -> down (SiLU gate while staging, adds into h).
// A block stages the activations its tiles need once per phase (the K range of its one strip, or all of K).
// Deadlock freedom: every block is resident (one per SM, sized by the occupancy query), items only wait on
// items earlier in the global order, and a block runs its items in that order; copies wait on nothing.
// Memory model: data written inside the kernel (h, qkv, gu, att, partials, new KV rows) is read with
// ld.global.cg (L2, never a stale L1 line); a phase's writers fence, sync, and one thread adds to the
// counter; a waiter's thread 0 spins with ld.acquire.gpu and the block syncs (cooperative groups' pattern).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "cuda/attention_step.cuh"
#include "cuda/bulk_pipeline.cuh"
#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/rope_pair.cuh"

namespace xllama::cuda {

namespace {

constexpr int kDefaultThreads = 512;
constexpr int kTileCols = 128;             // 32 lanes x 4 columns
constexpr int kRowBytes = kTileCols * 4;   // one packed row of a tile: 512 bytes
constexpr int kTileWords = 4096;           // R x threads: 8 packed rows at 512 threads, 16 at 256
constexpr int kLinears = 4;                // q/k/v, o_proj, gate/up, down
constexpr int kMaxStages = 4;              // per warp
enum Counter { kQkvDone = 0, kHeadsDone = 1, kODone = 2, kGateUpDone = 3, kDownDone = 4, kCounters = 5 };

// R: the packed rows of a tile at `threads` per block.
__host__ __device__ constexpr int tile_rows(int threads) { return kTileWords / threads; }

// Per-layer pointers the copies need, in shared memory (a global load on the issue path would hold the stream
// up for an L2 round trip per tile).
struct StreamPtrs {
  const uint32_t* qweight;
  const __half* scales;
  const uint8_t* zeros;
  long long pad;
};

// Device code for sm_90 only; older GPUs get a stub (decode_step_prepare declines them before any launch).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
constexpr int kMaxWarps = 16;

struct Geometry {
  int ncol, splits, tiles;
};
__device__ inline Geometry geometry(int K, int N, int R) {
  Geometry g;
  g.ncol = (N + kTileCols - 1) / kTileCols;
  g.splits = (K / 8 + R - 1) / R;
  g.tiles = g.ncol * g.splits;
  return g;
}

// What the block needs about its share, in shared memory.
struct BlockPlan {
  int lo[kLinears], hi[kLinears];              // this block's tile range of each linear
  int wlo[kMaxWarps][kLinears], whi[kMaxWarps][kLinears];  // each warp's part of it
  int xr0[kLinears], xr1[kLinears];            // the packed rows whose activations the block stages
  Geometry geo[kLinears];
  int K[kLinears], N[kLinears], group_size[kLinears];
};

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

// Blocks until *c >= target (every item counted there is done and its writes visible). A wait of over 10 s
// means a broken schedule: trap (the launch fails with an error) rather than hang the process.
__device__ __forceinline__ void wait_count(const unsigned* c, unsigned target) {
  if (threadIdx.x == 0 && load_acquire(c) < target) {
    const unsigned long long t0 = global_ns();
    while (load_acquire(c) < target)
      if (global_ns() - t0 > 10000000000ull) __trap();
  }
  __syncthreads();
}

// Counts n items done once the block's writes (stores and atomics) are visible GPU-wide: the barrier makes
// them thread 0's, its fence orders them before the count (cooperative groups' grid barrier does the same).
__device__ __forceinline__ void signal_count(unsigned* c, unsigned n) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(c, n);
  }
}

// Sum over the block; every thread gets it (red: T / 32 floats).
template <int T>
__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // red may still be read from the last call
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.f;
#pragma unroll
  for (int i = 0; i < T / 32; ++i) t += red[i];
  return t;
}

// Sum of squares of h (produced inside the kernel: read from L2). Same order in every block.
template <int T>
__device__ __forceinline__ float sum_squares(const float* h, int n, float* red) {
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += T) {
    const float v = __ldcg(h + i);
    s = fmaf(v, v, s);
  }
  return block_sum<T>(s, red);
}

// This block's share [lo, hi) of `tiles` tiles of a buffer of n floats, zeroed for a later phase that adds
// into it.
template <int T>
__device__ __forceinline__ void zero_share(float* buf, size_t n, int lo, int hi, int tiles) {
  const size_t a = n * (size_t)lo / (size_t)tiles, e = n * (size_t)hi / (size_t)tiles;
  for (size_t i = a + threadIdx.x; i < e; i += T) buf[i] = 0.f;
}

// Each warp's S stages: weights [R][512 bytes], then the scales (256 bytes per group row) and zeros (128).
struct Ring {
  unsigned char* base;
  int stage_bytes, scale_off, zero_off, S;
  uint64_t* full;  // [warps][S]: completed by the bulk copies' bytes
  __device__ int slot(int warp, int seq) const { return warp * S + seq % S; }
  __device__ unsigned char* stage(int warp, int seq) const { return base + (size_t)slot(warp, seq) * stage_bytes; }
};

// Waits (every lane of the warp) until the warp's ring entry seq has landed.
__device__ __forceinline__ void ring_wait(const Ring& ring, int warp, int seq) {
  mbar_wait(ring.full + ring.slot(warp, seq), (unsigned)(seq / ring.S) & 1u);
}

// A warp's position in its own tile sequence: layer by layer, linear by linear, its part of each, strip-major.
struct Cursor {
  int layer, li, t, col, split;
  __device__ void enter(const BlockPlan& bp, int warp, int num_layers) {  // from t = wlo on, skipping empty parts
    while (layer < num_layers && t >= bp.whi[warp][li]) {
      if (++li == kLinears) li = 0, ++layer;
      t = bp.wlo[warp][li];
    }
    if (layer < num_layers) col = t / bp.geo[li].splits, split = t - col * bp.geo[li].splits;
  }
  __device__ void start(const BlockPlan& bp, int warp, int num_layers) {
    layer = 0, li = 0, t = bp.wlo[warp][0];
    enter(bp, warp, num_layers);
  }
  __device__ void next(const BlockPlan& bp, int warp, int num_layers) {
    if (++t >= bp.whi[warp][li]) return enter(bp, warp, num_layers);
    if (++split == bp.geo[li].splits) split = 0, ++col;
  }
};

// The warp copies the cursor's tile into its ring entry `entry` and steps the cursor: lane 0 arms the stage's
// mbarrier with the byte count, then lanes 0..R-1 copy a weight row each, lanes 16.. the group rows' scales and
// lanes 24.. their zeros (bulk copies: the copy engine moves them, completing on the mbarrier).
template <int R>
__device__ __forceinline__ void issue_tile(const BlockPlan& bp, const StreamPtrs* ptrs, int num_layers, Cursor& cur,
                                           const Ring& ring, int warp, int entry) {
  if (cur.layer >= num_layers) return;
  const int lane = threadIdx.x & 31, li = cur.li, N = bp.N[li], K = bp.K[li], gs = bp.group_size[li];
  const StreamPtrs w = ptrs[cur.layer * kLinears + li];
  const int c0 = cur.col * kTileCols, cols = min(kTileCols, N - c0);
  const int r0 = cur.split * R, nr = min(R, K / 8 - r0);
  const int g0 = r0 * 8 / gs, ng = ((r0 + nr) * 8 - 1) / gs - g0 + 1;
  unsigned char* stage = ring.stage(warp, entry);
  uint64_t* bar = ring.full + ring.slot(warp, entry);
  // the stage was last read through the generic proxy; the copy engine writes it next
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  __syncwarp();
  if (lane == 0) mbar_arrive_expect_tx(bar, (unsigned)(nr * cols * 4 + ng * cols * 2 + (w.zeros ? ng * cols : 0)));
  __syncwarp();
  auto bulk = [&](void* dst, const void* gsrc, unsigned n) { bulk_copy_to_shared(dst, gsrc, n, bar); };
  if (lane < nr) bulk(stage + lane * kRowBytes, w.qweight + (size_t)(r0 + lane) * N + c0, cols * 4);
  if (lane >= 16 && lane - 16 < ng)
    bulk(stage + ring.scale_off + (lane - 16) * 256, w.scales + (size_t)(g0 + lane - 16) * N + c0, cols * 2);
  if (w.zeros && lane >= 24 && lane - 24 < ng)
    bulk(stage + ring.zero_off + (lane - 24) * 128, w.zeros + (size_t)(g0 + lane - 24) * N + c0, cols);
  cur.next(bp, warp, num_layers);
}

// The activations of packed rows [r0, r1) as (k, k + 4) pairs times 1/16, the GEMV kernel's staging
// (stage_x in kernels_gemv_q4.cu) with in-kernel data read from L2.
template <int T, GemvInput IN>
__device__ __forceinline__ void stage_x(const QWeight& w, const void* xv, const __half* norm, float r, int r0,
                                        int r1, __half2* xs) {
  for (int i = threadIdx.x; i < (r1 - r0) * 4; i += T) {
    const int rr = i >> 2, s = i & 3;
    int k0 = (r0 + rr) * 8 + s, k1 = k0 + 4;
    if (w.perm) k0 = w.perm[k0], k1 = w.perm[k1];
    float a0, a1;
    if (IN == GemvInput::SiluGateUp) {
      const float* gu = static_cast<const float*>(xv);
      a0 = silu_gate_input(__ldcg(gu + k0), __ldcg(gu + w.K + k0));
      a1 = silu_gate_input(__ldcg(gu + k1), __ldcg(gu + w.K + k1));
    } else if (IN == GemvInput::RmsNorm) {
      const float* h = static_cast<const float*>(xv);
      a0 = rmsnorm_input(__ldcg(h + k0), r, norm[k0]);
      a1 = rmsnorm_input(__ldcg(h + k1), r, norm[k1]);
    } else {
      const __half* x = static_cast<const __half*>(xv);
      a0 = __half2float(__ldcg(x + k0));
      a1 = __half2float(__ldcg(x + k1));
    }
    xs[i] = __floats2half2_rn(a0 * kXScale, a1 * kXScale);
  }
}

// Adds a warp's column sums (4 per lane) to y with one vector atomic per lane (sm_90).
__device__ __forceinline__ void add_columns(float* y, const float acc[4]) {
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(y), "f"(acc[0]), "f"(acc[1]), "f"(acc[2]),
               "f"(acc[3])
               : "memory");
}

// y += W x over this block's tiles of linear li, x from xv as IN says (staged once for the block), each warp
// over its own part: waits for each tile in its ring, computes it, refills the stage with its next tile, and
// adds its column sums when a strip ends. Returns the warp's next ring entry.
template <int T, GemvInput IN>
__device__ int run_linear(const BlockPlan& bp, const StreamPtrs* ptrs, int num_layers, const Ring& ring, Cursor& cur,
                          const QWeight& w, int li, int seq, const void* xv, const __half* norm, float r, float* y,
                          __half2* xs) {
  constexpr int R = tile_rows(T);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int xr0 = bp.xr0[li];
  stage_x<T, IN>(w, xv, norm, r, xr0, bp.xr1[li], xs);
  __syncthreads();
  const int lo = bp.wlo[warp][li], hi = bp.whi[warp][li];
  if (lo >= hi) return seq;
  const int splits = bp.geo[li].splits, rows_per_group = w.group_size / 8;
  int col = lo / splits, split = lo - col * splits;
  bool with_bias = split == 0;
  float acc[1][4] = {{0.f, 0.f, 0.f, 0.f}};
  for (int t = lo; t < hi; ++t, ++seq) {
    const int c = col * kTileCols + lane * 4, r0 = split * R, nr = min(R, w.K / 8 - r0);
    const int g0 = r0 / rows_per_group;
    ring_wait(ring, warp, seq);
    const unsigned char* st = ring.stage(warp, seq);
    if (c < w.N) {
      uint4 q[R];
#pragma unroll
      for (int u = 0; u < R; ++u)
        if (u < nr) q[u] = *reinterpret_cast<const uint4*>(st + u * kRowBytes + lane * 16);
      float sc[4];
      __half2 z2[8];
      int g = g0 - 1, boundary = 0;  // boundary: the first row of the next group (no division per row)
#pragma unroll
      for (int u = 0; u < R; ++u) {
        if (u >= nr) break;
        if (u == boundary) {
          boundary = (++g + 1) * rows_per_group - r0;
          const uint2 sraw = *reinterpret_cast<const uint2*>(st + ring.scale_off + (g - g0) * 256 + lane * 8);
          if (w.zeros) {
            const uint32_t zw = *reinterpret_cast<const uint32_t*>(st + ring.zero_off + (g - g0) * 128 + lane * 4);
            group_params<false>(sraw, zw, w.sym_zero, sc, z2);
          } else {
            group_params<true>(sraw, 0u, w.sym_zero, sc, z2);
          }
        }
        accumulate_row<1>(q[u], z2, sc, xs, 0, (r0 + u - xr0) * 4, acc);
      }
    }
    __syncwarp();
    issue_tile<R>(bp, ptrs, num_layers, cur, ring, warp, seq + ring.S);
    if (++split == splits || t + 1 == hi) {  // the strip's run ends here: add it
      if (c < w.N) {
        if (with_bias && w.bias) {
          const __half2* b2 = reinterpret_cast<const __half2*>(w.bias + c);
          const float2 b01 = __half22float2(b2[0]), b23 = __half22float2(b2[1]);
          acc[0][0] += b01.x, acc[0][1] += b01.y, acc[0][2] += b23.x, acc[0][3] += b23.y;
        }
        add_columns(y + c, acc[0]);
      }
      acc[0][0] = acc[0][1] = acc[0][2] = acc[0][3] = 0.f;
      if (split == splits) split = 0, ++col;
      with_bias = true;  // the next strip's run starts at split 0
    }
  }
  return seq;
}

// One (head, split) of decode attention for the single row at position pos (attention_kernel<ROPE> in
// kernels_model.cu with T threads): writes this position's rotated k and v into the caches if the split
// covers it, attends over its share of [0, pos], and either writes the head's output or its partial; the
// last split of a head to finish combines them. Counts the head in heads_done once its output is written.
template <int T>
__device__ void attention_item(const DecodeStep& p, const DecodeLayer& ld, int head, int split, int pos, float* sm,
                               unsigned* heads_done) {
  constexpr int kThreads = T;
  const int D = p.head_dim, H = p.heads, KV = p.kv_heads, S = p.max_seq;
  const int L = pos + 1;
  const int splits = min(p.max_splits, max(1, (L + kAttnMinKeysPerSplit - 1) / kAttnMinKeysPerSplit));
  if (split >= splits) return;  // uniform over the block
  const int chunk = (L + splits - 1) / splits, start = split * chunk, end = min(L, start + chunk);
  const int kvh = head / (H / KV), half_d = D / 2;
  int tpp = 1;
  while (tpp * 8 < D) tpp <<= 1;
  const int tid = threadIdx.x, slots = kThreads / tpp, slot = tid / tpp, sub = tid % tpp, d0 = sub * 8;
  const bool worker = tid < kThreads;  // uniform per warp
  const bool active_dims = worker && d0 < D;
  const float scale = rsqrtf((float)D) * 1.4426950408889634f;  // log2(e): softmax with exp2
  __half* kc = ld.kcache + (size_t)kvh * S * D;
  __half* vc = ld.vcache + (size_t)kvh * S * D;
  float* qrot = sm;             // [256]
  float* sacc = sm + 256;       // [slots][D]
  float* sms = sacc + slots * D;  // [slots]
  float* sls = sms + slots;       // [slots]
  __shared__ bool last;

  if (pos >= start && pos < end) {  // the new position: every block that reads it writes it (same values)
    const float* ksrc = p.qkv + (size_t)(H + kvh) * D;
    const float* vsrc = p.qkv + (size_t)(H + KV + kvh) * D;
    __half* kd = kc + (size_t)pos * D;
    __half* vd = vc + (size_t)pos * D;
    for (int j = tid; j < half_d; j += kThreads) {
      float a = __ldcg(ksrc + j), b = __ldcg(ksrc + j + half_d);
      rotate_pair(a, b, pos, p.rope.inv_freq[j], p.rope.attention_factor);
      kd[j] = __float2half(a), kd[j + half_d] = __float2half(b);
      vd[j] = __float2half(__ldcg(vsrc + j)), vd[j + half_d] = __float2half(__ldcg(vsrc + j + half_d));
    }
  }
  const float* qsrc = p.qkv + (size_t)head * D;
  for (int j = tid; j < half_d; j += kThreads) {
    float a = __ldcg(qsrc + j), b = __ldcg(qsrc + j + half_d);
    rotate_pair(a, b, pos, p.rope.inv_freq[j], p.rope.attention_factor);
    qrot[j] = __half2float(__float2half(a)), qrot[j + half_d] = __half2float(__float2half(b));
  }
  __syncthreads();  // also orders the cache writes above before the reads below
  float qv[8], acc[8];
#pragma unroll
  for (int t = 0; t < 8; ++t) qv[t] = active_dims ? qrot[d0 + t] * scale : 0.f, acc[t] = 0.f;
  float mrun = -INFINITY, lrun = 0.f;
  const int lane = tid & 31;
  const unsigned group_mask = tpp >= 32 ? 0xffffffffu : (((1u << tpp) - 1u) << (lane & ~(tpp - 1)));
  constexpr int U = 4;  // key positions per lane group in flight
  for (int p0 = start + slot; worker && p0 < end; p0 += slots * U) {
    uint4 kr[U], vr[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int q = p0 + u * slots;
      if (active_dims && q < end) {
        kr[u] = __ldcg(reinterpret_cast<const uint4*>(kc + (size_t)q * D + d0));
        vr[u] = __ldcg(reinterpret_cast<const uint4*>(vc + (size_t)q * D + d0));
      } else {
        kr[u] = make_uint4(0, 0, 0, 0), vr[u] = make_uint4(0, 0, 0, 0);
      }
    }
    attend_positions<U>(kr, vr, qv, p0, slots, end, tpp, group_mask, mrun, lrun, acc);
  }
  if (active_dims)
#pragma unroll
    for (int t = 0; t < 8; ++t) sacc[slot * D + d0 + t] = acc[t];
  if (worker && sub == 0) sms[slot] = mrun, sls[slot] = lrun;
  __syncthreads();
  float M = -INFINITY;
  for (int i = 0; i < slots; ++i) M = fmaxf(M, sms[i]);
  float Ltot = 0.f;
  for (int i = 0; i < slots; ++i)
    if (sms[i] != -INFINITY) Ltot += sls[i] * exp2f(sms[i] - M);
  float* wr = p.work + ((size_t)head * p.max_splits + split) * (D + 2);
  for (int d = tid; d < D; d += kThreads) {
    float o = 0.f;
    for (int i = 0; i < slots; ++i)
      if (sms[i] != -INFINITY) o += sacc[i * D + d] * exp2f(sms[i] - M);
    if (splits == 1) {
      p.att[(size_t)head * D + d] = __float2half(o / Ltot);
    } else {
      wr[d] = o;
      if (d == 0) wr[D] = M, wr[D + 1] = Ltot;
    }
  }
  if (splits > 1) {
    // The last split of this head to finish combines the partials.
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      unsigned* counter = p.head_done + head;
      last = atomicAdd(counter, 1u) == (unsigned)splits - 1;
      if (last) *counter = 0;  // ready for the next layer
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    combine_splits(p.work + (size_t)head * p.max_splits * (D + 2), splits, D, kThreads, p.att + (size_t)head * D);
  }
  signal_count(heads_done, 1);
  __syncthreads();  // the scratch is free for the next item
}

template <int T>
__global__ void __launch_bounds__(T, 1) decode_persistent_kernel(const DecodeStep p) {
  constexpr int W = T / 32, R = tile_rows(T);
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ BlockPlan bp;
  __shared__ float red16[W];
  __shared__ __align__(8) uint64_t full_bar[kMaxWarps * kMaxStages];
  const int tid = threadIdx.x, G = gridDim.x, b = blockIdx.x, NL = p.num_layers, warp = tid >> 5;
  const Ring ring{smem, p.stage_bytes, p.scale_off, p.zero_off, p.stages, full_bar};
  if (tid < W * p.stages) mbar_init(full_bar + tid, 1);
  fence_mbar_init();
  // activations (one linear's staged K range) and the attention items' scratch share one region
  __half2* xs = reinterpret_cast<__half2*>(smem + (size_t)W * p.stages * p.stage_bytes);
  float* scratch = reinterpret_cast<float*>(xs);
  StreamPtrs* ptrs = reinterpret_cast<StreamPtrs*>(scratch + p.scratch_floats);  // [NL][4]

  if (tid < kLinears) {
    const QWeight& w = p.layers[0].lin[tid];
    const Geometry g = geometry(w.K, w.N, R);
    const int lo = (int)((long long)g.tiles * b / G), hi = (int)((long long)g.tiles * (b + 1) / G);
    bp.geo[tid] = g, bp.lo[tid] = lo, bp.hi[tid] = hi;
    for (int wi = 0; wi < W; ++wi) {
      bp.wlo[wi][tid] = lo + (hi - lo) * wi / W;
      bp.whi[wi][tid] = lo + (hi - lo) * (wi + 1) / W;
    }
    // within one strip, only the K splits the block covers; else all of K
    const bool one_strip = hi > lo && (lo / g.splits == (hi - 1) / g.splits);
    bp.xr0[tid] = one_strip ? (lo % g.splits) * R : 0;
    bp.xr1[tid] = one_strip ? min(w.K / 8, ((hi - 1) % g.splits + 1) * R) : w.K / 8;
    bp.K[tid] = w.K, bp.N[tid] = w.N, bp.group_size[tid] = w.group_size;
  }
  for (int i = tid; i < NL * kLinears; i += T) {
    const QWeight& w = p.layers[i / kLinears].lin[i % kLinears];
    ptrs[i] = StreamPtrs{w.qweight, w.scales, w.zeros, 0};
  }
  __syncthreads();
  // Weights never depend on earlier kernels: every warp's stages fill while the previous kernel drains.
  Cursor cur;
  cur.start(bp, warp, NL);
  for (int k = 0; k < p.stages; ++k) issue_tile<R>(bp, ptrs, NL, cur, ring, warp, k);
  wait_for_previous_kernel();

  // Optional profile (the kernel check): thread 0's clock between marks, summed per segment.
  __shared__ unsigned long long prof[kProfileSlots];
  long long mark = clock64();
  auto lap = [&](int slot) {
    if (p.profile && tid == 0) {
      const long long now = clock64();
      prof[slot] += (unsigned long long)(now - mark);
      mark = now;
    }
  };
  if (tid < kProfileSlots) prof[tid] = 0;
  __syncthreads();
  lap(kProfileStart);
  const int pos = *p.pos;
  const int qkv_dim = (p.heads + 2 * p.kv_heads) * p.head_dim;
  const int items = p.heads * p.max_splits;  // attention items, split-major, round robin over the blocks
  int seq = 0;
  for (int layer = 0; layer < NL; ++layer) {
    const DecodeLayer& ld = p.layers[layer];
    unsigned* cnt = p.counters + layer * kCounters;
    if (bp.hi[0] > bp.lo[0]) {  // q/k/v
      if (layer > 0) wait_count(cnt - kCounters + kDownDone, bp.geo[3].tiles);
      lap(kProfileWaitQkv);
      const float r = rsqrtf(sum_squares<T>(p.h, p.hidden, red16) / (float)p.hidden + p.eps);
      zero_share<T>(p.gu, (size_t)2 * p.inter, bp.lo[0], bp.hi[0], bp.geo[0].tiles);  // down (last layer) read it
      seq = run_linear<T, GemvInput::RmsNorm>(bp, ptrs, NL, ring, cur, ld.lin[0], 0, seq, p.h, ld.input_norm, r,
                                              p.qkv, xs);
      signal_count(cnt + kQkvDone, bp.hi[0] - bp.lo[0]);
      lap(kProfileQkv);
    }
    if (b < items) {  // attention
      wait_count(cnt + kQkvDone, bp.geo[0].tiles);
      lap(kProfileWaitAttn);
      for (int it = b; it < items; it += G)
        attention_item<T>(p, ld, it % p.heads, it / p.heads, pos, scratch, cnt + kHeadsDone);
      lap(kProfileAttn);
    }
    if (bp.hi[1] > bp.lo[1]) {  // o_proj, into the residual stream
      wait_count(cnt + kHeadsDone, p.heads);
      lap(kProfileWaitO);
      seq = run_linear<T, GemvInput::Half>(bp, ptrs, NL, ring, cur, ld.lin[1], 1, seq, p.att, nullptr, 0.f, p.h, xs);
      signal_count(cnt + kODone, bp.hi[1] - bp.lo[1]);
      lap(kProfileO);
    }
    if (bp.hi[2] > bp.lo[2]) {  // gate/up
      wait_count(cnt + kODone, bp.geo[1].tiles);
      lap(kProfileWaitGateUp);
      const float r = rsqrtf(sum_squares<T>(p.h, p.hidden, red16) / (float)p.hidden + p.eps);
      zero_share<T>(p.qkv, (size_t)qkv_dim, bp.lo[2], bp.hi[2], bp.geo[2].tiles);  // attention has read it
      seq = run_linear<T, GemvInput::RmsNorm>(bp, ptrs, NL, ring, cur, ld.lin[2], 2, seq, p.h, ld.post_norm, r, p.gu,
                                              xs);
      signal_count(cnt + kGateUpDone, bp.hi[2] - bp.lo[2]);
      lap(kProfileGateUp);
    }
    if (bp.hi[3] > bp.lo[3]) {  // down, into the residual stream
      wait_count(cnt + kGateUpDone, bp.geo[2].tiles);
      lap(kProfileWaitDown);
      seq = run_linear<T, GemvInput::SiluGateUp>(bp, ptrs, NL, ring, cur, ld.lin[3], 3, seq, p.gu, nullptr, 0.f, p.h,
                                                 xs);
      signal_count(cnt + kDownDone, bp.hi[3] - bp.lo[3]);
      lap(kProfileDown);
    }
  }
  if (b == 0) {  // the final norm's sum of squares, for the lm_head
    wait_count(p.counters + (NL - 1) * kCounters + kDownDone, bp.geo[3].tiles);
    const float ss = sum_squares<T>(p.h, p.hidden, red16);
    if (tid == 0) *p.final_sum_sq = ss;
  }
  lap(kProfileEnd);
  if (p.profile && tid < kProfileSlots) p.profile[(size_t)b * kProfileSlots + tid] = prof[tid];
  // The last block to leave resets the counters for the next launch.
  __syncthreads();
  if (tid == 0) {
    __threadfence();
    unsigned* exits = p.counters + NL * kCounters;
    if (atomicAdd(exits, 1u) == (unsigned)G - 1) {
      for (int i = 0; i <= NL * kCounters; ++i) p.counters[i] = 0;
      __threadfence();
    }
  }
}
#else
template <int T>
__global__ void __launch_bounds__(T, 1) decode_persistent_kernel(const DecodeStep) {
  __trap();
}
#endif  // sm_90

using KernelFn = void (*)(DecodeStep);
std::atomic<unsigned long long> launches{0};
KernelFn kernel_for(int threads) {
  return threads == 256 ? decode_persistent_kernel<256> : decode_persistent_kernel<512>;
}

}  // namespace

bool& persistent_decode_flag() {
  // opt-in until it is measured faster than the 5-kernel path (docs/PERF-NOTES.md)
  static bool on = env_switch_set("XLLAMA_PERSISTENT_DECODE");
  return on;
}

size_t decode_step_counters(int num_layers) { return (size_t)num_layers * kCounters + 1; }

bool decode_step_prepare(DecodeStep& st, const std::vector<DecodeLayer>& layers) {
  if (layers.empty() || (int)layers.size() != st.num_layers) return false;
  int dev = 0, major = 0;
  XL_CUDA_CHECK(cudaGetDevice(&dev));
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  if (major < 9) return false;  // bulk copies, mbarrier transaction counts and vector atomics
  const int D = st.head_dim;
  if (D % 8 || D > 256 || st.heads % st.kv_heads || st.max_splits < 1) return false;
  if (st.threads == 0) {
    const char* v = std::getenv("XLLAMA_DECODE_THREADS");
    st.threads = v && *v ? std::atoi(v) : kDefaultThreads;
  }
  const int T = st.threads == 256 ? 256 : 512, W = T / 32, R = tile_rows(T);
  st.threads = T;
  int min_gs = 1 << 30, max_k = 0;
  bool any_zeros = false;
  for (int li = 0; li < kLinears; ++li) {
    const QWeight& w0 = layers[0].lin[li];
    for (const DecodeLayer& l : layers) {
      const QWeight& w = l.lin[li];
      // every layer alike: one tile plan serves them all
      if (!w.qweight || !w.scales || w.K != w0.K || w.N != w0.N || w.group_size != w0.group_size) return false;
      if (w.K % 8 || w.N % 8 || w.group_size % 8 || w.group_size <= 0) return false;
      if (w.zeros && w.N % 16) return false;  // zero rows are copied in 16-byte multiples
      any_zeros = any_zeros || w.zeros;
    }
    min_gs = std::min(min_gs, w0.group_size);
    max_k = std::max(max_k, w0.K);
  }
  const QWeight* l0 = layers[0].lin;
  if (l0[0].K != st.hidden || l0[0].N != (st.heads + 2 * st.kv_heads) * D || l0[1].K != st.heads * D ||
      l0[1].N != st.hidden || l0[2].K != st.hidden || l0[2].N != 2 * st.inter || l0[3].K != st.inter ||
      l0[3].N != st.hidden)
    return false;
  // Stage: weights, then the scales and zeros of the groups a tile touches.
  const int max_groups = (R * 8 - 1) / min_gs + 2;
  if (max_groups > 8) return false;  // one group row per lane of 16..23 (and 24..31)
  st.scale_off = R * kRowBytes;
  st.zero_off = st.scale_off + max_groups * 256;
  st.stage_bytes = ((any_zeros ? st.zero_off + max_groups * 128 : st.zero_off) + 127) / 128 * 128;
  // x staging (a linear's whole K as half2 pairs) or the attention items' scratch, whichever is larger
  int tpp = 1;
  while (tpp * 8 < D) tpp <<= 1;
  const int slots = T / tpp;
  st.scratch_floats = (std::max(256 + slots * D + 2 * slots, max_k / 2) + 3) / 4 * 4;  // 16-byte aligned
  const size_t fixed = (size_t)st.scratch_floats * 4 + (size_t)st.num_layers * kLinears * sizeof(StreamPtrs);
  int optin = 0, sms = 0;
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  KernelFn k = kernel_for(T);
  cudaFuncAttributes attr{};
  XL_CUDA_CHECK(cudaFuncGetAttributes(&attr, k));
  const size_t static_smem = attr.sharedSizeBytes;
  if ((size_t)optin < fixed + static_smem) return false;
  const int stages = (int)std::min<size_t>(kMaxStages, ((size_t)optin - fixed - static_smem) / ((size_t)W * st.stage_bytes));
  if (stages < 2) return false;
  st.stages = stages;
  st.smem = (size_t)W * stages * st.stage_bytes + fixed;
  XL_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)st.smem));
  int per_sm = 0;
  XL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, T, st.smem));
  if (per_sm < 1) return false;
  st.grid = per_sm * sms;  // every block resident: blocks wait on each other
  return true;
}

void decode_step(const DecodeStep& st, cudaStream_t s) {
  launch(kernel_for(st.threads), dim3(st.grid), dim3(st.threads), st.smem, s, st);
  XL_CUDA_LAUNCH_CHECK();
  ++launches;
}

unsigned long long decode_step_enqueued() { return launches.load(); }

}  // namespace xllama::cuda
