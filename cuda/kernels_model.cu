// Per-token model kernels: embedding, RMSNorm, SiLU-gate, RoPE + KV-cache write, attention
// (flash-decoding split over the keys), and random fills for dummy models.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/attention_step.cuh"
#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/rope_pair.cuh"
#include "cuda/zero_fill.cuh"

namespace xllama::cuda {

namespace {

int grid_for(size_t total, int threads) {
  return (int)std::min<size_t>((total + threads - 1) / threads, 65535);
}

__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < nw; ++i) t += red[i];
  return t;
}

// One block per row (an untied table lives in host memory: each row crosses PCIe once), as 16-byte loads, up to 4
// per thread issued before any is used: a row from host memory is one PCIe round trip. Element by element it was one
// round trip per element a thread reads (4 for a 4096-wide row): 12.0 µs per token on the H200, now 5.1
// (docs/PERF-NOTES.md, session 17). hidden % 8 == 0, table and h 16-byte aligned (embed_rows checks).
__global__ void embed_kernel(const __half* __restrict__ table, const int* __restrict__ tokens, int hidden,
                             float* __restrict__ h, float* __restrict__ sum_sq, ZeroFill zero0, ZeroFill zero1) {
  wait_for_previous_kernel();
  __shared__ float red[32];
  zero_fill(zero0);
  zero_fill(zero1);
  const int row = blockIdx.x, nvec = hidden / 8;
  const uint4* src = reinterpret_cast<const uint4*>(table + (size_t)tokens[row] * hidden);
  float4* dst = reinterpret_cast<float4*>(h + (size_t)row * hidden);
  float ss = 0.f;
  constexpr int U = 4;
  for (int base = 0; base < nvec; base += U * blockDim.x) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * blockDim.x + threadIdx.x;
      if (j < nvec) v[u] = src[j];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * blockDim.x + threadIdx.x;
      if (j >= nvec) break;
      const __half2* p = reinterpret_cast<const __half2*>(&v[u]);
      const float2 a = __half22float2(p[0]), b = __half22float2(p[1]), c = __half22float2(p[2]),
                   d = __half22float2(p[3]);
      dst[2 * j] = make_float4(a.x, a.y, b.x, b.y);
      dst[2 * j + 1] = make_float4(c.x, c.y, d.x, d.y);
      ss = fmaf(a.x, a.x, fmaf(a.y, a.y, fmaf(b.x, b.x, fmaf(b.y, b.y, ss))));
      ss = fmaf(c.x, c.x, fmaf(c.y, c.y, fmaf(d.x, d.x, fmaf(d.y, d.y, ss))));
    }
  }
  if (!sum_sq) return;  // uniform over the block
  ss = block_sum(ss, red);
  if (threadIdx.x == 0) sum_sq[row] = ss;
}

// grid (rows, slices): every block of a row computes the row's sum of squares (the row is small and in L2)
// and writes its slice of the output; all blocks share the zeroing. Several slices per row keep a decode
// step's single row from running on one SM.
__global__ void rmsnorm_kernel(const float* __restrict__ x, int x_stride, int n, const __half* __restrict__ w,
                               float eps, __half* __restrict__ y, int y_stride, float* __restrict__ zero_buf,
                               size_t zero_count) {
  wait_for_previous_kernel();
  __shared__ float red[32];
  const int row = blockIdx.x, slice = blockIdx.y, slices = gridDim.y;
  zero_fill({zero_buf, zero_count});
  const float* xr = x + (size_t)row * x_stride;
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  ss = block_sum(ss, red);
  const float r = rsqrtf(ss / (float)n + eps);
  const int per = (n + slices - 1) / slices, end = min(n, (slice + 1) * per);
  __half* yr = y + (size_t)row * y_stride;
  for (int i = slice * per + threadIdx.x; i < end; i += blockDim.x) yr[i] = __float2half(xr[i] * r * __half2float(w[i]));
}

// Prompt rows (one block of 256 threads per row, n % 4 == 0, n <= 256 * 4 * kRmsVecs): the row is read once, 16
// bytes per load, and held in registers between the sum of squares and the scaling; the rmsnorm_kernel formula and
// rounding. (rmsnorm_kernel's 1,024-thread blocks of scalar loads read each row twice: 42 us for 2,048 x 4,096 on
// the H200, 3.5x the copy bandwidth's time; this kernel 15.5 us.)
constexpr int kRmsVecs = 8, kRmsThreads = 256;
// (No __launch_bounds__: with it ptxas spilled 4 bytes at 48 registers; without, 50 registers and no spill.)
__global__ void rmsnorm_rows_kernel(const float* __restrict__ x, int x_stride, int n, const __half* __restrict__ w,
                                    float eps, __half* __restrict__ y, int y_stride, float* __restrict__ zero_buf,
                                    size_t zero_count) {
  wait_for_previous_kernel();
  __shared__ float red[32];
  zero_fill({zero_buf, zero_count});
  const float4* xr = reinterpret_cast<const float4*>(x + (size_t)blockIdx.x * x_stride);
  const int n4 = n / 4;
  float4 v[kRmsVecs];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kRmsVecs; ++k) {
    const int i = threadIdx.x + k * kRmsThreads;
    v[k] = i < n4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    ss = fmaf(v[k].x, v[k].x, ss), ss = fmaf(v[k].y, v[k].y, ss), ss = fmaf(v[k].z, v[k].z, ss);
    ss = fmaf(v[k].w, v[k].w, ss);
  }
  ss = block_sum(ss, red);
  const float r = rsqrtf(ss / (float)n + eps);
  __half2* yr = reinterpret_cast<__half2*>(y + (size_t)blockIdx.x * y_stride);
  const __half2* wr = reinterpret_cast<const __half2*>(w);
#pragma unroll
  for (int k = 0; k < kRmsVecs; ++k) {
    const int i = threadIdx.x + k * kRmsThreads;
    if (i >= n4) continue;
    const float2 w01 = __half22float2(wr[2 * i]), w23 = __half22float2(wr[2 * i + 1]);
    yr[2 * i] = __halves2half2(__float2half(v[k].x * r * w01.x), __float2half(v[k].y * r * w01.y));
    yr[2 * i + 1] = __halves2half2(__float2half(v[k].z * r * w23.x), __float2half(v[k].w * r * w23.y));
  }
}

// Four consecutive elements as floats (16 bytes of fp32 or 8 of fp16).
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const __half* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
  const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}
__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.f + __expf(-g)) * u; }

// Eight consecutive fp16 elements as floats (16 bytes).
__device__ __forceinline__ void load8(const __half* p, float f[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(h[i]);
    f[2 * i] = v.x, f[2 * i + 1] = v.y;
  }
}

// grid (column blocks, row slices); V columns per thread: 8 (fp16 input, I % 8 == 0: 16-byte loads and stores;
// 2.4 us less than 4 on a 7B prompt of 512 on the H200), 4 (I % 4 == 0) or 1.
template <class T, int V>
__global__ void silu_mul_kernel(const T* __restrict__ gu, int m, int I, __half* __restrict__ out) {
  wait_for_previous_kernel();
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (c >= I) return;
  for (int r = blockIdx.y; r < m; r += gridDim.y) {
    const T* g = gu + (size_t)r * 2 * I + c;
    const T* u = g + I;
    __half* o = out + (size_t)r * I + c;
    if constexpr (V == 8) {
      float g8[8], u8[8];
      load8(g, g8), load8(u, u8);
      uint4 packed;
      __half2* ph = reinterpret_cast<__half2*>(&packed);
#pragma unroll
      for (int i = 0; i < 4; ++i)
        ph[i] = __floats2half2_rn(silu_times(g8[2 * i], u8[2 * i]), silu_times(g8[2 * i + 1], u8[2 * i + 1]));
      *reinterpret_cast<uint4*>(o) = packed;
    } else if (V == 4) {
      const float4 g4 = load4(g), u4 = load4(u);
      reinterpret_cast<__half2*>(o)[0] = __floats2half2_rn(silu_times(g4.x, u4.x), silu_times(g4.y, u4.y));
      reinterpret_cast<__half2*>(o)[1] = __floats2half2_rn(silu_times(g4.z, u4.z), silu_times(g4.w, u4.w));
    } else {
      o[0] = __float2half(silu_times((float)g[0], (float)u[0]));
    }
  }
}

// Two consecutive elements as floats (8 bytes of fp32 or 4 of fp16).
__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load2(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }

// One block per prompt row, whole heads per stride: a thread keeps V frequencies j..j+V-1 of the row (their cos/sin
// computed once) and takes the pairs (j + v, j + v + D/2) of every head in its stride; q and k heads are rotated,
// v copied. V = 2 (D % 4 == 0) reads and writes two elements per access.
template <class T, int V>
__global__ void rope_qkv_kernel(const T* __restrict__ qkv, int H, int KV, int D, RopeTable rope,
                                const int* __restrict__ pos, __half* __restrict__ q, __half* __restrict__ kc,
                                __half* __restrict__ vc, int S) {
  wait_for_previous_kernel();
  const int row = blockIdx.x, half_d = D / 2, heads = H + 2 * KV, lanes = half_d / V;  // threads per head
  const int j = (threadIdx.x % lanes) * V, head_step = blockDim.x / lanes;
  const int p = *pos + row;
  float c[V], sn[V];
#pragma unroll
  for (int v = 0; v < V; ++v) rope_cos_sin(p, rope.inv_freq[j + v], rope.attention_factor, c[v], sn[v]);
  const T* src = qkv + (size_t)row * heads * D;
  for (int head = threadIdx.x / lanes; head < heads; head += head_step) {
    float a[V], b[V];
    const T* sa = src + (size_t)head * D + j;
    if (V == 2) {
      const float2 a2 = load2(sa), b2 = load2(sa + half_d);
      a[0] = a2.x, a[V - 1] = a2.y, b[0] = b2.x, b[V - 1] = b2.y;
    } else {
      a[0] = (float)sa[0], b[0] = (float)sa[half_d];
    }
    if (head < H + KV) {
#pragma unroll
      for (int v = 0; v < V; ++v) rotate_pair_cs(a[v], b[v], c[v], sn[v]);
    }
    __half* dst;
    if (head < H) {
      dst = q + ((size_t)row * H + head) * D + j;
    } else if (head < H + KV) {
      dst = kc + ((size_t)(head - H) * S + p) * D + j;
    } else {
      dst = vc + ((size_t)(head - H - KV) * S + p) * D + j;
    }
    if (V == 2) {
      *reinterpret_cast<__half2*>(dst) = __floats2half2_rn(a[0], a[V - 1]);
      *reinterpret_cast<__half2*>(dst + half_d) = __floats2half2_rn(b[0], b[V - 1]);
    } else {
      dst[0] = __float2half(a[0]);
      dst[half_d] = __float2half(b[0]);
    }
  }
}

// ---- attention ----
// Block (head, row, split), THREADS threads. Lanes form groups of TPP threads, each thread owning 8 dims of one
// key position (one 16-byte load of K and of V); the THREADS/TPP groups walk the split's positions with their own
// online softmax, then the groups are merged in shared memory.
// ROPE (decode): q and the new rows' k, v come straight from the q/k/v projection's fp32 output; the block
// rotates q itself and writes the new positions it reads into the caches (blocks that share a KV head or a
// position write identical values), so decode needs no separate RoPE kernel. It reads those new positions from
// its own shared memory, not back through the caches.
// THREADS (attention_threads_flag): 256 threads hold 64 positions in flight for D = 128 (16 lane groups x 4), so a
// split of up to 64 keys is loaded in one round, before the wait.
// BATCH (attention_batch_flag, on by default): each round's positions enter a lane group's online softmax at once.
// The kernel is bound by its dependent chains, not by bandwidth (16 warps per SM, a quarter of the issue slots
// used); taking the round's positions one by one, the 7B's attention at depth 2088 took 16.8 us, batched 13.6, the
// 70B's 23.1 and 17.6 (H200; docs/PERF-NOTES.md, session 15).

// Shared memory, in floats: the lane groups' partials ([slots][D] acc, [slots] m, [slots] l, which the combine
// reuses as its staging area), then with ROPE the new rows' k and v as fp16 ([rows][2][D]).
__host__ __device__ inline int attention_partials_floats(int slots, int D) { return (slots * (D + 2) + 3) / 4 * 4; }

// Threads per key position (each holds 8 dims): the lane group size the kernel takes as tpp.
inline int attention_lanes_per_position(int D) {
  int tpp = 1;
  while (tpp * 8 < D) tpp <<= 1;
  return tpp;
}
inline size_t attention_smem_bytes(bool rope, int threads, int rows, int D) {
  return attention_partials_floats(threads / attention_lanes_per_position(D), D) * sizeof(float) +
         (rope ? (size_t)rows * 2 * D * sizeof(__half) : 0);
}

// Registers capped for 5 blocks of 128 threads per SM (as many as the kernel held before its 256-thread variant);
// 256 threads take 2 (3 would spill). attention_splits sizes the grid to what fits at once: with 17 splits at 100
// registers, the 7B's attention at depth 2048 took two waves and decode there ran 15% slower (docs/PERF-NOTES.md,
// session 12).
template <int THREADS>
constexpr int attention_min_blocks() { return THREADS >= 256 ? 2 : 5; }

template <bool ROPE, int THREADS, bool BATCH>
__global__ void __launch_bounds__(THREADS, attention_min_blocks<THREADS>())
    attention_kernel(const __half* __restrict__ q, const float* __restrict__ qkv, RopeTable rope,
                     __half* __restrict__ kc, __half* __restrict__ vc, int H, int KV, int D, int S,
                     const int* __restrict__ pos, int max_splits, int min_keys_per_split, int tpp,
                     float* __restrict__ work, unsigned* __restrict__ done, __half* __restrict__ out,
                     DeferredNorm qkv_norm) {
  extern __shared__ __align__(16) float sm[];
  const int head = blockIdx.x, row = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, slots = THREADS / tpp, slot = tid / tpp, sub = tid % tpp;
  const int d0 = sub * 8;
  const bool active_dims = d0 < D;
  const int p_first = *pos;  // the first new position (ROPE: the positions from here on are this launch's rows)
  const int L = p_first + row + 1;
  // The grid's max_splits is fixed when a decode graph is captured; the row's live length decides how many
  // take part (each at least min_keys_per_split keys), so short contexts have few partials to combine, or
  // none. The rest leave at once. Every block of a (row, head) computes the same count.
  const int splits = min(max_splits, max(1, (L + min_keys_per_split - 1) / min_keys_per_split));
  if (split >= splits) return;
  const int chunk = (L + splits - 1) / splits;
  const int start = split * chunk, end = min(L, start + chunk);
  const int kvh = head / (H / KV);
  const float scale = rsqrtf((float)D) * 1.4426950408889634f;  // log2(e): softmax with exp2
  const __half* kbase = kc + (size_t)kvh * S * D + d0;
  const __half* vbase = vc + (size_t)kvh * S * D + d0;
  __half* snew = reinterpret_cast<__half*>(sm + attention_partials_floats(slots, D));  // ROPE: [rows][2][D]
  // Lane groups (slots) walk the positions start + slot, + slots, ...; U positions per group in flight (8 took
  // 148 registers and cost a tenth of the decode speed at depth 2048, where attention is bandwidth-bound).
  constexpr int U = 4;
  uint4 kr[U], vr[U];
  // With ROPE, the cached positions before *pos were written by earlier launches (complete before the kernel
  // this one waits for started), so the first round of them loads before the wait, during the q/k/v GEMV's
  // tail (+5% 7B decode at depth 128 on the H200, the same at 2048: docs/PERF-NOTES.md, session 6).
  const int cached_end = ROPE ? min(end, p_first) : end;
  const int n0 = ROPE ? max(start, p_first) : end;  // ROPE: the new positions this block reads, [n0, end)
  if (ROPE) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int p = start + slot + u * slots;
      if (active_dims && p < cached_end) {
        kr[u] = *reinterpret_cast<const uint4*>(kbase + (size_t)p * D);
        vr[u] = *reinterpret_cast<const uint4*>(vbase + (size_t)p * D);
      }
    }
  }
  // ROPE: this thread's inverse frequency (for q's pair tid and the new row's) is a constant: read before the wait,
  // it is not one more L2 round trip on the chain after it (docs/PERF-NOTES.md, session 18)
  const float inv_freq_tid = ROPE && tid < D / 2 ? rope.inv_freq[tid] : 0.f;
  wait_for_previous_kernel();

  float qv[8], acc[8];
#pragma unroll
  for (int t = 0; t < 8; ++t) qv[t] = 0.f, acc[t] = 0.f;
  if (ROPE) {
    const int half_d = D / 2, width = (H + 2 * KV) * D;  // half_d <= 128 <= THREADS
    // q's loads and the new rows' in one round trip: q first (one pair per thread), then the new rows
    const float* qsrc = qkv + (size_t)row * width + (size_t)head * D;
    const float rq = row_norm_factor(qkv_norm, row);
    float qa = 0.f, qb = 0.f;
    if (tid < half_d) qa = qsrc[tid], qb = qsrc[tid + half_d];
    trace_mark_arrived(3, qa);  // (--timeline: q arrived)
    trace_mark_arrived(4, rq);  // (the row's norm factor)
    for (int i = tid; i < (end - n0) * half_d; i += THREADS) {
      const int p = n0 + i / half_d, j = i % half_d;
      float c, s;
      rope_cos_sin(p, i < half_d ? inv_freq_tid : rope.inv_freq[j], rope.attention_factor, c, s);  // (i < half_d: i == j == tid)
      write_new_kv_pair(qkv + (size_t)(p - p_first) * width, H, KV, kvh, D, j, row_norm_factor(qkv_norm, p - p_first),
                        c, s, kc + ((size_t)kvh * S + p) * D, vc + ((size_t)kvh * S + p) * D,
                        snew + (size_t)(p - n0) * 2 * D);
    }
    trace_mark(5);  // (--timeline: the new rows written)
    // q rotated once per block (the lane groups all need the whole head), rounded as the q buffer would be
    __shared__ float qrot[256];
    if (tid < half_d) {
      float a = qa * rq, b = qb * rq;
      rotate_pair(a, b, p_first + row, inv_freq_tid, rope.attention_factor);
      qrot[tid] = __half2float(__float2half(a)), qrot[tid + half_d] = __half2float(__float2half(b));
    }
    __syncthreads();  // qrot and the new rows in shared memory
    trace_mark(0);    // (--timeline: q and the new rows ready)
    if (active_dims)
#pragma unroll
      for (int t = 0; t < 8; ++t) qv[t] = qrot[d0 + t] * scale;
  } else if (active_dims) {
    uint4 raw = *reinterpret_cast<const uint4*>(q + ((size_t)row * H + head) * D + d0);
    const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      float2 f = __half22float2(h2[t]);
      qv[2 * t] = f.x * scale, qv[2 * t + 1] = f.y * scale;
    }
  }
  float mrun = -INFINITY, lrun = 0.f;
  // Lane groups of one slot run the same number of iterations; shuffles involve only the group.
  const int lane = tid & 31;
  const unsigned group_mask = tpp >= 32 ? 0xffffffffu : (((1u << tpp) - 1u) << (lane & ~(tpp - 1)));
  // Row u of the round at p0 (K or V): from this block's shared memory for a new position, from the cache else
  // (ROPE: the first round's cached rows were loaded before the wait), zeros past `end`.
  auto load_row = [&](int p0, bool first_round, int u, bool value, uint4& dst) {
    const int p = p0 + u * slots;
    if (active_dims && p < end) {
      if (ROPE && p >= n0) {  // a new position: this block wrote it to shared memory
        dst = *reinterpret_cast<const uint4*>(snew + (size_t)(p - n0) * 2 * D + d0 + (value ? D : 0));
      } else if (!ROPE || !first_round) {
        dst = *reinterpret_cast<const uint4*>((value ? vbase : kbase) + (size_t)p * D);
      }
    } else {
      dst = make_uint4(0, 0, 0, 0);
    }
  };
  if constexpr (BATCH) {
    // The next round's keys are requested once this round's are scored, its values once this round's are summed,
    // so a lane keeps its loads in flight through the arithmetic (where each round used to load, then compute): on
    // the H200, 7B decode at depth 2048 -0.9%, 70B -0.4%, shallower within noise (docs/PERF-NOTES.md, session 23).
    const int p_begin = start + slot;
#pragma unroll
    for (int u = 0; u < U; ++u) load_row(p_begin, true, u, false, kr[u]), load_row(p_begin, true, u, true, vr[u]);
    for (int p0 = p_begin; p0 < end; p0 += slots * U) {
      const int pn = p0 + slots * U;
      float sc[U];
      score_positions<U>(kr, qv, tpp, group_mask, sc);
#pragma unroll
      for (int u = 0; u < U; ++u) load_row(pn, false, u, false, kr[u]);
      softmax_accumulate<U>(sc, vr, p0, slots, end, mrun, lrun, acc);
#pragma unroll
      for (int u = 0; u < U; ++u) load_row(pn, false, u, true, vr[u]);
    }
  } else {
    for (int p0 = start + slot; p0 < end; p0 += slots * U) {
      const bool first_round = p0 == start + slot;
#pragma unroll
      for (int u = 0; u < U; ++u) load_row(p0, first_round, u, false, kr[u]), load_row(p0, first_round, u, true, vr[u]);
      attend_positions<U>(kr, vr, qv, p0, slots, end, tpp, group_mask, mrun, lrun, acc);
    }
  }
  trace_mark(1);  // (--timeline: the split's keys done)
  float* sacc = sm;
  float* sms = sm + slots * D;
  float* sls = sms + slots;
  if (active_dims)
#pragma unroll
    for (int t = 0; t < 8; ++t) sacc[slot * D + d0 + t] = acc[t];
  if (sub == 0) sms[slot] = mrun, sls[slot] = lrun;
  __syncthreads();
  // Each lane group's weight exp2(m_i - M) once, by the first warp, in place of its max (0 for a group without
  // keys), and the denominator summed in group order by lane 0: the sums every thread used to form itself, walking
  // the groups one dependent shared-memory load at a time (7B decode -1.2% on the H200, docs/PERF-NOTES.md
  // session 18). The sums are the same, term for term.
  __shared__ float merged[2];  // M, Ltot
  if (tid < 32) {
    float mx = -INFINITY;
    for (int i = tid; i < slots; i += 32) mx = fmaxf(mx, sms[i]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    for (int i = tid; i < slots; i += 32) sms[i] = sms[i] != -INFINITY ? exp2f(sms[i] - mx) : 0.f;
    __syncwarp();
    if (tid == 0) {
      float l = 0.f;
      for (int i = 0; i < slots; ++i) l += sls[i] * sms[i];
      merged[0] = mx, merged[1] = l;
    }
  }
  __syncthreads();
  const float M = merged[0], Ltot = merged[1];
  trace_mark(6);  // (--timeline: the lane groups' weights)
  // work is laid out for max_splits per (row, head): rows may use different counts
  const size_t rh = (size_t)row * H + head;
  float* wr = splits > 1 ? work + (rh * max_splits + split) * (D + 2) : nullptr;
  for (int d = tid; d < D; d += THREADS) {
    float o = 0.f;
    for (int i = 0; i < slots; ++i) o += sacc[i * D + d] * sms[i];
    if (splits == 1) {
      out[rh * D + d] = __float2half(o / Ltot);
    } else {
      wr[d] = o;
      if (d == 0) wr[D] = M, wr[D + 1] = Ltot;
    }
  }
  trace_mark(2);  // (--timeline: the lane groups merged)
  trace_block_end();
  if (splits == 1) return;
  // The last split block of this (row, head) to finish combines the partials (no separate kernel).
  if (!last_split_block(done + rh, splits)) return;
  combine_splits_staged<THREADS>(work + rh * max_splits * (D + 2), splits, D, sm, attention_partials_floats(slots, D),
                                 out + rh * D);
  trace_block_end();
}

// ---- random fills ----
__device__ __forceinline__ uint32_t hash_u32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return (uint32_t)x;
}

__global__ void fill_u32_kernel(uint32_t* p, size_t n, uint64_t seed) {
  wait_for_previous_kernel();
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = hash_u32(seed * 0x9e3779b97f4a7c15ULL + i);
}

__global__ void fill_half_kernel(__half* p, size_t n, uint64_t seed, float lo, float hi, bool random) {
  wait_for_previous_kernel();
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float v = lo;
    if (random) v = lo + (hi - lo) * (hash_u32(seed * 0x9e3779b97f4a7c15ULL + i) >> 8) * (1.f / 16777216.f);
    p[i] = __float2half(v);
  }
}

}  // namespace

void embed_rows(const __half* table, const int* tokens, int m, int hidden, float* h, cudaStream_t s, float* sum_sq,
                ZeroFill zero0, ZeroFill zero1) {
  if (hidden % 8 != 0 || (reinterpret_cast<uintptr_t>(table) & 15) != 0 || (reinterpret_cast<uintptr_t>(h) & 15) != 0)
    throw std::runtime_error("embed_rows: the hidden size must be a multiple of 8 and the rows 16-byte aligned");
  const int threads = std::min(1024, (hidden / 8 + 31) / 32 * 32);
  launch(embed_kernel, m, threads, 0, s, table, tokens, hidden, h, sum_sq, zero0, zero1);
  XL_CUDA_LAUNCH_CHECK();
}

void rmsnorm(const float* x, int x_stride, int m, int n, const __half* w, float eps, __half* y, int y_stride,
             cudaStream_t s, float* zero_buf, size_t zero_count) {
  // Decode rows get 16 slices of 256 threads; prompt chunks have rows enough, one block each (vectorized where the
  // shapes and alignments allow).
  const bool sliced = m <= kGemvMaxRows && n >= 16 * 256;
  const bool vec = !sliced && n % 4 == 0 && n <= kRmsThreads * 4 * kRmsVecs && x_stride % 4 == 0 && y_stride % 2 == 0 &&
                   (reinterpret_cast<uintptr_t>(x) & 15) == 0 && (reinterpret_cast<uintptr_t>(y) & 3) == 0 &&
                   (reinterpret_cast<uintptr_t>(w) & 3) == 0;
  if (vec) {
    launch(rmsnorm_rows_kernel, m, kRmsThreads, 0, s, x, x_stride, n, w, eps, y, y_stride, zero_buf, zero_count);
    XL_CUDA_LAUNCH_CHECK();
    return;
  }
  const dim3 grid(m, sliced ? 16 : 1), block(sliced ? 256 : (n >= 1024 ? 1024 : ((n + 31) / 32) * 32));
  launch(rmsnorm_kernel, grid, block, 0, s, x, x_stride, n, w, eps, y, y_stride, zero_buf, zero_count);
  XL_CUDA_LAUNCH_CHECK();
}

template <class T>
void silu_mul(const T* gu, int m, int I, __half* out, cudaStream_t s) {
  const bool vec = I % 4 == 0 && (reinterpret_cast<uintptr_t>(gu) & (4 * sizeof(T) - 1)) == 0 &&
                   (reinterpret_cast<uintptr_t>(out) & 7) == 0;
  if constexpr (std::is_same<T, __half>::value) {  // a prompt chunk's fp16 gate/up: 8 columns per thread
    if (vec && I % 8 == 0 && (reinterpret_cast<uintptr_t>(gu) & 15) == 0 &&
        (reinterpret_cast<uintptr_t>(out) & 15) == 0) {
      launch(silu_mul_kernel<T, 8>, dim3((I / 8 + 255) / 256, std::min(m, 65535)), 256, 0, s, gu, m, I, out);
      XL_CUDA_LAUNCH_CHECK();
      return;
    }
  }
  const dim3 grid((I / (vec ? 4 : 1) + 255) / 256, std::min(m, 65535));
  if (vec) launch(silu_mul_kernel<T, 4>, grid, 256, 0, s, gu, m, I, out);
  else launch(silu_mul_kernel<T, 1>, grid, 256, 0, s, gu, m, I, out);
  XL_CUDA_LAUNCH_CHECK();
}
template void silu_mul(const float*, int, int, __half*, cudaStream_t);
template void silu_mul(const __half*, int, int, __half*, cudaStream_t);

template <class T>
void rope_qkv_to_cache(const T* qkv, int m, int H, int KV, int D, RopeTable rope, const int* pos, __half* q,
                       __half* kcache, __half* vcache, int S, cudaStream_t s) {
  const bool pairs = D % 4 == 0;  // two frequencies per thread: 8- or 4-byte loads, 4-byte stores, all aligned
  const int lanes = D / 2 / (pairs ? 2 : 1), threads = lanes * std::max(1, 256 / lanes);  // whole heads per stride
  if (pairs) launch(rope_qkv_kernel<T, 2>, m, threads, 0, s, qkv, H, KV, D, rope, pos, q, kcache, vcache, S);
  else launch(rope_qkv_kernel<T, 1>, m, threads, 0, s, qkv, H, KV, D, rope, pos, q, kcache, vcache, S);
  XL_CUDA_LAUNCH_CHECK();
}
template void rope_qkv_to_cache(const float*, int, int, int, int, RopeTable, const int*, __half*, __half*, __half*,
                                int, cudaStream_t);
template void rope_qkv_to_cache(const __half*, int, int, int, int, RopeTable, const int*, __half*, __half*,
                                __half*, int, cudaStream_t);

int& attention_threads_flag() {
  static int threads = [] {
    const char* v = std::getenv("XLLAMA_ATTN_THREADS");
    return v && std::string(v) == "128" ? 128 : 256;
  }();
  return threads;
}

bool& attention_batch_flag() {
  static bool on = env_switch_on("XLLAMA_ATTN_BATCH");
  return on;
}

namespace {
// The decode attention kernel attention_batch_flag selects.
template <bool ROPE, int THREADS>
auto attention_kernel_for_flags() {
  return attention_batch_flag() ? attention_kernel<ROPE, THREADS, true> : attention_kernel<ROPE, THREADS, false>;
}

// Blocks of the decode attention (with RoPE, at the threads attention_threads_flag selects) the GPU holds at once.
template <int THREADS>
int attention_resident_blocks_at() {
  const size_t smem = attention_smem_bytes(true, THREADS, kGemvMaxRows, 128);  // head_dim 128, the most rows
  const void* k = reinterpret_cast<const void*>(attention_kernel_for_flags<true, THREADS>());
  return std::max(1, resident_blocks(k, THREADS, smem));
}
int attention_resident_blocks() {
  return attention_threads_flag() >= 256 ? attention_resident_blocks_at<256>() : attention_resident_blocks_at<128>();
}
}  // namespace

int attention_splits(int m, int H, int max_len) {
  // As many blocks as the GPU holds at once, for one decode row (KV reads dominate at long contexts and need many
  // loads in flight; a second wave of a few blocks costs as much as the first); rows already give parallelism. This
  // is the most a launch uses: the kernel takes fewer at short live lengths (kAttnMinKeysPerSplit), and the blocks
  // past those leave at once.
  const int blocks = m * H;
  int splits = std::max(1, attention_resident_blocks() / blocks);
  splits = std::min(splits, std::max(1, max_len / 64));
  return std::min(splits, 64);
}

namespace {
template <bool ROPE, int THREADS>
void launch_attention_threads(const __half* q, const float* qkv, RopeTable rope, __half* kcache,
                              __half* vcache, int m, int H, int KV, int D, int S, const int* pos, int splits,
                              int min_keys_per_split, float* work, unsigned* done, __half* out, cudaStream_t s,
                              DeferredNorm qkv_norm) {
  const int tpp = attention_lanes_per_position(D);
  const size_t smem = attention_smem_bytes(ROPE, THREADS, m, D);
  dim3 grid(H, m, splits);
  launch(attention_kernel_for_flags<ROPE, THREADS>(), grid, THREADS, smem, s, q, qkv, rope, kcache, vcache, H, KV, D, S, pos, splits,
         std::max(1, min_keys_per_split), tpp, work, done, out, qkv_norm);
  XL_CUDA_LAUNCH_CHECK();
}

template <bool ROPE>
void launch_attention(const __half* q, const float* qkv, RopeTable rope, __half* kcache, __half* vcache, int m,
                      int H, int KV, int D, int S, const int* pos, int splits, int min_keys_per_split, float* work,
                      unsigned* done, __half* out, cudaStream_t s, DeferredNorm qkv_norm = {}) {
  if (D % 8 != 0 || D > 256) throw std::runtime_error("attention: head_dim must be a multiple of 8, at most 256");
  if (attention_threads_flag() >= 256)
    launch_attention_threads<ROPE, 256>(q, qkv, rope, kcache, vcache, m, H, KV, D, S, pos, splits,
                                        min_keys_per_split, work, done, out, s, qkv_norm);
  else
    launch_attention_threads<ROPE, 128>(q, qkv, rope, kcache, vcache, m, H, KV, D, S, pos, splits,
                                        min_keys_per_split, work, done, out, s, qkv_norm);
}
}  // namespace

void attention(const __half* q, const __half* kcache, const __half* vcache, int m, int H, int KV, int D, int S,
               const int* pos, int splits, float* work, unsigned* done, __half* out, cudaStream_t s,
               int min_keys_per_split) {
  // Without ROPE the kernel only reads the caches.
  launch_attention<false>(q, nullptr, RopeTable(), const_cast<__half*>(kcache), const_cast<__half*>(vcache), m, H, KV, D,
                          S, pos, splits, min_keys_per_split, work, done, out, s);
}

int attention_rope_splits(int m, int H, int KV, int D, int max_len) {
  return attention_mma_applies(H, KV, D) ? attention_mma_splits(m, H, KV, max_len) : attention_splits(m, H, max_len);
}

void attention_rope(const float* qkv, RopeTable rope, __half* kcache, __half* vcache, int m, int H, int KV,
                    int D, int S, const int* pos, int splits, float* work, unsigned* done, __half* out,
                    cudaStream_t s, DeferredNorm qkv_norm, L2LookAhead ahead) {
  if (attention_mma_applies(H, KV, D))
    return attention_mma_rope(qkv, rope, kcache, vcache, m, H, KV, S, pos, splits, work, done, out, s, qkv_norm,
                              ahead);
  launch_attention<true>(nullptr, qkv, rope, kcache, vcache, m, H, KV, D, S, pos, splits, kAttnMinKeysPerSplit,
                         work, done, out, s, qkv_norm);
}

void fill_random_u32(uint32_t* p, size_t n, uint64_t seed, cudaStream_t s) {
  launch(fill_u32_kernel, grid_for(n, 256), 256, 0, s, p, n, seed);
  XL_CUDA_LAUNCH_CHECK();
}

void fill_random_half(__half* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t s) {
  launch(fill_half_kernel, grid_for(n, 256), 256, 0, s, p, n, seed, lo, hi, true);
  XL_CUDA_LAUNCH_CHECK();
}

void fill_half(__half* p, size_t n, float v, cudaStream_t s) {
  launch(fill_half_kernel, grid_for(n, 256), 256, 0, s, p, n, 0, v, v, false);
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
