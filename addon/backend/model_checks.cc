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

}  // namespace xllama
