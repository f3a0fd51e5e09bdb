// The CUDA kernels of the backend, as plain launch functions on device pointers. Shared by the backend
// (its stages, cuda/stage*.cu) and the kernel check program (tools/kernel-check). Every launcher checks the launch.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/backend.h"  // TokenSampling

namespace xllama::cuda {

// 16-byte vector loads and copies need it.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// A GPTQ 4-bit linear as it lies on the GPU. Input rows are reordered at load so groups are contiguous
// (row k' holds checkpoint row perm[k']); the kernels read activations through `perm`.
// Weight(k', n) = scale[g][n] * (q(k', n) - zero[g][n]) with g = k' / group_size.
struct QWeight {
  const uint32_t* qweight = nullptr;  // [K/8, N]: nibble j of word (r, n) is row 8r+j
  const __half* scales = nullptr;     // [G, N]
  const uint8_t* zeros = nullptr;     // [G, N] (zero offset applied) or null: every zero is sym_zero
  const int* perm = nullptr;          // [K] or null (identity)
  const __half* bias = nullptr;       // [N] or null
  int K = 0, N = 0, group_size = 0;
  int sym_zero = 8;
  // ceil(2^32 / group_size), set by gemv_q4 for the fixed-point kernels it launches (group_of); 0 elsewhere.
  uint32_t group_div = 0;
};

// A float buffer that a kernel zeroes (after its wait) for a later kernel that accumulates into it, so a decode
// graph needs no memset nodes.
struct ZeroFill {
  float* p = nullptr;
  size_t n = 0;
};

// ---- linear layers (all accumulate: y[i, n] += x[i, :] . W[n, :] (+ bias[n])) ----
constexpr int kGemvMaxRows = 8;  // rows up to this use the GEMV kernels, more use dequant + GEMM
// What the decode GEMV reads as its input rows:
//   Half:       x fp16 [m, K], x_stride in halves.
//   SiluGateUp: x is the MLP's gate/up output gu fp32 [m, 2K] (x_stride in floats); the input is
//               silu(gate) * up rounded to fp16 as silu_mul does (the down projection needs no SiLU kernel).
//               With GemvFusion::in_sum_sq set, gate and up are first multiplied by their row's RMSNorm factor
//               rsqrt(in_sum_sq[i] / norm_dim + eps): the gate/up GEMV ran with RmsNormDeferred.
//   RmsNorm:    x is the fp32 residual stream [m, K] (x_stride in floats); the input is rmsnorm's output,
//               half(x * rsqrt(sum_sq[i] / K + eps) * norm[k]), with each row's sum of squares given in
//               GemvFusion::in_sum_sq (the RMSNorm needs no kernel of its own).
//   RmsNormDeferred: x as for RmsNorm, but the input is x * norm[k]: each output row lacks its RMSNorm factor, which
//               the consumer of y applies (a linear map commutes with the scalar). The blocks of the first column
//               slice add each row's sum of squares over their slice of K into GemvFusion::in_sum_sq (zero before
//               the launch): so no earlier kernel has to finish y and then square it. Fixed-point dot only, no
//               bias (gemv_q4_defers_norm).
enum class GemvInput { Half, SiluGateUp, RmsNorm, RmsNormDeferred };
// The decode fusions around the GEMV; all optional.
struct GemvFusion {
  // RmsNorm input: each row's sum of squares, the norm weights [K] and epsilon. RmsNormDeferred adds the sums into
  // in_sum_sq instead; SiluGateUp reads them (for rows of norm_dim values) when in_sum_sq is set.
  const float* in_sum_sq = nullptr;
  const __half* in_norm = nullptr;
  // RmsNormDeferred with act-order: in_norm is in the weight's row order (norm[perm[k']]), so the staging reads it
  // contiguously instead of gathering it as it gathers h (CudaBackend's row-order norms).
  bool in_norm_rows = false;
  float eps = 0.f;
  int norm_dim = 0;
  // Once y's columns are final, each row's sum of y^2 over all N columns is added to out_sum_sq[i] (zero before
  // the launch): the next RmsNorm GEMV's in_sum_sq. col_done: ceil(N / 128) counters, zero before the first
  // launch; every launch leaves them zero.
  float* out_sum_sq = nullptr;
  unsigned* col_done = nullptr;
  ZeroFill zero[2];
  bool evict_first = false;  // the weight loads' L2 policy (weight_evict_first_flag())
};
// Decode GEMV over 4-bit weights (kernels_gemv_q4.cu).
// The config sets the packed rows (8 input rows each) per warp, which sets how K is split over blocks
// (0: gemv_q4_resolve's tuned rule), and how the dot products are done:
//   Half:  the input as fp16 pairs, nibbles dequantized to fp16 (hfma2, fp32 sums every 4 products).
//   Fixed: the input as 16-bit fixed point per 32 inputs (one scale per block of 32, |x| / max -> 32767),
//          multiplied with the nibbles by dp2a in exact integer sums; about 2.5x fewer instructions per weight,
//          and no rounding but the one of x to 16 bits (finer than fp16's for every input within 1/32 of its
//          block's largest): ~20x closer to float64 than the fp16 dot in the kernel check. Needs K and the group
//          size to be multiples of 32.
//   Default: Fixed where it can run, unless XLLAMA_GEMV_DOT=half (gemv_q4_fixed_point_flag()).
// gemv_q4_candidates() lists what the kernel check's --tune times and its checks run (fixed splits, and each dot's
// rule as gemv_q4 runs it by default).
enum class GemvDot { Default, Half, Fixed };
struct GemvQ4Config {
  int rows_per_warp = 0;
  GemvDot dot = GemvDot::Default;
  // Set by gemv_q4_resolve when it picks rows_per_warp by rule: a one-row fixed-point GEMV whose grid would take
  // more than one wave of resident blocks may then run the kernel built for 7 blocks per SM, with fewer K slices
  // where that makes the grid one wave (gemv_q4_fit_to_gpu in kernels_gemv_q4.cu).
  bool fit_to_gpu = false;
};
// Process-wide switch for GemvDot::Default (the kernel check flips it to compare); starts from XLLAMA_GEMV_DOT.
bool& gemv_q4_fixed_point_flag();
// The config gemv_q4 runs for this weight: Default dot and rows_per_warp 0 resolved (the tuned rules).
GemvQ4Config gemv_q4_resolve(const QWeight& w, GemvQ4Config cfg);
// Whether gemv_q4 can take this weight with GemvInput::RmsNormDeferred (its default config).
bool gemv_q4_defers_norm(const QWeight& w);
// Column slices of 128 that one block of gemv_q4 takes for this weight and input with one row and the default config:
// 2-3 where a grid of 1-3 waves fits in one wave that way (kernels_gemv_q4.cu, gemv_q4_tiles_kernel), else 1.
int gemv_q4_column_slices_per_block(const QWeight& w, GemvInput input);
// Process-wide switch for deferring the decode RMSNorms where they can be (the kernel check flips it to compare);
// on unless XLLAMA_DEFER_NORM=0. On the H200 it took decode from 575 to 615 t/s on the 7B (docs/PERF-NOTES.md,
// session 11).
bool& deferred_norm_flag();
// Process-wide switch: the decode GEMVs (4-bit and fp16) stream their weights with the L2 policy evict_first, so
// that what a token reads again (norm weights, activations, the KV cache) stays in L2 instead of being pushed out by
// the weights; on unless XLLAMA_WEIGHT_EVICT_FIRST=0. Read when a launch is enqueued (graph capture).
bool& weight_evict_first_flag();
// Measurement only (the kernel check's --bench-ablate; nothing else sets it): parts of a decode step that
// enqueue_decode_layers leaves out when it captures a graph, so that the graph's time without them shows what they
// cost inside it (ncu times kernels in isolation, without the overlap of programmatic dependent launch). The logits
// are wrong.
enum DecodeAblation : unsigned {
  kAblateAttention = 1,     // no attention kernel (o_proj reads a stale input)
  kAblateSumsOfSquares = 2, // o_proj and down_proj do not square their outputs (but the last down_proj)
  kAblateNormStaging = 4,   // q/k/v and gate/up read h as fp16 instead of normalizing it
};
unsigned& decode_ablation();
// The same for prompt chunks (the kernel check's --bench-prompt-ablate): parts enqueue_layers leaves out of a chunk of
// more than kGemvMaxRows rows, to see what each costs in the pipelined chunk (the dequantization side stream shares
// the SMs with every kernel on the main stream). Timing only: the logits are wrong.
enum PromptAblation : unsigned {
  kAblatePromptAttention = 1,  // no RoPE + KV write, no attention (o_proj reads a stale input)
  kAblatePromptSilu = 2,       // no SiLU-gate (down_proj reads a stale input)
  kAblatePromptNorms = 4,      // no RMSNorms (q/k/v and gate/up read a stale input)
  kAblatePromptDequant = 8,    // no dequantization (the GEMMs read stale fp16 tiles)
};
unsigned& prompt_ablation();
void gemv_q4(const QWeight& w, const void* x, GemvInput input, int m, int x_stride, float* y, int y_stride,
             cudaStream_t s, const GemvQ4Config& cfg = GemvQ4Config{}, const GemvFusion& fusion = GemvFusion{});
std::vector<GemvQ4Config> gemv_q4_candidates();
// The one-row decode MLP in one launch (kernels_mlp_decode.cu): h_out = h_in + down(SiLU(gate) * up) of
// rmsnorm(h_in) (weights post_norm, epsilon eps), gate and up one 4-bit weight [hid, 2I] as the decode path holds
// them. h_out must be zero before the launch and must not be h_in (blocks read h_in while others add into h_out).
// zero0 and zero1 are zeroed after the wait, as GemvFusion::zero. mlp_decode_fits: whether it runs these weights
// (fixed-point shapes, down_proj without act-order, no biases, its grid in one wave on this GPU).
bool mlp_decode_fits(const QWeight& gate_up, const QWeight& down);
void mlp_decode(const QWeight& gate_up, const QWeight& down, const __half* post_norm, float eps, const float* h_in,
                float* h_out, cudaStream_t s, ZeroFill zero0 = {}, ZeroFill zero1 = {});
// Process-wide switch for the one-launch decode MLP where it fits (the kernel check flips it to compare); off
// unless XLLAMA_FUSED_MLP=1 (slower than the two GEMVs on the H200: docs/PERF-NOTES.md, session 28). Read when a
// decode graph is captured.
bool& fused_mlp_flag();
// Dense fp16 weight [N, K].
void gemv_f16(const __half* w, const __half* bias, int K, int N, const __half* x, int m, int x_stride, float* y,
              int y_stride, cudaStream_t s);
// The same with the RMSNorm folded in (the decode lm_head): the input is rmsnorm's output of the fp32 rows h,
// half(h * rsqrt(sum_sq[i] / K + eps) * norm[k]), from each row's sum of squares (as the last down_proj leaves
// them); y is written, not accumulated (no zeroing needed). Needs K % 8 == 0, K fp16 values within
// kGemvF16NormSmem, h_stride % 4 == 0, w and h 16-byte aligned (gemv_f16_rmsnorm_supported) and norm 8-byte
// aligned; else it throws.
constexpr size_t kGemvF16NormSmem = 48 * 1024;
bool gemv_f16_rmsnorm_supported(const __half* w, int K, const float* h, int h_stride);
// A greedy pick made by gemv_f16_rmsnorm itself (one row): each block folds its columns' logits into `best` (the
// largest logit, ties to the lower index, NaN never picked: argmax's rule) and the last block to finish writes the
// pick to *out and, for a fed decode step, tokens[0] = pick and *pos += 1 (the next step's position). best and
// done start at 0, and the last block leaves them so. Saves the argmax launch between a decode step's lm_head and
// the next step (docs/PERF-NOTES.md, session 33).
struct GreedyPick {
  unsigned long long* best = nullptr;
  unsigned* done = nullptr;
  int* out = nullptr;
  int* tokens = nullptr;  // optional, with pos
  int* pos = nullptr;
};
void gemv_f16_rmsnorm(const __half* w, const __half* bias, int K, int N, const float* h, int h_stride,
                      const float* sum_sq, const __half* norm, float eps, int m, float* y, int y_stride,
                      cudaStream_t s, const GreedyPick* pick = nullptr);
// Process-wide switch: gemv_f16_rmsnorm's one-row launch (the decode lm_head) runs as one wave of warps that walk the
// columns, each requesting its next batch before it multiplies the current one, instead of gemv_f16_kernel's many
// short waves: the same logits and pick, 67.7 -> 66.5 us for a 7B's lm_head and 131.2 -> 124.5 for a 70B's on the
// H200 (docs/PERF-NOTES.md, session 50). On unless XLLAMA_LM_HEAD_WAVE=0; the kernel check flips it to compare.
bool& lm_head_wave_flag();
// Dequantizes columns [n0, n1) of a GPTQ weight into out [K, n1 - n0] (row k' = reordered row). beside: for a side
// stream running beside the GEMMs (DequantAhead): launched without programmatic serialization, so its short blocks
// hand their SMs back instead of waiting on them.
void dequant_q4(const QWeight& w, int n0, int n1, __half* out, cudaStream_t s, bool beside = false);
// out[i, k'] = x[i, perm[k']]
void gather_columns(const __half* x, int m, int K, int x_stride, const int* perm, __half* out, cudaStream_t s);
// Tensor-core GEMM (xllama's own, WMMA): C[m, N] += A[m, K] . B, B(k, n) = b_kn ? B[k*ldb + n] : B[n*ldb + k],
// for fp32 C; fp16 C (prompt projections) is overwritten: C = A . B. T: float or __half.
template <class T>
void gemm_f16_wmma(const __half* A, int lda, const __half* B, int ldb, bool b_kn, T* C, int ldc, int m, int N, int K,
                   cudaStream_t s);
// y[i, n] += bias[n]; T: float or __half.
template <class T>
void add_bias(T* y, int m, int N, int y_stride, const __half* bias, cudaStream_t s);

// ---- elementwise / normalization ----
// h[i] = table[tokens[i]] as fp32. With sum_sq (decode) also each row's sum of squares (for the first
// RmsNorm GEMV), and zeroes the given buffers. hidden % 8 == 0, table and h 16-byte aligned (else it throws; the CUDA
// backend's validate_config refuses such models first).
void embed_rows(const __half* table, const int* tokens, int m, int hidden, float* h, cudaStream_t s,
                float* sum_sq = nullptr, ZeroFill zero0 = {}, ZeroFill zero1 = {});
// y[i] = half(x[i] * rsqrt(mean(x[i]^2) + eps) * w), rows of length n. Also zeroes zero_buf[0, zero_count)
// (the next linear's accumulation buffer). Prompt chunks (and the final norm where the decode lm_head can't
// fold it: a 4-bit lm_head); decode layers fold their norms into the GEMVs (GemvInput::RmsNorm), the decode
// lm_head into gemv_f16_rmsnorm.
void rmsnorm(const float* x, int x_stride, int m, int n, const __half* w, float eps, __half* y, int y_stride,
             cudaStream_t s, float* zero_buf = nullptr, size_t zero_count = 0);
// gu [m, 2I] (gate then up) -> out [m, I] = silu(gate) * up; T: float (decode's accumulators) or __half (prompt
// chunks' GEMM output).
template <class T>
void silu_mul(const T* gu, int m, int I, __half* out, cudaStream_t s);

// ---- attention ----
// RoPE's inputs on the device: inv_freq [head_dim / 2] (backend/rope_frequencies.h) and the factor cos and sin are
// multiplied by (YaRN's attention scaling; 1 for every other rope type). A bare inv_freq pointer converts with factor 1.
struct RopeTable {
  const float* inv_freq = nullptr;
  float attention_factor = 1.f;
  RopeTable() = default;
  RopeTable(const float* freqs, float factor = 1.f) : inv_freq(freqs), attention_factor(factor) {}  // NOLINT: implicit
};
// qkv [m, (H + 2 KV) * D] (T: float or __half): rotates q and k (rotate_half RoPE, angle = position *
// inv_freq[j]) in fp32, writes q as fp16 [m, H, D] and k, v into the caches [KV, S, D] at positions *pos + i.
template <class T>
void rope_qkv_to_cache(const T* qkv, int m, int H, int KV, int D, RopeTable rope, const int* pos, __half* q,
                       __half* kcache, __half* vcache, int S, cudaStream_t s);
// Causal attention of m query rows at positions *pos + i over the cache (positions <= own position).
// Splits each row's keys over up to `splits` blocks (flash-decoding): a row of live length L uses
// min(splits, ceil(L / min_keys_per_split)) of them, decided on the device (a captured graph serves every
// length); the last block of a (row, head) to finish combines them. work holds m * H * splits * (D + 2)
// floats; done holds m * H counters, zero before the first call (each call leaves them zero). out fp16
// [m, H * D]. min_keys_per_split is a parameter only for the kernel check's timing; the backend uses the default.
// With D = 128 a block of 256 threads reads 64 keys per round trip (16 lane groups x 4 in flight; 32 at 128 threads):
// 64 keys is one round, requested before the kernel waits for q/k/v. (At least 128 keys per split measured the same
// but for the 7B at depth ~580, 1.5% faster in one run: docs/PERF-NOTES.md, session 12.)
constexpr int kAttnMinKeysPerSplit = 64;
void attention(const __half* q, const __half* kcache, const __half* vcache, int m, int H, int KV, int D, int S,
               const int* pos, int splits, float* work, unsigned* done, __half* out, cudaStream_t s,
               int min_keys_per_split = kAttnMinKeysPerSplit);
// The same with RoPE fused (decode): q and the new rows' k, v are read from qkv fp32 [m, (H + 2 KV) * D] as
// rope_qkv_to_cache takes it; the new k, v are written into the caches as rope_qkv_to_cache would.
// qkv_norm: where the q/k/v GEMV ran with GemvInput::RmsNormDeferred, each qkv row is first multiplied by its
// RMSNorm factor, rsqrt(sum_sq[i] / dim + eps); default: qkv is final.
struct DeferredNorm {
  const float* sum_sq = nullptr;
  int dim = 0;
  float eps = 0.f;
};
// Weights of a later decode kernel that the tensor-core attention requests into L2 (cp.async.bulk.prefetch.L2), so
// that they come from DRAM in the attention's window, when it idles: `chunks` pieces, the last chunk_bytes (a
// multiple of kL2LookAheadRequest) of each `stride` bytes from p, kL2LookAheadRequest bytes a request from one thread
// of a block. Who requests: the blocks that have no keys at this length, before they leave (requests from the live
// blocks before their keys lengthened the attention's chain more than they saved; docs/PERF-NOTES.md, session 69);
// where every split is live, every block once its keys are done, where that is at most two requests a block (7B at
// depth 2056 on an H100: 2.1% a token; session 70).
struct L2LookAhead {
  const void* p = nullptr;
  size_t stride = 0, chunk_bytes = 0;
  int chunks = 0;
};
constexpr size_t kL2LookAheadRequest = 64 << 10;  // 16 KB requests, one per thread, were far slower (session 69)
// Bytes of each layer's gate/up weights that a one-row decode step's attention requests ahead (read once, when a
// decode graph is captured, on its device): XLLAMA_DECODE_L2_AHEAD_MIB (whole MiB), default 16 on GPUs whose DRAM
// peaks below 4 TB/s and 0 (off) on faster ones.
size_t decode_l2_look_ahead_bytes();
// Heads of head_dim 128 (attention_mma_applies) go to attention_mma_rope; splits must then come from
// attention_rope_splits. `ahead`: the tensor-core kernel only (the other ignores it).
void attention_rope(const float* qkv, RopeTable rope, __half* kcache, __half* vcache, int m, int H, int KV,
                    int D, int S, const int* pos, int splits, float* work, unsigned* done, __half* out,
                    cudaStream_t s, DeferredNorm qkv_norm = {}, L2LookAhead ahead = {});
// The splits attention_rope's grid takes for m rows: attention_mma_splits where the tensor-core kernel applies, else
// attention_splits.
int attention_rope_splits(int m, int H, int KV, int D, int max_len);
// Decode attention on the tensor cores (kernels_attention_decode_mma.cu): a block per (KV head, row, split) takes
// the KV head's G = H / KV query heads at once (mma.sync), so each cached row is read once per KV head. For head_dim
// 128 and G <= 8, unless XLLAMA_ATTN_MMA=0 (attention_mma_flag, process-wide; the kernel check flips it).
// work and done as attention_rope's (work 16-byte aligned; done holds m * KV counters, left zero).
bool& attention_mma_flag();
bool attention_mma_applies(int H, int KV, int D);
int attention_mma_splits(int m, int H, int KV, int max_len);
void attention_mma_rope(const float* qkv, RopeTable rope, __half* kcache, __half* vcache, int m, int H, int KV,
                        int S, const int* pos, int splits, float* work, unsigned* done, __half* out, cudaStream_t s,
                        DeferredNorm qkv_norm, L2LookAhead ahead = {});
// The most splits a decode attention launch takes for m rows of H heads: as many blocks as the current GPU holds at
// once (occupancy at attention_threads_flag()'s block size), at most max_len / 64 and 64.
int attention_splits(int m, int H, int max_len);
// Threads per decode attention block, 128 or 256 (process-wide; the kernel check flips it to compare); starts from
// XLLAMA_ATTN_THREADS.
int& attention_threads_flag();
// Whether the decode attention's lane groups take each round's positions into their online softmax at once
// (attend_positions' BATCH) rather than one by one: process-wide, on unless XLLAMA_ATTN_BATCH=0 (the kernel check
// flips it to check both).
bool& attention_batch_flag();
// The same for prompt chunks, on the tensor cores (kernels_attention_prefill.cu; head_dim 64 and 128, other
// sizes use attention() with one split).
void attention_prefill(const __half* q, const __half* kcache, const __half* vcache, int m, int H, int KV, int D,
                       int S, const int* pos, __half* out, cudaStream_t s);

// ---- whole-token decode (one row) as one persistent kernel (kernels_decode_persistent.cu) ----
// One block per SM walks a fixed share of every layer's 4-bit weight tiles (128 columns x 512 input rows,
// split-major) and keeps a ring of them in flight in shared memory (cp.async), so weights stream across
// kernel-free phase boundaries: a phase waits on a per-layer counter (every tile of the phase it depends on
// has been added), never on the weights. Per layer: q/k/v (RMSNorm while staging), attention (RoPE, KV write,
// flash-decoding splits combined by the last block), o_proj (adds into h), gate/up (RMSNorm), down (SiLU while
// staging, adds into h). The counters are left zero by the last block to leave.
struct DecodeLayer {
  QWeight lin[4];  // q/k/v, o_proj, gate/up, down (the GEMVs' layouts and pointers)
  const __half* input_norm = nullptr;
  const __half* post_norm = nullptr;
  __half* kcache = nullptr;  // this layer's [KV, S, D]
  __half* vcache = nullptr;
};
struct DecodeStep {
  const DecodeLayer* layers = nullptr;  // device array [num_layers]
  int num_layers = 0, hidden = 0, inter = 0, heads = 0, kv_heads = 0, head_dim = 0, max_seq = 0, max_splits = 1;
  float eps = 0.f;
  RopeTable rope;
  const int* pos = nullptr;
  float* h = nullptr;             // [hidden] residual stream (the embedding is in it before the launch)
  float* qkv = nullptr;           // [(H + 2 KV) D] zero before the launch (embed_rows zeroes it); left zero
  float* gu = nullptr;            // [2 I] zero before the launch
  __half* att = nullptr;          // [H D]
  float* work = nullptr;          // attention partials [H][max_splits][D + 2]
  unsigned* head_done = nullptr;  // [H] split counters, zero (left zero)
  float* final_sum_sq = nullptr;  // h's sum of squares after the last layer (for gemv_f16_rmsnorm)
  unsigned* counters = nullptr;   // [decode_step_counters(num_layers)], zero (left zero)
  unsigned long long* profile = nullptr;  // [grid][kProfileSlots] clock cycles per segment, or null (kernel check)
  int threads = 0;  // per block, 256 or 512; 0: decode_step_prepare picks (XLLAMA_DECODE_THREADS overrides)
  // Launch shape, filled in by decode_step_prepare.
  int stages = 0, stage_bytes = 0, scale_off = 0, zero_off = 0, scratch_floats = 0, grid = 0;
  size_t smem = 0;
};
// DecodeStep::profile segments: block thread 0's clock from the start (after the previous kernel) through each
// wait and each phase's work (summed over layers) to the end.
enum DecodeProfileSlot {
  kProfileStart, kProfileWaitQkv, kProfileQkv, kProfileWaitAttn, kProfileAttn, kProfileWaitO, kProfileO,
  kProfileWaitGateUp, kProfileGateUp, kProfileWaitDown, kProfileDown, kProfileEnd, kProfileSlots
};
size_t decode_step_counters(int num_layers);
// Checks the shapes (every layer alike, 4-bit, head_dim a multiple of 8 up to 256) and sizes the launch for
// the current device: false when the kernel can't run this model (decode then takes the 5-kernel path).
// host_layers: the layers as `layers` will hold them.
bool decode_step_prepare(DecodeStep& st, const std::vector<DecodeLayer>& host_layers);
void decode_step(const DecodeStep& st, cudaStream_t s);
unsigned long long decode_step_enqueued();  // launches enqueued so far (tests: was the kernel used?)
// Process-wide switch, off by default: XLLAMA_PERSISTENT_DECODE=1 turns it on (the kernel check flips it to
// compare). On the H200 it is still slower than the 5-kernel path (docs/PERF-NOTES.md, sessions 5 and 9).
bool& persistent_decode_flag();

// ---- sampling (result in *out) ----
// With a feed, the pick is also the next decode step's input: tokens[0] = pick and *pos = next_pos, so that step
// can run without the host (decode pipelining on one GPU).
struct StepFeed {
  int* pos = nullptr;
  int* tokens = nullptr;
  int next_pos = 0;
  bool advance = false;  // *pos += 1 instead of next_pos (a pick inside a captured graph: positions vary per launch)
};
void argmax(const float* logits, int vocab, int* out, cudaStream_t s, StepFeed feed = {});
constexpr int kMaxDeviceTopK = 64;
// A draw (TokenSampling, backend/backend.h: temperature > 0, top_k 0 for the whole vocabulary or any k):
// softmax(logits / temperature) over the top_k largest (ties: lower index first, sorted descending) of the logits
// after the draw's penalties (read from and recorded in scratch.history), top-p, min-p and typical-p, then the first
// token whose cumulative probability exceeds uniform: sample_token_host's rule (the same backend/sampled_rank.h; up to
// kMaxDeviceTopK candidates as lists, more by walking the row in rank order, cuda/ranked_walk.cuh, which has no
// typical-p: device_pick_takes says which draws it takes). Logits it can't
// rank (a NaN or +infinity among them, or all -infinity) give kNonFinitePick in *out (a feed still gets token 0, so
// the step it starts reads a valid embedding row).
constexpr int kNonFinitePick = -1;
// A whole-row draw (top-k 0) also keeps the row's top kMaxDeviceTopK and is answered from them where top-p, min-p and
// the draw end among them, which spares the walk's passes (the same answer: its integer masses and targets);
// XLLAMA_WALK_LISTS=0 always walks (process-wide, read when a pick is launched or captured; the kernel check flips it).
bool& walk_lists_flag();
// How many candidates a draw over `vocab` logits ranks: its top-k, or the whole row for top-k 0 (or one above vocab).
__host__ __device__ inline int draw_candidates(const TokenSampling& draw, int vocab) {
  return draw.top_k <= 0 || draw.top_k >= vocab ? vocab : draw.top_k;
}
// Whether sample_top_k takes this draw over `vocab` logits: any but typical-p over more than kMaxDeviceTopK.
inline bool device_pick_takes(const TokenSampling& draw, int vocab) {
  return draw.typical_p >= 1.0f || draw_candidates(draw, vocab) <= kMaxDeviceTopK;
}
// The top-k pick runs in top_k_blocks(vocab) blocks of kTopKSlice logits each; they hand their lists to the last
// one through this state: a count of blocks done and a refusal flag (both 0 between launches: the last block resets
// them), how many whole-row draws in a row the top lists have not answered (walk_lists_flag), and each block's k
// values and indices (or, for a walked draw, the penalized row and each block's maximum).
// With it the token history the penalties read and each penalized pick extends (vocab entries,
// backend/token_penalties.h). One per stage (its picks run one after another on its stream), carved from
// top_k_scratch_words(vocab) 32-bit words zeroed once.
constexpr int kTopKSlice = 2048;
struct TopKScratch {
  uint32_t* state = nullptr;
  uint32_t* history = nullptr;
  float* value = nullptr;
  int* index = nullptr;
  float* ranked = nullptr;     // vocab penalized logits, 16-byte aligned
  float* block_max = nullptr;  // top_k_blocks(vocab)
};
int top_k_blocks(int vocab);
size_t top_k_scratch_words(int vocab);
TopKScratch top_k_scratch(uint32_t* zeroed, int vocab);
void sample_top_k(const float* logits, int vocab, const TokenSampling& draw, TopKScratch scratch, int* out,
                  cudaStream_t s, StepFeed feed = {});
// The same with the draw read from device-visible memory when the kernel runs: for a graph captured once and
// launched per step, the host writing each step's draw there before the launch.
void sample_top_k_at(const float* logits, int vocab, const TokenSampling* draw, TopKScratch scratch, int* out,
                     cudaStream_t s, StepFeed feed);

// ---- scoring (perplexity; kernels_score.cu) ----
// nll[i] = -log softmax(logits[i, :])[targets[i]] for each of `rows` rows of `vocab` logits; 0 where targets[i] < 0.
// One block per row, max-subtracted, accumulated in float.
void token_nll(const float* logits, int rows, int vocab, const int* targets, float* nll, cudaStream_t s);

// ---- random fill (dummy models) ----
void fill_random_u32(uint32_t* p, size_t n, uint64_t seed, cudaStream_t s);
// uniform in [lo, hi)
void fill_random_half(__half* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t s);
void fill_half(__half* p, size_t n, float v, cudaStream_t s);

}  // namespace xllama::cuda
