// One stage of the CUDA backend (cuda_backend.cu runs them in order): layers [plan.first_layer, plan.end_layer)
// on plan.device, with its own stream, weights, KV cache, scratch and decode graphs. The first stage holds the
// embeddings, the last the final norm and lm_head (a tied embedding is on both); an unsplit model is one stage.
// Layer indices inside a stage (layers_, the KV cache) are local: 0 is plan.first_layer.
//
// Its parts, a file each:
//   stage.cu         lifetime, scratch and KV cache, a chunk's run, the boundaries with the stages beside it;
//   stage_load.cu    the weights: a checkpoint's upload (act-order layouts made on the GPU), or a random dummy;
//   stage_prompt.cu  the layers launch by launch: prompt chunks' GEMMs (fused 4-bit, or dequantization + cuBLAS),
//                    decode steps of models that are not all 4-bit; perplexity scoring;
//   stage_decode.cu  decode steps: the fused 5-kernel layers, their graphs, the logits and the token picks.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#ifdef XLLAMA_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

#include "backend/backend.h"
#include "backend/load_progress.h"
#include "cuda/dequant_ahead.h"
#include "cuda/device_memory.h"
#include "cuda/gemm_sm_targets.h"
#include "cuda/gemm_warmup.h"
#include "cuda/graph_capture.h"
#include "cuda/kernels.h"
#include "cuda/weight_upload.h"

namespace xllama {

struct GpuLinear {
  int K = 0, N = 0;
  bool quantized = false;
  cuda::QWeight q;           // quantized
  const __half* dense = nullptr;  // [N, K]
  const __half* bias = nullptr;
};

struct GpuLayer {
  const __half* input_norm = nullptr;
  const __half* post_norm = nullptr;
  GpuLinear qkv, o, gate_up, down;
  // Act-order q/k/v and gate/up: their input norm in the weight's row order as well (norm[perm[k']]), for the
  // decode GEMVs (GemvFusion::in_norm_rows); null without act-order.
  const __half* qkv_norm_rows = nullptr;
  const __half* gate_up_norm_rows = nullptr;
};

enum class LogitRows { None, Last, All };
// How a fed decode step's graph picks its token (Stage::graph_pick): not at all (a kernel launched after the graph),
// in the lm_head's blocks (greedy), or by the argmax / top-k kernel captured after the lm_head.
enum class GraphPick { None, LmHead, Argmax, TopK };

// How a stage gets the hidden state from the stage before it.
enum class Link { SameDevice, Peer, Host };

class Stage {
 public:
  Stage(const ModelConfig& config, const BackendOptions& options, const StagePlan& plan, bool first, bool last);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // ---- loading (stage_load.cu) ----
  // Checkpoint tensors go through a WeightUploader (parallel reads into pinned staging, copies overlapped
  // with reading); 4-bit layers are laid out on the GPU (act-order rows permuted there). load_checkpoint returns
  // the uploader's figures for the verbose breakdown.
  struct LoadFigures {
    double bytes = 0, read_s = 0, wait_s = 0, finish_s = 0, total_s = 0;
    double pin_s = 0;    // pinning host memory: the staging buffers, the untied embedding table
    double alloc_s = 0;  // cudaMalloc calls for the weights (the arena and what did not fit in it)
    int threads = 0, mallocs = 0;
    size_t arena_bytes = 0, arena_slack = 0;
    std::string gemm_warmup;  // what the prompt GEMM warm-up did (cuda/gemm_warmup.h)
  };
  LoadFigures load_checkpoint(const GptqConfig& gptq, const ModelWeights& w, LoadProgress* progress);
  void load_dummy(int group_size, uint64_t seed);

  // ---- scratch, KV cache, boundaries (stage.cu) ----
  void allocate_scratch();
  size_t kv_bytes_per_position() const;
  void allocate_kv(int S);
  void connect_from(Stage* prev);

  int device() const { return device_; }
  int rows() const { return rows_; }  // a chunk's rows at most (allocate_scratch)
  bool all_quantized() const { return all_quantized_; }
  // The fused decode path carries row sums of squares across layers: every stage must take it or none.
  void set_all_quantized(bool v) { all_quantized_ = v; }
  DeviceMemoryReport memory() const { return {device_, weight_bytes_, kv_bytes_, scratch_bytes_}; }
  DeviceMemory& device_memory() { return mem_; }

  // ---- running chunks (stage.cu; decode steps' plans and graphs: stage_decode.cu) ----
  void update_inv_freq(int seq_len, bool force);
  // What the RoPE kernels take: the device inv_freq and the model's attention factor (YaRN's; else 1).
  cuda::RopeTable rope_table() const { return {inv_freq_, cfg_.rope.attention_factor}; }
  void run_chunk(const int32_t* tokens, int m, int pos, LogitRows mode, float* out);
  void sync();
  void choose_decode_norms();
  void prepare_decode_step();
  cudaGraphExec_t decode_graph(int m, LogitRows mode, GraphPick pick = GraphPick::None, int pick_slot = 0);

  // ---- token picks, last stage (stage_decode.cu) ----
  int enqueue_pick(const TokenSampling& s, int feed_pos = -1);
  void upload_token_history(const std::vector<uint32_t>& history);
  int32_t wait_token(int slot);
  int run_fed_step(int seq_len, const TokenSampling& s);
  GraphPick graph_pick(const TokenSampling& s) const;
  void capture_fed_step_graphs();

  // ---- perplexity, last stage (stage_prompt.cu) ----
  void score_chunk(const int32_t* targets, int m, float* nll);

  static constexpr int kLogitRows = 64;  // lm_head rows per pass when all rows' logits are wanted

 private:
  // ---- loading (stage_load.cu) ----
  void read_ahead(const TensorView& t);
  void read_ahead(const LinearWeights& l);
  void read_ahead_layer(const ModelWeights& w, int li, bool tied);
  void reading(int part);
  static bool is_tied(const ModelWeights& w);
  size_t weight_arena_bytes(const GptqConfig& gptq, const ModelWeights& w) const;
  void load_tensors(const GptqConfig& gptq, const ModelWeights& w);
  cudaStream_t warmup_stream() const;
  std::vector<cuda::WarmGemm> prompt_warm_gemms(const std::array<bool, 4>& quantized) const;
  __half* alloc_huge_embedding(size_t count);
  void register_huge_embedding();
  template <class T>
  T* upload(const std::vector<T>& v, const char* what);
  const __half* upload_half(const TensorView& t, size_t expect, const char* what);
  // The stream the load's GPU work runs on (the uploader's copies, the act-order permutations).
  cudaStream_t load_stream() const { return uploader_ ? uploader_->stream() : stream_; }
  uint32_t* permute_scratch(size_t words);
  bool upload_q4_direct(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq, GpuLinear& l);
  void fold_down_perm(GpuLayer& l);
  const __half* norm_in_row_order(const __half* norm, const GpuLinear& l);
  GpuLinear upload_linear(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq);
  void check_linear_shapes() const;

  // ---- scratch (stage.cu) ----
  int chunk_rows() const;
  size_t dequant_tile_halves() const;
  static int column_chunk(int N, int K, size_t tile_halves);
  bool any_fused_shape() const;
  bool any_quantized() const;
  template <class Pred>
  bool any_linear(Pred pred) const;
  void create_dequant_ahead();

  // ---- the layers launch by launch (stage_prompt.cu) ----
  void enqueue_prompt_layers(int m);
  void linear(const GpuLinear& l, const __half* x, int m, int x_stride, float* y, int y_stride,
              bool overwrite = false);
  enum class FusedPromptGemm { Off, Preferred, All };
  static FusedPromptGemm fused_prompt_gemm_setting();
  bool use_fused_gemm(const cuda::QWeight& q, int m, bool accumulate) const;
  template <class T>
  void prompt_linear(const GpuLinear& l, const __half* x, int m, int x_stride, T* y, int y_stride, float beta);
  template <class T>
  void gemm(const __half* A, int lda, const __half* B, int ldb, bool b_kn, T* C, int ldc, int m, int N, int K,
            float beta);
  void enqueue_layers(int m);

  // ---- decode steps (stage_decode.cu) ----
  // Whether a step of m rows takes enqueue_decode_layers.
  bool decode_fused(int m) const { return m <= cuda::kGemvMaxRows && all_quantized_; }
  void enqueue_decode_layers(int m);
  std::vector<bool> one_launch_mlp_layers(int m, unsigned ablate) const;
  void enqueue_logits(int m, int r0, int nr, float* out = nullptr, int pick_slot = -1);

  // ---- boundaries (stage.cu) ----
  // What crosses a boundary: the residual stream h (m rows) and, for decode steps, each row's sum of squares
  // (the fused path's attn_sum_sq, which the last down_proj left and the next q/k/v GEMV normalizes with).
  void send(int m);
  void receive(int m);

  ModelConfig cfg_;
  BackendOptions opt_;
  StagePlan plan_;
  int device_ = 0;
  bool first_ = true, last_ = true;  // holds the embeddings / the final norm and lm_head
  DeviceMemory mem_;  // declared before everything that points into it
  cudaStream_t stream_ = nullptr;
  // The lowest priority, for the prompts' dequantization beside stream_ (DequantAhead). Nothing else runs on it
  // unless XLLAMA_WARMUP_BESIDE=1: kernels on streams besides the main one left the decode graphs ~1.6% slower for
  // the rest of the process once triggered (docs/PERF-NOTES.md, sessions 38 and 39), so the load's GEMM warm-up
  // runs on stream_ (warmup_stream).
  cudaStream_t beside_ = nullptr;
#ifdef XLLAMA_HAVE_CUBLAS
  cublasHandle_t cublas_ = nullptr;
  std::unique_ptr<cuda::GemmSmTargets> sm_targets_;  // create_dequant_ahead; null: every GEMM on every SM
  int cublas_sm_target_ = 0;                          // what cublas_ was last told (0, its default: every SM)
#endif
  size_t weight_bytes_ = 0, kv_bytes_ = 0, scratch_bytes_ = 0;

  const __half* embed_ = nullptr;
  const __half* final_norm_ = nullptr;
  std::vector<GpuLayer> layers_;
  GpuLinear lm_head_;

  int S_ = 0, rows_ = 0;
  __half *kcache_ = nullptr, *vcache_ = nullptr;
  size_t gu_floats_ = 0;
  float *h_ = nullptr, *qkv_ = nullptr, *gu_ = nullptr, *work_ = nullptr, *logits_ = nullptr, *inv_freq_ = nullptr;
  __half *xn_ = nullptr, *q_ = nullptr, *att_ = nullptr, *act_ = nullptr, *xperm_ = nullptr, *deq_ = nullptr;
  size_t deq_halves_ = 0;
  std::unique_ptr<cuda::DequantAhead> deq_ahead_;  // create_dequant_ahead
  FusedPromptGemm fused_prompt_gemm_ = FusedPromptGemm::Off;
  uint8_t* fused_scratch_ = nullptr;
  int *tokens_ = nullptr, *pos_ = nullptr, *score_targets_ = nullptr;
  float* score_nll_ = nullptr;
  unsigned* attn_done_ = nullptr;  // decode attention's per-(row, head) split counters
  unsigned* col_done_ = nullptr;   // decode GEMVs' per-column-slice counters (GemvFusion::col_done)
  float* row_sum_sq_ = nullptr;    // [2][kGemvMaxRows]: h's row sums of squares for the fused RMSNorms
  bool all_quantized_ = false;     // every layer linear is 4-bit: decode takes enqueue_decode_layers
  bool defer_norms_ = false;       // choose_decode_norms
  int* host_token_ = nullptr;      // two slots (enqueue_pick), pinned and mapped
  TokenSampling* draw_host_ = nullptr;  // the sampled draw of each slot's fed step (run_fed_step), pinned and mapped
  TokenSampling* draw_dev_ = nullptr;
  int* host_token_dev_ = nullptr;  // ... as the device sees them
  int pick_slot_ = 0;
  unsigned long long* pick_best_ = nullptr;  // the lm_head's greedy pick in progress (GreedyPick; last stage)
  unsigned* pick_done_ = nullptr;
  cuda::TopKScratch top_k_;  // the sampled pick's per-block lists and the penalties' token history (last stage)
  cudaEvent_t token_picked_[2] = {nullptr, nullptr};
  int* host_in_ = nullptr;
  // The untied embedding table in host memory, read by the GPU through a mapped pointer: std::aligned_alloc'd on
  // huge pages (alloc_huge_embedding), registered with CUDA once filled (register_huge_embedding).
  void* host_embed_ = nullptr;
  size_t host_embed_bytes_ = 0;
  bool host_embed_registered_ = false;
  cudaEvent_t inputs_copied_ = nullptr;
  int inv_freq_key_ = -1;
  std::vector<float> host_inv_freq_;
  std::map<int, cudaGraphExec_t> graphs_;  // decode graphs by rows and logits (decode_graph)
  cuda::PromptGraphs prompt_graphs_{cuda::prompt_graph_setting()};
  cuda::DecodeStep step_;    // the one-row persistent decode kernel's plan (prepare_decode_step)
  bool step_ready_ = false;
  cuda::WeightUploader* uploader_ = nullptr;  // during load_checkpoint
  LoadProgress* progress_ = nullptr;          // during load_checkpoint (may be null)
  double pin_embedding_s_ = 0;                // seconds pinning the untied embedding table
  uint32_t* permute_scratch_ = nullptr;       // during load_checkpoint (act-order layers)
  size_t permute_scratch_words_ = 0;

  // Boundaries (connect_from): the stages before and after, how h_ arrives here, and the events that order
  // the two streams: sent_ (this stage's h_ is ready), received_ (this stage has copied the one before).
  Stage* prev_ = nullptr;
  Stage* next_ = nullptr;
  Link link_ = Link::SameDevice;
  float* staging_ = nullptr;  // pinned [rows_ * hidden + kGemvMaxRows] floats (Link::Host)
  cudaEvent_t sent_ = nullptr;
  cudaEvent_t received_ = nullptr;
};

}  // namespace xllama
