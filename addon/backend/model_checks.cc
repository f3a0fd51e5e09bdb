#include "backend/model_checks.h"

#include <string>

namespace xllama {

void check_model_config(const ModelConfig& c) {
  auto positive = [](int v, const char* field) {
    if (v <= 0) throw BackendError(kBadModel, std::string("config.json: ") + field + " must be positive (got " + std::to_string(v) + ")");
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.num_layers, "num_hidden_layers");
  positive(c.num_heads, "num_attention_heads");
  positive(c.num_kv_heads, "num_key_value_heads");
  positive(c.head_dim, "head_dim");
  if (c.num_heads % c.num_kv_heads != 0) {
    throw BackendError(kBadModel, "config.json: num_attention_heads (" + std::to_string(c.num_heads) +
                                      ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_kv_heads) + ")");
  }
  if (c.head_dim % 2 != 0) {
    throw BackendError(kBadModel, "config.json: head_dim must be even for RoPE (got " + std::to_string(c.head_dim) + ")");
  }
}

void check_layer_count(const ModelConfig& c, const ModelWeights& weights) {
  if (static_cast<int>(weights.layers.size()) != c.num_layers) {
    throw BackendError(kBadModel, "the checkpoint has " + std::to_string(weights.layers.size()) +
                                      " layers of weights, config.json's num_hidden_layers says " + std::to_string(c.num_layers));
  }
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

void check_tensor(const TensorView& t, const std::string& what, std::initializer_list<DType> dtypes,
                   const std::vector<int64_t>& shape) {
  if (!t.present()) throw BackendError(kBadModel, what + ": tensor is missing");
  bool dtype_ok = false;
  for (DType d : dtypes) dtype_ok = dtype_ok || d == t.dtype;
  if (!dtype_ok) throw BackendError(kBadModel, "tensor " + t.name + " has unsupported dtype " + dtype_name(t.dtype));
  if (t.shape != shape) {
    throw BackendError(kBadModel, "tensor " + t.name + " has shape " + shape_str(t.shape) + ", expected " +
                                      shape_str(shape));
  }
}

void check_gptq_linear(const LinearWeights& l, const std::string& what) {
  const int in = l.in_features, out = l.out_features;
  if (in <= 0 || out <= 0) throw BackendError(kBadModel, what + ": bad shape");
  if (in % 8 || out % 8) {
    throw BackendError(kBadModel, what + ": GPTQ in/out features (" + std::to_string(in) + ", " + std::to_string(out) +
                                      ") must be multiples of 8");
  }
  const int64_t groups = l.scales.present() && !l.scales.shape.empty() ? l.scales.shape[0] : 0;
  check_tensor(l.qweight, what + ".qweight", {DType::I32}, {in / 8, out});
  check_tensor(l.scales, what + ".scales", {DType::F16, DType::BF16, DType::F32}, {groups, out});
  check_tensor(l.qzeros, what + ".qzeros", {DType::I32}, {groups, out / 8});
  if (groups <= 0) throw BackendError(kBadModel, "tensor " + l.scales.name + " has no groups");
  if (l.g_idx.present()) {
    check_tensor(l.g_idx, what + ".g_idx", {DType::I32}, {in});
    const int32_t* g = static_cast<const int32_t*>(l.g_idx.data);
    for (int k = 0; k < in; ++k) {
      if (g[k] < 0 || g[k] >= groups) {
        throw BackendError(kBadModel, "tensor " + l.g_idx.name + " maps row " + std::to_string(k) + " to group " +
                                          std::to_string(g[k]) + " of " + std::to_string(groups));
      }
    }
  } else if (l.group_size <= 0 || (int64_t)(in - 1) / l.group_size >= groups) {
    throw BackendError(kBadModel, "tensor " + l.scales.name + " has " + std::to_string(groups) +
                                      " groups, too few for group size " + std::to_string(l.group_size));
  }
}

}  // namespace xllama
