// Whole-token decode for one row as one persistent kernel (DecodeStep in kernels.h).
//
// Why: with one kernel per GEMV, every boundary drains the memory pipe (tail, launch, ramp: ~3-4 us each,
// 5 per layer), and 8-45 MB matrices never reach full bandwidth. Here one block per SM owns a fixed share of
// every layer's weight tiles and streams them into a ring of shared-memory stages, S - 1 tiles ahead of the
// one it computes: bulk copies on sm_90 (the copy engine; the SMs' own loads, e.g. attention's, don't queue
// behind them), 16-byte cp.async elsewhere. The loads never wait on activations, so the stream runs on through the
// phase boundaries; only the arithmetic waits, on per-layer counters in global memory.
//
// Tiles: 128 columns (32 lanes x 4) x 64 packed rows (512 input rows) = 32 KB of 4-bit weights, with the
// groups' scales (and zeros) alongside. A linear's tiles are numbered split-major (t = split * ncol + col)
// and each block takes a contiguous range of them, so a block mostly stays in one K split and stages its
// activations once. Each tile's 16 warps own 4 consecutive packed rows each; the warps' column sums are
// reduced in shared memory and added to the output with atomics (K is split over blocks).
// Phases per layer, each waiting for the whole previous phase (counters[layer][phase] = tiles done):
//   q/k/v (RMSNorm of h while staging) -> attention items (head, split), round robin over the blocks ->
//   o_proj (adds into h) -> gate/up (RMSNorm) -> down (SiLU gate while staging, adds into h).
// Deadlock freedom: every block is resident (one per SM, sized by the occupancy query), items only wait on
// items earlier in the global order, and a block runs its items in that order.
// Memory model: data written inside the kernel (h, qkv, gu, att, partials, new KV rows) is read with
// ld.global.cg (L2, never a stale L1 line); a phase's writers fence, sync, and one thread adds to the
// counter; a waiter's thread 0 spins with ld.acquire.gpu and the block syncs (cooperative groups' pattern).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "cuda/attention_step.cuh"
#include "cuda/cp_async.cuh"
#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/q4_dequant.cuh"
#include "cuda/rope_pair.cuh"

namespace xllama::cuda {

namespace {

// Threads per block: 512 or 1024 (T below); attention items use the first 512.
constexpr int kDefaultThreads = 512, kAttnThreads = 512;
constexpr int kTileCols = 128;                       // 32 lanes x 4 columns
constexpr int kTileRows = 64;                        // packed rows (8 input rows each) per tile
constexpr int kRowBytes = kTileCols * 4;             // one packed row of a tile: 512 bytes
constexpr int kLinears = 4;                          // q/k/v, o_proj, gate/up, down
enum Counter { kQkvDone = 0, kHeadsDone = 1, kODone = 2, kGateUpDone = 3, kDownDone = 4, kCounters = 5 };

struct Geometry {
  int ncol, splits, tiles;
};
__host__ __device__ inline Geometry geometry(int K, int N) {
  Geometry g;
  g.ncol = (N + kTileCols - 1) / kTileCols;
  g.splits = (K / 8 + kTileRows - 1) / kTileRows;
  g.tiles = g.ncol * g.splits;
  return g;
}

// Per-layer pointers the producer needs for every tile, copied to shared memory once (a global load on
// the issue path would stall the block for an L2 round trip per tile).
struct StreamPtrs {
  const uint32_t* qweight;
  const __half* scales;
  const uint8_t* zeros;
  long long pad;
};

// What the block needs about its share, in shared memory.
struct BlockPlan {
  int lo[kLinears], hi[kLinears];  // this block's tile range of each linear
  Geometry geo[kLinears];
  int K[kLinears], N[kLinears], group_size[kLinears], sym_zero[kLinears];
  int per_layer;                   // tiles per layer (all linears)
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ < 900  // the ring's fallback below sm_90
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}
#endif

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

struct Ring {
  unsigned char* base;
  int stage_bytes, scale_off, zero_off;
  uint64_t* full;  // sm_90: one mbarrier per stage, completed by the bulk copies' bytes
  __device__ unsigned char* stage(int seq, int S) const { return base + (size_t)(seq % S) * stage_bytes; }
};

// Waits until ring entry seq has landed in its stage (this thread's view; the caller then syncs the block).
template <int S>
__device__ __forceinline__ void ring_wait(const Ring& ring, int seq) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned bar = (unsigned)__cvta_generic_to_shared(ring.full + seq % S);
  const unsigned parity = (unsigned)(seq / S) & 1u;
  unsigned done = 0;
  while (!done)
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
#else
  cp_async_wait<S - 2>();
#endif
}

// The producer's position in the block's tile sequence (layer by layer, linear by linear, this block's range
// of each, split-major), with what the copies need. Every thread keeps the same copy and steps it once per
// issued tile (divisions only when the split changes).
struct Cursor {
  int layer, li, t, s, c;
  int r0, nr, g0, ng;  // the split's packed rows and groups
  __device__ void split_changed(const BlockPlan& bp) {
    r0 = s * kTileRows, nr = min(kTileRows, bp.K[li] / 8 - r0);
    g0 = r0 * 8 / bp.group_size[li], ng = ((r0 + nr) * 8 - 1) / bp.group_size[li] - g0 + 1;
  }
  __device__ void enter(const BlockPlan& bp, int num_layers) {  // from t = lo of (layer, li) on, skipping empty ranges
    while (layer < num_layers && t >= bp.hi[li]) {
      if (++li == kLinears) li = 0, ++layer;
      t = bp.lo[li];
    }
    if (layer < num_layers) {
      s = t / bp.geo[li].ncol, c = t - s * bp.geo[li].ncol;
      split_changed(bp);
    }
  }
  __device__ void start(const BlockPlan& bp, int num_layers) {
    layer = 0, li = 0, t = bp.lo[0];
    enter(bp, num_layers);
  }
  __device__ void next(const BlockPlan& bp, int num_layers) {
    if (++t >= bp.hi[li]) return enter(bp, num_layers);
    if (++c == bp.geo[li].ncol) c = 0, ++s, split_changed(bp);
  }
};

// Starts the copies of the cursor's tile into `stage` and steps the cursor. sm_90: warp 0 issues one bulk copy
// per weight row and per group row (the copy engine, not the SMs' load path, moves them), completing on the
// stage's mbarrier. Older GPUs: every thread issues 16-byte cp.async copies, one commit group per call (empty
// past the end, so the group count stays regular).
template <int T>
__device__ __forceinline__ void issue_tile(const BlockPlan& bp, const StreamPtrs* ptrs, int num_layers, Cursor& cur,
                                           const Ring& ring, int entry, int S) {
  unsigned char* stage = ring.stage(entry, S);
  if (cur.layer < num_layers) {
    const int li = cur.li, N = bp.N[li];
    const StreamPtrs w = ptrs[cur.layer * kLinears + li];
    const int c0 = cur.c * kTileCols, cols = min(kTileCols, N - c0), nr = cur.nr, ng = cur.ng, g0 = cur.g0;
    const uint32_t* src = w.qweight + (size_t)cur.r0 * N + c0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      const unsigned bar = (unsigned)__cvta_generic_to_shared(ring.full + entry % S);
      const unsigned bytes = (unsigned)(nr * cols * 4 + ng * cols * 2 + (w.zeros ? ng * cols : 0));
      if (lane == 0)
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
      __syncwarp();
      // the stage was last read through the generic proxy (the block synced since); the copy engine writes it next
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      auto bulk = [&](void* dst, const void* gsrc, unsigned n) {
        asm volatile(
            "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                (unsigned)__cvta_generic_to_shared(dst)),
            "l"(gsrc), "r"(n), "r"(bar)
            : "memory");
      };
      for (int row = lane; row < nr; row += 32) bulk(stage + row * kRowBytes, src + (size_t)row * N, cols * 4);
      if (lane < ng) bulk(stage + ring.scale_off + lane * 256, w.scales + (size_t)(g0 + lane) * N + c0, cols * 2);
      if (w.zeros && lane < ng) bulk(stage + ring.zero_off + lane * 128, w.zeros + (size_t)(g0 + lane) * N + c0, cols);
    }
#else
    for (int i = threadIdx.x; i < nr * 32; i += T) {
      const int row = i >> 5, ch = i & 31;
      if (ch * 4 < cols) cp_async16(stage + row * kRowBytes + ch * 16, src + (size_t)row * N + ch * 4);
    }
    for (int i = threadIdx.x; i < ng * 16; i += T) {
      const int gi = i >> 4, ch = i & 15;
      if (ch * 8 < cols)
        cp_async16(stage + ring.scale_off + gi * 256 + ch * 16, w.scales + (size_t)(g0 + gi) * N + c0 + ch * 8);
    }
    if (w.zeros) {
      for (int i = threadIdx.x; i < ng * 32; i += T) {
        const int gi = i >> 5, ch = i & 31;
        if (ch * 4 < cols)
          cp_async4(stage + ring.zero_off + gi * 128 + ch * 4, w.zeros + (size_t)(g0 + gi) * N + c0 + ch * 4);
      }
    }
#endif
    cur.next(bp, num_layers);
  }
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ < 900
  cp_async_commit();
#endif
}

// The activations of packed rows [r0, r0 + nr) as (k, k + 4) pairs times 1/16, the GEMV kernel's staging
// (stage_x in kernels_gemv_q4.cu) with in-kernel data read from L2.
template <int T, GemvInput IN>
__device__ __forceinline__ void stage_tile_x(const QWeight& w, const void* xv, const __half* norm, float r, int r0,
                                             int nr, __half2* xs) {
  for (int i = threadIdx.x; i < nr * 4; i += T) {
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

// Computes this block's tiles [lo, hi) of linear li in `layer`: y += W x, x from xv as IN says. Consumes
// ring entries from `seq` on and keeps the ring S - 1 tiles ahead. Returns the next entry.
template <int S, int T, GemvInput IN>
__device__ int run_linear(const BlockPlan& bp, const StreamPtrs* ptrs, int num_layers, const Ring& ring, Cursor& cur,
                          const QWeight& w, int li, int seq, const void* xv, const __half* norm, float r, float* y,
                          __half2* xs, float* red) {
  constexpr int kWarps = T / 32, kRowsPerWarp = kTileRows / kWarps;
  static_assert(kTileRows % kWarps == 0, "warps own whole rows");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int ncol = bp.geo[li].ncol;
  int s = bp.lo[li] / ncol, c = bp.lo[li] - s * ncol, cur_split = -1;
  const int rows_per_group = w.group_size / 8;
  const bool warp_in_one_group = rows_per_group % kRowsPerWarp == 0;  // warps start at multiples of their rows
  int r0 = 0, nr = 0, g0 = 0;
  for (int t = bp.lo[li]; t < bp.hi[li]; ++t, ++seq) {
    ring_wait<S>(ring, seq);  // entry seq has landed (as this thread sees it)
    __syncthreads();          // for everyone; everyone is done with entry seq - 1 and its slot
    issue_tile<T>(bp, ptrs, num_layers, cur, ring, seq + S - 1, S);
    const int c0 = c * kTileCols;
    if (s != cur_split) {
      cur_split = s;
      r0 = s * kTileRows, nr = min(kTileRows, w.K / 8 - r0), g0 = r0 / rows_per_group;
      stage_tile_x<T, IN>(w, xv, norm, r, r0, nr, xs);
      __syncthreads();
    }
    const unsigned char* st = ring.stage(seq, S);
    float acc[1][4] = {{0.f, 0.f, 0.f, 0.f}};
    const int row0 = warp * kRowsPerWarp;
    if (c0 + lane * 4 < w.N && row0 < nr) {
      uint4 q[kRowsPerWarp];
#pragma unroll
      for (int u = 0; u < kRowsPerWarp; ++u)
        if (row0 + u < nr) q[u] = *reinterpret_cast<const uint4*>(st + (row0 + u) * kRowBytes + lane * 16);
      int cur_g = -1;
      float sc[4];
      __half2 z2[8];
      const int g_first = (r0 + row0) / rows_per_group;
#pragma unroll
      for (int u = 0; u < kRowsPerWarp; ++u) {
        if (row0 + u >= nr) break;
        const int g = warp_in_one_group ? g_first : (r0 + row0 + u) / rows_per_group;
        if (g != cur_g) {
          cur_g = g;
          const uint2 sraw = *reinterpret_cast<const uint2*>(st + ring.scale_off + (g - g0) * 256 + lane * 8);
          if (w.zeros) {
            const uint32_t zw = *reinterpret_cast<const uint32_t*>(st + ring.zero_off + (g - g0) * 128 + lane * 4);
            group_params<false>(sraw, zw, w.sym_zero, sc, z2);
          } else {
            group_params<true>(sraw, 0u, w.sym_zero, sc, z2);
          }
        }
        accumulate_row<1>(q[u], z2, sc, xs, kTileRows, (row0 + u) * 4, acc);
      }
    }
    reinterpret_cast<float4*>(red)[warp * 32 + lane] = make_float4(acc[0][0], acc[0][1], acc[0][2], acc[0][3]);
    __syncthreads();
    if (threadIdx.x < kTileCols) {
      const int n = c0 + threadIdx.x;
      if (n < w.N) {
        float v = 0.f;
#pragma unroll
        for (int wi = 0; wi < kWarps; ++wi) v += red[wi * kTileCols + threadIdx.x];
        if (s == 0 && w.bias) v += __half2float(w.bias[n]);
        atomicAdd(y + n, v);
      }
    }
    if (++c == ncol) c = 0, ++s;
  }
  return seq;
}

// One (head, split) of decode attention for the single row at position pos (attention_kernel<ROPE> in
// kernels_model.cu with 512 threads): writes this position's rotated k and v into the caches if the split
// covers it, attends over its share of [0, pos], and either writes the head's output or its partial; the
// last split of a head to finish combines them. Counts the head in heads_done once its output is written.
template <int T>
__device__ void attention_item(const DecodeStep& p, const DecodeLayer& ld, int head, int split, int pos, float* sm,
                               unsigned* heads_done) {
  constexpr int kThreads = kAttnThreads;  // lane groups over the first 512 threads; the rest only sync
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
      rotate_pair(a, b, pos, p.inv_freq[j]);
      kd[j] = __float2half(a), kd[j + half_d] = __float2half(b);
      vd[j] = __float2half(__ldcg(vsrc + j)), vd[j + half_d] = __float2half(__ldcg(vsrc + j + half_d));
    }
  }
  const float* qsrc = p.qkv + (size_t)head * D;
  for (int j = tid; j < half_d; j += kThreads) {
    float a = __ldcg(qsrc + j), b = __ldcg(qsrc + j + half_d);
    rotate_pair(a, b, pos, p.inv_freq[j]);
    qrot[j] = __half2float(__float2half(a)), qrot[j + half_d] = __half2float(__float2half(b));
  }
  __syncthreads();  // also orders the cache writes above before the reads below
  float qv[8], acc[8];
#pragma unroll
  for (int t = 0; t < 8; ++t) qv[t] = active_dims ? qrot[d0 + t] * scale : 0.f, acc[t] = 0.f;
  float mrun = -INFINITY, lrun = 0.f;
  const int lane = tid & 31;
  const unsigned group_mask = tpp >= 32 ? 0xffffffffu : (((1u << tpp) - 1u) << (lane & ~(tpp - 1)));
  constexpr int U = T > 512 ? 2 : 4;  // key positions per lane group in flight (fewer registers at 1024 threads)
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

template <int S, int T>
__global__ void __launch_bounds__(T, 1) decode_persistent_kernel(const DecodeStep p) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ BlockPlan bp;
  __shared__ float red16[T / 32];
  __shared__ __align__(8) uint64_t full_bar[S];
  const int tid = threadIdx.x, G = gridDim.x, b = blockIdx.x, NL = p.num_layers;
  const Ring ring{smem, p.stage_bytes, p.scale_off, p.zero_off, full_bar};
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (tid == 0) {
    for (int k = 0; k < S; ++k)
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"((unsigned)__cvta_generic_to_shared(full_bar + k))
                   : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
#endif
  __half2* xs = reinterpret_cast<__half2*>(smem + (size_t)S * p.stage_bytes);         // [kTileRows * 4]
  float* scratch = reinterpret_cast<float*>(xs + kTileRows * 4);                      // [scratch_floats]
  StreamPtrs* ptrs = reinterpret_cast<StreamPtrs*>(scratch + p.scratch_floats);      // [NL][4]

  if (tid < kLinears) {
    const QWeight& w = p.layers[0].lin[tid];
    const Geometry g = geometry(w.K, w.N);
    bp.geo[tid] = g;
    bp.lo[tid] = (int)((long long)g.tiles * b / G);
    bp.hi[tid] = (int)((long long)g.tiles * (b + 1) / G);
    bp.K[tid] = w.K, bp.N[tid] = w.N, bp.group_size[tid] = w.group_size, bp.sym_zero[tid] = w.sym_zero;
  }
  for (int i = tid; i < NL * kLinears; i += T) {
    const QWeight& w = p.layers[i / kLinears].lin[i % kLinears];
    ptrs[i] = StreamPtrs{w.qweight, w.scales, w.zeros, 0};
  }
  __syncthreads();
  if (tid == 0) {
    int n = 0;
    for (int i = 0; i < kLinears; ++i) n += bp.hi[i] - bp.lo[i];
    bp.per_layer = n;
  }
  __syncthreads();
  // Weights never depend on earlier kernels: the ring fills while the previous kernel drains.
  Cursor cur;
  cur.start(bp, NL);
  for (int k = 0; k < S - 1; ++k) issue_tile<T>(bp, ptrs, NL, cur, ring, k, S);
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
      const QWeight w = ld.lin[0];
      seq = run_linear<S, T, GemvInput::RmsNorm>(bp, ptrs, NL, ring, cur, w, 0, seq, p.h, ld.input_norm, r, p.qkv, xs,
                                              scratch);
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
      const QWeight w = ld.lin[1];
      seq = run_linear<S, T, GemvInput::Half>(bp, ptrs, NL, ring, cur, w, 1, seq, p.att, nullptr, 0.f, p.h, xs, scratch);
      signal_count(cnt + kODone, bp.hi[1] - bp.lo[1]);
      lap(kProfileO);
    }
    if (bp.hi[2] > bp.lo[2]) {  // gate/up
      wait_count(cnt + kODone, bp.geo[1].tiles);
      lap(kProfileWaitGateUp);
      const float r = rsqrtf(sum_squares<T>(p.h, p.hidden, red16) / (float)p.hidden + p.eps);
      zero_share<T>(p.qkv, (size_t)qkv_dim, bp.lo[2], bp.hi[2], bp.geo[2].tiles);  // attention has read it
      const QWeight w = ld.lin[2];
      seq = run_linear<S, T, GemvInput::RmsNorm>(bp, ptrs, NL, ring, cur, w, 2, seq, p.h, ld.post_norm, r, p.gu, xs,
                                              scratch);
      signal_count(cnt + kGateUpDone, bp.hi[2] - bp.lo[2]);
      lap(kProfileGateUp);
    }
    if (bp.hi[3] > bp.lo[3]) {  // down, into the residual stream
      wait_count(cnt + kGateUpDone, bp.geo[2].tiles);
      lap(kProfileWaitDown);
      const QWeight w = ld.lin[3];
      seq = run_linear<S, T, GemvInput::SiluGateUp>(bp, ptrs, NL, ring, cur, w, 3, seq, p.gu, nullptr, 0.f, p.h, xs,
                                                 scratch);
      signal_count(cnt + kDownDone, bp.hi[3] - bp.lo[3]);
      lap(kProfileDown);
    }
  }
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ < 900
  cp_async_wait<0>();
#endif
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

using KernelFn = void (*)(DecodeStep);
std::atomic<unsigned long long> launches{0};
KernelFn kernel_for(int stages, int threads) {
  if (threads == 1024) {
    switch (stages) {
      case 3: return decode_persistent_kernel<3, 1024>;
      case 4: return decode_persistent_kernel<4, 1024>;
      case 5: return decode_persistent_kernel<5, 1024>;
      default: return decode_persistent_kernel<6, 1024>;
    }
  }
  switch (stages) {
    case 3: return decode_persistent_kernel<3, 512>;
    case 4: return decode_persistent_kernel<4, 512>;
    case 5: return decode_persistent_kernel<5, 512>;
    default: return decode_persistent_kernel<6, 512>;
  }
}

}  // namespace

bool& persistent_decode_flag() {
  static bool on = [] {  // opt-in: slower than the 5-kernel path so far (docs/PERF-NOTES.md, session 5)
    const char* v = std::getenv("XLLAMA_PERSISTENT_DECODE");
    return v && *v && *v != '0';
  }();
  return on;
}

size_t decode_step_counters(int num_layers) { return (size_t)num_layers * kCounters + 1; }

bool decode_step_prepare(DecodeStep& st, const std::vector<DecodeLayer>& layers) {
  if (layers.empty() || (int)layers.size() != st.num_layers) return false;
  const int D = st.head_dim;
  if (D % 8 || D > 256 || st.heads % st.kv_heads || st.max_splits < 1) return false;
  int min_gs = 1 << 30;
  for (int li = 0; li < kLinears; ++li) {
    const QWeight& w0 = layers[0].lin[li];
    for (const DecodeLayer& l : layers) {
      const QWeight& w = l.lin[li];
      // every layer alike: one tile plan serves them all
      if (!w.qweight || !w.scales || w.K != w0.K || w.N != w0.N || w.group_size != w0.group_size) return false;
      if (w.K % 8 || w.N % 8 || w.group_size % 8 || w.group_size <= 0) return false;
      if (w.zeros && w.N % 16) return false;  // zero rows are copied in 16-byte multiples
    }
    min_gs = std::min(min_gs, w0.group_size);
  }
  const QWeight* l0 = layers[0].lin;
  if (l0[0].K != st.hidden || l0[0].N != (st.heads + 2 * st.kv_heads) * D || l0[1].K != st.heads * D ||
      l0[1].N != st.hidden || l0[2].K != st.hidden || l0[2].N != 2 * st.inter || l0[3].K != st.inter ||
      l0[3].N != st.hidden)
    return false;
  // Stage: weights, then the scales and zeros of the groups a tile touches.
  const int max_groups = (kTileRows * 8 - 1) / min_gs + 2;
  st.scale_off = kTileRows * kRowBytes;
  st.zero_off = st.scale_off + max_groups * 256;
  st.stage_bytes = (st.zero_off + max_groups * 128 + 127) / 128 * 128;
  if (st.threads == 0) {
    const char* v = std::getenv("XLLAMA_DECODE_THREADS");
    st.threads = v && *v ? std::atoi(v) : kDefaultThreads;
  }
  const int T = st.threads == 512 ? 512 : 1024;
  st.threads = T;
  if (max_groups > 32) return false;  // one group row per lane of the producer warp (group size >= 32)
  int tpp = 1;
  while (tpp * 8 < D) tpp <<= 1;
  const int slots = kAttnThreads / tpp;
  st.scratch_floats = (std::max(256 + slots * D + 2 * slots, T / 32 * kTileCols) + 3) / 4 * 4;  // 16-byte aligned
  const size_t fixed = (size_t)kTileRows * 4 * sizeof(__half2) + (size_t)st.scratch_floats * 4 +
                       (size_t)st.num_layers * kLinears * sizeof(StreamPtrs);
  int dev = 0, optin = 0, sms = 0;
  XL_CUDA_CHECK(cudaGetDevice(&dev));
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaFuncAttributes attr{};
  XL_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel_for(6, T)));  // static shared memory, the same for every S
  const size_t static_smem = attr.sharedSizeBytes;
  if ((size_t)optin < fixed + static_smem) return false;
  const int stages = (int)std::min<size_t>(6, ((size_t)optin - fixed - static_smem) / st.stage_bytes);
  if (stages < 3) return false;
  st.stages = stages;
  st.smem = (size_t)stages * st.stage_bytes + fixed;
  KernelFn k = kernel_for(stages, T);
  XL_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)st.smem));
  int per_sm = 0;
  XL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, T, st.smem));
  if (per_sm < 1) return false;
  st.grid = per_sm * sms;  // every block resident: blocks wait on each other
  return true;
}

void decode_step(const DecodeStep& st, cudaStream_t s) {
  launch(kernel_for(st.stages, st.threads), dim3(st.grid), dim3(st.threads), st.smem, s, st);
  XL_CUDA_LAUNCH_CHECK();
  ++launches;
}

unsigned long long decode_step_enqueued() { return launches.load(); }

}  // namespace xllama::cuda
