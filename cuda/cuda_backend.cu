// The CUDA backend: weights uploaded once, fp16 KV cache, decode steps replayed as CUDA graphs
// (one per row count), prompt chunks through dequantization + tensor-core GEMMs.
#include "cuda/cuda_backend.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#ifdef XLLAMA_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

#include "cuda/cuda_check.h"
#include "cuda/kernels.h"
#include "cuda/weight_repack.h"
#include "cuda/weight_upload.h"

namespace xllama {
namespace {

using cuda::QWeight;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Prompt-path dequantization tile: 32 MiB of fp16 weights (XLLAMA_DEQUANT_MIB overrides it, for tuning).
size_t dequant_budget_halves() {
  size_t mib = 32;
  if (const char* v = std::getenv("XLLAMA_DEQUANT_MIB"); v && std::atoi(v) > 0) mib = (size_t)std::atoi(v);
  return mib << 19;  // halves per MiB
}

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes / kGiB);
  return buf;
}

// Owns device allocations (freed even when construction throws half-way) and turns allocation failures
// into out_of_memory errors that say what was being allocated and what was free.
class DeviceMemory {
 public:
  explicit DeviceMemory(int device) : device_(device) {}
  ~DeviceMemory() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <class T>
  T* alloc(size_t count, const char* what, size_t* counter) {
    void* p = nullptr;
    const size_t bytes = std::max<size_t>(count * sizeof(T), 16);
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw_oom(bytes, what);
    }
    ptrs_.push_back(p);
    *counter += bytes;
    return static_cast<T*>(p);
  }
  [[noreturn]] void throw_oom(size_t need, const std::string& what) const {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, device_);
    throw BackendError("out_of_memory", "the model needs " + gib(need) + " GiB for " + what + ", " +
                                            gib(free_b) + " GiB free on GPU " + std::to_string(device_) + " (" +
                                            prop.name + ")");
  }

 private:
  int device_;
  std::vector<void*> ptrs_;
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
};

enum class LogitRows { None, Last, All };

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& config, const BackendOptions& options)
      : cfg_(config), opt_(options), mem_(options.device) {
    int count = 0;
    XL_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (options.device < 0 || options.device >= count)
      throw BackendError("invalid_argument", "GPU " + std::to_string(options.device) + " does not exist (" +
                                                 std::to_string(count) + " found)");
    XL_CUDA_CHECK(cudaSetDevice(options.device));
    validate_config();
    XL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
#ifdef XLLAMA_HAVE_CUBLAS
    if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) throw BackendError("cuda_error", "cublasCreate failed");
    cublasSetStream(cublas_, stream_);
#endif
  }

  ~CudaBackend() override {
    cudaSetDevice(opt_.device);
    for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
#ifdef XLLAMA_HAVE_CUBLAS
    if (cublas_) cublasDestroy(cublas_);
#endif
    if (stream_) cudaStreamDestroy(stream_);
    if (host_token_) cudaFreeHost(host_token_);
    if (host_in_) cudaFreeHost(host_in_);
    if (host_embed_) cudaFreeHost(host_embed_);
    if (inputs_copied_) cudaEventDestroy(inputs_copied_);
  }

  // ---- loading ----
  // Checkpoint tensors go through a WeightUploader (parallel reads into pinned staging, copies overlapped
  // with reading); 4-bit layers are laid out on the GPU (act-order rows permuted there). Returns the
  // uploader's figures for the verbose breakdown.
  struct LoadFigures {
    double bytes = 0, read_s = 0, wait_s = 0, finish_s = 0, total_s = 0;
    int threads = 0;
  };
  LoadFigures load_checkpoint(const GptqConfig& gptq, const ModelWeights& w) {
    const auto t0 = std::chrono::steady_clock::now();
    if ((int)w.layers.size() != cfg_.num_layers)
      throw BackendError("bad_weights", "expected " + std::to_string(cfg_.num_layers) + " layers");
    check_free_memory(estimate_checkpoint_bytes(w), "the weights");
    // XLLAMA_LEGACY_UPLOAD=1: the earlier path (host repack, synchronous copies), to compare load times
    const char* legacy = std::getenv("XLLAMA_LEGACY_UPLOAD");
    std::unique_ptr<cuda::WeightUploader> uploader;
    if (!(legacy && *legacy && *legacy != '0')) uploader = std::make_unique<cuda::WeightUploader>();
    uploader_ = uploader.get();
    struct Done {  // whatever happens: no dangling uploader, no scratch left behind
      CudaBackend* b;
      ~Done() {
        b->uploader_ = nullptr;
        if (b->permute_scratch_) cudaFree(b->permute_scratch_);
        b->permute_scratch_ = nullptr, b->permute_scratch_words_ = 0;
      }
    } done{this};
    load_tensors(gptq, w);
    const auto t1 = std::chrono::steady_clock::now();
    if (uploader) uploader->finish();
    const auto t2 = std::chrono::steady_clock::now();
    LoadFigures f;
    if (uploader) {
      f.bytes = uploader->bytes(), f.read_s = uploader->read_seconds(), f.wait_s = uploader->wait_seconds();
      f.threads = uploader->threads();
    } else {
      f.bytes = (double)weight_bytes_;
    }
    f.finish_s = std::chrono::duration<double>(t2 - t1).count();
    f.total_s = std::chrono::duration<double>(t2 - t0).count();
    return f;
  }

  void load_tensors(const GptqConfig& gptq, const ModelWeights& w) {
    const bool tied = w.lm_head.weight.data == w.embed_tokens.data && !w.lm_head.quantized();
    if (tied) {
      embed_ = upload_half(w.embed_tokens, (size_t)cfg_.vocab_size * cfg_.hidden_size, "embed_tokens");
    } else {
      // Untied: the table is only gathered (one row per token), so it stays in pinned host memory that the
      // GPU reads directly, saving vocab x hidden x 2 bytes of GPU memory (262 MB for a 7B model).
      if ((size_t)w.embed_tokens.numel() != (size_t)cfg_.vocab_size * cfg_.hidden_size)
        throw BackendError("bad_weights", "tensor " + w.embed_tokens.name + ": expected vocab x hidden elements");
      const size_t count = (size_t)cfg_.vocab_size * cfg_.hidden_size;
      __half* host = alloc_mapped_embedding(count);
      if (w.embed_tokens.dtype == DType::F16 && uploader_) {
        uploader_->host_copy(host, w.embed_tokens.data, count * sizeof(__half));  // on the parallel readers
      } else {
        std::vector<__half> table = cuda::to_half(w.embed_tokens);
        std::copy(table.begin(), table.end(), host);
      }
    }
    final_norm_ = upload_half(w.final_norm, cfg_.hidden_size, "final norm");
    for (const LayerWeights& lw : w.layers) {
      GpuLayer l;
      l.input_norm = upload_half(lw.input_norm, cfg_.hidden_size, "input_layernorm");
      l.post_norm = upload_half(lw.post_attention_norm, cfg_.hidden_size, "post_attention_layernorm");
      l.qkv = upload_linear({&lw.q, &lw.k, &lw.v}, gptq);
      l.o = upload_linear({&lw.o}, gptq);
      l.gate_up = upload_linear({&lw.gate, &lw.up}, gptq);
      l.down = upload_linear({&lw.down}, gptq);
      layers_.push_back(l);
    }
    if (tied) {
      lm_head_.K = cfg_.hidden_size, lm_head_.N = cfg_.vocab_size, lm_head_.dense = embed_;
    } else {
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
    if (group_size <= 0 || group_size % 8) throw BackendError("invalid_argument", "group size must be a multiple of 8");
    for (int v : {hid, I, H * D, (H + 2 * KV) * D})
      if (v % 8) throw BackendError("invalid_argument", "dummy model sizes must be multiples of 8");
    auto q_bytes = [&](int K, int N) { return (size_t)K / 2 * N + (size_t)((K + group_size - 1) / group_size) * N * 2; };
    size_t need = (size_t)cfg_.vocab_size * hid * 2 +  // embed_tokens or lm_head (an untied table stays on the host)
                  (size_t)cfg_.num_layers * (q_bytes(hid, (H + 2 * KV) * D) + q_bytes(H * D, hid) +
                                             q_bytes(hid, 2 * I) + q_bytes(I, hid));
    check_free_memory(need, "the weights");
    uint64_t s = seed * 1000003ULL + 17;
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
    if (cfg_.tie_word_embeddings) {
      embed_ = rand_half((size_t)cfg_.vocab_size * hid, -1.f, 1.f, "embed_tokens");
    } else {
      alloc_mapped_embedding((size_t)cfg_.vocab_size * hid);
      cuda::fill_random_half(const_cast<__half*>(embed_), (size_t)cfg_.vocab_size * hid, ++s, -1.f, 1.f, stream_);
    }
    final_norm_ = ones(hid);
    for (int i = 0; i < cfg_.num_layers; ++i) {
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
    if (cfg_.tie_word_embeddings) {
      lm_head_.dense = embed_;
    } else {
      const float a = 1.f / std::sqrt((float)hid);
      lm_head_.dense = rand_half((size_t)cfg_.vocab_size * hid, -a, a, "lm_head");
    }
    XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // KV cache for max_seq_len positions (0: the model's, capped to what fits) and bounded scratch.
  void allocate_runtime() {
    const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
              D = cfg_.head_dim;
    rows_ = std::max(opt_.max_chunk_tokens > 0 ? opt_.max_chunk_tokens : kDefaultChunkTokens, cuda::kGemvMaxRows);
    const int kmax = std::max({hid, I, H * D});
    const size_t qkv_dim = (size_t)(H + 2 * KV) * D;
    // Flash-decoding partials: at most 64 splits per row (attention_splits).
    const size_t work_floats = (size_t)cuda::kGemvMaxRows * H * 64 * (D + 2);
    size_t deq = std::max(dequant_budget_halves(), (size_t)kmax * 128);
    const size_t scratch_need = (size_t)rows_ * (hid * 4 + kmax * 2 + qkv_dim * 4 + H * D * 2 * 2 + 2 * I * 4 +
                                                 I * 2 + kmax * 2 + 4) +
                                deq * 2 + work_floats * 4 + (size_t)kLogitRows * cfg_.vocab_size * 4 + D * 4 + 64;
    const size_t per_pos = (size_t)cfg_.num_layers * KV * D * 2 * 2;
    size_t free_b = 0, total_b = 0;
    XL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const size_t reserve = (size_t)256 << 20;  // CUDA graphs, cuBLAS workspace, fragmentation
    int S = opt_.max_seq_len > 0 ? opt_.max_seq_len : max_position_cap();
    if (opt_.max_seq_len <= 0) {
      const size_t avail = free_b > scratch_need + reserve ? free_b - scratch_need - reserve : 0;
      S = (int)std::min<size_t>(S, avail / per_pos);
      if (S < 1) mem_.throw_oom(scratch_need + reserve + per_pos, "scratch and a 1-position KV cache");
    } else if ((size_t)S * per_pos + scratch_need + reserve > free_b) {
      mem_.throw_oom((size_t)S * per_pos + scratch_need, "a " + std::to_string(S) + "-position KV cache and scratch");
    }
    S_ = S;
    const size_t layer_elems = (size_t)KV * S_ * D;
    kcache_ = mem_.alloc<__half>(layer_elems * cfg_.num_layers, "the K cache", &kv_bytes_);
    vcache_ = mem_.alloc<__half>(layer_elems * cfg_.num_layers, "the V cache", &kv_bytes_);
    h_ = mem_.alloc<float>((size_t)rows_ * hid, "scratch", &scratch_bytes_);
    xn_ = mem_.alloc<__half>((size_t)rows_ * kmax, "scratch", &scratch_bytes_);
    qkv_ = mem_.alloc<float>((size_t)rows_ * qkv_dim, "scratch", &scratch_bytes_);
    q_ = mem_.alloc<__half>((size_t)rows_ * H * D, "scratch", &scratch_bytes_);
    att_ = mem_.alloc<__half>((size_t)rows_ * H * D, "scratch", &scratch_bytes_);
    gu_ = mem_.alloc<float>((size_t)rows_ * 2 * I, "scratch", &scratch_bytes_);
    act_ = mem_.alloc<__half>((size_t)rows_ * I, "scratch", &scratch_bytes_);
    xperm_ = mem_.alloc<__half>((size_t)rows_ * kmax, "scratch", &scratch_bytes_);
    deq_ = mem_.alloc<__half>(deq, "scratch", &scratch_bytes_);
    deq_halves_ = deq;
    work_ = mem_.alloc<float>(work_floats, "scratch", &scratch_bytes_);
    attn_done_ = mem_.alloc<unsigned>((size_t)cuda::kGemvMaxRows * H, "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMemset(attn_done_, 0, (size_t)cuda::kGemvMaxRows * H * sizeof(unsigned)));
    row_sum_sq_ = mem_.alloc<float>(2 * cuda::kGemvMaxRows, "scratch", &scratch_bytes_);
    const size_t col_slices = (size_t)(hid + 127) / 128;  // the GEMV's 128-column slices of the residual stream
    col_done_ = mem_.alloc<unsigned>(col_slices, "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMemset(col_done_, 0, col_slices * sizeof(unsigned)));
    logits_ = mem_.alloc<float>((size_t)kLogitRows * cfg_.vocab_size, "scratch", &scratch_bytes_);
    // Step inputs travel in one copy from pinned memory: [pos, tokens...].
    pos_ = mem_.alloc<int>(rows_ + 1, "scratch", &scratch_bytes_);
    tokens_ = pos_ + 1;
    XL_CUDA_CHECK(cudaMallocHost(&host_in_, (size_t)(rows_ + 1) * sizeof(int)));
    XL_CUDA_CHECK(cudaEventCreateWithFlags(&inputs_copied_, cudaEventDisableTiming));
    token_out_ = mem_.alloc<int>(1, "scratch", &scratch_bytes_);
    inv_freq_ = mem_.alloc<float>(D / 2, "scratch", &scratch_bytes_);
    XL_CUDA_CHECK(cudaMallocHost(&host_token_, sizeof(int)));
    update_inv_freq(1, /*force=*/true);
    prepare_decode_step();
  }

  // ---- Backend ----
  const char* name() const override { return "cuda"; }
  const ModelConfig& config() const override { return cfg_; }
  int cache_length() const override { return cache_len_; }
  int max_seq_len() const override { return S_; }
  MemoryReport memory() const override {
    MemoryReport r{weight_bytes_, kv_bytes_, scratch_bytes_, {}};
    r.devices.push_back({opt_.device, weight_bytes_, kv_bytes_, scratch_bytes_});
    return r;
  }

  void trim_cache(int length) override {
    if (length < 0) throw BackendError("invalid_argument", "cache length must be >= 0");
    cache_len_ = std::min(cache_len_, length);  // positions past the length are simply overwritten later
  }

  void forward(const int32_t* tokens, int n, int pos, bool all_logits, float* out) override {
    run(tokens, n, pos, all_logits ? LogitRows::All : LogitRows::Last, out);
  }

  int32_t forward_sample(const int32_t* tokens, int n, int pos, const TokenSampling& s) override {
    const bool device_pick = s.temperature <= 0.f ||
                             (s.top_k > 0 && s.top_k <= cuda::kMaxDeviceTopK && s.top_k < cfg_.vocab_size);
    if (!device_pick) return Backend::forward_sample(tokens, n, pos, s);
    run(tokens, n, pos, LogitRows::Last, nullptr);
    if (s.temperature <= 0.f)
      cuda::argmax(logits_, cfg_.vocab_size, token_out_, stream_);
    else
      cuda::sample_top_k(logits_, cfg_.vocab_size, s.top_k, s.temperature, s.uniform, token_out_, stream_);
    XL_CUDA_CHECK(cudaMemcpyAsync(host_token_, token_out_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
    XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return *host_token_;
  }

 private:
  static constexpr int kLogitRows = 64;  // lm_head rows per pass when all rows' logits are wanted

  void validate_config() {
    const ModelConfig& c = cfg_;
    auto bad = [](const std::string& m) { throw BackendError("unsupported_model", m); };
    if (c.hidden_size <= 0 || c.num_layers <= 0 || c.vocab_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
        c.intermediate_size <= 0)
      bad("model config has non-positive sizes");
    if (c.num_heads % c.num_kv_heads) bad("num_attention_heads must be a multiple of num_key_value_heads");
    if (c.head_dim % 8 || c.head_dim > 256 || c.head_dim <= 0)
      bad("the CUDA backend needs head_dim a multiple of 8, at most 256 (got " + std::to_string(c.head_dim) + ")");
  }

  int max_position_cap() const { return std::max(1, cfg_.max_position_embeddings); }

  void check_free_memory(size_t need, const char* what) {
    size_t free_b = 0, total_b = 0;
    XL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (need > free_b) mem_.throw_oom(need, what);
  }

  size_t estimate_checkpoint_bytes(const ModelWeights& w) const {
    auto t = [](const TensorView& v) { return v.present() ? (size_t)v.numel() * 2 : 0; };
    auto lin = [&](const LinearWeights& l) {
      if (!l.quantized()) return t(l.weight) + t(l.bias);
      return (size_t)l.qweight.numel() * 4 + (size_t)l.scales.numel() * 3 + (size_t)l.in_features * 4 + t(l.bias);
    };
    size_t total = t(w.final_norm);
    if (w.lm_head.weight.data != w.embed_tokens.data || w.lm_head.quantized())
      total += lin(w.lm_head);  // the untied embedding table stays in host memory
    else
      total += t(w.embed_tokens);
    for (auto& l : w.layers)
      total += t(l.input_norm) + t(l.post_attention_norm) + lin(l.q) + lin(l.k) + lin(l.v) + lin(l.o) +
               lin(l.gate) + lin(l.up) + lin(l.down);
    return total;
  }

  __half* alloc_mapped_embedding(size_t count) {
    void* host = nullptr;
    if (cudaHostAlloc(&host, count * sizeof(__half), cudaHostAllocMapped) != cudaSuccess) {
      cudaGetLastError();
      throw BackendError("out_of_memory", "could not pin " + gib(count * 2) + " GiB of host memory for embed_tokens");
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
    if (!t.present()) throw BackendError("bad_weights", std::string("missing tensor: ") + what);
    if ((size_t)t.numel() != expect)
      throw BackendError("bad_weights", "tensor " + t.name + ": expected " + std::to_string(expect) + " elements");
    if (t.dtype == DType::F16 && uploader_) {  // straight from the checkpoint
      __half* p = mem_.alloc<__half>(expect, what, &weight_bytes_);
      uploader_->copy(p, t.data, expect * sizeof(__half));
      return p;
    }
    return upload(cuda::to_half(t), what);
  }

  // A scratch buffer for act-order qweight before its rows are permuted on the GPU (freed after the load).
  uint32_t* permute_scratch(size_t words) {
    if (words > permute_scratch_words_) {
      if (permute_scratch_) XL_CUDA_CHECK(cudaStreamSynchronize(uploader_->stream()));  // earlier permutes done
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
        throw BackendError("bad_weights", std::string(what) + ": expected " + std::to_string(N) + "x" +
                                              std::to_string(K) + ", got " + std::to_string(l.N) + "x" +
                                              std::to_string(l.K));
    };
    for (const GpuLayer& l : layers_) {
      expect(l.qkv, hid, qkv, "q/k/v projections");
      expect(l.o, HD, hid, "o_proj");
      expect(l.gate_up, hid, 2 * I, "gate/up projections");
      expect(l.down, I, hid, "down_proj");
    }
    expect(lm_head_, hid, cfg_.vocab_size, "lm_head");
  }

  // ---- RoPE frequencies (HF's formulas; dynamic NTK recomputed when the sequence grows) ----
  std::vector<float> inv_freq_for(int seq_len) const {
    const RopeConfig& r = cfg_.rope;
    const int D = cfg_.head_dim;
    double base = r.theta;
    if (r.type == RopeType::Dynamic && seq_len > r.original_max_position) {
      base = r.theta * std::pow(r.factor * seq_len / (double)r.original_max_position - (r.factor - 1.0),
                                (double)D / (D - 2));
    }
    std::vector<float> f(D / 2);
    for (int i = 0; i < D / 2; ++i) {
      const float exponent = (float)(2 * i) / (float)D;
      double inv = 1.0 / std::pow(base, (double)exponent);
      if (r.type == RopeType::Linear) inv /= r.factor;
      if (r.type == RopeType::Llama3) {
        const double old_ctx = r.original_max_position;
        const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
        const double wavelen = 2.0 * M_PI / inv;
        if (wavelen > low_wavelen) {
          inv = inv / r.factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
          inv = (1.0 - smooth) * inv / r.factor + smooth * inv;
        }
      }
      f[i] = (float)inv;
    }
    return f;
  }

  void update_inv_freq(int seq_len, bool force) {
    const bool dynamic = cfg_.rope.type == RopeType::Dynamic;
    const int key = dynamic ? std::max(seq_len, cfg_.rope.original_max_position) : 0;
    if (!force && key == inv_freq_key_) return;
    inv_freq_key_ = key;
    host_inv_freq_ = inv_freq_for(key);
    XL_CUDA_CHECK(cudaMemcpyAsync(inv_freq_, host_inv_freq_.data(), host_inv_freq_.size() * 4,
                                  cudaMemcpyHostToDevice, stream_));
  }

  // ---- forward ----
  void run(const int32_t* tokens, int n, int pos, LogitRows rows, float* out) {
    if (n <= 0) throw BackendError("invalid_argument", "forward needs at least one token");
    if (pos < 0 || pos > cache_len_)
      throw BackendError("invalid_argument", "position " + std::to_string(pos) + " is past the cached " +
                                                 std::to_string(cache_len_) + " positions");
    if ((int64_t)pos + n > S_)
      throw BackendError("context_full", "the context holds " + std::to_string(S_) + " positions; " +
                                             std::to_string(pos + n) + " were asked for");
    for (int i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
        throw BackendError("invalid_argument", "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
    XL_CUDA_CHECK(cudaSetDevice(opt_.device));
    cache_len_ = pos;
    for (int done = 0; done < n;) {
      const int m = std::min(n - done, rows_);
      const bool last = done + m == n;
      const LogitRows mode = rows == LogitRows::All ? LogitRows::All : (last ? LogitRows::Last : LogitRows::None);
      run_chunk(tokens + done, m, pos + done, mode,
                out ? (rows == LogitRows::All ? out + (size_t)done * cfg_.vocab_size : out) : nullptr);
      cache_len_ = pos + done + m;
      done += m;
    }
  }

  void run_chunk(const int32_t* tokens, int m, int pos, LogitRows mode, float* out) {
    update_inv_freq(pos + m, false);
    XL_CUDA_CHECK(cudaEventSynchronize(inputs_copied_));  // the previous chunk's copy has read host_in_
    host_in_[0] = pos;
    std::copy(tokens, tokens + m, host_in_ + 1);
    XL_CUDA_CHECK(cudaMemcpyAsync(pos_, host_in_, (size_t)(m + 1) * sizeof(int), cudaMemcpyHostToDevice, stream_));
    XL_CUDA_CHECK(cudaEventRecord(inputs_copied_, stream_));
    const int vocab = cfg_.vocab_size;
    if (m <= cuda::kGemvMaxRows) {
      // Decode: one graph replay per step (positions come from device memory, so the graph is reusable).
      const int key = m * 4 + (int)mode;
      auto it = graphs_.find(key);
      if (it == graphs_.end()) {
        cudaGraph_t graph = nullptr;
        XL_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
        try {
          enqueue_layers(m);
          if (mode == LogitRows::Last) enqueue_logits(m, m - 1, 1);
          if (mode == LogitRows::All) enqueue_logits(m, 0, m);
        } catch (...) {
          cudaStreamEndCapture(stream_, &graph);
          if (graph) cudaGraphDestroy(graph);
          throw;
        }
        XL_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
        cudaGraphExec_t exec = nullptr;
        cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        XL_CUDA_CHECK(err);
        it = graphs_.emplace(key, exec).first;
      }
      XL_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
      if (out && mode != LogitRows::None) {
        const size_t nrows = mode == LogitRows::Last ? 1 : m;
        XL_CUDA_CHECK(cudaMemcpyAsync(out, logits_, nrows * vocab * 4, cudaMemcpyDeviceToHost, stream_));
        XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
      }
      return;
    }
    enqueue_layers(m);
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

  // y[m, N] += x[m, K] W^T (+ bias)
  void linear(const GpuLinear& l, const __half* x, int m, int x_stride, float* y, int y_stride) {
    if (m <= cuda::kGemvMaxRows) {
      if (l.quantized)
        cuda::gemv_q4(l.q, x, cuda::GemvInput::Half, m, x_stride, y, y_stride, stream_);
      else
        cuda::gemv_f16(l.dense, l.bias, l.K, l.N, x, m, x_stride, y, y_stride, stream_);
      return;
    }
    if (l.quantized) {
      const __half* a = x;
      int lda = x_stride;
      if (l.q.perm) {
        cuda::gather_columns(x, m, l.K, x_stride, l.q.perm, xperm_, stream_);
        a = xperm_, lda = l.K;
      }
      int chunk = (int)std::min<size_t>(l.N, deq_halves_ / l.K);
      chunk = std::max(128, chunk / 128 * 128);
      for (int n0 = 0; n0 < l.N; n0 += chunk) {
        const int n1 = std::min(l.N, n0 + chunk);
        cuda::dequant_q4(l.q, n0, n1, deq_, stream_);
        gemm(a, lda, deq_, n1 - n0, true, y + n0, y_stride, m, n1 - n0, l.K);
      }
    } else {
      gemm(x, x_stride, l.dense, l.K, false, y, y_stride, m, l.N, l.K);
    }
    if (l.bias) cuda::add_bias(y, m, l.N, y_stride, l.bias, stream_);
  }

  // C[m, N] += A[m, K] . B with B(k, n) = b_kn ? B[k*ldb + n] : B[n*ldb + k]
  void gemm(const __half* A, int lda, const __half* B, int ldb, bool b_kn, float* C, int ldc, int m, int N, int K) {
#ifdef XLLAMA_HAVE_CUBLAS
    // Column-major view: C^T (N x m) = op(B) (N x K) . A^T (K x m).
    const float one = 1.f;
    cublasStatus_t st = cublasGemmEx(cublas_, b_kn ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, N, m, K, &one, B,
                                     CUDA_R_16F, ldb, A, CUDA_R_16F, lda, &one, C, CUDA_R_32F, ldc,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
      throw BackendError("cuda_error", "cublasGemmEx failed with status " + std::to_string((int)st));
#else
    cuda::gemm_f16_wmma(A, lda, B, ldb, b_kn, C, ldc, m, N, K, stream_);
#endif
  }

  void enqueue_layers(int m) {
    const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
              D = cfg_.head_dim;
    const int qkv_dim = (H + 2 * KV) * D;
    const size_t layer_elems = (size_t)KV * S_ * D;
    if (decode_fused(m)) return enqueue_decode_layers(m);
    const int splits = m <= cuda::kGemvMaxRows ? cuda::attention_splits(m, H, S_) : 1;
    cuda::embed_rows(embed_, tokens_, m, hid, h_, stream_);
    for (size_t li = 0; li < layers_.size(); ++li) {
      const GpuLayer& l = layers_[li];
      __half* kc = kcache_ + li * layer_elems;
      __half* vc = vcache_ + li * layer_elems;
      cuda::rmsnorm(h_, hid, m, hid, l.input_norm, cfg_.rms_norm_eps, xn_, hid, stream_, qkv_, (size_t)m * qkv_dim);
      linear(l.qkv, xn_, m, hid, qkv_, qkv_dim);
      if (m <= cuda::kGemvMaxRows) {  // decode: RoPE and the KV write happen inside the attention kernel
        cuda::attention_rope(qkv_, inv_freq_, kc, vc, m, H, KV, D, S_, pos_, splits, work_, attn_done_, att_,
                             stream_);
      } else {
        cuda::rope_qkv_to_cache(qkv_, m, H, KV, D, inv_freq_, pos_, q_, kc, vc, S_, stream_);
        cuda::attention_prefill(q_, kc, vc, m, H, KV, D, S_, pos_, att_, stream_);
      }
      linear(l.o, att_, m, H * D, h_, hid);  // residual add: o_proj accumulates into h
      cuda::rmsnorm(h_, hid, m, hid, l.post_norm, cfg_.rms_norm_eps, xn_, hid, stream_, gu_, (size_t)m * 2 * I);
      linear(l.gate_up, xn_, m, hid, gu_, 2 * I);
      if (m <= cuda::kGemvMaxRows && l.down.quantized) {
        // SiLU(gate) * up fused into the staging
        cuda::gemv_q4(l.down.q, gu_, cuda::GemvInput::SiluGateUp, m, 2 * I, h_, hid, stream_);
      } else {
        cuda::silu_mul(gu_, m, I, act_, stream_);
        linear(l.down, act_, m, I, h_, hid);
      }
    }
  }

  // Whether a step of m rows takes enqueue_decode_layers.
  bool decode_fused(int m) const { return m <= cuda::kGemvMaxRows && all_quantized_; }

  // Decode with the RMSNorms folded into the GEMVs, 5 kernels per layer: q/k/v (normalizing h while staging),
  // attention (RoPE + KV write + split combine), o_proj (adds into h and sums each row's squares), gate/up
  // (normalizing), down (SiLU-gate while staging; adds into h and sums squares). Every buffer a kernel
  // accumulates into is zeroed by an earlier kernel that runs after the buffer's last reader.
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
    const int splits = cuda::attention_splits(m, H, S_);
    float* attn_sum_sq = row_sum_sq_;                    // h's row sums of squares before attention
    float* mlp_sum_sq = row_sum_sq_ + cuda::kGemvMaxRows;  // ... and before the MLP
    cuda::embed_rows(embed_, tokens_, m, hid, h_, stream_, attn_sum_sq, {qkv_, qkv_floats}, {mlp_sum_sq, (size_t)m});
    for (size_t li = 0; li < layers_.size(); ++li) {
      const GpuLayer& l = layers_[li];
      cuda::GemvFusion qkv;
      qkv.in_sum_sq = attn_sum_sq, qkv.in_norm = l.input_norm, qkv.eps = cfg_.rms_norm_eps;
      qkv.zero[0] = {gu_, (size_t)m * 2 * I};  // down_proj (previous layer) has read it
      cuda::gemv_q4(l.qkv.q, h_, cuda::GemvInput::RmsNorm, m, hid, qkv_, (H + 2 * KV) * D, stream_, {}, qkv);
      cuda::attention_rope(qkv_, inv_freq_, kcache_ + li * layer_elems, vcache_ + li * layer_elems, m, H, KV, D, S_,
                           pos_, splits, work_, attn_done_, att_, stream_);
      cuda::GemvFusion o;
      o.out_sum_sq = mlp_sum_sq, o.col_done = col_done_;
      o.zero[0] = {qkv_, qkv_floats};            // attention has read it
      o.zero[1] = {attn_sum_sq, (size_t)m};      // q/k/v has read it; down_proj sums into it
      cuda::gemv_q4(l.o.q, att_, cuda::GemvInput::Half, m, H * D, h_, hid, stream_, {}, o);
      cuda::GemvFusion gate_up;
      gate_up.in_sum_sq = mlp_sum_sq, gate_up.in_norm = l.post_norm, gate_up.eps = cfg_.rms_norm_eps;
      cuda::gemv_q4(l.gate_up.q, h_, cuda::GemvInput::RmsNorm, m, hid, gu_, 2 * I, stream_, {}, gate_up);
      cuda::GemvFusion down;
      down.out_sum_sq = attn_sum_sq, down.col_done = col_done_;
      down.zero[0] = {mlp_sum_sq, (size_t)m};  // gate/up has read it; the next o_proj sums into it
      cuda::gemv_q4(l.down.q, gu_, cuda::GemvInput::SiluGateUp, m, 2 * I, h_, hid, stream_, {}, down);
    }
  }

  // The persistent one-row decode kernel's plan: per-layer descriptors on the device, its counters, and the
  // launch shape. Models it can't run (mixed layer shapes, a dense layer, too little shared memory) keep the
  // 5-kernel path (step_ready_ false).
  void prepare_decode_step() {
    if (!all_quantized_) return;
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

  // Final norm + lm_head for rows [r0, r0 + nr) of an m-row step into logits_ rows [0, nr). After
  // enqueue_decode_layers the last down_proj has left h's row sums of squares: a dense lm_head normalizes
  // while staging and writes the logits (no norm kernel, no zeroing).
  void enqueue_logits(int m, int r0, int nr) {
    const int hid = cfg_.hidden_size;
    const float* h = h_ + (size_t)r0 * hid;
    if (decode_fused(m) && !lm_head_.quantized && cuda::gemv_f16_rmsnorm_supported(lm_head_.dense, hid, h, hid)) {
      const float* sum_sq = row_sum_sq_ + r0;  // enqueue_decode_layers' attn_sum_sq
      cuda::gemv_f16_rmsnorm(lm_head_.dense, lm_head_.bias, hid, cfg_.vocab_size, h, hid, sum_sq, final_norm_,
                             cfg_.rms_norm_eps, nr, logits_, cfg_.vocab_size, stream_);
      return;
    }
    cuda::rmsnorm(h, hid, nr, hid, final_norm_, cfg_.rms_norm_eps, xn_, hid, stream_, logits_,
                  (size_t)nr * cfg_.vocab_size);
    linear(lm_head_, xn_, nr, hid, logits_, cfg_.vocab_size);
  }

  ModelConfig cfg_;
  BackendOptions opt_;
  DeviceMemory mem_;  // declared before everything that points into it
  cudaStream_t stream_ = nullptr;
#ifdef XLLAMA_HAVE_CUBLAS
  cublasHandle_t cublas_ = nullptr;
#endif
  size_t weight_bytes_ = 0, kv_bytes_ = 0, scratch_bytes_ = 0;

  const __half* embed_ = nullptr;
  const __half* final_norm_ = nullptr;
  std::vector<GpuLayer> layers_;
  GpuLinear lm_head_;

  int S_ = 0, rows_ = 0, cache_len_ = 0;
  __half *kcache_ = nullptr, *vcache_ = nullptr;
  float *h_ = nullptr, *qkv_ = nullptr, *gu_ = nullptr, *work_ = nullptr, *logits_ = nullptr, *inv_freq_ = nullptr;
  __half *xn_ = nullptr, *q_ = nullptr, *att_ = nullptr, *act_ = nullptr, *xperm_ = nullptr, *deq_ = nullptr;
  size_t deq_halves_ = 0;
  int *tokens_ = nullptr, *pos_ = nullptr, *token_out_ = nullptr;
  unsigned* attn_done_ = nullptr;  // decode attention's per-(row, head) split counters
  unsigned* col_done_ = nullptr;   // decode GEMVs' per-column-slice counters (GemvFusion::col_done)
  float* row_sum_sq_ = nullptr;    // [2][kGemvMaxRows]: h's row sums of squares for the fused RMSNorms
  bool all_quantized_ = false;     // every layer linear is 4-bit: decode takes enqueue_decode_layers
  int* host_token_ = nullptr;
  int* host_in_ = nullptr;
  void* host_embed_ = nullptr;  // pinned, GPU-mapped embedding table (untied models)
  cudaEvent_t inputs_copied_ = nullptr;
  int inv_freq_key_ = -1;
  std::vector<float> host_inv_freq_;
  std::map<int, cudaGraphExec_t> graphs_;
  cuda::DecodeStep step_;    // the one-row persistent decode kernel's plan (prepare_decode_step)
  bool step_ready_ = false;
  cuda::WeightUploader* uploader_ = nullptr;  // during load_checkpoint
  uint32_t* permute_scratch_ = nullptr;       // during load_checkpoint (act-order layers)
  size_t permute_scratch_words_ = 0;

};

// XLLAMA_VERBOSE=1 (xllama --verbose): where a checkpoint load's time went, on stderr.
bool verbose_load() {
  const char* v = std::getenv("XLLAMA_VERBOSE");
  return v && *v && *v != '0';
}

}  // namespace

std::unique_ptr<Backend> create_cuda_backend(const ModelConfig& config, const GptqConfig& gptq,
                                             const ModelWeights& weights, const BackendOptions& options) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto b = std::make_unique<CudaBackend>(config, options);
  const auto t1 = Clock::now();
  const CudaBackend::LoadFigures f = b->load_checkpoint(gptq, weights);
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
    std::fprintf(stderr,
                 "xllama: load: CUDA context and handles %.2f s; weights %.2f GB in %.2f s (%.2f GB/s): reading into "
                 "pinned staging on %d threads %.2f s (%.2f GB/s), waiting for the copy engine %.2f s, last copies "
                 "and GPU repacking %.2f s; KV cache, scratch and decode plan %.2f s\n",
                 s(t0, t1), f.bytes / 1e9, f.total_s, f.bytes / 1e9 / std::max(f.total_s, 1e-9), f.threads, f.read_s,
                 f.bytes / 1e9 / std::max(f.read_s, 1e-9), f.wait_s, f.finish_s, s(t2, t3));
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
