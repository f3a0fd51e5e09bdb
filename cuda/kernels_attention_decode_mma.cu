// Decode attention on the tensor cores for head_dim 128 (Llama 7B-70B, Llama-3, Mistral). A block takes one KV head
// of one row and split, and all G = H / KV <= 8 query heads that share it (1 for the 7B and 13B, 8 for the 70B):
// each warp scores 16 keys against all of them with mma.sync m16n8k16 (keys as the 16 rows, the heads as the 8
// columns, unused ones zero) and multiplies its values the same way. So a cached row is read once per KV head, a
// round is 128 keys per block, the first requested before the kernel waits for q/k/v, and the softmax's
// arithmetic no longer bounds the chain. The last split block of a (row, KV head) combines the splits of its heads.
// The blocks whose split has no keys yet at this length request the next weights into L2 instead (L2LookAhead in
// kernels.h), before the wait, and leave: one-row decode 2.3-2.5% faster on an H100 (session 69); where every split
// is live, each block requests its share once its keys are done (7B at depth 2056: 2.1%, session 70).
// Against attention_kernel (kernels_model.cu; lane groups of FMA dot products, one block per query head), alone on
// the H200: 70B at depth 2088 17.0 -> 7.8 us, 7B 12.8 -> 11.8, 7B at 552 8.2 -> 6.1 (docs/PERF-NOTES.md, session 26).
//
// Fragment layouts (lane = 4 g + t; the dot products do not depend on which slot holds which dim or key, so each
// lane's loads are contiguous):
//   scores S^T = K Q^T: A = 16 keys x 16 dim slots, for k-step j the slots 2t, 2t+1 are dims 32t + 4j + {0, 1} and
//     2t+8, 2t+9 are 32t + 4j + {2, 3}: lane (g, t) loads keys g and g + 8 at dims [32t, 32t + 32) (64 bytes each);
//     B = q's same dims of head g, from shared memory. C: keys g, g + 8 x heads 2t, 2t + 1.
//   output O^T = V^T P: A = 16 dim rows x 16 keys, m-tile i's rows g, g + 8 are dims 16g + 2i, 16g + 2i + 1: lane
//     (g, t) loads keys 2t, 2t + 1, 2t + 8, 2t + 9 at dims [16g, 16g + 16) (32 bytes each) and pairs their halves
//     with byte permutes; B = P (keys x heads) through the warp's shared memory. C: dims 16g + 2i (+1) x heads 2t,
//     2t + 1, the same heads as the lane's softmax state.
#include <algorithm>
#include <cmath>

#include "backend/env_mib.h"
#include "cuda/attention_step.cuh"
#include "cuda/cuda_check.h"
#include "cuda/device_query.h"
#include "cuda/env_switch.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/mma_m16n8k16.cuh"
#include "cuda/rope_pair.cuh"

namespace xllama::cuda {

namespace {

constexpr int kD = 128;                     // head_dim
constexpr int kWarps = 8;                   // 16 keys each
constexpr int kThreads = kWarps * 32;
constexpr int kKeysPerRound = 16 * kWarps;  // also the fewest keys per split
constexpr int kMaxGroup = 8;                // query heads per KV head: the mma's 8 columns
constexpr int kQStride = kD + 8;            // halves per q row in shared memory
constexpr int kPStride = 24;                // halves per head row of a warp's P (16 keys; conflict-free b loads)
constexpr int kAccStride = 148;             // floats per head row of the warps' outputs (128 + 2 per 16 dims + 4)
constexpr int kMaxSplits = 64;

// A warp's output element (head h, dim d) in the merge area: 2 floats of padding after every 16 dims and a head
// stride of 148 spread the lanes' float2 stores (dims 16g + 2i of heads 2t, 2t + 1) over the banks.
__device__ __forceinline__ int acc_index(int w, int h, int d) {
  return (w * kMaxGroup + h) * kAccStride + d + 2 * (d >> 4);
}

// Shared memory, in bytes from the start (dynamic): q (fp16 [8][kQStride]), the warps' P ([warps][8][kPStride]
// fp16), the warps' outputs ([warps][8][kAccStride] floats), their running max and sum ([warps][8] each), the new
// rows' k and v (fp16 [rows][2][kD]). (The splits' combine works in registers.)
constexpr size_t kSmemQ = 0;
constexpr size_t kSmemP = kSmemQ + (size_t)kMaxGroup * kQStride * 2;
constexpr size_t kSmemAcc = kSmemP + (size_t)kWarps * kMaxGroup * kPStride * 2;
constexpr size_t kSmemMax = kSmemAcc + (size_t)kWarps * kMaxGroup * kAccStride * 4;
constexpr size_t kSmemSum = kSmemMax + (size_t)kWarps * kMaxGroup * 4;
constexpr size_t kSmemNew = kSmemSum + (size_t)kWarps * kMaxGroup * 4;
constexpr size_t smem_bytes(int rows) { return kSmemNew + (size_t)rows * 2 * kD * 2; }
static_assert(kSmemNew % 16 == 0, "the new rows are read 16 bytes at a time");
static_assert(smem_bytes(kGemvMaxRows) <= 48 * 1024, "launched without raising the dynamic shared-memory limit");

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// N 16-byte pieces of key position p's row (K or V) into dst: a cached position (< n0) from the cache at `cached`
// unless skip_cached, a new one ([n0, end)) from the block's shared memory at `fresh` unless cached_only, zeros past
// `end` (the pointers are only read where they name a row).
template <int N>
__device__ __forceinline__ void fetch_row(uint4 (&dst)[N], int p, int n0, int end, const __half* cached,
                                          const __half* fresh, bool cached_only, bool skip_cached) {
  if (p < n0 && p < end) {
    if (!skip_cached)
#pragma unroll
      for (int c = 0; c < N; ++c) dst[c] = *reinterpret_cast<const uint4*>(cached + 8 * c);
  } else if (p < end) {
    if (!cached_only)
#pragma unroll
      for (int c = 0; c < N; ++c) dst[c] = *reinterpret_cast<const uint4*>(fresh + 8 * c);
  } else {
#pragma unroll
    for (int c = 0; c < N; ++c) dst[c] = make_uint4(0, 0, 0, 0);
  }
}

__device__ __forceinline__ size_t look_ahead_requests(const L2LookAhead& ahead) {
  return ahead.chunk_bytes / kL2LookAheadRequest * ahead.chunks;
}
constexpr size_t kMaxEndRequests = 2;  // a live block's, at its end

// One of the `blocks` requesting `ahead` into L2 (the blocks without keys, or every block): requests block, block +
// blocks, ..., from the calling thread.
__device__ void request_look_ahead(const L2LookAhead& ahead, size_t block, size_t blocks) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const size_t per_chunk = ahead.chunk_bytes / kL2LookAheadRequest, requests = look_ahead_requests(ahead);
  const char* first = static_cast<const char*>(ahead.p) + (ahead.stride - ahead.chunk_bytes);
  for (size_t r = block; r < requests; r += blocks) {
    const char* a = first + r / per_chunk * ahead.stride + r % per_chunk * kL2LookAheadRequest;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"((unsigned)kL2LookAheadRequest) : "memory");
  }
#endif
}

// Grid (KV, rows, max_splits), kThreads threads. As attention_kernel<ROPE = true>: q and the new rows' k, v come
// from the q/k/v GEMV's fp32 output (times the deferred norm factor), q and k are rotated here, the new rows are
// written into the caches by the blocks whose keys include them and read back from shared memory, and a row uses
// as many of the splits as its live length needs (at least kKeysPerRound keys each).
__global__ void __launch_bounds__(kThreads, 2)
    attention_mma_kernel(const float* __restrict__ qkv, RopeTable rope, __half* __restrict__ kc,
                         __half* __restrict__ vc, int H, int KV, int S, const int* __restrict__ pos, int max_splits,
                         float* __restrict__ work, unsigned* __restrict__ done, __half* __restrict__ out,
                         DeferredNorm qkv_norm, L2LookAhead ahead) {
  extern __shared__ __align__(16) unsigned char smem[];
  __half* sq = reinterpret_cast<__half*>(smem + kSmemQ);
  __half* sp = reinterpret_cast<__half*>(smem + kSmemP);
  float* sacc = reinterpret_cast<float*>(smem + kSmemAcc);
  float* smax = reinterpret_cast<float*>(smem + kSmemMax);
  float* ssum = reinterpret_cast<float*>(smem + kSmemSum);
  __half* snew = reinterpret_cast<__half*>(smem + kSmemNew);
  const int kvh = blockIdx.x, row = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int G = H / KV;
  const int p_first = *pos;  // written by a kernel before the one this waits for (see attention_kernel)
  const int L = p_first + row + 1;
  const int splits = min(max_splits, (L + kKeysPerRound - 1) / kKeysPerRound);
  if (split >= splits) {  // no keys at this length: a share of the look-ahead instead
    if (tid == 0 && ahead.chunks)
      request_look_ahead(ahead, ((size_t)(split - splits) * gridDim.y + row) * gridDim.x + kvh,
                         (size_t)(gridDim.z - splits) * gridDim.y * gridDim.x);
    return;
  }
  const int chunk = (L + splits - 1) / splits;
  const int start = split * chunk, end = min(L, start + chunk);
  const int n0 = max(start, p_first);  // the new positions this block reads: [n0, end)
  const __half* kbase = kc + (size_t)kvh * S * kD;
  const __half* vbase = vc + (size_t)kvh * S * kD;

  // This warp's 16 keys of a round at r0: rows g, g + 8 of K (dims [32t, 32t + 32)) and rows 2t, 2t + 1, 2t + 8,
  // 2t + 9 of V (dims [16g, 16g + 16)). Cached positions come from global memory (cached_only: only those, the
  // first round's, before the wait; skip_cached: all but those), new ones from this block's shared memory,
  // positions past `end` are zeros.
  uint4 kf[2][4], vf[4][2];
  auto fetch_k = [&](int r0, bool cached_only, bool skip_cached) {
    const int pw = r0 + warp * 16;
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int p = pw + g + 8 * e;
      fetch_row(kf[e], p, n0, end, kbase + (size_t)p * kD + 32 * t, snew + (size_t)(p - n0) * 2 * kD + 32 * t,
                cached_only, skip_cached);
    }
  };
  auto fetch_v = [&](int r0, bool cached_only, bool skip_cached) {
    const int pw = r0 + warp * 16;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int p = pw + 2 * t + (e & 1) + 8 * (e >> 1);
      fetch_row(vf[e], p, n0, end, vbase + (size_t)p * kD + 16 * g, snew + (size_t)(p - n0) * 2 * kD + kD + 16 * g,
                cached_only, skip_cached);
    }
  };
  // The cached rows were written by earlier launches, complete before the kernel this one waits for started: the
  // first round's load before the wait, during the q/k/v GEMV's tail. So does q's rotation (its position is known).
  fetch_k(start, true, false), fetch_v(start, true, false);
  const int j = tid & (kD / 2 - 1);  // this thread's rotation pair, for q and the new rows alike (kThreads % 64 == 0)
  const float inv_freq_j = rope.inv_freq[j];
  const int q_pos = p_first + row;
  float q_cos, q_sin;
  rope_cos_sin(q_pos, inv_freq_j, rope.attention_factor, q_cos, q_sin);
  wait_for_previous_kernel();

  // q's G heads and the new rows' k, v: every load in one round trip, then the rotations.
  const int width = (H + 2 * KV) * kD, half_d = kD / 2;
  constexpr int kQPairsPerThread = kMaxGroup * kD / 2 / kThreads;
  const float* qsrc = qkv + (size_t)row * width + (size_t)kvh * G * kD;
  float qa[kQPairsPerThread], qb[kQPairsPerThread];
#pragma unroll
  for (int k = 0; k < kQPairsPerThread; ++k) {
    const int h = (tid + k * kThreads) / half_d;
    qa[k] = h < G ? qsrc[h * kD + j] : 0.f, qb[k] = h < G ? qsrc[h * kD + j + half_d] : 0.f;
  }
  const float rq = row_norm_factor(qkv_norm, row);
  for (int i = tid; i < (end - n0) * half_d; i += kThreads) {
    const int p = n0 + i / half_d;
    float c = q_cos, s = q_sin;
    if (p != q_pos) rope_cos_sin(p, inv_freq_j, rope.attention_factor, c, s);
    write_new_kv_pair(qkv + (size_t)(p - p_first) * width, H, KV, kvh, kD, j, row_norm_factor(qkv_norm, p - p_first),
                      c, s, kc + ((size_t)kvh * S + p) * kD, vc + ((size_t)kvh * S + p) * kD,
                      snew + (size_t)(p - n0) * 2 * kD);
  }
#pragma unroll
  for (int k = 0; k < kQPairsPerThread; ++k) {  // heads past G stay zero: their columns are never written out
    const int h = (tid + k * kThreads) / half_d;
    float a = qa[k] * rq, b = qb[k] * rq;
    rotate_pair_cs(a, b, q_cos, q_sin);
    sq[h * kQStride + j] = __float2half(a), sq[h * kQStride + j + half_d] = __float2half(b);
  }
  __syncthreads();  // q and the new rows in shared memory
  trace_mark(0);    // (--timeline: q and the new rows ready)

  const float scale = rsqrtf((float)kD) * 1.4426950408889634f;  // log2(e): softmax with exp2
  float acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  float mrun[2] = {-INFINITY, -INFINITY}, lrun[2] = {0.f, 0.f};  // heads 2t, 2t + 1
  __half* wp = sp + warp * kMaxGroup * kPStride;
  const __half* qrow = sq + g * kQStride + 32 * t;
  fetch_k(start, false, true), fetch_v(start, false, true);  // the first round's new rows and zeros
  // Past the first, a round's keys are requested once the previous round's are scored and its values once those
  // are summed, so the loads stay in flight through the arithmetic (a split takes more than one round where the
  // grid holds too few splits for the length: the 7B's 32 heads at depth 2048 hold 8, three rounds each).
  for (int r0 = start; r0 < end; r0 += kKeysPerRound) {
    const int next = r0 + kKeysPerRound;
    float sc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint2 b = *reinterpret_cast<const uint2*>(qrow + 4 * k);
      const int c = k >> 1, w0 = 2 * (k & 1);
      const uint32_t a[4] = {word_of(kf[0][c], w0), word_of(kf[1][c], w0), word_of(kf[0][c], w0 + 1),
                             word_of(kf[1][c], w0 + 1)};
      mma_16x8x16(sc, a, b.x, b.y);
    }
    if (next < end) fetch_k(next, false, false);
    // Online softmax per head column over the warp's 16 keys (rows g, g + 8; the other g's through shuffles).
    const int pw = r0 + warp * 16;
    const bool live0 = pw + g < end, live1 = pw + g + 8 < end;
    __syncwarp();  // the previous round's P has been read
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      // With one query head a KV head (the 7B, 13B) no lane's column 2t + 1 is live: the P rows of heads 2t + 1
      // stay unwritten, and the output columns they feed (the mma's columns are independent) are never stored.
      if (c >= G) continue;
      const float x0 = live0 ? sc[c] * scale : -INFINITY, x1 = live1 ? sc[2 + c] * scale : -INFINITY;
      float mx = fmaxf(x0, x1);
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float mnew = fmaxf(mrun[c], mx);
      __half p0 = __float2half(0.f), p1 = p0;
      float alpha = 1.f, sum = 0.f;
      if (mnew != -INFINITY) {  // else no key so far: nothing to add
        alpha = exp2f(mrun[c] - mnew);  // 0 while mrun is -inf
        p0 = __float2half(exp2f(x0 - mnew)), p1 = __float2half(exp2f(x1 - mnew));
        sum = __half2float(p0) + __half2float(p1);  // the rounded weights the values are multiplied by
      }
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      lrun[c] = lrun[c] * alpha + sum, mrun[c] = mnew;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i][c] *= alpha, acc[i][2 + c] *= alpha;
      wp[(2 * t + c) * kPStride + g] = p0, wp[(2 * t + c) * kPStride + g + 8] = p1;
    }
    __syncwarp();  // P written
    const uint32_t b0 = *reinterpret_cast<const uint32_t*>(wp + g * kPStride + 2 * t);
    const uint32_t b1 = *reinterpret_cast<const uint32_t*>(wp + g * kPStride + 2 * t + 8);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int c = i >> 2, w = i & 3;
      const uint32_t v0 = word_of(vf[0][c], w), v1 = word_of(vf[1][c], w);
      const uint32_t v2 = word_of(vf[2][c], w), v3 = word_of(vf[3][c], w);
      const uint32_t a[4] = {__byte_perm(v0, v1, 0x5410), __byte_perm(v0, v1, 0x7632), __byte_perm(v2, v3, 0x5410),
                             __byte_perm(v2, v3, 0x7632)};
      mma_16x8x16(acc[i], a, b0, b1);
    }
    if (next < end) fetch_v(next, false, false);
  }
  trace_mark(1);  // (--timeline: the split's keys done)

  // The warps' partials merged: each warp's outputs, max and sum per head into shared memory, then per head the
  // warps' weights exp2(m_w - M) once, then every (head, dim) summed over the warps.
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    const int h = 2 * t + c;
    if (h >= G) continue;  // a column past the KV head's query heads (7 of 8 for the 7B and 13B): never read
#pragma unroll
    for (int i = 0; i < 8; ++i)
      *reinterpret_cast<float2*>(sacc + acc_index(warp, h, 16 * g + 2 * i)) = make_float2(acc[i][c], acc[i][2 + c]);
    if (g == 0) smax[warp * kMaxGroup + h] = mrun[c], ssum[warp * kMaxGroup + h] = lrun[c];
  }
  __syncthreads();
  __shared__ float head_max[kMaxGroup], head_sum[kMaxGroup];
  if (tid < G) {
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, smax[w * kMaxGroup + tid]);
    float l = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      float& m = smax[w * kMaxGroup + tid];
      m = m != -INFINITY ? exp2f(m - mx) : 0.f;  // the warp's weight (0: a warp without keys)
      l += ssum[w * kMaxGroup + tid] * m;
    }
    head_max[tid] = mx, head_sum[tid] = l;
  }
  __syncthreads();
  const size_t row_head0 = (size_t)row * H + (size_t)kvh * G;  // this block's first head in out and work
  // work, per (row, KV head): the G heads' regions of max_splits * (kD + 2) floats taken together as
  // [split][G][kD] outputs, then [split][G] maxima, then [split][G] sums.
  float* region = work + row_head0 * max_splits * (kD + 2);
  float* part_out = region;
  float* part_max = region + (size_t)max_splits * G * kD;
  float* part_sum = part_max + (size_t)max_splits * G;
  for (int i = tid; i < G * kD; i += kThreads) {
    const int h = i / kD, d = i % kD;
    float o = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += sacc[acc_index(w, h, d)] * smax[w * kMaxGroup + h];
    if (splits == 1) out[(row_head0 + h) * kD + d] = __float2half(o / head_sum[h]);
    else part_out[((size_t)split * G + h) * kD + d] = o;
  }
  if (splits > 1 && tid < G)
    part_max[split * G + tid] = head_max[tid], part_sum[split * G + tid] = head_sum[tid];
  trace_mark(2);  // (--timeline: the warps merged)
  trace_block_end();
  // No block without keys to request the look-ahead: each requests its share now, its keys done, while other
  // blocks still read theirs (past the window in which its own loads would queue behind the requests). Only where
  // that is at most kMaxEndRequests a block (measured: one or two; 8 a block before the keys lost, session 69), so
  // short caches (few splits) request nothing here.
  const size_t all_blocks = (size_t)gridDim.z * gridDim.y * gridDim.x;
  if (splits == max_splits && tid == 0 && ahead.chunks && look_ahead_requests(ahead) <= kMaxEndRequests * all_blocks)
    request_look_ahead(ahead, ((size_t)split * gridDim.y + row) * gridDim.x + kvh, all_blocks);
  if (splits == 1) return;

  // The last split block of this (row, KV head) combines the splits of its G heads (as attention_kernel's).
  if (!last_split_block(done + (size_t)row * KV + kvh, splits)) return;
  // Four dims of one head per thread, each batch of splits (outputs, maxima and sums) in one round trip and folded
  // into a running max and sums as the online softmax does: no pass over the maxima first.
  constexpr int kBatch = 12;  // 16 spills at 128 registers
  for (int q4 = tid; q4 < G * kD / 4; q4 += kThreads) {
    const int h = q4 / (kD / 4), d = (q4 % (kD / 4)) * 4;  // a warp's 32 threads share h: the maxima broadcast
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    float M = -INFINITY, l = 0.f;
    for (int s0 = 0; s0 < splits; s0 += kBatch) {
      float4 v[kBatch];
      float ms[kBatch], ls[kBatch];
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int sp = s0 + k;
        ms[k] = -INFINITY;
        if (sp < splits) {
          v[k] = __ldcg(reinterpret_cast<const float4*>(part_out + ((size_t)sp * G + h) * kD + d));
          ms[k] = __ldcg(part_max + sp * G + h), ls[k] = __ldcg(part_sum + sp * G + h);
        }
      }
      float Mb = M;
#pragma unroll
      for (int k = 0; k < kBatch; ++k) Mb = fmaxf(Mb, ms[k]);
      if (Mb == -INFINITY) continue;  // no keys in any split so far
      const float a = exp2f(M - Mb);  // 0 while M is -inf
      o.x *= a, o.y *= a, o.z *= a, o.w *= a, l *= a;
#pragma unroll
      for (int k = 0; k < kBatch; ++k)
        if (ms[k] != -INFINITY) {  // (a split without keys, or past the last)
          const float f = exp2f(ms[k] - Mb);
          o.x += v[k].x * f, o.y += v[k].y * f, o.z += v[k].z * f, o.w += v[k].w * f, l += ls[k] * f;
        }
      M = Mb;
    }
    const float inv = 1.f / l;
    __half2* dst = reinterpret_cast<__half2*>(out + (row_head0 + h) * kD + d);
    dst[0] = __floats2half2_rn(o.x * inv, o.y * inv), dst[1] = __floats2half2_rn(o.z * inv, o.w * inv);
  }
  trace_block_end();
}

// Blocks of the kernel the current GPU holds at once (with room for kGemvMaxRows new rows; resident_blocks keeps one
// count per device).
int mma_resident_blocks() {
  return std::max(1, resident_blocks(reinterpret_cast<const void*>(attention_mma_kernel), kThreads,
                                     smem_bytes(kGemvMaxRows)));
}

}  // namespace

size_t decode_l2_look_ahead_bytes() {
  // Measured: 2.1-2.4% off a 7B token on H100s (3.35 TB/s), 1.8% onto one on an H200 (4.8 TB/s), likely because
  // its shorter attention window leaves the requests less idle DRAM to hide in (docs/PERF-NOTES.md, sessions 70, 81).
  // Cached per device: eager decode asks once a layer.
  constexpr double kFastDram = 4e12;
  static PerDeviceValue<size_t> cache;
  return cache.get([](int) {
    const size_t by_gpu = current_device_peak_dram_bandwidth() >= kFastDram ? 0 : size_t(16) << 20;
    return env_mib("XLLAMA_DECODE_L2_AHEAD_MIB", by_gpu);
  });
}

bool& attention_mma_flag() {
  static bool on = env_switch_on("XLLAMA_ATTN_MMA");
  return on;
}

bool attention_mma_applies(int H, int KV, int D) {
  return attention_mma_flag() && D == kD && KV > 0 && H % KV == 0 && H / KV <= kMaxGroup;
}

int attention_mma_splits(int m, int H, int KV, int max_len) {
  // As attention_splits: as many blocks as the GPU holds at once, each at least one round of keys.
  int splits = std::max(1, mma_resident_blocks() / std::max(1, m * KV));
  splits = std::min({splits, std::max(1, max_len / kKeysPerRound), kMaxSplits});
  // With an odd G an even count keeps every (row, KV head)'s partials 16-byte aligned for the combine's loads.
  if ((H / KV) % 2 != 0 && splits > 1) splits &= ~1;
  return splits;
}

void attention_mma_rope(const float* qkv, RopeTable rope, __half* kcache, __half* vcache, int m, int H, int KV,
                        int S, const int* pos, int splits, float* work, unsigned* done, __half* out, cudaStream_t s,
                        DeferredNorm qkv_norm, L2LookAhead ahead) {
  if (m > kGemvMaxRows || splits > kMaxSplits || (reinterpret_cast<uintptr_t>(work) & 15) != 0)
    throw std::runtime_error("attention_mma_rope: at most 8 rows and 64 splits, 16-byte aligned partials");
  launch(attention_mma_kernel, dim3(KV, m, splits), kThreads, smem_bytes(m), s, qkv, rope, kcache, vcache, H, KV,
         S, pos, splits, work, done, out, qkv_norm, ahead);
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
