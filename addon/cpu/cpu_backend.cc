// The CPU reference backend: float32 Llama forward (RMSNorm, RoPE, grouped-query attention over a
// float32 KV cache, SiLU-gated MLP) following Hugging Face transformers' LlamaForCausalLM.
#include <algorithm>
#include <cmath>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/model_checks.h"
#include "cpu/kernels.h"
#include "cpu/linear.h"
#include "cpu/rope.h"
#include "cpu/thread_pool.h"

namespace xllama {
namespace cpu {
namespace {

std::vector<float> norm_weight(const TensorView& t, int size, const std::string& what) {
  if (!t.present()) throw BackendError("bad_model", what + ": tensor is missing");
  if (t.numel() != size || t.shape.size() != 1) {
    throw BackendError("bad_model", "tensor " + t.name + " should hold " + std::to_string(size) + " values");
  }
  std::vector<float> out(size);
  to_f32(t.data, t.dtype, size, out.data());
  return out;
}

// HF LlamaRMSNorm in float32: w * (x * rsqrt(mean(x²) + eps)).
void rms_norm(const float* x, const float* w, int dim, float eps, float* out) {
  float ss = 0.0f;
  for (int i = 0; i < dim; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  for (int i = 0; i < dim; ++i) out[i] = w[i] * (x[i] * inv);
}

struct CpuLayer {
  std::vector<float> input_norm, post_norm;
  CpuLinear q, k, v, o, gate, up, down;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelConfig& config, const GptqConfig& gptq, const ModelWeights& weights,
             const BackendOptions& options);

  const char* name() const override { return "cpu"; }
  const ModelConfig& config() const override { return cfg_; }
  void forward(const int32_t* tokens, int n, int pos, bool all_logits, float* out) override;
  void trim_cache(int length) override;
  int cache_length() const override { return cache_len_; }
  int max_seq_len() const override { return max_seq_; }
  MemoryReport memory() const override { return mem_; }

 private:
  // rope_seq_len: largest position + 1 of the whole forward call (dynamic NTK scales by it, as HF does).
  void forward_chunk(const int32_t* tokens, int n, int pos, int rope_seq_len, bool all_logits, float* out);
  void attention(int layer, int n, int pos);

  ModelConfig cfg_;
  int q_dim_ = 0, kv_dim_ = 0, max_seq_ = 0, chunk_ = 0;
  TensorView embed_;
  std::vector<float> final_norm_;
  std::vector<CpuLayer> layers_;
  CpuLinear lm_head_;
  std::vector<float> inv_freq_;  // for every rope type but dynamic
  std::unique_ptr<float[]> k_cache_, v_cache_;  // [layer][position][kv_dim]
  int cache_len_ = 0;
  // Scratch for one chunk of at most chunk_ tokens.
  std::vector<float> x_, h_, q_, k_, v_, att_, gate_, up_, cos_, sin_;
  MemoryReport mem_;
  ThreadPool pool_;
};

CpuBackend::CpuBackend(const ModelConfig& c, const GptqConfig& gptq, const ModelWeights& w, const BackendOptions& opt)
    : cfg_(c), pool_(opt.threads) {
  check_model_config(c);
  check_layer_count(c, w);
  if (!opt.stages.empty()) throw BackendError(kBadInput, "a GPU layer split (stages) needs the cuda backend, not the cpu one");
  if (opt.max_seq_len < 0) throw BackendError("bad_input", "max_seq_len must be positive");
  max_seq_ = opt.max_seq_len > 0 ? opt.max_seq_len : c.max_position_embeddings;
  if (max_seq_ <= 0) throw BackendError("bad_input", "max_seq_len is 0 and the model has no max_position_embeddings");
  chunk_ = std::max(1, std::min(opt.max_chunk_tokens > 0 ? opt.max_chunk_tokens : kDefaultChunkTokens, max_seq_));
  q_dim_ = c.num_heads * c.head_dim;
  kv_dim_ = c.num_kv_heads * c.head_dim;
  const int H = c.hidden_size;

  embed_ = w.embed_tokens;
  if (!embed_.present() || embed_.shape != std::vector<int64_t>{c.vocab_size, H} || embed_.dtype == DType::I32) {
    throw BackendError("bad_model", "tensor model.embed_tokens.weight is missing or not [vocab_size, hidden_size]");
  }
  final_norm_ = norm_weight(w.final_norm, H, "model.norm.weight");
  size_t wbytes = embed_.numel() * dtype_size(embed_.dtype) + H * dtype_size(w.final_norm.dtype);

  auto check_dims = [](const CpuLinear& l, int in, int out, const std::string& what) {
    if (l.in() != in || l.out() != out) {
      throw BackendError("bad_model", what + " is " + std::to_string(l.out()) + "x" + std::to_string(l.in()) +
                                          ", expected " + std::to_string(out) + "x" + std::to_string(in));
    }
  };
  layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& lw = w.layers[i];
    CpuLayer& L = layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    L.input_norm = norm_weight(lw.input_norm, H, p + "input_layernorm.weight");
    L.post_norm = norm_weight(lw.post_attention_norm, H, p + "post_attention_layernorm.weight");
    L.q = CpuLinear(lw.q, gptq, p + "self_attn.q_proj");
    L.k = CpuLinear(lw.k, gptq, p + "self_attn.k_proj");
    L.v = CpuLinear(lw.v, gptq, p + "self_attn.v_proj");
    L.o = CpuLinear(lw.o, gptq, p + "self_attn.o_proj");
    L.gate = CpuLinear(lw.gate, gptq, p + "mlp.gate_proj");
    L.up = CpuLinear(lw.up, gptq, p + "mlp.up_proj");
    L.down = CpuLinear(lw.down, gptq, p + "mlp.down_proj");
    check_dims(L.q, H, q_dim_, p + "self_attn.q_proj");
    check_dims(L.k, H, kv_dim_, p + "self_attn.k_proj");
    check_dims(L.v, H, kv_dim_, p + "self_attn.v_proj");
    check_dims(L.o, q_dim_, H, p + "self_attn.o_proj");
    // GPTQ checkpoints may pad the MLP (e.g. 172 -> 192), so the intermediate width comes from the weights.
    check_dims(L.gate, H, L.gate.out(), p + "mlp.gate_proj");
    check_dims(L.up, H, L.gate.out(), p + "mlp.up_proj");
    check_dims(L.down, L.gate.out(), H, p + "mlp.down_proj");
    wbytes += 2 * H * dtype_size(lw.input_norm.dtype);
    for (const CpuLinear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) wbytes += l->weight_bytes();
  }
  LinearWeights head = w.lm_head;
  if (!head.weight.present() && !head.quantized()) {  // tied: the output projection is embed_tokens
    head.weight = embed_;
    head.in_features = H;
    head.out_features = c.vocab_size;
  }
  lm_head_ = CpuLinear(head, gptq, "lm_head");
  check_dims(lm_head_, H, c.vocab_size, "lm_head");
  if (head.weight.data != embed_.data) wbytes += lm_head_.weight_bytes();
  if (c.rope.type != RopeType::Dynamic) inv_freq_ = rope_inv_freq(c.rope, c.head_dim, c.max_position_embeddings, 0);

  int max_inter = 0;
  for (const CpuLayer& L : layers_) max_inter = std::max(max_inter, L.gate.out());
  const size_t cache_elems = static_cast<size_t>(c.num_layers) * max_seq_ * kv_dim_;
  k_cache_.reset(new (std::nothrow) float[cache_elems]);
  v_cache_.reset(new (std::nothrow) float[cache_elems]);
  if (!k_cache_ || !v_cache_) {
    throw BackendError("out_of_memory", "could not allocate a " + std::to_string(cache_elems * 8 >> 20) +
                                            " MiB KV cache for " + std::to_string(max_seq_) +
                                            " positions; lower the maximum sequence length");
  }
  try {
    x_.resize(static_cast<size_t>(chunk_) * H);
    h_.resize(static_cast<size_t>(chunk_) * H);
    q_.resize(static_cast<size_t>(chunk_) * q_dim_);
    att_.resize(static_cast<size_t>(chunk_) * q_dim_);
    k_.resize(static_cast<size_t>(chunk_) * kv_dim_);
    v_.resize(static_cast<size_t>(chunk_) * kv_dim_);
    gate_.resize(static_cast<size_t>(chunk_) * max_inter);
    up_.resize(static_cast<size_t>(chunk_) * max_inter);
    cos_.resize(static_cast<size_t>(chunk_) * c.head_dim / 2);
    sin_.resize(static_cast<size_t>(chunk_) * c.head_dim / 2);
  } catch (const std::bad_alloc&) {
    throw BackendError("out_of_memory", "could not allocate scratch memory for " + std::to_string(chunk_) +
                                            " tokens per chunk; lower the chunk size");
  }
  mem_.weights_bytes = wbytes;
  mem_.kv_cache_bytes = cache_elems * 2 * sizeof(float);
  mem_.scratch_bytes = (x_.size() + h_.size() + q_.size() + att_.size() + k_.size() + v_.size() + gate_.size() +
                        up_.size() + cos_.size() + sin_.size()) * sizeof(float);
  mem_.devices = {{-1, mem_.weights_bytes, mem_.kv_cache_bytes, mem_.scratch_bytes}};
}

void CpuBackend::trim_cache(int length) {
  if (length < 0) throw BackendError("bad_input", "cannot trim the KV cache to a negative length");
  cache_len_ = std::min(cache_len_, length);
}

void CpuBackend::forward(const int32_t* tokens, int n, int pos, bool all_logits, float* out) {
  if (n <= 0) throw BackendError("bad_input", "forward needs at least one token");
  if (pos < 0 || pos > cache_len_) {
    throw BackendError("bad_input", "position " + std::to_string(pos) + " is past the " + std::to_string(cache_len_) +
                                        " positions held in the KV cache");
  }
  if (static_cast<int64_t>(pos) + n > max_seq_) {
    throw BackendError("context_full", std::to_string(pos) + " cached + " + std::to_string(n) +
                                           " new tokens exceed the maximum sequence length of " + std::to_string(max_seq_));
  }
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size) {
      throw BackendError("bad_input", "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                          " is outside the vocabulary (0.." + std::to_string(cfg_.vocab_size - 1) + ")");
    }
  }
  cache_len_ = pos;
  for (int start = 0; start < n; start += chunk_) {
    const int m = std::min(chunk_, n - start);
    const bool last = start + m == n;
    if (all_logits) {
      forward_chunk(tokens + start, m, pos + start, pos + n, true, out + static_cast<int64_t>(start) * cfg_.vocab_size);
    } else {
      forward_chunk(tokens + start, m, pos + start, pos + n, false, last ? out : nullptr);
    }
  }
}

// Causal attention of the chunk's n queries (positions pos..pos+n-1) over cache positions 0..pos+t.
void CpuBackend::attention(int layer, int n, int pos) {
  const Kernels& K = kernels();
  const int hd = cfg_.head_dim, heads = cfg_.num_heads, group = cfg_.num_heads / cfg_.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* kc = k_cache_.get() + static_cast<size_t>(layer) * max_seq_ * kv_dim_;
  const float* vc = v_cache_.get() + static_cast<size_t>(layer) * max_seq_ * kv_dim_;
  const int64_t work_per_item = static_cast<int64_t>(pos + n) * hd * 2;
  pool_.parallel_for(static_cast<int64_t>(n) * heads, std::max<int64_t>(1, 65536 / work_per_item),
                     [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> scores;
    scores.resize(max_seq_);
    for (int64_t item = b; item < e; ++item) {
      const int t = static_cast<int>(item / heads), h = static_cast<int>(item % heads);
      const int kvh = h / group, len = pos + t + 1;
      const float* q = &q_[static_cast<size_t>(t) * q_dim_ + h * hd];
      float mx = -INFINITY;
      for (int j = 0; j < len; ++j) {
        scores[j] = K.dot(q, kc + static_cast<size_t>(j) * kv_dim_ + kvh * hd, hd) * scale;
        mx = std::max(mx, scores[j]);
      }
      float sum = 0.0f;
      for (int j = 0; j < len; ++j) sum += scores[j] = std::exp(scores[j] - mx);
      float* o = &att_[static_cast<size_t>(t) * q_dim_ + h * hd];
      std::fill(o, o + hd, 0.0f);
      for (int j = 0; j < len; ++j) K.axpy(scores[j] / sum, vc + static_cast<size_t>(j) * kv_dim_ + kvh * hd, o, hd);
    }
  });
}

void CpuBackend::forward_chunk(const int32_t* tokens, int n, int pos, int rope_seq_len, bool all_logits, float* out) {
  const int H = cfg_.hidden_size, hd = cfg_.head_dim, half = hd / 2;
  const float eps = cfg_.rms_norm_eps;
  const size_t row_bytes = static_cast<size_t>(H) * dtype_size(embed_.dtype);
  for (int t = 0; t < n; ++t) {
    to_f32(static_cast<const char*>(embed_.data) + row_bytes * tokens[t], embed_.dtype, H, &x_[static_cast<size_t>(t) * H]);
  }
  // Dynamic NTK rescales by the largest position of this forward call, as HF's dynamic_rope_update does.
  const std::vector<float> inv_freq = cfg_.rope.type == RopeType::Dynamic
      ? rope_inv_freq(cfg_.rope, hd, cfg_.max_position_embeddings, rope_seq_len)
      : inv_freq_;
  for (int t = 0; t < n; ++t) {
    rope_cos_sin(inv_freq, cfg_.rope.attention_factor, pos + t, &cos_[static_cast<size_t>(t) * half],
                 &sin_[static_cast<size_t>(t) * half]);
  }

  for (int l = 0; l < cfg_.num_layers; ++l) {
    CpuLayer& L = layers_[l];
    for (int t = 0; t < n; ++t) rms_norm(&x_[static_cast<size_t>(t) * H], L.input_norm.data(), H, eps, &h_[static_cast<size_t>(t) * H]);
    L.q.apply(h_.data(), n, q_.data(), pool_);
    L.k.apply(h_.data(), n, k_.data(), pool_);
    L.v.apply(h_.data(), n, v_.data(), pool_);
    float* kc = k_cache_.get() + (static_cast<size_t>(l) * max_seq_ + pos) * kv_dim_;
    float* vc = v_cache_.get() + (static_cast<size_t>(l) * max_seq_ + pos) * kv_dim_;
    for (int t = 0; t < n; ++t) {
      const float* c = &cos_[static_cast<size_t>(t) * half];
      const float* s = &sin_[static_cast<size_t>(t) * half];
      apply_rope(&q_[static_cast<size_t>(t) * q_dim_], cfg_.num_heads, hd, c, s);
      apply_rope(&k_[static_cast<size_t>(t) * kv_dim_], cfg_.num_kv_heads, hd, c, s);
    }
    std::copy(k_.begin(), k_.begin() + static_cast<size_t>(n) * kv_dim_, kc);
    std::copy(v_.begin(), v_.begin() + static_cast<size_t>(n) * kv_dim_, vc);
    attention(l, n, pos);
    L.o.apply(att_.data(), n, h_.data(), pool_);
    for (size_t i = 0; i < static_cast<size_t>(n) * H; ++i) x_[i] += h_[i];

    for (int t = 0; t < n; ++t) rms_norm(&x_[static_cast<size_t>(t) * H], L.post_norm.data(), H, eps, &h_[static_cast<size_t>(t) * H]);
    const int I = L.gate.out();
    L.gate.apply(h_.data(), n, gate_.data(), pool_);
    L.up.apply(h_.data(), n, up_.data(), pool_);
    for (size_t i = 0; i < static_cast<size_t>(n) * I; ++i) {
      const float g = gate_[i];
      gate_[i] = g / (1.0f + std::exp(-g)) * up_[i];
    }
    L.down.apply(gate_.data(), n, h_.data(), pool_);
    for (size_t i = 0; i < static_cast<size_t>(n) * H; ++i) x_[i] += h_[i];
  }
  cache_len_ = pos + n;
  if (!out) return;
  const int first = all_logits ? 0 : n - 1, rows = n - first;
  for (int t = first; t < n; ++t) rms_norm(&x_[static_cast<size_t>(t) * H], final_norm_.data(), H, eps, &h_[static_cast<size_t>(t - first) * H]);
  lm_head_.apply(h_.data(), rows, out, pool_);
}

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> create_cpu_backend(const ModelConfig& config, const GptqConfig& gptq,
                                            const ModelWeights& weights, const BackendOptions& options) {
  return std::make_unique<cpu::CpuBackend>(config, gptq, weights, options);
}

}  // namespace xllama
