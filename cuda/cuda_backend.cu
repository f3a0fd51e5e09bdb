// The CUDA backend: weights uploaded once, fp16 KV cache, decode steps replayed as CUDA graphs
// (one per row count), prompt chunks through dequantization + tensor-core GEMMs.
//
// The model runs as stages (a layer split across GPUs, BackendOptions::stages): each Stage owns its device,
// stream, layer range, its part of the KV cache, scratch and graphs; the first holds the embeddings, the
// last the final norm and lm_head (a tied embedding is on both). CudaBackend runs the stages in order and
// moves the hidden state across each boundary (Stage::send / Stage::receive). Unsplit is one stage.
#include "cuda/cuda_backend.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#ifdef XLLAMA_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

#include "backend/model_checks.h"
#include "backend/rope_frequencies.h"
#include "backend/token_penalties.h"
#include "backend/verbose_load.h"
#include "cuda/cublas_gemm.h"
#include "cuda/cuda_check.h"
#include "cuda/dequant_ahead.h"
#include "cuda/device_query.h"
#include "cuda/env_switch.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/gemm_sm_targets.h"
#include "cuda/gemm_warmup.h"
#include "cuda/graph_capture.h"
#include "cuda/kernels.h"
#include "cuda/weight_repack.h"
#include "cuda/weight_upload.h"

namespace xllama {
namespace {

using cuda::QWeight;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Prompt-path dequantization tile: 128 MiB of fp16 weights (XLLAMA_DEQUANT_MIB overrides it, for tuning). Fewer,
// wider GEMMs fill the GPU better: on the H200 a 512-token prompt ran 5% (7B) and 6% (70B) faster than with
// 64 MiB; 256 MiB gained 2% more on the 7B only (docs/PERF-NOTES.md, session 7).
size_t dequant_budget_halves() {
  size_t mib = 128;
  if (const char* v = std::getenv("XLLAMA_DEQUANT_MIB"); v && std::atoi(v) > 0) mib = (size_t)std::atoi(v);
  return mib << 19;  // halves per MiB
}

// Dequantization tiles in the ring of DequantAhead (deq_ is the first).
constexpr int kDequantAheadSlots = 3;

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes / kGiB);
  return buf;
}

// Owns device allocations (freed even when construction throws half-way) and turns allocation failures
// into out_of_memory errors that say what was being allocated and what was free. During a checkpoint load
// the weights come out of one allocation (an arena, open_arena) sized beforehand, instead of one cudaMalloc
// each (hundreds of calls for a 7B model); what does not fit in it is allocated on its own.
class DeviceMemory {
 public:
  static constexpr size_t kAlign = 256;  // what cudaMalloc gives; the kernels need 16
  static size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
  static size_t alloc_bytes(size_t bytes) { return std::max<size_t>(bytes, 16); }

  explicit DeviceMemory(int device) : device_(device) {}
  ~DeviceMemory() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <class T>
  T* alloc(size_t count, const char* what, size_t* counter) {
    const size_t bytes = alloc_bytes(count * sizeof(T));
    if (aligned(bytes) <= arena_left_) {
      char* p = arena_;
      arena_ += aligned(bytes), arena_left_ -= aligned(bytes);
      *counter += bytes;
      return reinterpret_cast<T*>(p);
    }
    void* p = owned_malloc(bytes);
    if (!p) throw_oom(bytes, what);
    *counter += bytes;
    return static_cast<T*>(p);
  }
  // One allocation of `bytes` that alloc() serves from until close_arena(). When it can't be had, nothing
  // changes: every allocation is then made on its own, and an out-of-memory error names the one that failed.
  void open_arena(size_t bytes) {
    close_arena();
    void* p = bytes ? owned_malloc(bytes) : nullptr;
    if (p) arena_ = static_cast<char*>(p), arena_left_ = bytes;
  }
  // The arena's unused end stays allocated (it is the estimate's slack); later allocations are on their own.
  size_t close_arena() {
    const size_t left = arena_left_;
    arena_ = nullptr, arena_left_ = 0;
    return left;
  }
  [[noreturn]] void throw_oom(size_t need, const std::string& what) const {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, device_);
    throw BackendError(kOutOfMemory, "the model needs " + gib(need) + " GiB for " + what + ", " +
                                            gib(free_b) + " GiB free on GPU " + std::to_string(device_) + " (" +
                                            prop.name + ")");
  }
  // cudaMalloc calls so far and the seconds they took (the load's breakdown).
  int mallocs() const { return mallocs_; }
  double malloc_seconds() const { return malloc_s_; }

 private:
  // cudaMalloc, counted and timed; the allocation is freed with this object. Null (error cleared) when it fails.
  void* owned_malloc(size_t bytes) {
    void* p = nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    const cudaError_t err = cudaMalloc(&p, bytes);
    malloc_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (err != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    ptrs_.push_back(p);
    ++mallocs_;
    return p;
  }

  int device_;
  std::vector<void*> ptrs_;
  char* arena_ = nullptr;
  size_t arena_left_ = 0;
  int mallocs_ = 0;
  double malloc_s_ = 0;
};

struct GpuLinear {
  int K = 0, N = 0;
  bool quantized = false;
  QWeight q;                 // quantized
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

class CudaBackend;

// How a stage gets the hidden state from the stage before it.
enum class Link { SameDevice, Peer, Host };

void validate_config(const ModelConfig& c) {
  check_model_config(c);
  if (c.hidden_size % 8)  // the embedding rows are read 16 bytes at a time (embed_rows)
    throw BackendError(kUnsupportedModel, "the CUDA backend needs hidden_size a multiple of 8 (got " +
                                              std::to_string(c.hidden_size) + ")");
  if (c.head_dim % 8 || c.head_dim > 256)
    throw BackendError(kUnsupportedModel, "the CUDA backend needs head_dim a multiple of 8, at most 256 (got " +
                                              std::to_string(c.head_dim) + ")");
}

// Free memory kept back on each stage's device when the KV cache is sized: CUDA graphs, cuBLAS workspace,
// fragmentation. cli/engine/gpu-footprint.ts counts the same per stage.
constexpr size_t kStageReserveBytes = (size_t)256 << 20;

// One stage of the model: layers [plan.first_layer, plan.end_layer) on plan.device, with its own stream,
// weights, KV cache, scratch and decode graphs. Layer indices inside a stage (layers_, the KV cache) are
// local: 0 is plan.first_layer.
class Stage {
 public:
  Stage(const ModelConfig& config, const BackendOptions& options, const StagePlan& plan, bool first, bool last)
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

  ~Stage() {
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
    if (host_embed_) cudaFreeHost(host_embed_);
    if (staging_) cudaFreeHost(staging_);
    if (inputs_copied_) cudaEventDestroy(inputs_copied_);
    for (cudaEvent_t e : token_picked_)
      if (e) cudaEventDestroy(e);
    if (sent_) cudaEventDestroy(sent_);
    if (received_) cudaEventDestroy(received_);
  }

  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // ---- loading ----
  // Checkpoint tensors go through a WeightUploader (parallel reads into pinned staging, copies overlapped
  // with reading); 4-bit layers are laid out on the GPU (act-order rows permuted there). Returns the
  // uploader's figures for the verbose breakdown.
  struct LoadFigures {
    double bytes = 0, read_s = 0, wait_s = 0, finish_s = 0, total_s = 0;
    double pin_s = 0;    // pinning host memory: the staging buffers, the untied embedding table
    double alloc_s = 0;  // cudaMalloc calls for the weights (the arena and what did not fit in it)
    int threads = 0, mallocs = 0;
    size_t arena_bytes = 0, arena_slack = 0;
    std::string gemm_warmup;  // what the prompt GEMM warm-up did (cuda/gemm_warmup.h)
  };
  LoadFigures load_checkpoint(const GptqConfig& gptq, const ModelWeights& w, LoadProgress* progress) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const int mallocs0 = mem_.mallocs();
    const double malloc_s0 = mem_.malloc_seconds();
    // XLLAMA_LEGACY_UPLOAD=1: the earlier path (host repack, synchronous copies), to compare load times
    std::unique_ptr<cuda::WeightUploader> uploader;
    if (!cuda::env_switch_set("XLLAMA_LEGACY_UPLOAD")) uploader = std::make_unique<cuda::WeightUploader>();
    const double uploader_s = std::chrono::duration<double>(Clock::now() - t0).count();  // mostly pinning staging
    uploader_ = uploader.get();
    progress_ = progress;
    struct Done {  // whatever happens: no dangling uploader or progress, no scratch left behind
      Stage* b;
      ~Done() {
        b->uploader_ = nullptr;
        b->progress_ = nullptr;
        b->mem_.close_arena();
        if (b->permute_scratch_) cudaFree(b->permute_scratch_);
        b->permute_scratch_ = nullptr, b->permute_scratch_words_ = 0;
      }
    } done{this};
    LoadFigures f;
    if (uploader) {
      f.arena_bytes = weight_arena_bytes(gptq, w);
      mem_.open_arena(f.arena_bytes);
    }
    const LayerWeights& lw = w.layers[plan_.first_layer];
    cuda::GemmWarmup warmup(device_, warmup_stream(),
                            prompt_warm_gemms({lw.q.quantized(), lw.o.quantized(), lw.gate.quantized(),
                                               lw.down.quantized()}));
    load_tensors(gptq, w);
    f.arena_slack = mem_.close_arena();
    const auto t1 = Clock::now();
    if (uploader) uploader->finish();
    f.gemm_warmup = warmup.finish();
    const auto t2 = Clock::now();
    if (uploader) {
      f.bytes = uploader->bytes(), f.read_s = uploader->read_seconds(), f.wait_s = uploader->wait_seconds();
      f.threads = uploader->threads();
    } else {
      f.bytes = (double)weight_bytes_;
    }
    f.finish_s = std::chrono::duration<double>(t2 - t1).count();
    f.total_s = std::chrono::duration<double>(t2 - t0).count();
    f.pin_s = uploader_s + pin_embedding_s_;
    f.alloc_s = mem_.malloc_seconds() - malloc_s0, f.mallocs = mem_.mallocs() - mallocs0;
    return f;
  }

  // Read-ahead of what the upload copies next. With a LoadProgress (the glue's checkpoint read-ahead, which
  // started at the beginning of the load), the upload says which part it reads. Without one, before layer li
  // is copied, layer li + 1 (after the last layer, the final norm and lm_head) is handed to the uploader's own
  // read-ahead (cuda/read_ahead.h), so a cold disk stays busy.
  void read_ahead(const TensorView& t) {
    if (uploader_ && t.present()) uploader_->read_ahead(t.data, (size_t)t.numel() * dtype_size(t.dtype));
  }
  void read_ahead(const LinearWeights& l) {
    for (const TensorView* t : {&l.weight, &l.qweight, &l.scales, &l.qzeros, &l.g_idx, &l.bias}) read_ahead(*t);
  }
  void read_ahead_layer(const ModelWeights& w, int li, bool tied) {
    if (progress_) return;
    if (li < plan_.end_layer) {
      const LayerWeights& L = w.layers[li];
      read_ahead(L.input_norm);
      read_ahead(L.post_attention_norm);
      for (const LinearWeights* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) read_ahead(*l);
    } else if (last_) {
      read_ahead(w.final_norm);
      if (!tied) read_ahead(w.lm_head);
      else if (!first_) read_ahead(w.embed_tokens);
    }
  }
  void reading(int part) {
    if (progress_) progress_->reading(part);
  }

  // A tied lm_head: the embedding table serves as lm_head (one fp16 matrix, uploaded once per GPU).
  static bool is_tied(const ModelWeights& w) {
    return w.lm_head.weight.data == w.embed_tokens.data && !w.lm_head.quantized();
  }

  // The bytes load_tensors allocates for this stage's weights, each rounded to the arena's alignment, counted
  // as cli/engine/loader/gpu-memory.ts counts them: GPTQ zeros only for asymmetric checkpoints, a row
  // permutation only for act-order ones with more than one group. An estimate: what does not fit in the
  // arena is allocated on its own, what is left of it stays unused.
  size_t weight_arena_bytes(const GptqConfig& gptq, const ModelWeights& w) const {
    auto a = [](size_t bytes) { return DeviceMemory::aligned(DeviceMemory::alloc_bytes(bytes)); };
    // Whether a linear is uploaded packed (else as fp16), its groups, and whether it keeps a row permutation.
    auto packed = [](const LinearWeights& p) {
      return p.quantized() && p.group_size > 0 && p.group_size % 8 == 0 && !p.scales.shape.empty();
    };
    auto groups = [](const LinearWeights& p) { return (size_t)std::max<int64_t>(0, p.scales.shape[0]); };
    auto permuted = [&](const LinearWeights& p) { return gptq.desc_act && packed(p) && groups(p) > 1; };
    auto linear = [&](std::initializer_list<const LinearWeights*> parts) {
      const LinearWeights& p0 = **parts.begin();
      const size_t K = (size_t)std::max(0, p0.in_features);
      size_t N = 0, n = 0;
      bool bias = false;
      for (const LinearWeights* p : parts) N += (size_t)std::max(0, p->out_features), bias = bias || p->bias.present();
      if (packed(p0)) {
        const size_t G = groups(p0);
        n += a(K / 8 * N * 4) + a(G * N * 2);
        if (!gptq.sym) n += a(G * N);
        if (permuted(p0)) n += a(K * 4);
      } else {
        n += a(N * K * 2);
      }
      return bias ? n + a(N * 2) : n;
    };
    const size_t hid = (size_t)cfg_.hidden_size, table = a((size_t)cfg_.vocab_size * hid * 2);
    const bool tied = is_tied(w);
    size_t n = first_ && tied ? table : 0;
    for (int li = plan_.first_layer; li < plan_.end_layer; ++li) {
      const LayerWeights& L = w.layers[li];
      n += 2 * a(hid * 2) + linear({&L.q, &L.k, &L.v}) + linear({&L.o}) + linear({&L.gate, &L.up}) + linear({&L.down});
      if (permuted(L.q)) n += 2 * a(hid * 2);  // q/k/v's and gate/up's norms in their row order (norm_in_row_order)
    }
    if (last_) n += a(hid * 2) + (tied ? (first_ ? 0 : table) : linear({&w.lm_head}));
    return n;
  }

  void load_tensors(const GptqConfig& gptq, const ModelWeights& w) {
    const bool tied = is_tied(w);
    if (first_) {
      reading(kEmbeddingPart);
      if (!progress_) read_ahead(w.embed_tokens);
    }
    read_ahead_layer(w, plan_.first_layer, tied);
    if (!first_) {
      // Later stages start from the hidden state of the stage before (receive()).
    } else if (tied) {
      embed_ = upload_half(w.embed_tokens, (size_t)cfg_.vocab_size * cfg_.hidden_size, "embed_tokens");
    } else {
      // Untied: the table is only gathered (one row per token), so it stays in pinned host memory that the
      // GPU reads directly, saving vocab x hidden x 2 bytes of GPU memory (262 MB for a 7B model).
      if ((size_t)w.embed_tokens.numel() != (size_t)cfg_.vocab_size * cfg_.hidden_size)
        throw BackendError(kBadModel, "tensor " + w.embed_tokens.name + ": expected vocab x hidden elements");
      const size_t count = (size_t)cfg_.vocab_size * cfg_.hidden_size;
      __half* host = alloc_mapped_embedding(count);
      if (w.embed_tokens.dtype == DType::F16 && uploader_) {
        uploader_->host_copy(host, w.embed_tokens.data, count * sizeof(__half));  // on the parallel readers
      } else {
        std::vector<__half> table = cuda::to_half(w.embed_tokens);
        std::copy(table.begin(), table.end(), host);
      }
    }
    for (int li = plan_.first_layer; li < plan_.end_layer; ++li) {
      reading(layer_part(li));
      read_ahead_layer(w, li + 1, tied);
      const LayerWeights& lw = w.layers[li];
      GpuLayer l;
      l.input_norm = upload_half(lw.input_norm, cfg_.hidden_size, "input_layernorm");
      l.post_norm = upload_half(lw.post_attention_norm, cfg_.hidden_size, "post_attention_layernorm");
      l.qkv = upload_linear({&lw.q, &lw.k, &lw.v}, gptq);
      l.o = upload_linear({&lw.o}, gptq);
      l.gate_up = upload_linear({&lw.gate, &lw.up}, gptq);
      l.down = upload_linear({&lw.down}, gptq);
      fold_down_perm(l);
      l.qkv_norm_rows = norm_in_row_order(l.input_norm, l.qkv);
      l.gate_up_norm_rows = norm_in_row_order(l.post_norm, l.gate_up);
      layers_.push_back(l);
    }
    if (last_) reading(final_part(cfg_.num_layers));
    if (!last_) {
      // The final norm and lm_head are on the last stage.
    } else if (tied) {
      final_norm_ = upload_half(w.final_norm, cfg_.hidden_size, "final norm");
      // One stage uses its embedding table; a last stage after others holds its own copy.
      lm_head_.K = cfg_.hidden_size, lm_head_.N = cfg_.vocab_size;
      lm_head_.dense = first_ ? embed_ : upload_half(w.embed_tokens, (size_t)cfg_.vocab_size * cfg_.hidden_size,
                                                     "embed_tokens (the tied lm_head)");
    } else {
      final_norm_ = upload_half(w.final_norm, cfg_.hidden_size, "final norm");
      lm_head_ = upload_linear({&w.lm_head}, gptq);
    }
    check_linear_shapes();
    all_quantized_ = std::all_of(layers_.begin(), layers_.end(), [](const GpuLayer& l) {
      return l.qkv.quantized && l.o.quantized && l.gate_up.quantized && l.down.quantized;
    });
  }

  void load_dummy(int group_size, uint64_t seed) {
    const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
              D = cfg_.head_dim;
    if (group_size <= 0 || group_size % 8) throw BackendError(kBadInput, "group size must be a multiple of 8");
    for (int v : {hid, I, H * D, (H + 2 * KV) * D})
      if (v % 8) throw BackendError(kBadInput, "dummy model sizes must be multiples of 8");
    XL_CUDA_CHECK(cudaSetDevice(device_));
    cuda::GemmWarmup warmup(device_, warmup_stream(), prompt_warm_gemms({true, true, true, true}));
    // Every tensor's random stream comes from its place in the model (slot), so a split model holds the same
    // weights as an unsplit one: embeddings 1, lm_head 2, layer li's tensors 16 + 8 li + 0..7.
    const uint64_t base = seed * 1000003ULL + 17;
    uint64_t s = base;
    auto slot = [&](uint64_t k) { s = base + k - 1; };  // the next ++s draws slot k
    auto rand_half = [&](size_t n, float lo, float hi, const char* what) {
      __half* p = mem_.alloc<__half>(n, what, &weight_bytes_);
      cuda::fill_random_half(p, n, ++s, lo, hi, stream_);
      return p;
    };
    auto ones = [&](size_t n) {
      __half* p = mem_.alloc<__half>(n, "norm weights", &weight_bytes_);
      cuda::fill_half(p, n, 1.f, stream_);
      return p;
    };
    auto dummy_linear = [&](int K, int N) {
      GpuLinear l;
      l.K = K, l.N = N, l.quantized = true;
      const int G = (K + group_size - 1) / group_size;
      uint32_t* qw = mem_.alloc<uint32_t>((size_t)K / 8 * N, "4-bit weights", &weight_bytes_);
      cuda::fill_random_u32(qw, (size_t)K / 8 * N, ++s, stream_);
      const float sc = 1.f / (std::sqrt((float)K) * 8.f);
      l.q.qweight = qw;
      l.q.scales = rand_half((size_t)G * N, 0.5f * sc, 1.5f * sc, "scales");
      l.q.K = K, l.q.N = N, l.q.group_size = group_size, l.q.sym_zero = 8;
      return l;
    };
    if (!first_) {
      // Later stages start from the hidden state of the stage before.
    } else if (cfg_.tie_word_embeddings) {
      slot(1);
      embed_ = rand_half((size_t)cfg_.vocab_size * hid, -1.f, 1.f, "embed_tokens");
    } else {
      slot(1);
      alloc_mapped_embedding((size_t)cfg_.vocab_size * hid);
      cuda::fill_random_half(const_cast<__half*>(embed_), (size_t)cfg_.vocab_size * hid, ++s, -1.f, 1.f, stream_);
    }
    if (last_) final_norm_ = ones(hid);
    for (int i = plan_.first_layer; i < plan_.end_layer; ++i) {
      slot(16 + 8 * (uint64_t)i);
      GpuLayer l;
      l.input_norm = ones(hid);
      l.post_norm = ones(hid);
      l.qkv = dummy_linear(hid, (H + 2 * KV) * D);
      l.o = dummy_linear(H * D, hid);
      l.gate_up = dummy_linear(hid, 2 * I);
      l.down = dummy_linear(I, hid);
      layers_.push_back(l);
    }
    all_quantized_ = true;
    lm_head_.K = hid, lm_head_.N = cfg_.vocab_size;
    if (!last_) {
      // lm_head is on the last stage.
    } else if (cfg_.tie_word_embeddings) {
      slot(1);
      lm_head_.dense = first_ ? embed_ : rand_half((size_t)cfg_.vocab_size * hid, -1.f, 1.f, "embed_tokens (the tied lm_head)");
    } else {
      slot(2);
      const float a = 1.f / std::sqrt((float)hid);
      lm_head_.dense = rand_half((size_t)cfg_.vocab_size * hid, -a, a, "lm_head");
    }
    XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }  // (warmup's thread joined here)

  // The load's GEMM warm-up runs on the main stream (cuda/gemm_warmup.h says why); XLLAMA_WARMUP_BESIDE=1 puts it
  // on the side stream as session 38 did, to compare.
  cudaStream_t warmup_stream() const {
    static const bool beside = cuda::env_switch_set("XLLAMA_WARMUP_BESIDE");
    return beside ? beside_ : stream_;
  }

  // The GEMM calls a prompt chunk makes in a layer (q/k/v, o, gate/up, down; quantized: whether each is 4-bit), on
  // every SM as a length's first chunk makes them (gemm_sm_targets.h), for GemmWarmup: at a full chunk and at one
  // 128-row tile of tokens (a chat turn's usual length). A dense weight operand larger than a dequantization tile
  // is left out (the warm-up's scratch stays small).
  std::vector<cuda::WarmGemm> prompt_warm_gemms(const std::array<bool, 4>& quantized) const {
    std::vector<cuda::WarmGemm> gemms;
    if (!cuda::gemm_warmup_setting()) return gemms;
    const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
              D = cfg_.head_dim;
    struct Linear {
      int N, K;
      bool f32_out;  // o_proj and down_proj add into the fp32 residual stream; q/k/v and gate/up write fp16
    };
    const Linear linears[4] = {{(H + 2 * KV) * D, hid, false}, {hid, H * D, true}, {2 * I, hid, false}, {hid, I, true}};
    const size_t tile = dequant_tile_halves();
    std::vector<int> rows{chunk_rows()};
    if (rows[0] > 128) rows.push_back(128);
    for (int m : rows)
      for (int i = 0; i < 4; ++i) {
        const Linear& l = linears[i];
        const float beta = l.f32_out ? 1.f : 0.f;
        if (!quantized[i]) {
          if ((size_t)l.N * l.K <= tile) gemms.push_back({m, l.N, l.K, l.K, l.K, l.N, false, l.f32_out, beta});
          continue;
        }
        const int chunk = std::min(column_chunk(l.N, l.K, tile), l.N);  // (a chunk is 128 columns or more)
        gemms.push_back({m, chunk, l.K, l.K, chunk, l.N, true, l.f32_out, beta});
        if (const int rest = l.N % chunk) gemms.push_back({m, rest, l.K, l.K, rest, l.N, true, l.f32_out, beta});
      }
    return gemms;
  }

  // Scratch for chunks of up to max_chunk_tokens rows (cli/engine/gpu-footprint.ts counts the same bytes).
  // The KV cache comes after (allocate_kv), once the orchestrator has sized it over every stage.
  void allocate_scratch() {
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
  int chunk_rows() const {
    return std::max(opt_.max_chunk_tokens > 0 ? opt_.max_chunk_tokens : kDefaultChunkTokens, cuda::kGemvMaxRows);
  }

  // The dequantization tile, in halves: the budget, but no more than the largest layer linear takes whole (its
  // columns rounded up to 128), so a small model does not hold 128 MiB tiles it never fills; at least 128 columns
  // of the widest.
  size_t dequant_tile_halves() const {
    const size_t hid = cfg_.hidden_size, I = cfg_.intermediate_size, HD = (size_t)cfg_.num_heads * cfg_.head_dim,
                 qkv_dim = (size_t)(cfg_.num_heads + 2 * cfg_.num_kv_heads) * cfg_.head_dim;
    const auto whole = [](size_t K, size_t N) { return K * ((N + 127) / 128 * 128); };
    const size_t largest = std::max({whole(hid, qkv_dim), whole(HD, hid), whole(hid, 2 * I), whole(I, hid)});
    return std::max(std::min(dequant_budget_halves(), largest), std::max({hid, I, HD}) * 128);
  }

  // The width of a 4-bit prompt GEMM's column chunks (the last may be narrower): at most the dequantization tile,
  // of equal width (multiples of 128): GEMMs of similar shape instead of full tiles and a narrow remainder that
  // fills the GPU poorly.
  static int column_chunk(int N, int K, size_t tile_halves) {
    const int most = std::max(128, (int)std::min<size_t>(N, tile_halves / K) / 128 * 128);
    const int chunks = (N + most - 1) / most;
    return std::min(most, ((N + chunks - 1) / chunks + 127) / 128 * 128);
  }

  // Some 4-bit layer linear has a shape the fused Hopper GEMM takes (whatever the GPU: the scratch decision and
  // cli/engine/gpu-footprint.ts's estimate of it must not depend on it).
  bool any_fused_shape() const {
    return any_linear([](const GpuLinear& l) {
      return l.quantized && cuda::gemm_q4_wgmma_shape_fits(l.q.K, l.q.N, l.q.group_size);
    });
  }

  bool any_quantized() const {
    return any_linear([](const GpuLinear& l) { return l.quantized; });
  }

  // Some layer linear of this stage (q/k/v, o_proj, gate/up, down_proj) satisfies `pred`.
  template <class Pred>
  bool any_linear(Pred pred) const {
    return std::any_of(layers_.begin(), layers_.end(), [&](const GpuLayer& l) {
      return pred(l.qkv) || pred(l.o) || pred(l.gate_up) || pred(l.down);
    });
  }

  // The prompt's 4-bit GEMMs dequantize on a side stream, into deq_ and more tiles of its size
  // (cuda/dequant_ahead.h), unless XLLAMA_DEQUANT_AHEAD=0.
  void create_dequant_ahead() {
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
  size_t kv_bytes_per_position() const {
    return layers_.size() * (size_t)cfg_.num_kv_heads * cfg_.head_dim * 2 * sizeof(__half);
  }

  void allocate_kv(int S) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    S_ = S;
    const size_t layer_elems = (size_t)cfg_.num_kv_heads * S_ * cfg_.head_dim;
    kcache_ = mem_.alloc<__half>(layer_elems * layers_.size(), "the K cache", &kv_bytes_);
    vcache_ = mem_.alloc<__half>(layer_elems * layers_.size(), "the V cache", &kv_bytes_);
  }

  // Receiver side of the boundary with the stage before: peer copies where the GPUs allow it, a
  // device-to-device copy when both stages are on one GPU, else pinned host memory in between.
  void connect_from(Stage* prev) {
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

  int device() const { return device_; }
  bool all_quantized() const { return all_quantized_; }
  // The fused decode path carries row sums of squares across layers: every stage must take it or none.
  void set_all_quantized(bool v) { all_quantized_ = v; }
  DeviceMemoryReport memory() const { return {device_, weight_bytes_, kv_bytes_, scratch_bytes_}; }
  DeviceMemory& device_memory() { return mem_; }

  // The token picked from the last row's logits (after run_chunk with LogitRows::Last): greedy or top-k on
  // the device, only the id comes back (enqueue_pick, then wait_token with the slot it returns). Last stage only.
  // feed_pos >= 0 (a stage that is also the first): the pick is also the input of a one-row decode step at that
  // position (run_fed_step). Picks alternate between two pinned slots, so a fed step's pick can land while the
  // caller reads the one before.
  int enqueue_pick(const TokenSampling& s, int feed_pos = -1) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    const cuda::StepFeed feed = feed_pos >= 0 ? cuda::StepFeed{pos_, tokens_, feed_pos} : cuda::StepFeed{};
    const int slot = pick_slot_;
    pick_slot_ ^= 1;
    // The kernel writes the pick straight into the mapped pinned slot: no copy between one step and the next.
    int* out = host_token_dev_ + slot;
    if (s.temperature <= 0.f)
      cuda::argmax(logits_, cfg_.vocab_size, out, stream_, feed);
    else
      cuda::sample_top_k(logits_, cfg_.vocab_size, s, top_k_, out, stream_, feed);
    XL_CUDA_CHECK(cudaEventRecord(token_picked_[slot], stream_));
    return slot;
  }
  // The penalties' token history (Backend::set_token_history's host copy), ordered after the work queued so far.
  void upload_token_history(const std::vector<uint32_t>& history) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    XL_CUDA_CHECK(cudaMemcpyAsync(top_k_.history, history.data(), history.size() * sizeof(uint32_t),
                                  cudaMemcpyHostToDevice, stream_));
  }
  int32_t wait_token(int slot) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    XL_CUDA_CHECK(cudaEventSynchronize(token_picked_[slot]));
    return host_token_[slot];
  }
  // The one-row decode step (logits of its row) whose position and token the last pick fed (enqueue_pick's
  // feed_pos), started without the host's inputs: the GPU goes from one step to the next without waiting for
  // the host to read the token. seq_len: the step's position + 1 (RoPE frequencies, as begin_call updates them).
  // One stage only (it is the first and the last). Then the pick for s, which feeds the step after (enqueue_pick's
  // with feed_pos = seq_len); returns its slot. The pick is part of the step's graph (graph_pick), so nothing is
  // launched between two steps' graphs; a sampled pick reads its draw from the slot's draw_host_, written here.
  int run_fed_step(int seq_len, const TokenSampling& s) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    update_inv_freq(seq_len, false);
    const GraphPick kind = graph_pick(s);
    if (kind == GraphPick::None) {
      XL_CUDA_CHECK(cudaGraphLaunch(decode_graph(1, LogitRows::Last), stream_));
      return enqueue_pick(s, seq_len);
    }
    const int slot = pick_slot_;
    pick_slot_ ^= 1;
    // The step that last read this slot's draw was picked before the caller got its token: free to rewrite.
    if (kind == GraphPick::TopK) draw_host_[slot] = s;
    XL_CUDA_CHECK(cudaGraphLaunch(decode_graph(1, LogitRows::Last, kind, slot), stream_));
    XL_CUDA_CHECK(cudaEventRecord(token_picked_[slot], stream_));
    return slot;
  }
  // How a fed step's graph picks for s (one stage only: fed steps): greedy by its own lm_head where that can
  // (gemv_f16_rmsnorm's GreedyPick: the dense lm_head with the final norm folded in; XLLAMA_LM_HEAD_PICK=0: never),
  // else by the argmax or top-k kernel captured after the lm_head (XLLAMA_GRAPH_PICK=0: launched between graphs).
  GraphPick graph_pick(const TokenSampling& s) const {
    static const bool lm_head_on = cuda::env_switch_on("XLLAMA_LM_HEAD_PICK");
    static const bool graph_on = cuda::env_switch_on("XLLAMA_GRAPH_PICK");
    if (!first_ || !last_) return GraphPick::None;
    if (s.temperature > 0.f) return graph_on ? GraphPick::TopK : GraphPick::None;
    if (lm_head_on && decode_fused(1) && !lm_head_.quantized &&
        cuda::gemv_f16_rmsnorm_supported(lm_head_.dense, cfg_.hidden_size, h_, cfg_.hidden_size))
      return GraphPick::LmHead;
    return graph_on ? GraphPick::Argmax : GraphPick::None;
  }
  // The fed steps' graphs, one per pick slot and way of picking (greedy, sampled), captured at load so that a
  // reply's first steps don't pay for them.
  void capture_fed_step_graphs() {
    TokenSampling greedy, sampled;
    sampled.temperature = 1.f;
    for (const TokenSampling& s : {greedy, sampled}) {
      const GraphPick kind = graph_pick(s);
      if (kind != GraphPick::None)
        for (int slot = 0; slot < 2; ++slot) decode_graph(1, LogitRows::Last, kind, slot);
    }
  }
  void sync() {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Perplexity scoring of the chunk just run (run_chunk with LogitRows::None), last stage only: per
  // kLogitRows slice the final norm + lm_head into logits_ and token_nll into score_nll_, so the logits
  // stay on the GPU and only m floats come back. Slices with no target skip the lm_head (llama.cpp-style
  // runs score only half of each chunk).
  void score_chunk(const int32_t* targets, int m, float* nll) {
    XL_CUDA_CHECK(cudaSetDevice(device_));
    XL_CUDA_CHECK(cudaMemcpyAsync(score_targets_, targets, (size_t)m * sizeof(int), cudaMemcpyHostToDevice, stream_));
    // The passes' logits go to gate/up's buffer where it holds more rows than logits_ (it is free once the layers
    // are done): a 2,048-row chunk of a 7B takes 3 lm_head GEMMs instead of 32, each reading the whole lm_head.
    const size_t gu_rows = gu_floats_ / cfg_.vocab_size;
    float* pass_logits = gu_rows > (size_t)kLogitRows ? gu_ : logits_;
    const int pass_rows = (int)std::min<size_t>(std::max<size_t>(gu_rows, kLogitRows), rows_);
    for (int r0 = 0; r0 < m; r0 += pass_rows) {
      const int nr = std::min(pass_rows, m - r0);
      if (std::all_of(targets + r0, targets + r0 + nr, [](int32_t id) { return id < 0; })) continue;
      enqueue_logits(m, r0, nr, pass_logits);
      cuda::token_nll(pass_logits, nr, cfg_.vocab_size, score_targets_ + r0, score_nll_ + r0, stream_);
    }
    XL_CUDA_CHECK(cudaMemcpyAsync(nll, score_nll_, (size_t)m * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (int i = 0; i < m; ++i)
      if (targets[i] < 0) nll[i] = 0.f;  // skipped slices left score_nll_ untouched
  }

  static constexpr int kLogitRows = 64;  // lm_head rows per pass when all rows' logits are wanted

 private:
  __half* alloc_mapped_embedding(size_t count) {
    void* host = nullptr;
    // Portable: the pinned table is usable whichever device is current when the first stage reads it.
    const auto t0 = std::chrono::steady_clock::now();
    const cudaError_t err = cudaHostAlloc(&host, count * sizeof(__half), cudaHostAllocMapped | cudaHostAllocPortable);
    pin_embedding_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw BackendError(kOutOfMemory, "could not pin " + gib(count * 2) + " GiB of host memory for embed_tokens");
    }
    host_embed_ = host;
    void* dev = nullptr;
    XL_CUDA_CHECK(cudaHostGetDevicePointer(&dev, host, 0));
    embed_ = static_cast<const __half*>(dev);
    return static_cast<__half*>(host);
  }

  template <class T>
  T* upload(const std::vector<T>& v, const char* what) {
    T* p = mem_.alloc<T>(v.size(), what, &weight_bytes_);
    if (uploader_)
      uploader_->copy(p, v.data(), v.size() * sizeof(T));
    else
      XL_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
  }

  const __half* upload_half(const TensorView& t, size_t expect, const char* what) {
    if (!t.present()) throw BackendError(kBadModel, std::string("missing tensor: ") + what);
    if ((size_t)t.numel() != expect)
      throw BackendError(kBadModel, "tensor " + t.name + ": expected " + std::to_string(expect) + " elements");
    if (t.dtype == DType::F16 && uploader_) {  // straight from the checkpoint
      __half* p = mem_.alloc<__half>(expect, what, &weight_bytes_);
      uploader_->copy(p, t.data, expect * sizeof(__half));
      return p;
    }
    return upload(cuda::to_half(t), what);
  }

  // The stream the load's GPU work runs on (the uploader's copies, the act-order permutations).
  cudaStream_t load_stream() const { return uploader_ ? uploader_->stream() : stream_; }

  // A scratch buffer for act-order qweight before its rows are permuted on the GPU (freed after the load).
  uint32_t* permute_scratch(size_t words) {
    if (words > permute_scratch_words_) {
      if (permute_scratch_) XL_CUDA_CHECK(cudaStreamSynchronize(load_stream()));  // earlier permutes done
      if (permute_scratch_) cudaFree(permute_scratch_);
      permute_scratch_ = nullptr, permute_scratch_words_ = 0;
      if (cudaMalloc(&permute_scratch_, words * 4) != cudaSuccess) {
        cudaGetLastError();
        mem_.throw_oom(words * 4, "act-order repacking");
      }
      permute_scratch_words_ = words;
    }
    return permute_scratch_;
  }

  // The fast path for GPTQ parts with fp16 scales: qweight and scales go to the GPU as they lie in the
  // checkpoint (each part's rows into its columns of the concatenated layout), act-order rows are sorted by a
  // kernel; only zeros, g_idx and the permutation are prepared on the host.
  bool upload_q4_direct(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq, GpuLinear& l) {
    if (!uploader_ || !parts[0]->quantized()) return false;
    for (auto* p : parts)
      if (!p->quantized() || p->scales.dtype != DType::F16) return false;
    cuda::Q4Plan plan;
    if (!cuda::plan_q4(parts, gptq, plan)) return false;
    const int K = plan.K, N = plan.N, G = plan.groups;
    uint32_t* qw = mem_.alloc<uint32_t>((size_t)K / 8 * N, "4-bit weights", &weight_bytes_);
    __half* sc = mem_.alloc<__half>((size_t)G * N, "scales", &weight_bytes_);
    uint32_t* rows = plan.perm.empty() ? qw : permute_scratch((size_t)K / 8 * N);
    int n0 = 0;
    for (auto* p : parts) {
      const size_t n_i = (size_t)p->out_features;
      uploader_->copy_rows(rows + n0, (size_t)N * 4, p->qweight.data, n_i * 4, (size_t)K / 8);
      uploader_->copy_rows(sc + n0, (size_t)N * 2, p->scales.data, n_i * 2, (size_t)G);
      n0 += (int)n_i;
    }
    l.quantized = true;
    l.q.qweight = qw, l.q.scales = sc;
    if (!plan.zeros.empty()) l.q.zeros = upload(plan.zeros, "zeros");
    if (!plan.perm.empty()) {
      int* perm = upload(plan.perm, "act-order permutation");
      cuda::permute_q4_rows(rows, qw, perm, K, N, uploader_->stream());
      l.q.perm = perm;
    }
    l.q.K = K, l.q.N = N, l.q.group_size = plan.group_size, l.q.sym_zero = plan.sym_zero;
    return true;
  }

  // Act-order down_proj reads its input in its own row order (q.perm). Here gate/up's output columns are put in that
  // order once (gate's and up's by the same permutation: their scales and zeros with them), so SiLU(gate) * up
  // arrives in down_proj's order and nothing gathers it at run time: the decode GEMV's staging gathered it with one
  // L2 request per value in every block, and prompt chunks with a column gather before the GEMM (an act-order 7B
  // decoded and ran prompts ~14% slower than the same model without act-order on the H200; docs/PERF-NOTES.md,
  // session 30). XLLAMA_FOLD_DOWN_PERM=0 keeps the gather.
  void fold_down_perm(GpuLayer& l) {
    static const bool on = cuda::env_switch_on("XLLAMA_FOLD_DOWN_PERM");
    cuda::QWeight& gu = l.gate_up.q;
    const int I = cfg_.intermediate_size;
    if (!on || !l.down.quantized || !l.down.q.perm || !l.gate_up.quantized || l.gate_up.bias || gu.N != 2 * I ||
        l.down.q.K != I)
      return;
    const cudaStream_t s = load_stream();
    const int groups = (gu.K + gu.group_size - 1) / gu.group_size;
    auto fold = [&](const void* data, int rows, int elem_bytes) {
      const size_t bytes = (size_t)rows * gu.N * elem_bytes;
      void* before = permute_scratch((bytes + 3) / 4);  // the load stream orders its earlier use before this copy
      XL_CUDA_CHECK(cudaMemcpyAsync(before, data, bytes, cudaMemcpyDeviceToDevice, s));
      cuda::permute_columns(before, const_cast<void*>(data), rows, gu.N, elem_bytes, l.down.q.perm, 2, s);
    };
    fold(gu.qweight, gu.K / 8, 4);
    fold(gu.scales, groups, 2);
    if (gu.zeros) fold(gu.zeros, groups, 1);
    l.down.q.perm = nullptr;
  }

  // An act-order linear's input norm in its row order, or null: the decode staging then reads the norm weights
  // contiguously and gathers only h (each gathered value is an L2 request of its own).
  const __half* norm_in_row_order(const __half* norm, const GpuLinear& l) {
    if (!norm || !l.quantized || !l.q.perm) return nullptr;
    __half* rows = mem_.alloc<__half>(l.K, "act-order norm", &weight_bytes_);
    cuda::permute_columns(norm, rows, 1, l.K, 2, l.q.perm, 1, load_stream());
    return rows;
  }

  GpuLinear upload_linear(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq) {
    GpuLinear l;
    l.K = parts[0]->in_features;
    for (auto* p : parts) l.N += p->out_features;
    cuda::PackedQ4 pk;
    if (upload_q4_direct(parts, gptq, l)) {
      // laid out on the GPU
    } else if (parts[0]->quantized() && cuda::pack_q4(parts, gptq, pk)) {
      l.quantized = true;
      l.q.qweight = upload(pk.qweight, "4-bit weights");
      l.q.scales = upload(pk.scales, "scales");
      if (!pk.zeros.empty()) l.q.zeros = upload(pk.zeros, "zeros");
      if (!pk.perm.empty()) l.q.perm = upload(pk.perm, "act-order permutation");
      l.q.K = pk.K, l.q.N = pk.N, l.q.group_size = pk.group_size, l.q.sym_zero = pk.sym_zero;
    } else if (uploader_ && cuda::dense_is_f16_as_is(parts)) {  // e.g. an untied lm_head: as it lies
      __half* d = mem_.alloc<__half>((size_t)l.N * l.K, "fp16 weights", &weight_bytes_);
      uploader_->copy(d, parts[0]->weight.data, (size_t)l.N * l.K * sizeof(__half));
      l.dense = d;
    } else {
      l.dense = upload(cuda::dense_half(parts, gptq), "fp16 weights");
    }
    std::vector<__half> b = cuda::concat_bias(parts);
    if (!b.empty()) l.bias = upload(b, "biases");
    l.q.bias = l.bias;
    return l;
  }

  void check_linear_shapes() const {
    const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, HD = cfg_.num_heads * cfg_.head_dim,
              qkv = (cfg_.num_heads + 2 * cfg_.num_kv_heads) * cfg_.head_dim;
    auto expect = [](const GpuLinear& l, int K, int N, const char* what) {
      if (l.K != K || l.N != N)
        throw BackendError(kBadModel, std::string(what) + ": expected " + std::to_string(N) + "x" +
                                              std::to_string(K) + ", got " + std::to_string(l.N) + "x" +
                                              std::to_string(l.K));
    };
    for (const GpuLayer& l : layers_) {
      expect(l.qkv, hid, qkv, "q/k/v projections");
      expect(l.o, HD, hid, "o_proj");
      expect(l.gate_up, hid, 2 * I, "gate/up projections");
      expect(l.down, I, hid, "down_proj");
    }
    if (last_) expect(lm_head_, hid, cfg_.vocab_size, "lm_head");
  }

  // ---- RoPE frequencies (backend/rope_frequencies.h; dynamic NTK recomputed when the call reaches further) ----
  void update_inv_freq(int seq_len, bool force) {
    const bool dynamic = cfg_.rope.type == RopeType::Dynamic;
    const int key = dynamic ? std::max(seq_len, cfg_.rope.original_max_position) : 0;
    if (!force && key == inv_freq_key_) return;
    inv_freq_key_ = key;
    host_inv_freq_ = rope_inv_freq(cfg_.rope, cfg_.head_dim, cfg_.max_position_embeddings, key);
    XL_CUDA_CHECK(cudaMemcpyAsync(inv_freq_, host_inv_freq_.data(), host_inv_freq_.size() * 4,
                                  cudaMemcpyHostToDevice, stream_));
  }

  // The decode graph of m rows (m <= kGemvMaxRows) with these logits, captured on first use. The backend asks
  // for the one-row graph when it is created (allocate_runtime), so a chat's first reply does not pay for the
  // capture and the kernels' first load between its first and second token.
  // pick (m = 1, Last; graph_pick): the graph also picks the token into pick_slot and feeds it to the next step
  // (run_fed_step).
  cudaGraphExec_t decode_graph(int m, LogitRows mode, GraphPick pick = GraphPick::None, int pick_slot = 0) {
    const int key = ((m * 4 + (int)mode) * 4 + (int)pick) * 2 + pick_slot;
    auto it = graphs_.find(key);
    if (it != graphs_.end()) return it->second;
    XL_CUDA_CHECK(cudaSetDevice(device_));
    const cudaGraphExec_t exec = cuda::capture_graph(stream_, [&] {
      enqueue_layers(m);
      if (mode == LogitRows::Last) enqueue_logits(m, m - 1, 1, nullptr, pick == GraphPick::LmHead ? pick_slot : -1);
      if (mode == LogitRows::All) enqueue_logits(m, 0, m);
      // Fed: the next step's token, and its position one on (the graph is launched at every position).
      const cuda::StepFeed feed{pos_, tokens_, 0, /*advance=*/true};
      int* out = host_token_dev_ + pick_slot;
      if (pick == GraphPick::Argmax) cuda::argmax(logits_, cfg_.vocab_size, out, stream_, feed);
      if (pick == GraphPick::TopK)
        cuda::sample_top_k_at(logits_, cfg_.vocab_size, draw_dev_ + pick_slot, top_k_, out, stream_, feed);
    });
    return graphs_.emplace(key, exec).first->second;
  }

  // ---- forward ----
  // One chunk of m rows at positions [pos, pos + m) through this stage's layers: its inputs copied, the hidden
  // state received from the stage before (not on the first), the layers run (a graph replay for decode
  // steps), the hidden state handed on (not on the last). Logits (LogitRows other than None) on the last only.
  void run_chunk(const int32_t* tokens, int m, int pos, LogitRows mode, float* out) {
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

  // A prompt chunk's layers: its length's graph if it has one (cuda/graph_capture.h), else launch by launch, and
  // the second time a length comes, its graph is captured right after, on the host while the GPU runs the chunk.
  void enqueue_prompt_layers(int m) {
    if (prompt_graphs_.launch(m, stream_)) {
      if (deq_ahead_) deq_ahead_->after_graph(stream_);
      return;
    }
#ifdef XLLAMA_HAVE_CUBLAS
    if (sm_targets_) sm_targets_->begin_chunk();
#endif
    enqueue_layers(m);
    // The run just enqueued, this length's second, timed every GEMM shape of it that a chunk before had run on every
    // SM (gemm_sm_targets.h; they depend on m alone): the capture times none.
    if (!prompt_graphs_.capture_next(m)) return;
    const cudaGraphExec_t exec = cuda::capture_graph(stream_, [&] {
      if (deq_ahead_) deq_ahead_->join_capture(stream_);
      enqueue_layers(m);
      if (deq_ahead_) deq_ahead_->leave_capture(stream_);
    });
    if (deq_ahead_) deq_ahead_->after_graph(stream_);
    prompt_graphs_.add(m, exec, stream_);
  }

  // y[m, N] += x[m, K] W^T (+ bias); overwrite (prompt chunks only): y = x W^T (+ bias).
  void linear(const GpuLinear& l, const __half* x, int m, int x_stride, float* y, int y_stride,
              bool overwrite = false) {
    if (m <= cuda::kGemvMaxRows) {
      if (overwrite) throw BackendError(kCudaError, "linear: GEMV rows accumulate, they can't overwrite");
      if (l.quantized)
        cuda::gemv_q4(l.q, x, cuda::GemvInput::Half, m, x_stride, y, y_stride, stream_);
      else
        cuda::gemv_f16(l.dense, l.bias, l.K, l.N, x, m, x_stride, y, y_stride, stream_);
      return;
    }
    prompt_linear(l, x, m, x_stride, y, y_stride, overwrite ? 0.f : 1.f);
  }

  // XLLAMA_FUSED_PROMPT_GEMM: "0" never fuses, "1" fuses every 4-bit prompt GEMM the kernel takes, unset: those
  // gemm_q4_wgmma_preferred picks. Only where the GPU runs the kernel (Hopper).
  enum class FusedPromptGemm { Off, Preferred, All };
  static FusedPromptGemm fused_prompt_gemm_setting() {
    const char* v = std::getenv("XLLAMA_FUSED_PROMPT_GEMM");
    if (!v || !*v) return FusedPromptGemm::Preferred;
    return *v == '0' ? FusedPromptGemm::Off : FusedPromptGemm::All;
  }
  bool use_fused_gemm(const QWeight& q, int m, bool accumulate) const {
    if (!cuda::gemm_q4_wgmma_supported() || !cuda::gemm_q4_wgmma_fits(q)) return false;
    if (fused_prompt_gemm_ == FusedPromptGemm::All) return true;
    return fused_prompt_gemm_ == FusedPromptGemm::Preferred && cuda::gemm_q4_wgmma_preferred(q, m, accumulate);
  }

  // Prompt chunks (dequantization tiles + GEMMs): y = beta y + x W^T (+ bias). T: float, or __half for q/k/v and
  // gate/up (beta 0; read once: fp16 as transformers rounds them, half the bytes for the GEMM to write and for
  // RoPE / SiLU to read).
  template <class T>
  void prompt_linear(const GpuLinear& l, const __half* x, int m, int x_stride, T* y, int y_stride, float beta) {
    if (l.quantized && fused_scratch_ && use_fused_gemm(l.q, m, beta != 0.f)) {
      cuda::gemm_q4_wgmma_input(x, m, l.K, x_stride, l.q.perm, xperm_, stream_);
      cuda::gemm_q4_wgmma(l.q, xperm_, m, y, y_stride, beta != 0.f, fused_scratch_, stream_);
    } else if (l.quantized) {
      const __half* a = x;
      int lda = x_stride;
      if (l.q.perm) {
        cuda::gather_columns(x, m, l.K, x_stride, l.q.perm, xperm_, stream_);
        a = xperm_, lda = l.K;
      }
      const int chunk = column_chunk(l.N, l.K, deq_halves_);
      const bool skip_dequant = cuda::prompt_ablation() & cuda::kAblatePromptDequant;
      for (int n0 = 0; n0 < l.N; n0 += chunk) {
        const int n1 = std::min(l.N, n0 + chunk);
        const __half* w = deq_;
        if (skip_dequant) {
          // (measurement only: the GEMM reads whatever deq_ holds)
        } else if (deq_ahead_) {
          w = deq_ahead_->dequant(l.q, n0, n1, stream_);
        } else {
          cuda::dequant_q4(l.q, n0, n1, deq_, stream_);
        }
        gemm(a, lda, w, n1 - n0, true, y + n0, y_stride, m, n1 - n0, l.K, beta);
        if (deq_ahead_ && !skip_dequant) deq_ahead_->release(stream_);
      }
    } else {
      gemm(x, x_stride, l.dense, l.K, false, y, y_stride, m, l.N, l.K, beta);
    }
    if (l.bias) cuda::add_bias(y, m, l.N, y_stride, l.bias, stream_);
  }

  // C[m, N] = beta C + A[m, K] . B with B(k, n) = b_kn ? B[k*ldb + n] : B[n*ldb + k]; beta is 1 or 0 (fp16 C: 0).
  template <class T>
  void gemm(const __half* A, int lda, const __half* B, int ldb, bool b_kn, T* C, int ldc, int m, int N, int K,
            float beta) {
    constexpr bool f32 = std::is_same_v<T, float>;
#ifdef XLLAMA_HAVE_CUBLAS
    const auto gemm_ex = [&](T* c, int ldc_c, int sm_target) {
      if (sm_target != cublas_sm_target_) {  // a handle setting: changed only when it differs
        cublasSetSmCountTarget(cublas_, sm_target);
        cublas_sm_target_ = sm_target;
      }
      return cuda::cublas_gemm(cublas_, {A, lda, B, ldb, b_kn, c, ldc_c, f32, m, N, K, beta});
    };
    const bool accumulate = beta != 0.f;
    const auto shape = cuda::GemmSmTargets::shape_of(m, N, K, f32, accumulate);
    int sm_target = sm_targets_ ? sm_targets_->target(shape) : 0;
    if (sm_target < 0) {  // the shape's first GEMM in its second chunk: timed before it runs
      // Timing runs write C. An overwriting GEMM may run again on its own output; an accumulating one (o_proj and
      // down_proj into h) is timed into gu_ instead, whose last reader in a chunk (silu_mul) ran before either.
      const bool scratch_fits = (size_t)m * N * sizeof(T) <= gu_floats_ * sizeof(float);
      sm_target = 0;
      if (!accumulate || scratch_fits) {
        T* timed = accumulate ? reinterpret_cast<T*>(gu_) : C;
        const int timed_ld = accumulate ? N : ldc;
        const cuda::GemmSmTargets::Gemm timed_gemm{[&](int t) { gemm_ex(timed, timed_ld, t); }, timed, m,
                                                    (size_t)N * sizeof(T), (size_t)timed_ld * sizeof(T)};
        sm_target = sm_targets_->tune(shape, stream_, timed_gemm);
      }
    }
    cublasStatus_t st = gemm_ex(C, ldc, sm_target);
    if (st != CUBLAS_STATUS_SUCCESS)
      throw BackendError(kCudaError, "cublasGemmEx failed with status " + std::to_string((int)st));
#else
    if (f32 && beta == 0.f) XL_CUDA_CHECK(cudaMemset2DAsync(C, (size_t)ldc * 4, 0, (size_t)N * 4, m, stream_));
    cuda::gemm_f16_wmma(A, lda, B, ldb, b_kn, C, ldc, m, N, K, stream_);
#endif
  }

  void enqueue_layers(int m) {
    const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
              D = cfg_.head_dim;
    const int qkv_dim = (H + 2 * KV) * D;
    const size_t layer_elems = (size_t)KV * S_ * D;
    if (decode_fused(m)) return enqueue_decode_layers(m);
    // GEMV rows accumulate into zeroed outputs; prompt chunks' GEMMs overwrite them (no zeroing, no C read)
    const bool gemv = m <= cuda::kGemvMaxRows;
    const int splits = gemv ? cuda::attention_rope_splits(m, H, KV, D, S_) : 1;
    if (first_) cuda::embed_rows(embed_, tokens_, m, hid, h_, stream_);  // later stages: receive() filled h_
    const unsigned skip = gemv ? 0u : cuda::prompt_ablation();
    for (size_t li = 0; li < layers_.size(); ++li) {
      const GpuLayer& l = layers_[li];
      __half* kc = kcache_ + li * layer_elems;
      __half* vc = vcache_ + li * layer_elems;
      if (!(skip & cuda::kAblatePromptNorms))
        cuda::rmsnorm(h_, hid, m, hid, l.input_norm, cfg_.rms_norm_eps, xn_, hid, stream_, gemv ? qkv_ : nullptr,
                      gemv ? (size_t)m * qkv_dim : 0);
      if (gemv) {  // decode: RoPE and the KV write happen inside the attention kernel
        linear(l.qkv, xn_, m, hid, qkv_, qkv_dim);
        cuda::attention_rope(qkv_, inv_freq_, kc, vc, m, H, KV, D, S_, pos_, splits, work_, attn_done_, att_,
                             stream_);
      } else {  // prompt: q/k/v in fp16 in qkv_'s memory
        __half* qkv16 = reinterpret_cast<__half*>(qkv_);
        prompt_linear(l.qkv, xn_, m, hid, qkv16, qkv_dim, 0.f);
        if (!(skip & cuda::kAblatePromptAttention)) {
          cuda::rope_qkv_to_cache(qkv16, m, H, KV, D, inv_freq_, pos_, q_, kc, vc, S_, stream_);
          cuda::attention_prefill(q_, kc, vc, m, H, KV, D, S_, pos_, att_, stream_);
        }
      }
      linear(l.o, att_, m, H * D, h_, hid);  // residual add: o_proj accumulates into h
      if (!(skip & cuda::kAblatePromptNorms))
        cuda::rmsnorm(h_, hid, m, hid, l.post_norm, cfg_.rms_norm_eps, xn_, hid, stream_, gemv ? gu_ : nullptr,
                      gemv ? (size_t)m * 2 * I : 0);
      if (!gemv) {  // prompt: gate/up in fp16 in gu_'s memory
        __half* gu16 = reinterpret_cast<__half*>(gu_);
        prompt_linear(l.gate_up, xn_, m, hid, gu16, 2 * I, 0.f);
        if (!(skip & cuda::kAblatePromptSilu)) cuda::silu_mul(gu16, m, I, act_, stream_);
        linear(l.down, act_, m, I, h_, hid);
      } else {
        linear(l.gate_up, xn_, m, hid, gu_, 2 * I);
        if (l.down.quantized) {  // SiLU(gate) * up fused into the staging
          cuda::gemv_q4(l.down.q, gu_, cuda::GemvInput::SiluGateUp, m, 2 * I, h_, hid, stream_);
        } else {
          cuda::silu_mul(gu_, m, I, act_, stream_);
          linear(l.down, act_, m, I, h_, hid);
        }
      }
    }
  }

  // Whether a step of m rows takes enqueue_decode_layers.
  bool decode_fused(int m) const { return m <= cuda::kGemvMaxRows && all_quantized_; }

  // Decode with the RMSNorms folded into the GEMVs, 5 kernels per layer: q/k/v (normalizing h while staging),
  // attention (RoPE + KV write + split combine), o_proj (adds into h), gate/up (normalizing), down (SiLU-gate while
  // staging; adds into h). Every buffer a kernel accumulates into is zeroed by an earlier kernel that runs after the
  // buffer's last reader.
  // Where they can (defer_norms_), the q/k/v and gate/up GEMVs defer their RMSNorm factor: they multiply h by the
  // norm weights only and sum h's squares themselves (GemvInput::RmsNormDeferred), and the next kernel (attention,
  // down) applies the factor. Otherwise o_proj and down_proj square their finished outputs for the next GEMV, which
  // costs the last block of every column slice a fence, a counter and a re-read at the end of the kernel (7B decode
  // on the H200: 575 t/s that way, 615 deferred; docs/PERF-NOTES.md, session 11). Deferred, the last down_proj of
  // a stage still squares its output, for lm_head's norm (the next stage's first q/k/v sums its input itself, as every
  // layer does, so a split model computes what an unsplit one does).
  void enqueue_decode_layers(int m) {
    const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
              D = cfg_.head_dim;
    const size_t qkv_floats = (size_t)m * (H + 2 * KV) * D, layer_elems = (size_t)KV * S_ * D;
    if (m == 1 && step_ready_ && cuda::persistent_decode_flag()) {
      // One row: every layer in one persistent kernel (kernels_decode_persistent.cu), which wants q/k/v and
      // gate/up zero at its start and leaves h's sum of squares for the fused lm_head.
      cuda::embed_rows(embed_, tokens_, 1, hid, h_, stream_, nullptr, {qkv_, qkv_floats}, {gu_, (size_t)2 * I});
      cuda::decode_step(step_, stream_);
      return;
    }
    const int splits = cuda::attention_rope_splits(m, H, KV, D, S_);
    const float eps = cfg_.rms_norm_eps;
    const bool defer = defer_norms_;
    const unsigned ablate = cuda::decode_ablation();
    const bool skip_attention = ablate & cuda::kAblateAttention, skip_sums = ablate & cuda::kAblateSumsOfSquares;
    // How q/k/v and gate/up take h (the ablation's Half input: h's bytes read as fp16, timing only).
    const cuda::GemvInput norm_input = (ablate & cuda::kAblateNormStaging) ? cuda::GemvInput::Half
                                       : defer                             ? cuda::GemvInput::RmsNormDeferred
                                                                           : cuda::GemvInput::RmsNorm;
    float* attn_sum_sq = row_sum_sq_;                    // h's row sums of squares before attention
    float* mlp_sum_sq = row_sum_sq_ + cuda::kGemvMaxRows;  // ... and before the MLP
    // Later stages: receive() brought h_ and its sums of squares, and zeroed qkv_ and mlp_sum_sq.
    // Deferred, every q/k/v sums h's squares itself: embed_rows zeroes both sums instead of writing the first.
    if (first_)
      cuda::embed_rows(embed_, tokens_, m, hid, h_, stream_, defer ? nullptr : attn_sum_sq, {qkv_, qkv_floats},
                       defer ? cuda::ZeroFill{row_sum_sq_, (size_t)2 * cuda::kGemvMaxRows}
                             : cuda::ZeroFill{mlp_sum_sq, (size_t)m});
    const std::vector<bool> one_launch_mlp = one_launch_mlp_layers(m, ablate);
    // The residual stream: h_, or gu_'s first hid floats after an odd number of one-launch MLPs (which read one
    // buffer and write the other); one_launch_mlp_layers makes the count even, so the stage ends in h_.
    float* h = h_;
    for (size_t li = 0; li < layers_.size(); ++li) {
      const GpuLayer& l = layers_[li];
      const bool last = li + 1 == layers_.size();
      float* h_next = h == h_ ? gu_ : h_;
      cuda::GemvFusion qkv;
      qkv.in_sum_sq = attn_sum_sq, qkv.in_norm = l.input_norm, qkv.eps = eps;
      if (norm_input == cuda::GemvInput::RmsNormDeferred && l.qkv_norm_rows)
        qkv.in_norm = l.qkv_norm_rows, qkv.in_norm_rows = true;
      if (one_launch_mlp[li])
        qkv.zero[0] = {h_next, (size_t)hid};  // the MLP adds into it; its last reader was the previous MLP
      else
        qkv.zero[0] = {gu_, (size_t)m * 2 * I};  // down_proj (previous layer) has read it
      if (defer) qkv.zero[1] = {mlp_sum_sq, (size_t)m};  // ... and these (gate/up sums into them)
      cuda::gemv_q4(l.qkv.q, h, norm_input, m, hid, qkv_, (H + 2 * KV) * D, stream_, {}, qkv);
      cuda::DeferredNorm qkv_norm;
      if (defer) qkv_norm = {attn_sum_sq, hid, eps};
      if (!skip_attention)
        cuda::attention_rope(qkv_, inv_freq_, kcache_ + li * layer_elems, vcache_ + li * layer_elems, m, H, KV, D, S_,
                             pos_, splits, work_, attn_done_, att_, stream_, qkv_norm);
      cuda::GemvFusion o;
      if (!defer && !skip_sums) o.out_sum_sq = mlp_sum_sq, o.col_done = col_done_;
      o.zero[0] = {qkv_, qkv_floats};            // attention has read it
      o.zero[1] = {attn_sum_sq, (size_t)m};      // q/k/v and attention have read it; q/k/v or down_proj sum into it
      cuda::gemv_q4(l.o.q, att_, cuda::GemvInput::Half, m, H * D, h, hid, stream_, {}, o);
      if (one_launch_mlp[li]) {
        cuda::mlp_decode(l.gate_up.q, l.down.q, l.post_norm, eps, h, h_next, stream_);
        h = h_next;
        continue;
      }
      cuda::GemvFusion gate_up;
      gate_up.in_sum_sq = mlp_sum_sq, gate_up.in_norm = l.post_norm, gate_up.eps = eps;
      if (norm_input == cuda::GemvInput::RmsNormDeferred && l.gate_up_norm_rows)
        gate_up.in_norm = l.gate_up_norm_rows, gate_up.in_norm_rows = true;
      cuda::gemv_q4(l.gate_up.q, h, norm_input, m, hid, gu_, 2 * I, stream_, {}, gate_up);
      cuda::GemvFusion down;
      if (last || (!defer && !skip_sums)) down.out_sum_sq = attn_sum_sq, down.col_done = col_done_;
      if (defer) down.in_sum_sq = mlp_sum_sq, down.norm_dim = hid, down.eps = eps;
      else down.zero[0] = {mlp_sum_sq, (size_t)m};  // gate/up has read it; the next o_proj sums into it
      cuda::gemv_q4(l.down.q, gu_, cuda::GemvInput::SiluGateUp, m, 2 * I, h, hid, stream_, {}, down);
    }
  }

  // Which layers of a decode step run their MLP as one launch (cuda::mlp_decode, opt-in: slower on the H200,
  // docs/PERF-NOTES.md session 28) instead of gate/up then down_proj: one row, deferred norms, where the kernel fits
  // the weights, and not the stage's last layer (its down_proj squares h for lm_head or the next stage). Each such
  // MLP moves the residual stream to the other buffer, so the count is kept even (the first layer left out if need
  // be) and the stage ends in h_.
  std::vector<bool> one_launch_mlp_layers(int m, unsigned ablate) const {
    std::vector<bool> on(layers_.size(), false);
    if (m != 1 || !defer_norms_ || ablate || !cuda::fused_mlp_flag() || gu_floats_ < (size_t)cfg_.hidden_size)
      return on;
    size_t count = 0;
    for (size_t li = 0; li + 1 < layers_.size(); ++li)
      if (cuda::mlp_decode_fits(layers_[li].gate_up.q, layers_[li].down.q)) on[li] = true, ++count;
    if (count % 2 == 1)
      for (size_t li = 0; li < on.size(); ++li)
        if (on[li]) {
          on[li] = false;
          break;
        }
    return on;
  }

  // Decides once, before any decode graph is captured, whether every q/k/v and gate/up GEMV takes its RMSNorm
  // deferred (enqueue_decode_layers, receive).
  void choose_decode_norms() {
    defer_norms_ = cuda::deferred_norm_flag() && std::all_of(layers_.begin(), layers_.end(), [](const GpuLayer& l) {
                     return cuda::gemv_q4_defers_norm(l.qkv.q) && cuda::gemv_q4_defers_norm(l.gate_up.q);
                   });
  }

  // The persistent one-row decode kernel's plan: per-layer descriptors on the device, its counters, and the
  // launch shape. Models it can't run (mixed layer shapes, a dense layer, too little shared memory) keep the
  // 5-kernel path (step_ready_ false).
  void prepare_decode_step() {
    // Only when asked for (XLLAMA_PERSISTENT_DECODE=1: slower than the 5-kernel path today, see PERF-NOTES),
    // and for one stage holding every layer and the embeddings.
    if (!cuda::persistent_decode_flag() || !all_quantized_ || !(first_ && last_)) return;
    const size_t layer_elems = (size_t)cfg_.num_kv_heads * S_ * cfg_.head_dim;
    std::vector<cuda::DecodeLayer> host(layers_.size());
    for (size_t li = 0; li < layers_.size(); ++li) {
      const GpuLayer& l = layers_[li];
      cuda::DecodeLayer& d = host[li];
      d.lin[0] = l.qkv.q, d.lin[1] = l.o.q, d.lin[2] = l.gate_up.q, d.lin[3] = l.down.q;
      d.input_norm = l.input_norm, d.post_norm = l.post_norm;
      d.kcache = kcache_ + li * layer_elems, d.vcache = vcache_ + li * layer_elems;
    }
    cuda::DecodeStep st;
    st.num_layers = cfg_.num_layers, st.hidden = cfg_.hidden_size, st.inter = cfg_.intermediate_size;
    st.heads = cfg_.num_heads, st.kv_heads = cfg_.num_kv_heads, st.head_dim = cfg_.head_dim, st.max_seq = S_;
    st.max_splits = cuda::attention_splits(1, cfg_.num_heads, S_), st.eps = cfg_.rms_norm_eps;
    if (!cuda::decode_step_prepare(st, host)) return;
    cuda::DecodeLayer* dev_layers = mem_.alloc<cuda::DecodeLayer>(host.size(), "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMemcpy(dev_layers, host.data(), host.size() * sizeof(cuda::DecodeLayer), cudaMemcpyHostToDevice));
    const size_t ncount = cuda::decode_step_counters(cfg_.num_layers);
    unsigned* counters = mem_.alloc<unsigned>(ncount, "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMemset(counters, 0, ncount * sizeof(unsigned)));
    st.layers = dev_layers, st.counters = counters;
    st.inv_freq = inv_freq_, st.pos = pos_, st.h = h_, st.qkv = qkv_, st.gu = gu_, st.att = att_, st.work = work_;
    st.head_done = attn_done_, st.final_sum_sq = row_sum_sq_;  // enqueue_logits reads row 0's sum there
    step_ = st;
    step_ready_ = true;
  }

  // Final norm + lm_head for rows [r0, r0 + nr) of an m-row step into rows [0, nr) of out (default logits_). After
  // enqueue_decode_layers the last down_proj has left h's row sums of squares: a dense lm_head normalizes
  // while staging and writes the logits (no norm kernel, no zeroing).
  // pick_slot >= 0 (one row, GraphPick::LmHead): the lm_head also picks greedily into that slot, fed to the next step.
  void enqueue_logits(int m, int r0, int nr, float* out = nullptr, int pick_slot = -1) {
    float* logits = out ? out : logits_;
    const int hid = cfg_.hidden_size;
    const float* h = h_ + (size_t)r0 * hid;
    if (decode_fused(m) && !lm_head_.quantized && cuda::gemv_f16_rmsnorm_supported(lm_head_.dense, hid, h, hid)) {
      const float* sum_sq = row_sum_sq_ + r0;  // enqueue_decode_layers' attn_sum_sq
      const cuda::GreedyPick pick{pick_best_, pick_done_, host_token_dev_ + std::max(pick_slot, 0), tokens_, pos_};
      cuda::gemv_f16_rmsnorm(lm_head_.dense, lm_head_.bias, hid, cfg_.vocab_size, h, hid, sum_sq, final_norm_,
                             cfg_.rms_norm_eps, nr, logits, cfg_.vocab_size, stream_, pick_slot >= 0 ? &pick : nullptr);
      return;
    }
    if (pick_slot >= 0) throw std::logic_error("enqueue_logits: no lm_head pick on this path");
    const bool gemv = nr <= cuda::kGemvMaxRows;  // GEMV rows accumulate into zeroed logits, GEMMs overwrite
    cuda::rmsnorm(h, hid, nr, hid, final_norm_, cfg_.rms_norm_eps, xn_, hid, stream_, gemv ? logits : nullptr,
                  gemv ? (size_t)nr * cfg_.vocab_size : 0);
    linear(lm_head_, xn_, nr, hid, logits, cfg_.vocab_size, /*overwrite=*/!gemv);
  }

  // ---- stage boundaries ----
  // What crosses a boundary: the residual stream h (m rows) and, for decode steps, each row's sum of squares
  // (the fused path's attn_sum_sq, which the last down_proj left and the next q/k/v GEMV normalizes with).

  // Sender side, after this stage's layers: stages to another GPU without peer access go through pinned
  // host memory; then the next stage may copy (sent_).
  void send(int m) {
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
  void receive(int m) {
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

  friend class CudaBackend;

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
  void* host_embed_ = nullptr;  // pinned, GPU-mapped embedding table (untied models)
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

// The Backend: the stages in order. Each forward chunk runs through every stage (each waits for the
// hidden state of the one before on its own stream); the logits, and the token picked from them, come from
// the last stage.
class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& config, const BackendOptions& options) : cfg_(config), opt_(options) {
    validate_config(cfg_);
    int count = 0;
    XL_CUDA_CHECK(cudaGetDeviceCount(&count));
    std::vector<StagePlan> plans = options.stages;
    if (plans.empty()) plans.push_back({options.device, 0, cfg_.num_layers});
    validate_plans(plans, count);
    // A GPU too old, or one this build has no code for: one line now, not a failed launch later.
    for (const StagePlan& p : plans) {
      if (std::string why = cuda::gpu_support_problem(p.device); !why.empty()) throw BackendError(kUnsupportedGpu, why);
      XL_CUDA_CHECK(cudaSetDevice(p.device));
      cuda::current_device_runs_pdl_code();  // asked once here rather than first inside a graph capture
    }
    for (size_t i = 0; i < plans.size(); ++i)
      stages_.push_back(std::make_unique<Stage>(cfg_, opt_, plans[i], i == 0, i + 1 == plans.size()));
  }

  ~CudaBackend() override {
    // Receivers first: a stage waits for its own stream before freeing, so its copies out of the stage
    // before are done by the time that one frees its buffers.
    try {
      settle_step_ahead();
    } catch (...) {  // freeing goes on regardless
    }
    while (!stages_.empty()) stages_.pop_back();
  }

  // ---- loading ----
  // Each stage loads its own layers; the figures (for --verbose) add up over the stages.
  Stage::LoadFigures load_checkpoint(const GptqConfig& gptq, const ModelWeights& w, LoadProgress* progress) {
    check_layer_count(cfg_, w);
    Stage::LoadFigures all;
    for (auto& st : stages_) {
      const Stage::LoadFigures f = st->load_checkpoint(gptq, w, progress);
      all.bytes += f.bytes, all.read_s += f.read_s, all.wait_s += f.wait_s, all.finish_s += f.finish_s;
      all.total_s += f.total_s, all.threads = std::max(all.threads, f.threads);
      all.pin_s += f.pin_s, all.alloc_s += f.alloc_s, all.mallocs += f.mallocs;
      all.arena_bytes += f.arena_bytes, all.arena_slack += f.arena_slack;
      if (!f.gemm_warmup.empty())
        all.gemm_warmup += (all.gemm_warmup.empty() ? "" : "; ") + ("GPU " + std::to_string(st->device()) + ": ") +
                           f.gemm_warmup;
    }
    agree_on_decode_path();
    return all;
  }

  void load_dummy(int group_size, uint64_t seed) {
    for (auto& st : stages_) st->load_dummy(group_size, seed);
    agree_on_decode_path();
  }

  // Scratch on every stage, then one KV-cache length for all: max_seq_len, or (0) the model's context capped
  // by what every device has left, then the boundaries.
  void allocate_runtime() {
    for (auto& st : stages_) st->allocate_scratch();
    S_ = choose_seq_len();
    for (auto& st : stages_) {
      st->allocate_kv(S_);
      st->choose_decode_norms();
      st->prepare_decode_step();
    }
    for (size_t i = 1; i < stages_.size(); ++i) stages_[i]->connect_from(stages_[i - 1].get());
    for (auto& st : stages_) st->decode_graph(1, st.get() == stages_.back().get() ? LogitRows::Last : LogitRows::None);
    last().capture_fed_step_graphs();
  }

  // ---- Backend ----
  const char* name() const override { return "cuda"; }
  const ModelConfig& config() const override { return cfg_; }
  int cache_length() const override { return cache_len_; }
  int max_seq_len() const override { return S_; }
  MemoryReport memory() const override {
    MemoryReport r;
    for (const auto& st : stages_) {
      const DeviceMemoryReport d = st->memory();
      r.weights_bytes += d.weights_bytes, r.kv_cache_bytes += d.kv_cache_bytes, r.scratch_bytes += d.scratch_bytes;
      r.devices.push_back(d);
    }
    return r;
  }

  void trim_cache(int length) override {
    if (length < 0) throw BackendError(kBadInput, "cache length must be >= 0");
    settle_step_ahead();
    cache_len_ = std::min(cache_len_, length);  // positions past the length are simply overwritten later
  }

  void forward(const int32_t* tokens, int n, int pos, bool all_logits, float* out) override {
    settle_step_ahead();
    run(tokens, n, pos, all_logits ? LogitRows::All : LogitRows::Last, out);
  }

  int32_t forward_sample(const int32_t* tokens, int n, int pos, const TokenSampling& s,
                         const TokenSampling* next) override {
    if (!device_pick(s)) {
      settle_step_ahead();
      return Backend::forward_sample(tokens, n, pos, s);
    }
    // Decode pipelining: the step that feeds this pick's token is started before the token goes back to the
    // caller. The cache length stays what the caller knows until that step is asked for. On one GPU the pick
    // itself feeds that step (fed), which is enqueued before the pick is read, so the GPU does not wait for the
    // host between steps; across stages the host passes the token on once it has it.
    const bool ahead = next && device_pick(*next) && pos + n < S_;
    const bool fed = ahead && stages_.size() == 1;
    int slot;
    if (ahead_.pending && n == 1 && tokens[0] == ahead_.token && pos == ahead_.pos && same_sampling(s, ahead_.s)) {
      ahead_.pending = false;  // the step asked for is the one started ahead (fed if this one is)
      slot = ahead_.slot;
      cache_len_ = pos + 1;
    } else {
      settle_step_ahead();
      run(tokens, n, pos, LogitRows::Last, nullptr);
      slot = last().enqueue_pick(s, fed ? pos + n : -1);
    }
    int fed_slot = 0;
    if (fed) fed_slot = last().run_fed_step(pos + n + 1, *next);
    const int32_t token = last().wait_token(slot);
    if (token == cuda::kNonFinitePick) {
      if (fed) last().sync();  // the step it fed (token 0) is dropped
      throw BackendError(kNonFiniteLogits, "NaN or +infinity among the " + std::to_string(cfg_.vocab_size) +
                                               ", or all -infinity");
    }
    if (fed) {
      ahead_ = {true, token, pos + n, *next, fed_slot};
    } else if (ahead && token >= 0 && token < cfg_.vocab_size) {
      const int committed = cache_len_;
      run(&token, 1, pos + n, LogitRows::Last, nullptr);
      ahead_ = {true, token, pos + n, *next, last().enqueue_pick(*next)};
      cache_len_ = committed;
    }
    return token;
  }

  // The device picks read and extend the last stage's copy; a host pick (Backend::forward_sample) the host's. A
  // step started ahead picked from the old history: it is dropped, not handed to the next call.
  void set_token_history(const int32_t* seen, int n_seen, const int32_t* generated, int n_generated) override {
    settle_step_ahead();
    Backend::set_token_history(seen, n_seen, generated, n_generated);
    last().upload_token_history(token_history_);
  }

  // Perplexity scoring: the stages run each chunk as forward() does; the last stage turns the chunk's rows
  // into NLLs on its own GPU (Stage::score_chunk), so the logits never cross to the host.
  void score(const int32_t* tokens, int n, int pos, const int32_t* targets, float* nll) override {
    settle_step_ahead();
    begin_call(tokens, n, pos);
    check_score_targets(targets, n, cfg_.vocab_size);
    const int rows_per_chunk = last().rows_;
    for (int done = 0; done < n;) {
      const int m = std::min(n - done, rows_per_chunk);
      for (auto& st : stages_) st->run_chunk(tokens + done, m, pos + done, LogitRows::None, nullptr);
      last().score_chunk(targets + done, m, nll + done);
      cache_len_ = pos + done + m;
      done += m;
    }
  }

 private:
  Stage& last() { return *stages_.back(); }

  // Stages in order, each at least one layer, together covering every layer once, on GPUs that exist.
  void validate_plans(const std::vector<StagePlan>& plans, int count) const {
    int next = 0;
    for (size_t i = 0; i < plans.size(); ++i) {
      const StagePlan& p = plans[i];
      const std::string which = plans.size() == 1 ? "" : "stage " + std::to_string(i) + ": ";
      if (p.device < 0 || p.device >= count)
        throw BackendError(kBadInput, which + "GPU " + std::to_string(p.device) + " does not exist (" +
                                                   std::to_string(count) + " found)");
      if (p.first_layer != next || p.end_layer <= p.first_layer || p.end_layer > cfg_.num_layers)
        throw BackendError(kBadInput, which + "layers [" + std::to_string(p.first_layer) + ", " +
                                                   std::to_string(p.end_layer) + ") do not continue the split at layer " +
                                                   std::to_string(next) + " of " + std::to_string(cfg_.num_layers));
      next = p.end_layer;
    }
    if (next != cfg_.num_layers)
      throw BackendError(kBadInput, "the GPU split ends at layer " + std::to_string(next) + " of " +
                                                 std::to_string(cfg_.num_layers));
  }

  void agree_on_decode_path() {
    bool all = true;
    for (auto& st : stages_) all = all && st->all_quantized();
    for (auto& st : stages_) st->set_all_quantized(all);
  }

  // The KV-cache length: max_seq_len when given (refused if a device can't hold its stages' share), else
  // the model's context capped so that every device keeps kStageReserveBytes per stage free.
  int choose_seq_len() {
    std::map<int, std::vector<Stage*>> by_device;
    for (auto& st : stages_) by_device[st->device()].push_back(st.get());
    int S = opt_.max_seq_len > 0 ? opt_.max_seq_len : std::max(1, cfg_.max_position_embeddings);
    for (auto& [device, stages] : by_device) {
      size_t per_pos = 0, reserve = 0;
      for (Stage* st : stages) per_pos += st->kv_bytes_per_position(), reserve += kStageReserveBytes;
      size_t free_b = 0, total_b = 0;
      XL_CUDA_CHECK(cudaSetDevice(device));
      XL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
      DeviceMemory& mem = stages.front()->device_memory();
      if (opt_.max_seq_len <= 0) {
        const size_t avail = free_b > reserve ? free_b - reserve : 0;
        S = (int)std::min<size_t>(S, avail / per_pos);
        if (S < 1) mem.throw_oom(reserve + per_pos, "a 1-position KV cache and its reserve");
      } else if ((size_t)S * per_pos + reserve > free_b) {
        mem.throw_oom((size_t)S * per_pos + reserve, "a " + std::to_string(S) + "-position KV cache and its reserve");
      }
    }
    return S;
  }

  // ---- forward ----
  // The checks every call of n tokens at pos passes before anything is enqueued; then the cache is cut to
  // pos and the RoPE frequencies set for the call's length (dynamic NTK scales every chunk by the whole
  // call's length, as HF and the CPU backend do).
  void begin_call(const int32_t* tokens, int n, int pos) {
    if (n <= 0) throw BackendError(kBadInput, "forward needs at least one token");
    if (pos < 0 || pos > cache_len_)
      throw BackendError(kBadInput, "position " + std::to_string(pos) + " is past the cached " +
                                        std::to_string(cache_len_) + " positions");
    if ((int64_t)pos + n > S_)
      throw BackendError(kContextFull, "the context holds " + std::to_string(S_) + " positions; " +
                                           std::to_string(pos + n) + " were asked for");
    for (int i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
        throw BackendError(kBadInput, "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
    cache_len_ = pos;
    for (auto& st : stages_) {
      XL_CUDA_CHECK(cudaSetDevice(st->device()));
      st->update_inv_freq(pos + n, false);
    }
  }

  void run(const int32_t* tokens, int n, int pos, LogitRows rows, float* out) {
    begin_call(tokens, n, pos);
    const int rows_per_chunk = last().rows_;
    for (int done = 0; done < n;) {
      const int m = std::min(n - done, rows_per_chunk);
      const bool last_chunk = done + m == n;
      const LogitRows mode =
          rows == LogitRows::All ? LogitRows::All : (last_chunk ? LogitRows::Last : LogitRows::None);
      float* chunk_out = out ? (rows == LogitRows::All ? out + (size_t)done * cfg_.vocab_size : out) : nullptr;
      for (auto& st : stages_) {
        const bool is_last = st.get() == stages_.back().get();
        st->run_chunk(tokens + done, m, pos + done, is_last ? mode : LogitRows::None, is_last ? chunk_out : nullptr);
      }
      cache_len_ = pos + done + m;
      done += m;
    }
  }

  bool device_pick(const TokenSampling& s) const {
    if (s.temperature <= 0.f) return !penalties_on(s);  // greedy with penalties: refused by the host pick
    // any k, 0 for the whole vocabulary; typical-p from a top-k list only
    return s.top_k >= 0 && cuda::device_pick_takes(s, cfg_.vocab_size);
  }
  static bool same_sampling(const TokenSampling& a, const TokenSampling& b) {
    return a.temperature == b.temperature && a.top_k == b.top_k && a.top_p == b.top_p && a.min_p == b.min_p &&
           a.typical_p == b.typical_p && a.uniform == b.uniform && a.repeat_penalty == b.repeat_penalty &&
           a.frequency_penalty == b.frequency_penalty && a.presence_penalty == b.presence_penalty;
  }

  // The decode step forward_sample started ahead (its `next`): waits for it and drops its pick. Its KV entries lie
  // past cache_len_, so whatever runs at that position next overwrites them.
  void settle_step_ahead() {
    if (!ahead_.pending) return;
    ahead_.pending = false;
    last().sync();
  }

  ModelConfig cfg_;
  BackendOptions opt_;
  std::vector<std::unique_ptr<Stage>> stages_;
  int S_ = 0, cache_len_ = 0;
  struct StepAhead {
    bool pending = false;
    int32_t token = 0;  // the token it feeds ...
    int pos = 0;        // ... at this position
    TokenSampling s;    // ... and how it picks
    int slot = 0;       // its pick's slot (Stage::enqueue_pick)
  };
  StepAhead ahead_;
};

}  // namespace

namespace cuda {
unsigned& decode_ablation() {
  static unsigned parts = 0;
  return parts;
}
unsigned& prompt_ablation() {
  static unsigned parts = 0;
  return parts;
}
}  // namespace cuda

std::unique_ptr<Backend> create_cuda_backend(const ModelConfig& config, const GptqConfig& gptq,
                                             const ModelWeights& weights, const BackendOptions& options,
                                             LoadProgress* progress) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto b = std::make_unique<CudaBackend>(config, options);
  const auto t1 = Clock::now();
  const Stage::LoadFigures f = b->load_checkpoint(gptq, weights, progress);
  const auto t2 = Clock::now();
  b->allocate_runtime();
  const auto t3 = Clock::now();
  if (verbose_load()) {
    auto s = [](Clock::time_point a, Clock::time_point c) { return std::chrono::duration<double>(c - a).count(); };
    if (f.threads == 0) {  // XLLAMA_LEGACY_UPLOAD
      std::fprintf(stderr,
                   "xllama: load: CUDA context and handles %.2f s; weights %.2f GB in %.2f s by the earlier path (host "
                   "repack, synchronous copies); KV cache, scratch and decode plan %.2f s\n",
                   s(t0, t1), f.bytes / 1e9, f.total_s, s(t2, t3));
      return b;
    }
    // The rest of the weights' time is on the loading thread: pinning host memory, cudaMalloc, and layout
    // planning (g_idx, zeros) with the small copies' bookkeeping.
    const double other = std::max(0.0, f.total_s - f.read_s - f.wait_s - f.finish_s);
    const double planning = std::max(0.0, other - f.pin_s - f.alloc_s);
    std::fprintf(stderr,
                 "xllama: load: CUDA context and handles %.2f s; weights %.2f GB in %.2f s (%.2f GB/s): reading into "
                 "pinned staging on %d threads %.2f s (%.2f GB/s), waiting for the copy engine %.2f s, last copies "
                 "and GPU repacking %.2f s, pinning host memory (staging buffers, embedding table) %.2f s, %d weight "
                 "allocation%s %.2f s (arena %s, %s of it unused), layout planning and the rest %.2f s; KV cache, "
                 "scratch and decode plan %.2f s\n",
                 s(t0, t1), f.bytes / 1e9, f.total_s, f.bytes / 1e9 / std::max(f.total_s, 1e-9), f.threads, f.read_s,
                 f.bytes / 1e9 / std::max(f.read_s, 1e-9), f.wait_s, f.finish_s, f.pin_s, f.mallocs,
                 f.mallocs == 1 ? "" : "s", f.alloc_s, decimal_bytes(f.arena_bytes).c_str(),
                 decimal_bytes(f.arena_slack).c_str(), planning, s(t2, t3));
    if (!f.gemm_warmup.empty()) std::fprintf(stderr, "xllama: load: %s\n", f.gemm_warmup.c_str());
  }
  return b;
}

std::unique_ptr<Backend> create_cuda_dummy_backend(const ModelConfig& config, int group_size,
                                                   const BackendOptions& options, uint64_t seed) {
  auto b = std::make_unique<CudaBackend>(config, options);
  b->load_dummy(group_size, seed);
  b->allocate_runtime();
  return b;
}

}  // namespace xllama
