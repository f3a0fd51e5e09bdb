#include "glue/load_request.h"

#include "glue/napi_errors.h"

namespace xllama::glue {
namespace {

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

}  // namespace

double num_or(Napi::Object o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
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

void parse_arch(Napi::Env env, Napi::Value arch, ModelConfig& c) {
  if (!arch.IsObject()) throw_error(env, "bad_model", "spec.arch must be an object");
  Napi::Object a = arch.As<Napi::Object>();
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
    } else if (type == "yarn") {  // the TypeScript loader resolves every default (cli/engine/loader/config.ts)
      c.rope.type = RopeType::Yarn;
      c.rope.original_max_position = static_cast<int>(num(r, "originalMaxPositionEmbeddings", "arch.ropeScaling"));
      c.rope.attention_factor = static_cast<float>(num(r, "attentionFactor", "arch.ropeScaling"));
      c.rope.beta_fast = static_cast<float>(num(r, "betaFast", "arch.ropeScaling"));
      c.rope.beta_slow = static_cast<float>(num(r, "betaSlow", "arch.ropeScaling"));
      c.rope.truncate = r.Get("truncate").ToBoolean();
    } else {
      throw_error(env, "bad_model", "unsupported rope_scaling type '" + type + "'");
    }
  }
}

LoadRequest parse_load_request(Napi::Env env, Napi::Value spec_value, Napi::Value options) {
  if (!spec_value.IsObject()) throw_error(env, "bad_model", "loadModel expects a model spec object");
  Napi::Object spec = spec_value.As<Napi::Object>();
  LoadRequest req;
  parse_arch(env, field(spec, "arch", "spec"), req.checkpoint.config);
  Napi::Value q = spec.Get("quant");
  if (q.IsObject()) {
    Napi::Object g = q.As<Napi::Object>();
    req.gptq.enabled = true;
    req.gptq.bits = static_cast<int>(num(g, "bits", "quant"));
    req.checkpoint.raw_group_size = static_cast<int>(num(g, "groupSize", "quant"));
    req.gptq.group_size = req.checkpoint.raw_group_size;
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
    req.checkpoint.tensors.emplace(name, std::move(t));
  }
  parse_options(env, options, req);
  return req;
}

}  // namespace xllama::glue
