// A stage's lifetime, its scratch and KV cache, a chunk's run through its layers, and the boundaries with the
// stages before and after it (cuda/stage.h).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/env_mib.h"
#include "backend/rope_frequencies.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/stage.h"

namespace xllama {
namespace {

// Prompt-path dequantization tile: 128 MiB of fp16 weights (XLLAMA_DEQUANT_MIB overrides it, for tuning). Fewer,
// wider GEMMs fill the GPU better: on the H200 a 512-token prompt ran 5% (7B) and 6% (70B) faster than with
// 64 MiB; 256 MiB gained 2% more on the 7B only (docs/PERF-NOTES.md, session 7).
size_t dequant_budget_halves() {
  constexpr uint64_t kDefault = uint64_t{128} << 20;
  const uint64_t bytes = env_mib("XLLAMA_DEQUANT_MIB", kDefault);
  return (size_t)((bytes ? bytes : kDefault) / sizeof(uint16_t));  // 0 MiB would be no tile at all
}

// Dequantization tiles in the ring of DequantAhead (deq_ is the first).
constexpr int kDequantAheadSlots = 3;

}  // namespace

Stage::Stage(const ModelConfig& config, const BackendOptions& options, const StagePlan& plan, bool first, bool last)
    : cfg_(config), opt_(options), plan_(plan), device_(plan.device), first_(first), last_(last),
      mem_(plan.device) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  // The highest priority: work beside it (beside_, the lowest) only takes the SMs this one leaves idle.
  int least = 0, greatest = 0;
  XL_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  XL_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
  XL_CUDA_CHECK(cudaStreamCreateWithPriority(&beside_, cudaStreamNonBlocking, least));
#ifdef XLLAMA_HAVE_CUBLAS
  if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) throw BackendError(kCudaError, "cublasCreate failed");
  cublasSetStream(cublas_, stream_);
#endif
  XL_CUDA_CHECK(cudaEventCreateWithFlags(&sent_, cudaEventDisableTiming));
  XL_CUDA_CHECK(cudaEventCreateWithFlags(&received_, cudaEventDisableTiming));
}

Stage::~Stage() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  deq_ahead_.reset();  // (it runs on beside_)
  if (beside_) cudaStreamSynchronize(beside_), cudaStreamDestroy(beside_);
  for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
#ifdef XLLAMA_HAVE_CUBLAS
  if (cublas_) cublasDestroy(cublas_);
#endif
  if (stream_) cudaStreamDestroy(stream_);
  if (host_token_) cudaFreeHost(host_token_);
  if (draw_host_) cudaFreeHost(draw_host_);
  if (host_in_) cudaFreeHost(host_in_);
  if (host_embed_registered_) cudaHostUnregister(host_embed_);
  std::free(host_embed_);  // (alloc_huge_embedding's, or null)
  if (staging_) cudaFreeHost(staging_);
  if (inputs_copied_) cudaEventDestroy(inputs_copied_);
  for (cudaEvent_t e : token_picked_)
    if (e) cudaEventDestroy(e);
  if (sent_) cudaEventDestroy(sent_);
  if (received_) cudaEventDestroy(received_);
}

// Scratch for chunks of up to max_chunk_tokens rows (cli/engine/gpu-footprint.ts counts the same bytes).
// The KV cache comes after (allocate_kv), once the orchestrator has sized it over every stage.
void Stage::allocate_scratch() {
  const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
            D = cfg_.head_dim;
  XL_CUDA_CHECK(cudaSetDevice(device_));
  rows_ = chunk_rows();
  const int kmax = std::max({hid, I, H * D});
  const size_t qkv_dim = (size_t)(H + 2 * KV) * D;
  // Flash-decoding partials: at most 64 splits per row (attention_splits).
  const size_t work_floats = (size_t)cuda::kGemvMaxRows * H * 64 * (D + 2);
  const size_t deq = dequant_tile_halves();
  h_ = mem_.alloc<float>((size_t)rows_ * hid, "scratch", &scratch_bytes_);
  xn_ = mem_.alloc<__half>((size_t)rows_ * kmax, "scratch", &scratch_bytes_);
  // q/k/v and gate/up outputs: fp16 for a prompt chunk's rows, fp32 accumulators for a decode step's (at most
  // kGemvMaxRows rows); gpu-footprint.ts mirrors this.
  const auto out_floats = [&](size_t width) {
    return std::max((size_t)rows_ * width / 2, (size_t)cuda::kGemvMaxRows * width);
  };
  qkv_ = mem_.alloc<float>(out_floats(qkv_dim), "scratch", &scratch_bytes_);
  q_ = mem_.alloc<__half>((size_t)rows_ * H * D, "scratch", &scratch_bytes_);
  att_ = mem_.alloc<__half>((size_t)rows_ * H * D, "scratch", &scratch_bytes_);
  gu_floats_ = out_floats((size_t)2 * I);
  gu_ = mem_.alloc<float>(gu_floats_, "scratch", &scratch_bytes_);
  act_ = mem_.alloc<__half>((size_t)rows_ * I, "scratch", &scratch_bytes_);
  // (the fused Hopper GEMM's input rounds the rows up to its token tiles)
  xperm_ = mem_.alloc<__half>(cuda::gemm_q4_wgmma_input_halves(rows_, kmax), "scratch", &scratch_bytes_);
  deq_ = mem_.alloc<__half>(deq, "scratch", &scratch_bytes_);
  deq_halves_ = deq;
  create_dequant_ahead();
  // The fused Hopper GEMM's stream-K scratch where a 4-bit linear has a shape it takes (on every GPU, so the
  // memory estimate doesn't depend on it), zeroed once: each GEMM leaves it as it found it.
  fused_prompt_gemm_ = fused_prompt_gemm_setting();
  if (any_fused_shape() && fused_prompt_gemm_ != FusedPromptGemm::Off) {
    fused_scratch_ = mem_.alloc<uint8_t>(cuda::gemm_q4_wgmma_scratch_bytes(), "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMemset(fused_scratch_, 0, cuda::gemm_q4_wgmma_scratch_bytes()));
  }
  work_ = mem_.alloc<float>(work_floats, "scratch", &scratch_bytes_);
  attn_done_ = mem_.alloc<unsigned>((size_t)cuda::kGemvMaxRows * H, "scratch", &scratch_bytes_);
  XL_CUDA_CHECK(cudaMemset(attn_done_, 0, (size_t)cuda::kGemvMaxRows * H * sizeof(unsigned)));
  row_sum_sq_ = mem_.alloc<float>(2 * cuda::kGemvMaxRows, "scratch", &scratch_bytes_);
  const size_t col_slices = (size_t)(hid + 127) / 128;  // the GEMV's 128-column slices of the residual stream
  col_done_ = mem_.alloc<unsigned>(col_slices, "scratch", &scratch_bytes_);
  XL_CUDA_CHECK(cudaMemset(col_done_, 0, col_slices * sizeof(unsigned)));
  if (last_) {
    logits_ = mem_.alloc<float>((size_t)kLogitRows * cfg_.vocab_size, "scratch", &scratch_bytes_);
    pick_best_ = mem_.alloc<unsigned long long>(1, "scratch", &scratch_bytes_);
    pick_done_ = mem_.alloc<unsigned>(1, "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMemset(pick_best_, 0, sizeof(unsigned long long)));
    XL_CUDA_CHECK(cudaMemset(pick_done_, 0, sizeof(unsigned)));
    const size_t top_k_words = cuda::top_k_scratch_words(cfg_.vocab_size);
    uint32_t* top_k = mem_.alloc<uint32_t>(top_k_words, "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMemset(top_k, 0, top_k_words * sizeof(uint32_t)));
    top_k_ = cuda::top_k_scratch(top_k, cfg_.vocab_size);
  }
  // Step inputs travel in one copy from pinned memory: [pos, tokens...].
  pos_ = mem_.alloc<int>(rows_ + 1, "scratch", &scratch_bytes_);
  tokens_ = pos_ + 1;
  XL_CUDA_CHECK(cudaMallocHost(&host_in_, (size_t)(rows_ + 1) * sizeof(int)));
  XL_CUDA_CHECK(cudaEventCreateWithFlags(&inputs_copied_, cudaEventDisableTiming));
  if (last_) {  // score(): the targets and NLLs of one chunk of rows
    score_targets_ = mem_.alloc<int>(rows_, "scratch", &scratch_bytes_);
    score_nll_ = mem_.alloc<float>(rows_, "scratch", &scratch_bytes_);
  }
  inv_freq_ = mem_.alloc<float>(D / 2, "scratch", &scratch_bytes_);
  XL_CUDA_CHECK(cudaHostAlloc(&host_token_, 2 * sizeof(int), cudaHostAllocMapped | cudaHostAllocPortable));
  XL_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&host_token_dev_), host_token_, 0));
  XL_CUDA_CHECK(cudaHostAlloc(&draw_host_, 2 * sizeof(TokenSampling), cudaHostAllocMapped | cudaHostAllocPortable));
  XL_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&draw_dev_), draw_host_, 0));
  for (cudaEvent_t& e : token_picked_) XL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  update_inv_freq(1, /*force=*/true);
}

// Rows of a prompt chunk: max_chunk_tokens, at least the GEMV's rows.
int Stage::chunk_rows() const {
  return std::max(opt_.max_chunk_tokens > 0 ? opt_.max_chunk_tokens : kDefaultChunkTokens, cuda::kGemvMaxRows);
}

// The dequantization tile, in halves: the budget, but no more than the largest layer linear takes whole (its
// columns rounded up to 128), so a small model does not hold 128 MiB tiles it never fills; at least 128 columns
// of the widest.
size_t Stage::dequant_tile_halves() const {
  const size_t hid = cfg_.hidden_size, I = cfg_.intermediate_size, HD = (size_t)cfg_.num_heads * cfg_.head_dim,
               qkv_dim = (size_t)(cfg_.num_heads + 2 * cfg_.num_kv_heads) * cfg_.head_dim;
  const auto whole = [](size_t K, size_t N) { return K * ((N + 127) / 128 * 128); };
  const size_t largest = std::max({whole(hid, qkv_dim), whole(HD, hid), whole(hid, 2 * I), whole(I, hid)});
  return std::max(std::min(dequant_budget_halves(), largest), std::max({hid, I, HD}) * 128);
}

// The width of a 4-bit prompt GEMM's column chunks (the last may be narrower): at most the dequantization tile,
// of equal width (multiples of 128): GEMMs of similar shape instead of full tiles and a narrow remainder that
// fills the GPU poorly.
int Stage::column_chunk(int N, int K, size_t tile_halves) {
  const int most = std::max(128, (int)std::min<size_t>(N, tile_halves / K) / 128 * 128);
  const int chunks = (N + most - 1) / most;
  return std::min(most, ((N + chunks - 1) / chunks + 127) / 128 * 128);
}

// Some 4-bit layer linear has a shape the fused Hopper GEMM takes (whatever the GPU: the scratch decision and
// cli/engine/gpu-footprint.ts's estimate of it must not depend on it).
bool Stage::any_fused_shape() const {
  return any_linear([](const GpuLinear& l) {
    return l.quantized && cuda::gemm_q4_wgmma_shape_fits(l.q.K, l.q.N, l.q.group_size);
  });
}

bool Stage::any_quantized() const {
  return any_linear([](const GpuLinear& l) { return l.quantized; });
}

// Some layer linear of this stage (q/k/v, o_proj, gate/up, down_proj) satisfies `pred`.
template <class Pred>
bool Stage::any_linear(Pred pred) const {
  return std::any_of(layers_.begin(), layers_.end(), [&](const GpuLayer& l) {
    return pred(l.qkv) || pred(l.o) || pred(l.gate_up) || pred(l.down);
  });
}

// The prompt's 4-bit GEMMs dequantize on a side stream, into deq_ and more tiles of its size
// (cuda/dequant_ahead.h), unless XLLAMA_DEQUANT_AHEAD=0.
void Stage::create_dequant_ahead() {
  if (!cuda::dequant_ahead_setting() || !any_quantized()) return;
  std::vector<__half*> slots{deq_};
  for (int i = 1; i < kDequantAheadSlots; ++i)
    slots.push_back(mem_.alloc<__half>(deq_halves_, "scratch", &scratch_bytes_));
  deq_ahead_ = std::make_unique<cuda::DequantAhead>(std::move(slots), deq_halves_, beside_);
#ifdef XLLAMA_HAVE_CUBLAS
  // SMs a GEMM's waves leave idle go to the side stream (only worth it when there is one).
  if (cuda::gemm_sm_targets_setting()) {
    int sms = 0;
    XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_));
    sm_targets_ = std::make_unique<cuda::GemmSmTargets>(sms);
  }
#endif
}

// K and V of one position in every layer of this stage, in bytes.
size_t Stage::kv_bytes_per_position() const {
  return layers_.size() * (size_t)cfg_.num_kv_heads * cfg_.head_dim * 2 * sizeof(__half);
}

void Stage::allocate_kv(int S) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  S_ = S;
  const size_t layer_elems = (size_t)cfg_.num_kv_heads * S_ * cfg_.head_dim;
  kcache_ = mem_.alloc<__half>(layer_elems * layers_.size(), "the K cache", &kv_bytes_);
  vcache_ = mem_.alloc<__half>(layer_elems * layers_.size(), "the V cache", &kv_bytes_);
}

// Receiver side of the boundary with the stage before: peer copies where the GPUs allow it, a
// device-to-device copy when both stages are on one GPU, else pinned host memory in between.
void Stage::connect_from(Stage* prev) {
  prev_ = prev;
  prev->next_ = this;
  if (prev->device_ == device_) {
    link_ = Link::SameDevice;
    return;
  }
  int can = 0;
  XL_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, device_, prev->device_));
  if (can) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    const cudaError_t err = cudaDeviceEnablePeerAccess(prev->device_, 0);
    if (err == cudaErrorPeerAccessAlreadyEnabled) {
      cudaGetLastError();
    } else {
      XL_CUDA_CHECK(err);
    }
    link_ = Link::Peer;
    return;
  }
  link_ = Link::Host;
  // The hidden rows and, for decode steps, their sums of squares.
  const size_t floats = (size_t)rows_ * cfg_.hidden_size + cuda::kGemvMaxRows;
  if (cudaMallocHost(&staging_, floats * sizeof(float)) != cudaSuccess) {
    cudaGetLastError();
    throw BackendError(kOutOfMemory, "could not pin " + gib(floats * sizeof(float)) +
                                            " GiB of host memory for the GPU " + std::to_string(prev->device_) +
                                            " -> GPU " + std::to_string(device_) + " copies");
  }
}

void Stage::sync() {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- RoPE frequencies (backend/rope_frequencies.h; dynamic NTK recomputed when the call reaches further) ----
void Stage::update_inv_freq(int seq_len, bool force) {
  const bool dynamic = cfg_.rope.type == RopeType::Dynamic;
  const int key = dynamic ? std::max(seq_len, cfg_.rope.original_max_position) : 0;
  if (!force && key == inv_freq_key_) return;
  inv_freq_key_ = key;
  host_inv_freq_ = rope_inv_freq(cfg_.rope, cfg_.head_dim, cfg_.max_position_embeddings, key);
  XL_CUDA_CHECK(cudaMemcpyAsync(inv_freq_, host_inv_freq_.data(), host_inv_freq_.size() * 4,
                                cudaMemcpyHostToDevice, stream_));
}

// ---- forward ----
// One chunk of m rows at positions [pos, pos + m) through this stage's layers: its inputs copied, the hidden
// state received from the stage before (not on the first), the layers run (a graph replay for decode
// steps), the hidden state handed on (not on the last). Logits (LogitRows other than None) on the last only.
void Stage::run_chunk(const int32_t* tokens, int m, int pos, LogitRows mode, float* out) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  XL_CUDA_CHECK(cudaEventSynchronize(inputs_copied_));  // the previous chunk's copy has read host_in_
  host_in_[0] = pos;
  std::copy(tokens, tokens + m, host_in_ + 1);
  XL_CUDA_CHECK(cudaMemcpyAsync(pos_, host_in_, (size_t)(m + 1) * sizeof(int), cudaMemcpyHostToDevice, stream_));
  XL_CUDA_CHECK(cudaEventRecord(inputs_copied_, stream_));
  // h_ and row_sum_sq_ are about to be rewritten: the next stage must have copied the previous chunk's.
  if (next_) XL_CUDA_CHECK(cudaStreamWaitEvent(stream_, next_->received_, 0));
  if (prev_) receive(m);
  const int vocab = cfg_.vocab_size;
  if (m <= cuda::kGemvMaxRows) {
    // Decode: one graph replay per step (positions come from device memory, so the graph is reusable).
    XL_CUDA_CHECK(cudaGraphLaunch(decode_graph(m, mode), stream_));
    if (next_) send(m);
    if (out && mode != LogitRows::None) {
      const size_t nrows = mode == LogitRows::Last ? 1 : m;
      XL_CUDA_CHECK(cudaMemcpyAsync(out, logits_, nrows * vocab * 4, cudaMemcpyDeviceToHost, stream_));
      XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    return;
  }
  enqueue_prompt_layers(m);
  if (next_) send(m);
  if (mode == LogitRows::Last) {
    enqueue_logits(m, m - 1, 1);
    if (out) {
      XL_CUDA_CHECK(cudaMemcpyAsync(out, logits_, (size_t)vocab * 4, cudaMemcpyDeviceToHost, stream_));
      XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
  } else if (mode == LogitRows::All) {
    for (int r0 = 0; r0 < m; r0 += kLogitRows) {
      const int nr = std::min(kLogitRows, m - r0);
      enqueue_logits(m, r0, nr);
      if (out) {
        XL_CUDA_CHECK(cudaMemcpyAsync(out + (size_t)r0 * vocab, logits_, (size_t)nr * vocab * 4,
                                      cudaMemcpyDeviceToHost, stream_));
        XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
      }
    }
  }
}

// Sender side, after this stage's layers: stages to another GPU without peer access go through pinned
// host memory; then the next stage may copy (sent_).
void Stage::send(int m) {
  if (next_->link_ == Link::Host) {
    float* stage_h = next_->staging_;
    float* stage_sum_sq = stage_h + (size_t)rows_ * cfg_.hidden_size;
    XL_CUDA_CHECK(cudaMemcpyAsync(stage_h, h_, (size_t)m * cfg_.hidden_size * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_));
    if (m <= cuda::kGemvMaxRows)
      XL_CUDA_CHECK(cudaMemcpyAsync(stage_sum_sq, row_sum_sq_, (size_t)m * sizeof(float), cudaMemcpyDeviceToHost,
                                    stream_));
  }
  XL_CUDA_CHECK(cudaEventRecord(sent_, stream_));
}

// Receiver side, before this stage's layers: h_ (and the sums of squares) from the stage before, then what
// embed_rows zeroes on the first stage for the fused decode path (qkv_ and mlp_sum_sq accumulate).
void Stage::receive(int m) {
  const int hid = cfg_.hidden_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads, D = cfg_.head_dim;
  const size_t h_bytes = (size_t)m * hid * sizeof(float);
  const bool decode_rows = m <= cuda::kGemvMaxRows;
  // Deferred norms: the first q/k/v sums h's squares itself, as in an unsplit model; it needs no sums from before.
  const size_t sum_sq_bytes = decode_rows && !defer_norms_ ? (size_t)m * sizeof(float) : 0;
  XL_CUDA_CHECK(cudaStreamWaitEvent(stream_, prev_->sent_, 0));
  switch (link_) {
    case Link::SameDevice:
      XL_CUDA_CHECK(cudaMemcpyAsync(h_, prev_->h_, h_bytes, cudaMemcpyDeviceToDevice, stream_));
      if (sum_sq_bytes)
        XL_CUDA_CHECK(cudaMemcpyAsync(row_sum_sq_, prev_->row_sum_sq_, sum_sq_bytes, cudaMemcpyDeviceToDevice,
                                      stream_));
      break;
    case Link::Peer:
      XL_CUDA_CHECK(cudaMemcpyPeerAsync(h_, device_, prev_->h_, prev_->device_, h_bytes, stream_));
      if (sum_sq_bytes)
        XL_CUDA_CHECK(cudaMemcpyPeerAsync(row_sum_sq_, device_, prev_->row_sum_sq_, prev_->device_, sum_sq_bytes,
                                          stream_));
      break;
    case Link::Host:
      XL_CUDA_CHECK(cudaMemcpyAsync(h_, staging_, h_bytes, cudaMemcpyHostToDevice, stream_));
      if (sum_sq_bytes)
        XL_CUDA_CHECK(cudaMemcpyAsync(row_sum_sq_, staging_ + (size_t)rows_ * hid, sum_sq_bytes,
                                      cudaMemcpyHostToDevice, stream_));
      break;
  }
  XL_CUDA_CHECK(cudaEventRecord(received_, stream_));  // the stage before may overwrite its h_ again
  if (decode_rows) {  // what embed_rows zeroes on the first stage
    XL_CUDA_CHECK(cudaMemsetAsync(qkv_, 0, (size_t)m * (H + 2 * KV) * D * sizeof(float), stream_));
    if (defer_norms_)
      XL_CUDA_CHECK(cudaMemsetAsync(row_sum_sq_, 0, 2 * cuda::kGemvMaxRows * sizeof(float), stream_));
    else
      XL_CUDA_CHECK(cudaMemsetAsync(row_sum_sq_ + cuda::kGemvMaxRows, 0, (size_t)m * sizeof(float), stream_));
  }
}

}  // namespace xllama
