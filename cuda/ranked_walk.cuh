// The sampled pick over more candidates than the top-k kernel's lists hold (top-k 0, the whole vocabulary, or a k
// above kMaxDeviceTopK): one block walks the row in rank order (value descending, ties to the lower index, as
// sample_token_host sorts it) without sorting it. A walk is a radix selection on the values' order keys, 8 bits a
// pass, whose bins carry their entries' count and mass (the weight exp((v - max) / T) in fixed point), so it finds
// the first entry at which a running count or mass reaches a target: the k-th entry for top-k, top-p's last kept
// entry, the drawn one. Included by kernels_sample.cu only.
#pragma once
#include <climits>
#include <cstdint>

#include "cuda/greedy_pick.cuh"  // order_key

namespace xllama::cuda {

// A weight of 1 (the top entry's) in the walks' fixed point. Integer sums are exact, so the mass of a set does not
// depend on the order its entries were added in, and a 256k vocabulary sums below 2^58.
constexpr float kMassOne = 1099511627776.0f;  // 2^40

// The row the walks read: the penalized logits (16-byte aligned, readable up to a multiple of 4), their maximum
// and the draw's temperature.
struct RankedRow {
  const float* value;
  int n;
  float max;
  float temperature;
};

__device__ __forceinline__ uint32_t rank_key(float v) { return order_key(v + 0.f); }  // -0 ranks with +0
__device__ __forceinline__ float rank_weight(float v, const RankedRow& row) {
  return expf((v - row.max) / row.temperature);
}
__device__ __forceinline__ unsigned long long rank_mass(float v, const RankedRow& row) {
  return (unsigned long long)(rank_weight(v, row) * kMassOne);
}

// An entry's place in rank order, with the count and mass of the entries up to and including it. The entries "at or
// before" a place are a prefix of rank order; whole_row()'s place is after every entry (its mass is not needed).
struct RankPlace {
  uint32_t key;
  int index;
  unsigned long long count, mass;
};
__device__ __forceinline__ RankPlace whole_row(const RankedRow& row) {
  return {0u, INT_MAX, (unsigned long long)row.n, 0ull};  // key 0 is a NaN's, which never gets here
}
__device__ __forceinline__ bool at_or_before(uint32_t key, int i, const RankPlace& p) {
  return key > p.key || (key == p.key && i <= p.index);
}

// What a walk looks for, from the totals of the prefix it walks: the count-th entry; the first entry whose running
// mass reaches share x the total (top-p's last kept entry); or the first whose running mass passes it (the draw).
struct WalkGoal {
  enum Kind { kCountAt, kReachShare, kPassShare } kind;
  double share;
  unsigned long long count;
};

// A pass's bins, one set per pair of warps, so that few threads add into one bin at once. A bin's mass is 64 bits
// kept as two 32-bit words: with one 64-bit shared-memory add per flush a whole-row walk of 32k logits took 121 us
// on the H200, with two 32-bit adds 102 us (docs/PERF-NOTES.md, session 37).
constexpr int kWalkBinSets = 8;
struct WalkBins {
  unsigned count[256];
  unsigned mass_lo[256], mass_hi[256];
  __device__ unsigned long long mass(int b) const { return (unsigned long long)mass_hi[b] << 32 | mass_lo[b]; }
  __device__ void clear(int b) { count[b] = 0u, mass_lo[b] = 0u, mass_hi[b] = 0u; }
  __device__ void set(int b, unsigned c, unsigned long long m) {
    count[b] = c, mass_lo[b] = (unsigned)m, mass_hi[b] = (unsigned)(m >> 32);
  }
  // Exact 64-bit adds from 32-bit atomics: the low word's old value says whether this add carried.
  __device__ void add(int b, unsigned c, unsigned long long m) {
    atomicAdd(&count[b], c);
    const unsigned lo = (unsigned)m, old = atomicAdd(&mass_lo[b], lo);
    const unsigned carry = old > 0xffffffffu - lo ? 1u : 0u;
    if ((m >> 32) + carry) atomicAdd(&mass_hi[b], (unsigned)(m >> 32) + carry);
  }
};

struct WalkShared {
  WalkBins set[kWalkBinSets];  // set[0] also holds the pass's sums
  int first[256];              // each bin's lowest index (in the last pass its entries are ties)
  int warp_sums[32];
  unsigned long long above_count, above_mass, target, bin_mass, tally;
  uint32_t prefix;
  unsigned bin_count;
  int bin_first, nth;
  bool found;
};

// f(value, index, valid) for every entry, 4 float4 loads per thread in flight; every lane of every warp calls it the
// same number of times, so f may use warp collectives.
template <int kThreads, class F>
__device__ __forceinline__ void for_each_entry(const RankedRow& row, F&& f) {
  constexpr int U = 4;
  const int n4 = (row.n + 3) >> 2;
  const float4* v4 = reinterpret_cast<const float4*>(row.value);
  for (int base = 0; base < n4; base += U * kThreads) {
    float4 q[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int j = base + u * kThreads + (int)threadIdx.x;
      q[u] = j < n4 ? __ldcg(v4 + j) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = 4 * (base + u * kThreads + (int)threadIdx.x);
      f(q[u].x, i, i < row.n);
      f(q[u].y, i + 1, i + 1 < row.n);
      f(q[u].z, i + 2, i + 2 < row.n);
      f(q[u].w, i + 3, i + 3 < row.n);
    }
  }
}

// The index of the j-th entry (from 1, in index order) with order key `key` at or before `within`: a block-wide
// scan over chunks in which thread t holds entries 4t .. 4t + 3. Only where a walk ends inside a run of ties.
template <int kThreads>
__device__ int nth_tie(const RankedRow& row, uint32_t key, const RankPlace& within, int j, WalkShared& sh) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float4* v4 = reinterpret_cast<const float4*>(row.value);
  if (tid == 0) sh.nth = within.index;
  int seen = 0;
  for (int base = 0; base < row.n && seen < j; base += 4 * kThreads) {
    const int i0 = base + 4 * tid;
    const float4 q = i0 < row.n ? __ldcg(v4 + (i0 >> 2)) : make_float4(0.f, 0.f, 0.f, 0.f);
    const float v[4] = {q.x, q.y, q.z, q.w};
    bool tie[4];
    int c = 0;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      tie[s] = i0 + s < row.n && rank_key(v[s]) == key && at_or_before(key, i0 + s, within);
      c += tie[s];
    }
    int upto = c;
    for (int off = 1; off < 32; off *= 2) {
      const int t = __shfl_up_sync(0xffffffffu, upto, off);
      if (lane >= off) upto += t;
    }
    if (lane == 31) sh.warp_sums[warp] = upto;
    __syncthreads();
    int before = seen + upto - c, total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += sh.warp_sums[w], before += w < warp ? sh.warp_sums[w] : 0;
    if (before < j && j <= before + c) {
      int r = j - before;
#pragma unroll
      for (int s = 0; s < 4; ++s)
        if (tie[s] && --r == 0) sh.nth = i0 + s;
    }
    seen += total;
    __syncthreads();
  }
  __syncthreads();
  return sh.nth;
}

// The entry the goal names among those at or before `within` (walk_rank's found = false: their total never gets
// there). Every thread calls it and gets the same place; it ends with a barrier.
template <int kThreads>
__device__ RankPlace walk_rank(const RankedRow& row, const WalkGoal& goal, const RankPlace& within, WalkShared& sh,
                               bool& found) {
  const int tid = threadIdx.x, lane = tid & 31;
  const bool by_count = goal.kind == WalkGoal::kCountAt;
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256 * kWalkBinSets; b += kThreads) sh.set[b >> 8].clear(b & 255);
    for (int b = tid; b < 256; b += kThreads) sh.first[b] = INT_MAX;
    WalkBins& bins = sh.set[(tid >> 5) % kWalkBinSets];
    __syncthreads();
    // Each thread sums its entries into 4 bins held in registers and adds a bin into shared memory only when it
    // makes room for another: a model's logits share a few exponents, so the passes that see every entry find them
    // in a few bins. (Warp-aggregated adds per entry, __match_any_sync and __reduce_add_sync, made the whole-row
    // walk of 32k logits take 216 us on the H200.)
    uint32_t tag[4] = {256u, 256u, 256u, 256u};  // 256: empty
    unsigned cnt[4] = {0u, 0u, 0u, 0u};
    unsigned long long sum[4] = {0ull, 0ull, 0ull, 0ull};
    int victim = 0;
    const auto flush = [&](int s) {
      if (cnt[s]) bins.add(tag[s], cnt[s], sum[s]);
    };
    for_each_entry<kThreads>(row, [&](float v, int i, bool valid) {
      const uint32_t key = rank_key(v);
      if (!(valid && (key & mask) == prefix && at_or_before(key, i, within))) return;
      const uint32_t bin = (key >> shift) & 255u;
      const unsigned long long m = rank_mass(v, row);
      if (shift == 0) atomicMin(&sh.first[bin], i);  // only entries sharing 24 bits get here
      bool hit = false;
#pragma unroll
      for (int s = 0; s < 4; ++s)
        if (tag[s] == bin) cnt[s] += 1u, sum[s] += m, hit = true;
      if (!hit) {
#pragma unroll
        for (int s = 0; s < 4; ++s)
          if (s == victim) flush(s), tag[s] = bin, cnt[s] = 1u, sum[s] = m;
        victim = (victim + 1) & 3;
      }
    });
#pragma unroll
    for (int s = 0; s < 4; ++s) flush(s);
    __syncthreads();
    for (int b = tid; b < 256; b += kThreads) {
      unsigned c = sh.set[0].count[b];
      unsigned long long m = sh.set[0].mass(b);
#pragma unroll
      for (int h = 1; h < kWalkBinSets; ++h) c += sh.set[h].count[b], m += sh.set[h].mass(b);
      sh.set[0].set(b, c, m);
    }
    __syncthreads();
    if (tid < 32) {
      // Lane l holds bins 255 - 8l down to 248 - 8l; the scan runs from the top bin down.
      unsigned long long c[8], m[8], cs = 0, ms = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j)
        cs += c[j] = sh.set[0].count[255 - 8 * lane - j], ms += m[j] = sh.set[0].mass(255 - 8 * lane - j);
      unsigned long long cu = cs, mu = ms;  // this lane's bins and those above
      for (int off = 1; off < 32; off *= 2) {
        const unsigned long long tc = __shfl_up_sync(0xffffffffu, cu, off), tm = __shfl_up_sync(0xffffffffu, mu, off);
        if (lane >= off) cu += tc, mu += tm;
      }
      unsigned long long above_c = shift == 24 ? 0ull : sh.above_count, above_m = shift == 24 ? 0ull : sh.above_mass;
      if (shift == 24) {  // the prefix's totals set the target
        const unsigned long long tc = __shfl_sync(0xffffffffu, cu, 31), tm = __shfl_sync(0xffffffffu, mu, 31);
        unsigned long long target = goal.count;
        if (goal.kind == WalkGoal::kReachShare) target = (unsigned long long)ceil(goal.share * (double)tm);
        if (goal.kind == WalkGoal::kPassShare) target = (unsigned long long)floor(goal.share * (double)tm) + 1ull;
        target = target < 1ull ? 1ull : target;
        if (lane == 0) sh.target = target, sh.found = (by_count ? tc : tm) >= target;
      }
      __syncwarp();
      const unsigned long long target = sh.target;
      const unsigned long long base = by_count ? above_c : above_m, upto = base + (by_count ? cu : mu);
      const unsigned long long mine = by_count ? cs : ms;
      if (sh.found && upto - mine < target && target <= upto) {  // the target entry is in this lane's bins
        unsigned long long bc = above_c + cu - cs, bm = above_m + mu - ms, cj = 0, mj = 0;
        int b = -1;
#pragma unroll
        for (int j = 0; j < 8; ++j) {  // unrolled: c and m stay in registers
          if (b >= 0) continue;
          if (j == 7 || (by_count ? bc + c[j] : bm + m[j]) >= target) {
            b = 255 - 8 * lane - j, cj = c[j], mj = m[j];
          } else {
            bc += c[j], bm += m[j];
          }
        }
        sh.prefix = prefix | ((uint32_t)b << shift);
        sh.above_count = bc, sh.above_mass = bm;
        sh.bin_count = (unsigned)cj, sh.bin_mass = mj, sh.bin_first = sh.first[b];
      }
    }
    __syncthreads();
    if (!sh.found) {
      found = false;
      return within;
    }
    prefix = sh.prefix, mask |= 255u << shift;
    if (shift > 0 && sh.bin_count == 1) {  // one entry left in the bin: it is the one, wherever its lower bits lie
      const unsigned long long above_c = sh.above_count, above_m = sh.above_mass, mass = sh.bin_mass;
      for_each_entry<kThreads>(row, [&](float v, int i, bool valid) {
        const uint32_t key = rank_key(v);
        if (valid && (key & mask) == prefix && at_or_before(key, i, within)) sh.bin_first = i, sh.prefix = key;
      });
      __syncthreads();
      const RankPlace place{sh.prefix, sh.bin_first, above_c + 1ull, above_m + mass};
      __syncthreads();
      found = true;
      return place;
    }
  }
  // The last bin's entries are ties (one value): the j-th of them, in index order, is the one.
  const unsigned long long above_c = sh.above_count, above_m = sh.above_mass, target = sh.target;
  const unsigned ties = sh.bin_count;
  const unsigned long long unit = sh.bin_mass / ties;
  unsigned long long j = 1;
  if (by_count) j = target - above_c;
  else if (unit > 0) j = (target - above_m + unit - 1) / unit;
  j = j < 1 ? 1 : (j > ties ? ties : j);
  const int first = sh.bin_first;
  __syncthreads();  // everyone has read the walk's state before nth_tie writes into it
  found = true;
  const int index = j == 1 ? first : nth_tie<kThreads>(row, prefix, within, (int)j, sh);
  return {prefix, index, above_c + j, above_m + j * unit};
}

// How many entries at or before `within` weigh at least min_weight (top-1 weighs 1): min-p's cut, a prefix.
template <int kThreads>
__device__ unsigned long long count_weighing(const RankedRow& row, float min_weight, const RankPlace& within,
                                             WalkShared& sh) {
  if (threadIdx.x == 0) sh.tally = 0ull;
  __syncthreads();
  unsigned c = 0;
  for_each_entry<kThreads>(row, [&](float v, int i, bool valid) {
    c += valid && at_or_before(rank_key(v), i, within) && rank_weight(v, row) >= min_weight;
  });
  for (int off = 16; off > 0; off >>= 1) c += __shfl_xor_sync(0xffffffffu, c, off);
  if ((threadIdx.x & 31) == 0) atomicAdd(&sh.tally, (unsigned long long)c);
  __syncthreads();
  const unsigned long long n = sh.tally;
  __syncthreads();
  return n;
}

// sampled_rank (backend/sampled_rank.h) over the row's top k (k >= row.n: all of it): top-p keeps the shortest
// prefix whose mass reaches top_p of the top k's, min-p those weighing at least min_p, and `uniform` picks the first
// whose running mass passes uniform x the kept mass. Returns the index picked.
template <int kThreads>
__device__ int ranked_pick(const RankedRow& row, int k, float top_p, float min_p, float uniform, WalkShared& sh) {
  bool found = true;
  RankPlace kept = whole_row(row);
  if (k < row.n) kept = walk_rank<kThreads>(row, {WalkGoal::kCountAt, 0.0, (unsigned long long)k}, kept, sh, found);
  if (top_p < 1.f) {
    const RankPlace p = walk_rank<kThreads>(row, {WalkGoal::kReachShare, (double)top_p, 0ull}, kept, sh, found);
    if (found) kept = p;
  }
  if (min_p > 0.f) {
    const unsigned long long m = count_weighing<kThreads>(row, min_p, kept, sh);
    if (m < kept.count)
      kept = walk_rank<kThreads>(row, {WalkGoal::kCountAt, 0.0, m < 1ull ? 1ull : m}, kept, sh, found);
  }
  RankPlace pick = walk_rank<kThreads>(row, {WalkGoal::kPassShare, (double)uniform, 0ull}, kept, sh, found);
  if (!found)  // rounding left the draw past the kept mass: the last kept entry, as sampled_rank
    pick = walk_rank<kThreads>(row, {WalkGoal::kCountAt, 0.0, kept.count}, kept, sh, found);
  return pick.index;
}

}  // namespace xllama::cuda
