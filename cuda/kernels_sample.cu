// Token choice on the device: greedy argmax and top-k + temperature sampling, so only the id comes back.
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>

#include "backend/sampled_rank.h"
#include "backend/token_penalties.h"
#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"
#include "cuda/greedy_pick.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/ranked_walk.cuh"

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

// A sampled pick's top k, in two levels: every block keeps the top k of its slice of kTopKSlice logits, the last
// block to finish merges the slices' lists. One block over the whole row (five passes over 32k logits from L2)
// took 46.5 us per pick on the H200 (docs/PERF-NOTES.md, session 34); the slices' passes run in shared memory.
constexpr int kTopKThreads = 512;
constexpr int kWindow = kTopKSlice;  // entries a block selects from at once

struct SelectShared {
  int hist[256];
  int warp_sums[kTopKThreads / 32];
  uint32_t prefix;
  int remaining;
};

// The top min(k, n) of a window's n entries (values wv, indices wi, in increasing index order) by value, ties to
// the lower index (the key order of order_key, as the host sampler ranks them), written in window order to ov/oi;
// returns their count. Radix select of the k-th largest key (4 passes of 8 bits), then one ordered compaction: the
// entries above it, and as many equal to it as the k still need, the lowest positions first. Every thread calls
// it; it ends with a barrier.
__device__ int select_window(const float* wv, const int* wi, int n, int k, float* ov, int* oi, SelectShared& sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (n <= k) {
    for (int p = tid; p < n; p += kTopKThreads) ov[p] = wv[p], oi[p] = wi[p];
    __syncthreads();
    return n;
  }
  const int per_thread = (n + kTopKThreads - 1) / kTopKThreads;
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kTopKThreads) sh.hist[i] = 0;
    __syncthreads();
    for (int j = 0; j < per_thread; ++j) {  // strided: a warp reads consecutive entries
      const int p = j * kTopKThreads + tid;
      const uint32_t key = p < n ? order_key(wv[p]) : 0u;
      const bool in = p < n && (key & mask) == prefix;
      const uint32_t bin = (key >> shift) & 255;
      const unsigned active = __ballot_sync(0xffffffffu, in);
      if (in) {  // a model's logits share a few exponents: each warp adds its lanes' counts per bin once
        const unsigned peers = __match_any_sync(active, bin);
        if (lane == __ffs(peers) - 1) atomicAdd(&sh.hist[bin], __popc(peers));
      }
    }
    __syncthreads();
    if (warp == 0) {
      // Lane l holds bins 255 - 8l down to 248 - 8l; the scan runs from the top bin down.
      int c[8], sum = 0;
      for (int j = 0; j < 8; ++j) sum += c[j] = sh.hist[255 - 8 * lane - j];
      int upto = sum;  // keys in this lane's bins and above
      for (int off = 1; off < 32; off *= 2) {
        const int t = __shfl_up_sync(0xffffffffu, upto, off);
        if (lane >= off) upto += t;
      }
      if (upto - sum < remaining && remaining <= upto) {  // the remaining-th largest key is in this lane's bins
        int r = remaining - (upto - sum), b = 255 - 8 * lane;
        for (int j = 0; j < 8; ++j, --b) {
          if (c[j] >= r) break;
          r -= c[j];
        }
        sh.remaining = r;
        sh.prefix = prefix | ((uint32_t)b << shift);
      }
    }
    __syncthreads();
    prefix = sh.prefix, remaining = sh.remaining, mask |= 255u << shift;
  }
  // Ordered compaction over contiguous runs per thread: counts above / equal to the k-th key (packed 16 + 16 bits,
  // n <= kWindow), a block-wide exclusive scan, then each entry's slot is the number taken before it.
  const uint32_t thr = prefix;
  const int need_eq = remaining;
  const int first = tid * per_thread, last = min(first + per_thread, n);
  int counts = 0;
  for (int p = first; p < last; ++p) {
    const uint32_t key = order_key(wv[p]);
    counts += (key > thr ? 1 << 16 : 0) + (key == thr ? 1 : 0);
  }
  int upto = counts;
  for (int off = 1; off < 32; off *= 2) {
    const int t = __shfl_up_sync(0xffffffffu, upto, off);
    if (lane >= off) upto += t;
  }
  if (lane == 31) sh.warp_sums[warp] = upto;
  __syncthreads();
  int before = upto - counts;
  for (int w = 0; w < warp; ++w) before += sh.warp_sums[w];
  int above = before >> 16, equal = before & 0xffff;
  for (int p = first; p < last; ++p) {
    const uint32_t key = order_key(wv[p]);
    if (key > thr) {
      const int slot = above++ + min(equal, need_eq);
      ov[slot] = wv[p], oi[slot] = wi[p];
    } else if (key == thr) {
      if (equal < need_eq) ov[above + equal] = wv[p], oi[above + equal] = wi[p];
      ++equal;
    }
  }
  __syncthreads();
  return k;
}

// sampled_rank with typical-p for the block's top k (weight by rank, in shared memory), its per-candidate parts a
// candidate per thread (one thread's heap sort and logarithms took ~50 us of a pick). The rank, in thread 0.
__device__ int typical_rank(const double* weight, int k, const TokenSampling& draw) {
  __shared__ double dist[kMaxDeviceTopK], term[kMaxDeviceTopK], total, entropy;
  __shared__ int order[kMaxDeviceTopK], kept;
  const int tid = threadIdx.x;
  if (tid == 0) {
    kept = kept_by_cuts(weight, k, draw.top_p, draw.min_p);
    double t = 0.0;
    for (int r = 0; r < kept; ++r) t += weight[r];
    total = t;
  }
  __syncthreads();
  const int n = kept;
  if (tid < n) term[tid] = typical_term(weight, tid, total, dist);  // dist: the surprisals for now
  __syncthreads();
  if (tid == 0) {
    double e = 0.0;
    for (int r = 0; r < n; ++r) e -= term[r];  // in rank order, as the host sums them
    entropy = e;
  }
  __syncthreads();
  if (tid < n) dist[tid] = typical_distance(dist[tid], entropy);
  __syncthreads();
  if (tid < n) order[typical_position(tid, n, dist)] = tid;
  __syncthreads();
  if (tid != 0) return 0;
  typical_mark(weight, total, order, n, draw.typical_p, dist);
  return drawn_rank(weight, n, true, dist, draw.uniform);
}

// ranked_pick's answer for a whole-row draw from the row's top entries in rank order (index, fixed-point mass and
// weight of each; n of them) and the row's total mass: the index picked, or -1 where the kept set's end or the drawn
// entry lies past them (then the walk runs). The targets and integer masses are walk_rank's, so where this answers,
// the walk answers the same. One thread.
__device__ int listed_pick(const int* index, const unsigned long long* mass, const float* weight, int n,
                           unsigned long long total, int vocab, const TokenSampling& draw) {
  int kept = vocab;  // a count of entries in rank order, and their mass
  unsigned long long kept_mass = total;
  const auto mass_of_first = [&](int c) {
    unsigned long long m = 0;
    for (int r = 0; r < c; ++r) m += mass[r];
    return m;
  };
  if (draw.top_p < 1.f) {  // the first entry whose running mass reaches ceil(top_p x total)
    unsigned long long target = (unsigned long long)ceil((double)draw.top_p * (double)total);
    target = target < 1ull ? 1ull : target;
    unsigned long long cum = 0;
    int r = 0;
    while (r < n && (cum += mass[r]) < target) ++r;
    if (r == n) return -1;
    kept = r + 1, kept_mass = cum;
  }
  if (draw.min_p > 0.f) {  // those weighing at least min_p: a prefix
    int m = 0;
    while (m < n && m < kept && weight[m] >= draw.min_p) ++m;
    if (m == n && kept > n) return -1;
    if (m < kept) kept = m < 1 ? 1 : m, kept_mass = mass_of_first(kept);
  }
  unsigned long long target = (unsigned long long)floor((double)draw.uniform * (double)kept_mass) + 1ull;
  target = target < 1ull ? 1ull : target;
  if (kept_mass < target) return kept <= n ? index[kept - 1] : -1;  // rounding: the last kept entry, as the walk
  unsigned long long cum = 0;
  for (int r = 0; r < n && r < kept; ++r)
    if ((cum += mass[r]) >= target) return index[r];
  return -1;
}

// The last block of a walked draw (top_k_kernel): every slice's penalized logits and maximum are written, and for a
// whole-row draw with lists (list_n > 0) the row's top list_n entries are in lv / li (index order): listed_pick
// answers from them where it can, which spares the walk's passes. A whole-row draw leaves in scratch.state[2] how many
// such draws in a row the lists have not answered (missed before this one).
__device__ void ranked_walk_pick(int vocab, const TokenSampling& draw, int candidates, TopKScratch scratch, int* out,
                                 const StepFeed& feed, const float* lv, const int* li, int list_n, bool whole_row,
                                 unsigned missed) {
  __shared__ WalkShared walk;
  __shared__ float s_max;
  const int tid = threadIdx.x;
  if (tid == 0) {
    float m = -INFINITY;
    for (int b = 0; b < (int)gridDim.x; ++b) m = fmaxf(m, __ldcg(scratch.block_max + b));
    s_max = m;
  }
  // The next launch starts from a zero count; this is the only block still running.
  const bool refused = __ldcg(&scratch.state[1]) != 0;
  __syncthreads();
  if (tid == 0) scratch.state[0] = 0, scratch.state[1] = 0;
  // NaN or +infinity in the model's logits, or all of them -infinity (no weights): refused as the lists' pick.
  if (refused || s_max == -INFINITY) {
    if (tid == 0) write_unrankable(out, feed);
    return;
  }
  const RankedRow row{scratch.ranked, vocab, s_max, draw.temperature};
  __shared__ int s_pick;
  if (list_n > 0) {
    __shared__ int rank_of[kMaxDeviceTopK];
    __shared__ unsigned long long mass[kMaxDeviceTopK];
    __shared__ float weight[kMaxDeviceTopK];
    __shared__ int index[kMaxDeviceTopK];
    if (tid == 0) walk.tally = 0ull;
    if (tid < list_n) {  // rank order: value descending, ties to the lower index
      int r = 0;
      for (int j = 0; j < list_n; ++j) r += (lv[j] > lv[tid]) || (lv[j] == lv[tid] && li[j] < li[tid]);
      rank_of[tid] = r;
    }
    __syncthreads();
    if (tid < list_n) {
      const int r = rank_of[tid];
      index[r] = li[tid], mass[r] = rank_mass(lv[tid], row), weight[r] = rank_weight(lv[tid], row);
    }
    unsigned long long m = 0;  // the row's total mass (exact: integer sums)
    for_each_entry<kTopKThreads>(row, [&](float v, int, bool valid) { m += valid ? rank_mass(v, row) : 0ull; });
    for (int off = 16; off > 0; off >>= 1) m += __shfl_xor_sync(0xffffffffu, m, off);
    if ((tid & 31) == 0) atomicAdd(&walk.tally, m);
    __syncthreads();
    if (tid == 0) s_pick = listed_pick(index, mass, weight, list_n, walk.tally, vocab, draw);
  } else if (tid == 0) {
    s_pick = -1;
  }
  __syncthreads();
  if (whole_row && tid == 0) scratch.state[2] = s_pick >= 0 ? 0u : min(missed + 1u, 1u << 30);
  const int pick = s_pick >= 0 ? s_pick
                               : ranked_pick<kTopKThreads>(row, candidates, draw.top_p, draw.min_p, draw.uniform, walk);
  if (tid == 0) {
    if (penalties_on(draw)) scratch.history[pick] = history_after_pick(scratch.history[pick]);
    write_pick(pick, out, feed);
  }
}

// Grid: top_k_blocks(vocab) blocks. Each writes exactly k entries of its slice (in index order; a slice shorter
// than k padded with -infinity at index INT_MAX, which sorts after every real entry), so the last block merges one
// list in index order, a window at a time with the running top k in front. Then it sorts the k descending (ties by
// index) and samples like sample_token_host, penalties included (their history read as the logits are, the pick
// recorded in it). A draw with more candidates than the lists hold (top-k 0 or above kMaxDeviceTopK) has each block
// write its slice's penalized logits and their maximum instead (a whole-row draw its top kMaxDeviceTopK list too),
// and the last block walks them in rank order (ranked_walk.cuh), unless the list answers (listed_pick): one kernel
// for every draw, so a graph captured with one serves the next whatever it asks.
__global__ void __launch_bounds__(kTopKThreads, 1)
    top_k_kernel(const float* __restrict__ logits, int vocab, TokenSampling given, const TokenSampling* draw_at,
                 TopKScratch scratch, int* out, StepFeed feed, bool walk_lists) {
  const TokenSampling draw = draw_at ? *draw_at : given;
  const int candidates = draw_candidates(draw, vocab);
  const bool walk = candidates > kMaxDeviceTopK;
  __shared__ float wv[kWindow];
  __shared__ int wi[kWindow];
  __shared__ float ov[kMaxDeviceTopK];
  __shared__ int oi[kMaxDeviceTopK];
  __shared__ SelectShared sh;
  __shared__ bool s_last;
  const int tid = threadIdx.x;
  wait_for_previous_kernel();
  // A whole-row draw keeps each slice's top kMaxDeviceTopK too (ranked_walk_pick's listed_pick; walk_lists), unless
  // the lists answered none of the last draws (a flat row, where they cost ~15 us a pick and the walk runs anyway):
  // then every 16th draw tries them. A top-k above kMaxDeviceTopK only walks (top-p's share is of the top k's mass).
  // The pick is the same either way.
  const bool whole_row = walk && candidates == vocab && walk_lists;
  const unsigned missed = whole_row ? __ldcg(&scratch.state[2]) : 0u;  // the previous whole-row draw's last block's
  const bool listed = !walk || (whole_row && (missed < 2u || missed % 16u == 0u));
  const int k = walk ? (listed ? kMaxDeviceTopK : 1) : candidates;

  const int base = blockIdx.x * kTopKSlice, n = min(kTopKSlice, vocab - base);
  const bool penalized = penalties_on(draw);
  constexpr int kLoads = kTopKSlice / kTopKThreads;
  float v[kLoads];
  uint32_t seen[kLoads];
#pragma unroll
  for (int j = 0; j < kLoads; ++j) {  // all issued before any is used: one L2 round trip
    const int p = j * kTopKThreads + tid;
    v[j] = p < n ? logits[base + p] : 0.f;
    seen[j] = penalized && p < n ? scratch.history[base + p] : 0u;
  }
  bool unrankable = false;
#pragma unroll
  for (int j = 0; j < kLoads; ++j) {
    const int p = j * kTopKThreads + tid;
    if (p < n) {
      unrankable |= !(v[j] < INFINITY);  // NaN or +infinity, in the model's own logits (as the host sampler checks)
      // In a walk -0 ranks with +0 (rank_key), in its lists too: + 0.f makes -0 +0 (+ -0.f changes nothing)
      wv[p] = (penalized ? penalized_logit(v[j], seen[j], draw) : v[j]) + (walk ? 0.f : -0.f), wi[p] = base + p;
    }
  }
  if (__syncthreads_or(unrankable) && tid == 0) scratch.state[1] = 1;
  if (walk) {
    float best = -INFINITY;
    for (int p = tid; p < n; p += kTopKThreads) scratch.ranked[base + p] = wv[p], best = fmaxf(best, wv[p]);
    for (int o = 16; o > 0; o >>= 1) best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, o));
    if ((tid & 31) == 0) sh.hist[tid >> 5] = __float_as_int(best);
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < kTopKThreads / 32; ++w) best = fmaxf(best, __int_as_float(sh.hist[w]));
      scratch.block_max[blockIdx.x] = best;
    }
    __syncthreads();  // sh.hist read before select_window clears it
  }
  if (listed) {
    const int c = select_window(wv, wi, n, k, ov, oi, sh);
    float* my_value = scratch.value + (size_t)blockIdx.x * k;
    int* my_index = scratch.index + (size_t)blockIdx.x * k;
    for (int j = tid; j < k; j += kTopKThreads) {
      my_value[j] = j < c ? ov[j] : -INFINITY;
      my_index[j] = j < c ? oi[j] : INT_MAX;
    }
  }
  __threadfence();
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(&scratch.state[0], 1u) == gridDim.x - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();

  // The last block: every slice's list is written. Merge them (loads past L1: other blocks wrote them).
  if (listed) {
    const int total = gridDim.x * k;
    int kept = 0;
    for (int next = 0; next < total;) {
      for (int j = tid; j < kept; j += kTopKThreads) wv[j] = ov[j], wi[j] = oi[j];
      const int take = min(kWindow - kept, total - next);
      for (int j = tid; j < take; j += kTopKThreads)
        wv[kept + j] = __ldcg(scratch.value + next + j), wi[kept + j] = __ldcg(scratch.index + next + j);
      __syncthreads();
      next += take;
      kept = select_window(wv, wi, kept + take, k, ov, oi, sh);
    }
  }
  if (walk) {
    ranked_walk_pick(vocab, draw, candidates, scratch, out, feed, ov, oi, listed ? k : 0, whole_row, missed);
    return;
  }
  // The next launch starts from a zero count; this is the only block still running.
  const bool refused = __ldcg(&scratch.state[1]) != 0;
  __syncthreads();
  if (tid == 0) scratch.state[0] = 0, scratch.state[1] = 0;
  // NaN has no rank (the ranks below would collide): report it, as an all -infinity row (no weights) below.
  if (refused) {
    if (tid == 0) write_unrankable(out, feed);
    return;
  }
  __shared__ int sorted[kMaxDeviceTopK];
  if (tid < k) {
    int rank = 0;
    for (int j = 0; j < k; ++j) rank += (ov[j] > ov[tid]) || (ov[j] == ov[tid] && oi[j] < oi[tid]);
    sorted[rank] = tid;
  }
  __syncthreads();
  if (ov[sorted[0]] == -INFINITY) {  // uniform: shared, after a barrier
    if (tid == 0) write_unrankable(out, feed);
    return;
  }
  __shared__ double weight[kMaxDeviceTopK];  // by rank, the top one's 1 (backend/sampled_rank.h)
  if (tid < k) weight[tid] = exp(((double)ov[sorted[tid]] - (double)ov[sorted[0]]) / (double)draw.temperature);
  __syncthreads();
  const bool typical = draw.typical_p < 1.0f;  // the whole block: typical_rank has barriers
  int rank = typical ? typical_rank(weight, k, draw) : 0;
  if (tid == 0) {
    if (!typical) rank = sampled_rank(weight, k, draw.top_p, draw.min_p, 1.0f, draw.uniform, nullptr, nullptr);
    const int pick = oi[sorted[rank]];
    if (penalized) scratch.history[pick] = history_after_pick(scratch.history[pick]);
    write_pick(pick, out, feed);
  }
}

}  // namespace

bool& walk_lists_flag() {
  static bool on = env_switch_on("XLLAMA_WALK_LISTS");
  return on;
}

void argmax(const float* logits, int vocab, int* out, cudaStream_t s, StepFeed feed) {
  launch(argmax_kernel, 1, kThreads, 0, s, logits, vocab, out, feed);
  XL_CUDA_LAUNCH_CHECK();
}

int top_k_blocks(int vocab) { return (vocab + kTopKSlice - 1) / kTopKSlice; }

// Words: the state (4), the walked row (vocab rounded up to 4: the walk's 16-byte loads start 16 bytes in), the
// history (vocab), the lists (2 x blocks x kMaxDeviceTopK), the blocks' maxima.
namespace {
size_t ranked_words(int vocab) { return ((size_t)vocab + 3) & ~(size_t)3; }
}  // namespace

size_t top_k_scratch_words(int vocab) {
  const size_t blocks = (size_t)top_k_blocks(vocab);
  return 4 + ranked_words(vocab) + (size_t)vocab + 2 * blocks * kMaxDeviceTopK + blocks;
}

TopKScratch top_k_scratch(uint32_t* zeroed, int vocab) {
  const size_t list = (size_t)top_k_blocks(vocab) * kMaxDeviceTopK;
  uint32_t* ranked = zeroed + 4;
  uint32_t* history = ranked + ranked_words(vocab);
  uint32_t* lists = history + vocab;
  return {zeroed, history, reinterpret_cast<float*>(lists), reinterpret_cast<int*>(lists + list),
          reinterpret_cast<float*>(ranked), reinterpret_cast<float*>(lists + 2 * list)};
}

void sample_top_k(const float* logits, int vocab, const TokenSampling& draw, TopKScratch scratch, int* out,
                  cudaStream_t s, StepFeed feed) {
  if (draw.top_k < 0) throw BackendError(kBadInput, "top-k must be 0 (off) or more (got " + std::to_string(draw.top_k) + ")");
  if (!device_pick_takes(draw, vocab))
    throw BackendError(kBadInput, "typical-p on the GPU needs a top-k of at most " + std::to_string(kMaxDeviceTopK));
  launch(top_k_kernel, top_k_blocks(vocab), kTopKThreads, 0, s, logits, vocab, draw,
         static_cast<const TokenSampling*>(nullptr), scratch, out, feed, walk_lists_flag());
  XL_CUDA_LAUNCH_CHECK();
}

void sample_top_k_at(const float* logits, int vocab, const TokenSampling* draw, TopKScratch scratch, int* out,
                     cudaStream_t s, StepFeed feed) {
  launch(top_k_kernel, top_k_blocks(vocab), kTopKThreads, 0, s, logits, vocab, TokenSampling{}, draw, scratch, out,
         feed, walk_lists_flag());
  XL_CUDA_LAUNCH_CHECK();
}

}  // namespace xllama::cuda
