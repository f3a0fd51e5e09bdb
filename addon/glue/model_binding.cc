// Model handles for JS: loadModel / loadDummyModel build a Backend off the JS thread (the request is parsed
// in load_request.cc, the weights found by name in loader/hf_checkpoint.cc); forward, score,
// forwardSample run on the libuv pool; the rest are quick synchronous calls. Each handle is an External
// holding a shared_ptr, and every queued job holds its own reference, so closeModel during a forward only
// drops the handle's reference and the model is freed when that forward finishes.
#include <napi.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/kernels.h"
#include "glue/load_request.h"
#include "glue/napi_errors.h"
#include "glue/register.h"
#include "backend/verbose_load.h"
#include "loader/checkpoint_read_ahead.h"
#include "loader/hf_checkpoint.h"
#include "loader/page_hints.h"

#ifdef XLLAMA_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace xllama::glue {
namespace {

// ---- a loaded model ----

struct LoadedModel {
  std::mutex mu;  // one native call per model at a time
  CheckpointMemory checkpoint;  // mapped files the weights point into: destroyed after the backend
  std::unique_ptr<Backend> backend;
};

constexpr uint32_t kHandleMagic = 0x786c6d64;  // "xlmd"
struct Handle {
  uint32_t magic = kHandleMagic;
  std::shared_ptr<LoadedModel> model;
};

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

[[maybe_unused]] const char* kNoCuda = "this build of xllama has no CUDA backend (it was built without a CUDA compiler); use the cpu backend";

Napi::Value wrap_model(Napi::Env env, std::shared_ptr<LoadedModel> model) {
  auto* h = new Handle();
  h->model = std::move(model);
  return Napi::External<Handle>::New(env, h, [](Napi::Env, Handle* p) { delete p; });
}

// ---- exported functions ----

// ---- the checkpoint read-ahead of a load (loader/checkpoint_read_ahead.h) ----

constexpr uint32_t kReadAheadMagic = 0x786c7261;  // "xlra"
struct ReadAheadHandle {
  uint32_t magic = kReadAheadMagic;
  std::shared_ptr<CheckpointReadAhead> read_ahead;
};

std::shared_ptr<CheckpointReadAhead> read_ahead_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsExternal()) return nullptr;
  ReadAheadHandle* h = info[i].As<Napi::External<ReadAheadHandle>>().Data();
  return h && h->magic == kReadAheadMagic ? h->read_ahead : nullptr;
}

// startReadAhead(spec, gpu) → a handle, or undefined (a window of 0, or a system without fadvise): the disk
// starts on the checkpoint now, before the GPU query and the placement; loadModel takes the handle and tells it
// how far the backend has come. gpu: the load may start the CUDA driver (the window is then on by default). A
// spec loadModel would refuse starts nothing (loadModel says why).
Napi::Value StartReadAhead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef XLLAMA_HAVE_CUDA
  const bool gpu = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
#else
  const bool gpu = false;
#endif
  const ReadAheadLimits limits = read_ahead_limits(gpu);
  if (limits.window == 0 || !kCanAdviseFile) return env.Undefined();
  LoadRequest req;
  try {
    req = parse_load_request(env, info[0], env.Undefined());
  } catch (const Napi::Error&) {
    return env.Undefined();
  }
  auto* h = new ReadAheadHandle();
  h->read_ahead = std::make_shared<CheckpointReadAhead>(plan_checkpoint_reads(req.checkpoint), limits);
  return Napi::External<ReadAheadHandle>::New(env, h, [](Napi::Env, ReadAheadHandle* p) { delete p; });
}

// stopReadAhead(handle): ends its thread (a load that took the handle has ended it already).
Napi::Value StopReadAhead(const Napi::CallbackInfo& info) {
  if (auto ra = read_ahead_arg(info, 0)) ra->stop();
  return info.Env().Undefined();
}

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = std::make_shared<LoadRequest>(parse_load_request(env, info[0], info[1]));
  auto read_ahead = read_ahead_arg(info, 2);
  auto model = std::make_shared<LoadedModel>();
  return queue(
      env,
      [req, model, read_ahead] {
        struct StopReadAhead {  // whatever happens, the read-ahead ends with the load
          CheckpointReadAhead* ra;
          ~StopReadAhead() {
            if (ra) ra->stop();
          }
        } stop{read_ahead.get()};
        ModelWeights weights = build_hf_weights(req->checkpoint, model->checkpoint);
        if (req->backend == "cuda") {
#ifdef XLLAMA_HAVE_CUDA
          model->backend = create_cuda_backend(req->checkpoint.config, req->gptq, weights, req->options, read_ahead.get());
#else
          throw BackendError("no_cuda", kNoCuda);
#endif
        } else {
          model->backend = create_cpu_backend(req->checkpoint.config, req->gptq, weights, req->options);
        }
        if (read_ahead) {
          read_ahead->stop();
          if (verbose_load()) std::fprintf(stderr, "%s\n", read_ahead->describe().c_str());
        }
      },
      [model](Napi::Env e) { return wrap_model(e, model); });
}

Napi::Value LoadDummyModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto req = std::make_shared<LoadRequest>();
  parse_arch(env, info[0], req->checkpoint.config);  // the shape of a preset (cli/engine/dummy-models.ts)
  const int group_size = info[0].IsObject() ? static_cast<int>(num_or(info[0].As<Napi::Object>(), "groupSize", 0)) : 0;
  if (group_size <= 0 || group_size % 8) throw_error(env, "bad_input", "a dummy model needs groupSize, a positive multiple of 8");
  parse_options(env, info[1], *req);
  auto model = std::make_shared<LoadedModel>();
  return queue(
      env,
      [req, model, group_size] {
#ifdef XLLAMA_HAVE_CUDA
        model->backend = create_cuda_dummy_backend(req->checkpoint.config, group_size, req->options, 0x5eed);
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
  auto sampling_arg = [&](size_t i, TokenSampling& s) {
    if (info.Length() <= i || !info[i].IsObject()) return false;
    Napi::Object o = info[i].As<Napi::Object>();
    s.temperature = static_cast<float>(num_or(o, "temperature", 0));
    s.top_k = static_cast<int>(num_or(o, "topK", 0));
    s.top_p = static_cast<float>(num_or(o, "topP", 1));
    s.min_p = static_cast<float>(num_or(o, "minP", 0));
    s.typical_p = static_cast<float>(num_or(o, "typicalP", 1));
    s.uniform = static_cast<float>(num_or(o, "uniform", 0));
    s.repeat_penalty = num_or(o, "repeatPenalty", 1);
    s.frequency_penalty = num_or(o, "frequencyPenalty", 0);
    s.presence_penalty = num_or(o, "presencePenalty", 0);
    return true;
  };
  TokenSampling s, next;
  sampling_arg(3, s);
  const bool has_next = sampling_arg(4, next);  // the next step's sampling: the backend may start it ahead
  auto result = std::make_shared<int32_t>(0);
  return queue(
      info.Env(),
      [model, tokens, pos, s, next, has_next, result] {
        std::lock_guard<std::mutex> lock(model->mu);
        *result = model->backend->forward_sample(tokens->data(), static_cast<int>(tokens->size()), pos, s,
                                                 has_next ? &next : nullptr);
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
// setTokenHistory(handle, seen, generated): the penalties' history (Backend::set_token_history).
Napi::Value SetTokenHistory(const Napi::CallbackInfo& info) {
  const auto ids = [&](size_t i, const char* what) {
    if (info.Length() <= i || !info[i].IsTypedArray() ||
        info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw_error(info.Env(), "bad_input", std::string(what) + " must be an Int32Array");
    return info[i].As<Napi::Int32Array>();
  };
  Napi::Int32Array seen = ids(1, "seen"), generated = ids(2, "generated");
  locked(info, [&](Backend& b) {
    b.set_token_history(seen.Data(), static_cast<int>(seen.ElementLength()), generated.Data(),
                        static_cast<int>(generated.ElementLength()));
    return 0;
  });
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
  exports.Set("startReadAhead", Napi::Function::New(env, StartReadAhead, "startReadAhead"));
  exports.Set("stopReadAhead", Napi::Function::New(env, StopReadAhead, "stopReadAhead"));
  exports.Set("loadDummyModel", Napi::Function::New(env, LoadDummyModel, "loadDummyModel"));
  exports.Set("forward", Napi::Function::New(env, Forward, "forward"));
  exports.Set("forwardSample", Napi::Function::New(env, ForwardSample, "forwardSample"));
  exports.Set("score", Napi::Function::New(env, Score, "score"));
  exports.Set("trimCache", Napi::Function::New(env, TrimCache, "trimCache"));
  exports.Set("setTokenHistory", Napi::Function::New(env, SetTokenHistory, "setTokenHistory"));
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
