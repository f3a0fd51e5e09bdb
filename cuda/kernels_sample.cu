// Token choice on the device: greedy argmax and top-k + temperature sampling, so only the id comes back.
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "backend/sampled_rank.h"
#include "cuda/cuda_check.h"
#include "cuda/greedy_pick.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace xllama::cuda {

namespace {

constexpr int kThreads = 1024;

// The pick, and with a feed also the next decode step's inputs (its token and position).
__device__ __forceinline__ void write_pick(int pick, int* out, const StepFeed& feed) {
  *out = pick;
  if (feed.tokens) {
    feed.tokens[0] = pick;
    *feed.pos = feed.advance ? *feed.pos + 1 : feed.next_pos;
  }
}

// Logits a sampled pick can't rank: the host hears kNonFinitePick; a fed step still gets a valid token (0).
__device__ __forceinline__ void write_unrankable(int* out, const StepFeed& feed) {
  write_pick(0, out, feed);
  *out = kNonFinitePick;
}

// The logits as 16-byte loads, 8 per thread issued before any is compared: one L2 round trip per 32k logits where
// 4-byte loads one after another took a chain of them (with the embedding's loads, 23 -> 10.5 µs per token on the
// H200; docs/PERF-NOTES.md, session 17). Ties go to the lower index.
__global__ void __launch_bounds__(kThreads)
    argmax_kernel(const float* __restrict__ logits, int vocab, int* out, StepFeed feed) {
  wait_for_previous_kernel();
  __shared__ float sv[32];
  __shared__ int si[32];
  float best = -INFINITY;
  int bi = kNoPick;
  const auto take = [&](float v, int i) {
    if (greedy_takes(v, i, best, bi)) best = v, bi = i;
  };
  const int nvec = (reinterpret_cast<uintptr_t>(logits) & 15) == 0 ? vocab / 4 : 0;
  const float4* l4 = reinterpret_cast<const float4*>(logits);
  constexpr int U = 8;
  for (int base = 0; base < nvec; base += U * kThreads) {
    float4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * kThreads + threadIdx.x;
      if (j < nvec) v[u] = l4[j];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * kThreads + threadIdx.x;
      if (j < nvec) take(v[u].x, 4 * j), take(v[u].y, 4 * j + 1), take(v[u].z, 4 * j + 2), take(v[u].w, 4 * j + 3);
    }
  }
  for (int i = nvec * 4 + threadIdx.x; i < vocab; i += kThreads) take(logits[i], i);
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (greedy_takes(ov, oi, best, bi)) best = ov, bi = oi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sv[warp] = best, si[warp] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w)
      if (greedy_takes(sv[w], si[w], best, bi)) best = sv[w], bi = si[w];
    write_pick(bi == kNoPick ? 0 : bi, out, feed);
  }
}

// Values equal to the k-th largest that top_k_kernel gathers by index (more: a slower ballot scan orders them).
constexpr int kTieCap = 256;

// f(i, logits[i]) for every i < vocab, and f(i, -infinity) for i past it up to whole batches: each thread issues
// kLogitBatch loads before using any, so a pass over a 32k vocabulary waits for four L2 round trips, not 32. The
// trip count is the same in every thread: f may use warp-wide intrinsics.
constexpr int kLogitBatch = 8;
template <class F>
__device__ __forceinline__ void for_each_logit(const float* __restrict__ logits, int vocab, F&& f) {
  for (int base = threadIdx.x; base - (int)threadIdx.x < vocab; base += kThreads * kLogitBatch) {
    float v[kLogitBatch];
#pragma unroll
    for (int j = 0; j < kLogitBatch; ++j) {
      const int i = base + j * kThreads;
      v[j] = i < vocab ? logits[i] : -INFINITY;
    }
#pragma unroll
    for (int j = 0; j < kLogitBatch; ++j) f(base + j * kThreads, v[j]);
  }
}

// Radix-select the k-th largest key (4 passes of 8 bits), collect the k winners (ties at the threshold:
// lowest indices), sort them descending (ties by index) and sample like sample_token_host. Five passes over the
// logits in one block: their loads go in batches (for_each_logit), where one load at a time took ~55 us per pick on
// the H200. A model's logits share a few exponents, so most of a pass's keys land in one or two bins: each warp adds
// its lanes' counts per bin once (__match_any_sync), and one warp finds the bin with a scan. (One block per SM
// stated: ptxas then gives the batches 48 registers; without it, it kept to 32 and spilled.)
__global__ void __launch_bounds__(kThreads, 1)
    top_k_kernel(const float* __restrict__ logits, int vocab, TokenSampling given, const TokenSampling* draw_at,
                 int* out,
                 StepFeed feed) {
  const TokenSampling draw = draw_at ? *draw_at : given;
  const int k = min(max(draw.top_k, 1), min(kMaxDeviceTopK, vocab));
  wait_for_previous_kernel();
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix, s_mask;
  __shared__ int s_remaining, s_count, s_ties, s_taken;
  __shared__ float cv[kMaxDeviceTopK];
  __shared__ int ci[kMaxDeviceTopK];
  __shared__ int tie_index[kTieCap];
  __shared__ int sorted[kMaxDeviceTopK];
  __shared__ int warp_counts[kThreads / 32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) s_prefix = 0, s_mask = 0, s_remaining = k, s_count = 0, s_ties = 0, s_taken = 0;
  bool unrankable = false;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kThreads) hist[i] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix, mask = s_mask;
    for_each_logit(logits, vocab, [&](int i, float v) {
      unrankable |= !(v < INFINITY);  // NaN or +infinity
      const uint32_t key = order_key(v);
      const bool in = i < vocab && (key & mask) == prefix;
      const uint32_t bin = (key >> shift) & 255;
      const unsigned active = __ballot_sync(0xffffffffu, in);
      if (in) {
        const unsigned peers = __match_any_sync(active, bin);
        if (lane == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
      }
    });
    __syncthreads();
    if (warp == 0) {
      // Lane l holds bins 255 - 8l down to 248 - 8l; the scan runs from the top bin down.
      int c[8], sum = 0;
      for (int j = 0; j < 8; ++j) sum += c[j] = hist[255 - 8 * lane - j];
      int upto = sum;  // keys in this lane's bins and above
      for (int off = 1; off < 32; off *= 2) {
        const int t = __shfl_up_sync(0xffffffffu, upto, off);
        if (lane >= off) upto += t;
      }
      const int rem = s_remaining;
      if (upto - sum < rem && rem <= upto) {  // the rem-th largest key is in this lane's bins
        int r = rem - (upto - sum), b = 255 - 8 * lane;
        for (int j = 0; j < 8; ++j, --b) {
          if (c[j] >= r) break;
          r -= c[j];
        }
        s_remaining = r;
        s_prefix = prefix | ((uint32_t)b << shift);
        s_mask = mask | (255u << shift);
      }
    }
    __syncthreads();
  }
  // NaN has no rank (the ranks below would collide): report it, as an all -infinity row (no weights) below.
  if (__syncthreads_or(unrankable)) {
    if (tid == 0) write_unrankable(out, feed);
    return;
  }
  const uint32_t thr = s_prefix;
  const int need_eq = s_remaining;  // winners equal to the threshold
  for_each_logit(logits, vocab, [&](int i, float v) {
    const uint32_t key = order_key(v);
    if (i >= vocab) return;
    if (key > thr) {
      const int slot = atomicAdd(&s_count, 1);
      if (slot < kMaxDeviceTopK) cv[slot] = v, ci[slot] = i;
    } else if (key == thr) {
      const int slot = atomicAdd(&s_ties, 1);
      if (slot < kTieCap) tie_index[slot] = i;
    }
  });
  __syncthreads();
  const int ties = s_ties;
  if (ties <= kTieCap) {
    // The need_eq lowest indices among the ties, each placed by its rank.
    for (int e = tid; e < ties; e += kThreads) {
      const int i = tie_index[e];
      int rank = 0;
      for (int j = 0; j < ties; ++j) rank += tie_index[j] < i;
      const int slot = (k - need_eq) + rank;
      if (rank < need_eq && slot < kMaxDeviceTopK) cv[slot] = logits[i], ci[slot] = i;
    }
  } else {
    // Many ties (a flat row): in index order, chunk by chunk, ranked inside a chunk with warp ballots.
    for (int base = 0; base < vocab; base += kThreads) {
      if (s_taken >= need_eq) break;  // uniform: read after a barrier
      const int i = base + tid;
      const bool eq = i < vocab && order_key(logits[i]) == thr;
      const unsigned ballot = __ballot_sync(0xffffffffu, eq);
      if (lane == 0) warp_counts[warp] = __popc(ballot);
      __syncthreads();
      int before = s_taken;
      for (int w = 0; w < warp; ++w) before += warp_counts[w];
      before += __popc(ballot & ((1u << lane) - 1u));
      if (eq && before < need_eq) {
        const int slot = (k - need_eq) + before;
        if (slot < kMaxDeviceTopK) cv[slot] = logits[i], ci[slot] = i;
      }
      __syncthreads();
      if (tid == 0) {
        int total = 0;
        for (int w = 0; w < kThreads / 32; ++w) total += warp_counts[w];
        s_taken += total;
      }
      __syncthreads();
    }
  }
  __syncthreads();
  if (tid < k) {
    int rank = 0;
    for (int j = 0; j < k; ++j)
      rank += (cv[j] > cv[tid]) || (cv[j] == cv[tid] && ci[j] < ci[tid]);
    sorted[rank] = tid;
  }
  __syncthreads();
  if (cv[sorted[0]] == -INFINITY) {  // uniform: shared, after a barrier
    if (tid == 0) write_unrankable(out, feed);
    return;
  }
  __shared__ double weight[kMaxDeviceTopK];  // by rank, the top one's 1 (backend/sampled_rank.h)
  if (tid < k) {
    weight[tid] = exp(((double)cv[sorted[tid]] - (double)cv[sorted[0]]) / (double)draw.temperature);
  }
  __syncthreads();
  if (tid == 0) write_pick(ci[sorted[sampled_rank(weight, k, draw.top_p, draw.min_p, draw.uniform)]], out, feed);
}

}  // namespace

void argmax(const float* logits, int vocab, int* out, cudaStream_t s, StepFeed feed) {
  launch(argmax_kernel, 1, kThreads, 0, s, logits, vocab, out, feed);
  XL_CUDA_LAUNCH_CHECK();
}

void sample_top_k(const float* logits, int vocab, const TokenSampling& draw, int* out, cudaStream_t s,
                  StepFeed feed) {
  if (draw.top_k <= 0 || draw.top_k > kMaxDeviceTopK || draw.top_k > vocab)
    throw BackendError(kBadInput, "device top-k sampling supports 1.." + std::to_string(kMaxDeviceTopK));
  launch(top_k_kernel, 1, kThreads, 0, s, logits, vocab, draw, static_cast<const TokenSampling*>(nullptr), out, feed);
  XL_CUDA_LAUNCH_CHECK();
}

void sample_top_k_at(const float* logits, int vocab, const TokenSampling* draw, int* out, cudaStream_t s,
                     StepFeed feed) {
  launch(top_k_kernel, 1, kThreads, 0, s, logits, vocab, TokenSampling{}, draw, out, feed);
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
