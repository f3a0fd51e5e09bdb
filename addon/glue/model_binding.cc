// Model handles for JS: loadModel / loadDummyModel build a Backend off the JS thread; forward,
// forwardSample run on the libuv pool; the rest are quick synchronous calls. Each handle is an External
// holding a shared_ptr, and every queued job holds its own reference, so closeModel during a forward only
// drops the handle's reference and the model is freed when that forward finishes.
#include <napi.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/kernels.h"
#include "glue/register.h"
#include "loader/mapped_file.h"

#ifdef XLLAMA_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace xllama::glue {
namespace {

// ---- a loaded model ----

struct LoadedModel {
  std::mutex mu;  // one native call per model at a time
  std::vector<std::unique_ptr<MappedFile>> files;         // destroyed after the backend (declared first)
  std::vector<std::unique_ptr<char[]>> aligned_copies;     // tensors whose file offset was misaligned
  std::unique_ptr<Backend> backend;
};

constexpr uint32_t kHandleMagic = 0x786c6d64;  // "xlmd"
struct Handle {
  uint32_t magic = kHandleMagic;
  std::shared_ptr<LoadedModel> model;
};

Napi::Error make_error(Napi::Env env, const std::string& code, std::string message) {
  for (char& c : message) if (c == '\n' || c == '\r') c = ' ';
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

[[noreturn]] void throw_error(Napi::Env env, const std::string& code, const std::string& message) {
  throw make_error(env, code, message);
}

std::shared_ptr<LoadedModel> model_arg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw_error(info.Env(), "bad_input", "expected a model handle");
  Handle* h = info[0].As<Napi::External<Handle>>().Data();
  if (!h || h->magic != kHandleMagic) throw_error(info.Env(), "bad_input", "expected a model handle");
  if (!h->model) throw_error(info.Env(), "closed", "the model has been closed");
  return h->model;
}

// ---- running work off the JS thread ----

// Runs `run` on the libuv pool and settles a promise: `done` builds the value on the JS thread, errors
// become rejected Errors with a `code` (BackendError's code, or out_of_memory / internal).
class PromiseTask : public Napi::AsyncWorker {
 public:
  PromiseTask(Napi::Env env, std::function<void()> run, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), run_(std::move(run)), done_(std::move(done)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      run_();
    } catch (const BackendError& e) {
      code_ = e.code.empty() ? "internal" : e.code;
      message_ = e.what();
    } catch (const std::bad_alloc&) {
      code_ = "out_of_memory";
      message_ = "out of host memory";
    } catch (const std::exception& e) {
      code_ = "internal";
      message_ = e.what();
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (!code_.empty()) {
      deferred_.Reject(make_error(env, code_, message_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> run_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::string code_, message_;
};

Napi::Promise queue(Napi::Env env, std::function<void()> run, std::function<Napi::Value(Napi::Env)> done) {
  auto* task = new PromiseTask(env, std::move(run), std::move(done));  // deletes itself when settled
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

// ---- reading the JS ModelSpec ----

struct TensorRef {
  std::string file;
  uint64_t offset = 0, bytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

struct LoadRequest {
  ModelConfig config;
  GptqConfig gptq;
  int raw_group_size = 128;
  std::map<std::string, TensorRef> tensors;
  std::string backend = "cpu";
  BackendOptions options;
};

Napi::Value field(Napi::Object o, const char* key, const char* where) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) throw_error(o.Env(), "bad_model", std::string(where) + " has no '" + key + "'");
  return v;
}
double num(Napi::Object o, const char* key, const char* where) {
  Napi::Value v = field(o, key, where);
  if (!v.IsNumber()) throw_error(o.Env(), "bad_model", std::string(where) + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
double num_or(Napi::Object o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}
std::string str(Napi::Object o, const char* key, const char* where) {
  Napi::Value v = field(o, key, where);
  if (!v.IsString()) throw_error(o.Env(), "bad_model", std::string(where) + "." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

DType parse_dtype(Napi::Env env, const std::string& s, const std::string& tensor) {
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  if (s == "F32") return DType::F32;
  if (s == "I32") return DType::I32;
  throw_error(env, "bad_model", "tensor " + tensor + " has unsupported dtype " + s);
}

void parse_options(Napi::Env env, Napi::Value v, LoadRequest& req) {
  if (!v.IsObject()) return;
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value b = o.Get("backend");
  if (b.IsString()) req.backend = b.As<Napi::String>().Utf8Value();
  if (req.backend != "cpu" && req.backend != "cuda") throw_error(env, "bad_input", "unknown backend '" + req.backend + "'");
  req.options.max_seq_len = static_cast<int>(num_or(o, "maxSeqLen", 0));
  req.options.threads = static_cast<int>(num_or(o, "threads", 0));
  req.options.device = static_cast<int>(num_or(o, "device", 0));
  req.options.max_chunk_tokens = static_cast<int>(num_or(o, "maxChunkTokens", kDefaultChunkTokens));
  if (req.options.max_seq_len < 0 || req.options.threads < 0 || req.options.device < 0 || req.options.max_chunk_tokens <= 0) {
    throw_error(env, "bad_input", "maxSeqLen, threads, device must be >= 0 and maxChunkTokens > 0");
  }
  Napi::Value sv = o.Get("stages");
  if (sv.IsArray()) {
    Napi::Array stages = sv.As<Napi::Array>();
    for (uint32_t i = 0; i < stages.Length(); ++i) {
      Napi::Value e = stages.Get(i);
      if (!e.IsObject()) throw_error(env, "bad_input", "stages[" + std::to_string(i) + "] must be an object");
      Napi::Object so = e.As<Napi::Object>();
      StagePlan st;
      st.device = static_cast<int>(num(so, "device", "stage"));
      st.first_layer = static_cast<int>(num(so, "firstLayer", "stage"));
      st.end_layer = static_cast<int>(num(so, "endLayer", "stage"));
      req.options.stages.push_back(st);
    }
  }
}

LoadRequest parse_spec(Napi::Env env, Napi::Value spec_value, Napi::Value options) {
  if (!spec_value.IsObject()) throw_error(env, "bad_model", "loadModel expects a model spec object");
  Napi::Object spec = spec_value.As<Napi::Object>();
  LoadRequest req;
  Napi::Value arch_v = field(spec, "arch", "spec");
  if (!arch_v.IsObject()) throw_error(env, "bad_model", "spec.arch must be an object");
  Napi::Object a = arch_v.As<Napi::Object>();
  ModelConfig& c = req.config;
  c.vocab_size = static_cast<int>(num(a, "vocabSize", "arch"));
  c.hidden_size = static_cast<int>(num(a, "hiddenSize", "arch"));
  c.intermediate_size = static_cast<int>(num(a, "intermediateSize", "arch"));
  c.num_layers = static_cast<int>(num(a, "numLayers", "arch"));
  c.num_heads = static_cast<int>(num(a, "numHeads", "arch"));
  c.num_kv_heads = static_cast<int>(num(a, "numKvHeads", "arch"));
  c.head_dim = static_cast<int>(num(a, "headDim", "arch"));
  c.max_position_embeddings = static_cast<int>(num(a, "maxPositionEmbeddings", "arch"));
  c.rms_norm_eps = static_cast<float>(num(a, "rmsNormEps", "arch"));
  c.rope.theta = static_cast<float>(num(a, "ropeTheta", "arch"));
  c.tie_word_embeddings = a.Get("tieWordEmbeddings").ToBoolean();
  Napi::Value rs = a.Get("ropeScaling");
  if (rs.IsObject()) {
    Napi::Object r = rs.As<Napi::Object>();
    const std::string type = str(r, "type", "arch.ropeScaling");
    c.rope.factor = static_cast<float>(num(r, "factor", "arch.ropeScaling"));
    if (type == "linear") {
      c.rope.type = RopeType::Linear;
    } else if (type == "dynamic") {
      c.rope.type = RopeType::Dynamic;
      c.rope.original_max_position = static_cast<int>(num_or(r, "originalMaxPositionEmbeddings", c.max_position_embeddings));
    } else if (type == "llama3") {
      c.rope.type = RopeType::Llama3;
      c.rope.low_freq_factor = static_cast<float>(num_or(r, "lowFreqFactor", 1.0));
      c.rope.high_freq_factor = static_cast<float>(num_or(r, "highFreqFactor", 4.0));
      c.rope.original_max_position = static_cast<int>(num_or(r, "originalMaxPositionEmbeddings", 8192));
    } else {
      throw_error(env, "bad_model", "unsupported rope_scaling type '" + type + "'");
    }
  }
  Napi::Value q = spec.Get("quant");
  if (q.IsObject()) {
    Napi::Object g = q.As<Napi::Object>();
    req.gptq.enabled = true;
    req.gptq.bits = static_cast<int>(num(g, "bits", "quant"));
    req.raw_group_size = static_cast<int>(num(g, "groupSize", "quant"));
    req.gptq.group_size = req.raw_group_size;
    req.gptq.desc_act = g.Get("descAct").ToBoolean();
    req.gptq.sym = g.Get("sym").ToBoolean();
    req.gptq.zero_offset = str(g, "checkpointFormat", "quant") == "gptq_v2" ? 0 : 1;
  }
  Napi::Value tv = field(spec, "tensors", "spec");
  if (!tv.IsObject()) throw_error(env, "bad_model", "spec.tensors must be an object");
  Napi::Object tensors = tv.As<Napi::Object>();
  Napi::Array names = tensors.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value ev = tensors.Get(name);
    if (!ev.IsObject()) throw_error(env, "bad_model", "spec.tensors['" + name + "'] must be an object");
    Napi::Object e = ev.As<Napi::Object>();
    TensorRef t;
    t.file = str(e, "file", "tensor entry");
    t.offset = static_cast<uint64_t>(num(e, "offset", "tensor entry"));
    t.bytes = static_cast<uint64_t>(num(e, "byteLength", "tensor entry"));
    t.dtype = parse_dtype(env, str(e, "dtype", "tensor entry"), name);
    Napi::Value sv = field(e, "shape", "tensor entry");
    if (!sv.IsArray()) throw_error(env, "bad_model", "tensor " + name + " has no shape array");
    Napi::Array shape = sv.As<Napi::Array>();
    for (uint32_t d = 0; d < shape.Length(); ++d) t.shape.push_back(static_cast<int64_t>(shape.Get(d).As<Napi::Number>().Int64Value()));
    req.tensors.emplace(name, std::move(t));
  }
  parse_options(env, options, req);
  return req;
}

// ---- building ModelWeights from HF tensor names (runs off the JS thread) ----

class WeightsBuilder {
 public:
  WeightsBuilder(const LoadRequest& req, LoadedModel& model) : req_(req), model_(model) {}

  TensorView view(const std::string& name, bool required) {
    auto it = req_.tensors.find(name);
    TensorView v;
    if (it == req_.tensors.end()) {
      if (required) throw BackendError("bad_model", "tensor " + name + " is missing from the checkpoint");
      return v;
    }
    const TensorRef& t = it->second;
    v.name = name;
    v.dtype = t.dtype;
    v.shape = t.shape;
    const uint64_t expected = static_cast<uint64_t>(v.numel()) * dtype_size(t.dtype);
    if (t.bytes != expected) {
      throw BackendError("bad_model", "tensor " + name + " holds " + std::to_string(t.bytes) + " bytes, its shape and dtype need " +
                                          std::to_string(expected));
    }
    const void* p = file(t.file).range(t.offset, t.bytes, name);
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(t.dtype) != 0) {  // keep element reads aligned
      std::unique_ptr<char[]> copy(new char[t.bytes]);
      std::memcpy(copy.get(), p, t.bytes);
      p = copy.get();
      model_.aligned_copies.push_back(std::move(copy));
    }
    v.data = p;
    return v;
  }

  bool has(const std::string& name) const { return req_.tensors.count(name) != 0; }

  LinearWeights linear(const std::string& prefix) {
    LinearWeights l;
    if (has(prefix + ".qweight")) {
      l.qweight = view(prefix + ".qweight", true);
      l.qzeros = view(prefix + ".qzeros", true);
      l.scales = view(prefix + ".scales", true);
      l.g_idx = view(prefix + ".g_idx", false);
      if (l.qweight.shape.size() != 2) throw BackendError("bad_model", "tensor " + prefix + ".qweight is not 2-D");
      l.in_features = static_cast<int>(l.qweight.shape[0] * 8);
      l.out_features = static_cast<int>(l.qweight.shape[1]);
      l.group_size = req_.raw_group_size > 0 ? req_.raw_group_size : l.in_features;
    } else {
      l.weight = view(prefix + ".weight", true);
      if (l.weight.shape.size() != 2) throw BackendError("bad_model", "tensor " + prefix + ".weight is not 2-D");
      l.out_features = static_cast<int>(l.weight.shape[0]);
      l.in_features = static_cast<int>(l.weight.shape[1]);
    }
    l.bias = view(prefix + ".bias", false);
    return l;
  }

  ModelWeights build() {
    ModelWeights w;
    w.embed_tokens = view("model.embed_tokens.weight", true);
    w.final_norm = view("model.norm.weight", true);
    if (req_.config.tie_word_embeddings || (!has("lm_head.weight") && !has("lm_head.qweight"))) {
      if (!req_.config.tie_word_embeddings) throw BackendError("bad_model", "tensor lm_head.weight is missing from the checkpoint");
      w.lm_head.weight = w.embed_tokens;
      w.lm_head.out_features = req_.config.vocab_size;
      w.lm_head.in_features = req_.config.hidden_size;
    } else {
      w.lm_head = linear("lm_head");
    }
    for (int i = 0; i < req_.config.num_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      LayerWeights L;
      L.input_norm = view(p + "input_layernorm.weight", true);
      L.post_attention_norm = view(p + "post_attention_layernorm.weight", true);
      L.q = linear(p + "self_attn.q_proj");
      L.k = linear(p + "self_attn.k_proj");
      L.v = linear(p + "self_attn.v_proj");
      L.o = linear(p + "self_attn.o_proj");
      L.gate = linear(p + "mlp.gate_proj");
      L.up = linear(p + "mlp.up_proj");
      L.down = linear(p + "mlp.down_proj");
      w.layers.push_back(std::move(L));
    }
    return w;
  }

 private:
  const MappedFile& file(const std::string& path) {
    auto it = by_path_.find(path);
    if (it != by_path_.end()) return *it->second;
    model_.files.push_back(std::make_unique<MappedFile>(path));
    by_path_[path] = model_.files.back().get();
    return *model_.files.back();
  }

  const LoadRequest& req_;
  LoadedModel& model_;
  std::map<std::string, MappedFile*> by_path_;
};

[[maybe_unused]] const char* kNoCuda = "this build of xllama has no CUDA backend (it was built without a CUDA compiler); use the cpu backend";

Napi::Value wrap_model(Napi::Env env, std::shared_ptr<LoadedModel> model) {
  auto* h = new Handle();
  h->model = std::move(model);
  return Napi::External<Handle>::New(env, h, [](Napi::Env, Handle* p) { delete p; });
}

// ---- exported functions ----

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = std::make_shared<LoadRequest>(parse_spec(env, info[0], info[1]));
  auto model = std::make_shared<LoadedModel>();
  return queue(
      env,
      [req, model] {
        ModelWeights weights = WeightsBuilder(*req, *model).build();
        if (req->backend == "cuda") {
#ifdef XLLAMA_HAVE_CUDA
          model->backend = create_cuda_backend(req->config, req->gptq, weights, req->options);
#else
          throw BackendError("no_cuda", kNoCuda);
#endif
        } else {
          model->backend = create_cpu_backend(req->config, req->gptq, weights, req->options);
        }
      },
      [model](Napi::Env e) { return wrap_model(e, model); });
}

// Dummy models: random GPTQ 4-bit weights of real shapes, group size 128, built on the GPU.
constexpr int kDummyGroupSize = 128;

std::string unknown_dummy(const std::string& name) {
  return "unknown dummy model '" + name + "' (llama-7b, llama-13b, llama3-8b, llama-70b, tiny)";
}

bool dummy_preset(const std::string& name, ModelConfig& c) {
  struct P { const char* name; int hidden, inter, layers, heads, kv, vocab, ctx; float theta; };
  static const P presets[] = {
      {"llama-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f},
      {"llama-13b", 5120, 13824, 40, 40, 40, 32000, 4096, 10000.0f},
      {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f},
      {"llama-70b", 8192, 28672, 80, 64, 8, 32000, 4096, 10000.0f},
      {"tiny", 256, 688, 2, 4, 2, 512, 512, 10000.0f},
  };
  for (const P& p : presets) {
    if (name != p.name) continue;
    c.hidden_size = p.hidden;
    c.intermediate_size = p.inter;
    c.num_layers = p.layers;
    c.num_heads = p.heads;
    c.num_kv_heads = p.kv;
    c.head_dim = p.hidden / p.heads;
    c.vocab_size = p.vocab;
    c.max_position_embeddings = p.ctx;
    c.rope.theta = p.theta;
    return true;
  }
  return false;
}

Napi::Value LoadDummyModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "bad_input", "loadDummyModel expects a preset name");
  auto req = std::make_shared<LoadRequest>();
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!dummy_preset(name, req->config)) throw_error(env, "bad_input", unknown_dummy(name));
  parse_options(env, info[1], *req);
  auto model = std::make_shared<LoadedModel>();
  return queue(
      env,
      [req, model] {
#ifdef XLLAMA_HAVE_CUDA
        model->backend = create_cuda_dummy_backend(req->config, kDummyGroupSize, req->options, 0x5eed);
#else
        throw BackendError("no_cuda", std::string("dummy models run on the GPU only: ") + kNoCuda);
#endif
      },
      [model](Napi::Env e) { return wrap_model(e, model); });
}

std::vector<int32_t> tokens_arg(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw_error(info.Env(), "bad_input", "tokens must be an Int32Array");
  }
  Napi::Int32Array a = info[1].As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

int int_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) throw_error(info.Env(), "bad_input", std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

Napi::Value Forward(const Napi::CallbackInfo& info) {
  auto model = model_arg(info);
  auto tokens = std::make_shared<std::vector<int32_t>>(tokens_arg(info));
  const int pos = int_arg(info, 2, "pos");
  const bool all = info.Length() > 3 && info[3].ToBoolean();
  auto logits = std::make_shared<std::vector<float>>();
  return queue(
      info.Env(),
      [model, tokens, pos, all, logits] {
        std::lock_guard<std::mutex> lock(model->mu);
        const int n = static_cast<int>(tokens->size());
        const size_t vocab = static_cast<size_t>(model->backend->config().vocab_size);
        logits->resize((all ? std::max(n, 1) : 1) * vocab);
        model->backend->forward(tokens->data(), n, pos, all, logits->data());
      },
      [logits](Napi::Env env) {
        Napi::Float32Array out = Napi::Float32Array::New(env, logits->size());
        std::memcpy(out.Data(), logits->data(), logits->size() * sizeof(float));
        return out;
      });
}

Napi::Value ForwardSample(const Napi::CallbackInfo& info) {
  auto model = model_arg(info);
  auto tokens = std::make_shared<std::vector<int32_t>>(tokens_arg(info));
  const int pos = int_arg(info, 2, "pos");
  TokenSampling s;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    s.temperature = static_cast<float>(num_or(o, "temperature", 0));
    s.top_k = static_cast<int>(num_or(o, "topK", 0));
    s.uniform = static_cast<float>(num_or(o, "uniform", 0));
  }
  auto result = std::make_shared<int32_t>(0);
  return queue(
      info.Env(),
      [model, tokens, pos, s, result] {
        std::lock_guard<std::mutex> lock(model->mu);
        *result = model->backend->forward_sample(tokens->data(), static_cast<int>(tokens->size()), pos, s);
      },
      [result](Napi::Env env) { return Napi::Number::New(env, *result); });
}

// score(handle, tokens, pos, targets) -> Float32Array of one NLL per token (0 where the target is < 0).
Napi::Value Score(const Napi::CallbackInfo& info) {
  auto model = model_arg(info);
  auto tokens = std::make_shared<std::vector<int32_t>>(tokens_arg(info));
  const int pos = int_arg(info, 2, "pos");
  if (info.Length() < 4 || !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw_error(info.Env(), "bad_input", "targets must be an Int32Array");
  }
  Napi::Int32Array t = info[3].As<Napi::Int32Array>();
  if (t.ElementLength() != tokens->size()) throw_error(info.Env(), "bad_input", "targets must have one entry per token");
  auto targets = std::make_shared<std::vector<int32_t>>(t.Data(), t.Data() + t.ElementLength());
  auto nll = std::make_shared<std::vector<float>>(tokens->size());
  return queue(
      info.Env(),
      [model, tokens, pos, targets, nll] {
        std::lock_guard<std::mutex> lock(model->mu);
        model->backend->score(tokens->data(), static_cast<int>(tokens->size()), pos, targets->data(), nll->data());
      },
      [nll](Napi::Env env) {
        Napi::Float32Array out = Napi::Float32Array::New(env, nll->size());
        std::memcpy(out.Data(), nll->data(), nll->size() * sizeof(float));
        return out;
      });
}

// Runs a quick call under the model's lock, turning BackendError into a JS error with a code.
template <typename F>
auto locked(const Napi::CallbackInfo& info, F&& f) {
  auto model = model_arg(info);
  std::lock_guard<std::mutex> lock(model->mu);
  try {
    return f(*model->backend);
  } catch (const BackendError& e) {
    throw_error(info.Env(), e.code, e.what());
  }
}

Napi::Value TrimCache(const Napi::CallbackInfo& info) {
  const int n = int_arg(info, 1, "length");
  locked(info, [&](Backend& b) { b.trim_cache(n); return 0; });
  return info.Env().Undefined();
}
Napi::Value CacheLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), locked(info, [](Backend& b) { return b.cache_length(); }));
}
Napi::Value MaxSeqLen(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), locked(info, [](Backend& b) { return b.max_seq_len(); }));
}
Napi::Value BackendName(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), locked(info, [](Backend& b) { return std::string(b.name()); }));
}
Napi::Value VocabSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), locked(info, [](Backend& b) { return b.config().vocab_size; }));
}
// A model's shapes as the loader names them.
Napi::Object shape_object(Napi::Env env, const ModelConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("vocabSize", c.vocab_size);
  o.Set("hiddenSize", c.hidden_size);
  o.Set("intermediateSize", c.intermediate_size);
  o.Set("numLayers", c.num_layers);
  o.Set("numHeads", c.num_heads);
  o.Set("numKvHeads", c.num_kv_heads);
  o.Set("headDim", c.head_dim);
  o.Set("maxPositionEmbeddings", c.max_position_embeddings);
  return o;
}
// The shapes a benchmark needs to count the bytes a token reads (weights and KV cache).
Napi::Value ModelShape(const Napi::CallbackInfo& info) {
  return shape_object(info.Env(), locked(info, [](Backend& b) { return b.config(); }));
}
// A dummy preset's shapes without building it (the GPU split planner sizes it first).
Napi::Value DummyModelShape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "bad_input", "dummyModelShape expects a preset name");
  ModelConfig c;
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!dummy_preset(name, c)) throw_error(env, "bad_input", unknown_dummy(name));
  Napi::Object o = shape_object(env, c);
  o.Set("tieWordEmbeddings", c.tie_word_embeddings);
  o.Set("groupSize", kDummyGroupSize);
  return o;
}
Napi::Value Memory(const Napi::CallbackInfo& info) {
  MemoryReport m = locked(info, [](Backend& b) { return b.memory(); });
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("weightsBytes", static_cast<double>(m.weights_bytes));
  o.Set("kvCacheBytes", static_cast<double>(m.kv_cache_bytes));
  o.Set("scratchBytes", static_cast<double>(m.scratch_bytes));
  Napi::Array devices = Napi::Array::New(info.Env(), m.devices.size());
  for (size_t i = 0; i < m.devices.size(); ++i) {
    const DeviceMemoryReport& d = m.devices[i];
    Napi::Object e = Napi::Object::New(info.Env());
    e.Set("device", d.device);
    e.Set("weightsBytes", static_cast<double>(d.weights_bytes));
    e.Set("kvCacheBytes", static_cast<double>(d.kv_cache_bytes));
    e.Set("scratchBytes", static_cast<double>(d.scratch_bytes));
    devices.Set(static_cast<uint32_t>(i), e);
  }
  o.Set("devices", devices);
  return o;
}

// Drops the handle's reference; a forward in flight keeps its own and frees the model when it ends.
Napi::Value CloseModel(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsExternal()) {
    Handle* h = info[0].As<Napi::External<Handle>>().Data();
    if (h && h->magic == kHandleMagic) h->model.reset();
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterModel(Napi::Env env, Napi::Object exports) {
  exports.Set("loadModel", Napi::Function::New(env, LoadModel, "loadModel"));
  exports.Set("loadDummyModel", Napi::Function::New(env, LoadDummyModel, "loadDummyModel"));
  exports.Set("dummyModelShape", Napi::Function::New(env, DummyModelShape, "dummyModelShape"));
  exports.Set("forward", Napi::Function::New(env, Forward, "forward"));
  exports.Set("forwardSample", Napi::Function::New(env, ForwardSample, "forwardSample"));
  exports.Set("score", Napi::Function::New(env, Score, "score"));
  exports.Set("trimCache", Napi::Function::New(env, TrimCache, "trimCache"));
  exports.Set("cacheLength", Napi::Function::New(env, CacheLength, "cacheLength"));
  exports.Set("maxSeqLen", Napi::Function::New(env, MaxSeqLen, "maxSeqLen"));
  exports.Set("vocabSize", Napi::Function::New(env, VocabSize, "vocabSize"));
  exports.Set("memory", Napi::Function::New(env, Memory, "memory"));
  exports.Set("modelShape", Napi::Function::New(env, ModelShape, "modelShape"));
  exports.Set("backendName", Napi::Function::New(env, BackendName, "backendName"));
  exports.Set("closeModel", Napi::Function::New(env, CloseModel, "closeModel"));
  exports.Set("cpuKernels", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::String::New(info.Env(), cpu::kernels().name);
  }, "cpuKernels"));
}

}  // namespace xllama::glue
