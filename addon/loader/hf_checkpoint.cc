// ModelWeights from a Hugging Face Llama checkpoint: tensor names → views into the mapped safetensors
// files, each checked against its shape, dtype and file bounds. Runs off the JS thread.
#include "loader/hf_checkpoint.h"

#include "backend/model_checks.h"
#include "backend/verbose_load.h"
#include "loader/prefetch.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>

namespace xllama {
namespace {

class WeightsBuilder {
 public:
  WeightsBuilder(const HfCheckpoint& ckpt, CheckpointMemory& memory) : ckpt_(ckpt), memory_(memory) {}

  TensorView view(const std::string& name, bool required) {
    auto it = ckpt_.tensors.find(name);
    TensorView v;
    if (it == ckpt_.tensors.end()) {
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
      memory_.aligned_copies.push_back(std::move(copy));
    }
    v.data = p;
    return v;
  }

  bool has(const std::string& name) const { return ckpt_.tensors.count(name) != 0; }

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
      l.group_size = ckpt_.raw_group_size > 0 ? ckpt_.raw_group_size : l.in_features;
      check_gptq_linear(l, prefix);  // the one check of GPTQ tensors; both backends rely on it
    } else {
      l.weight = view(prefix + ".weight", true);
      if (l.weight.shape.size() != 2) throw BackendError("bad_model", "tensor " + prefix + ".weight is not 2-D");
      l.out_features = static_cast<int>(l.weight.shape[0]);
      l.in_features = static_cast<int>(l.weight.shape[1]);
    }
    l.bias = view(prefix + ".bias", false);
    return l;
  }

  // The small tensors into the page cache before anything reads them (see loader/prefetch.h).
  PrefetchFigures prefetch_small_tensors() {
    std::map<const MappedFile*, std::vector<ByteRange>> by_file;
    for (const auto& [name, t] : ckpt_.tensors) {
      if (t.bytes == 0 || !is_small_tensor(name, t.shape)) continue;
      const MappedFile& f = file(t.file);
      f.range(t.offset, t.bytes, name);  // throws, naming the tensor, when it lies outside the file
      by_file[&f].push_back({t.offset, t.offset + t.bytes});
    }
    std::vector<FileRanges> files;
    for (auto& [f, ranges] : by_file) files.push_back({f, std::move(ranges)});
    return prefetch_ranges(files);
  }

  ModelWeights build() {
    ModelWeights w;
    w.embed_tokens = view("model.embed_tokens.weight", true);
    w.final_norm = view("model.norm.weight", true);
    if (ckpt_.config.tie_word_embeddings || (!has("lm_head.weight") && !has("lm_head.qweight"))) {
      if (!ckpt_.config.tie_word_embeddings) throw BackendError("bad_model", "tensor lm_head.weight is missing from the checkpoint");
      w.lm_head.weight = w.embed_tokens;
      w.lm_head.out_features = ckpt_.config.vocab_size;
      w.lm_head.in_features = ckpt_.config.hidden_size;
    } else {
      w.lm_head = linear("lm_head");
    }
    for (int i = 0; i < ckpt_.config.num_layers; ++i) {
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
    memory_.files.push_back(std::make_unique<MappedFile>(path));
    by_path_[path] = memory_.files.back().get();
    return *memory_.files.back();
  }

  const HfCheckpoint& ckpt_;
  CheckpointMemory& memory_;
  std::map<std::string, MappedFile*> by_path_;
};

}  // namespace

ModelWeights build_hf_weights(const HfCheckpoint& checkpoint, CheckpointMemory& memory) {
  const auto t0 = std::chrono::steady_clock::now();
  WeightsBuilder builder(checkpoint, memory);
  const PrefetchFigures p = builder.prefetch_small_tensors();
  ModelWeights w = builder.build();
  if (verbose_load()) {
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr,
                 "xllama: load: checkpoint: %d small tensors (norms, GPTQ scales, zeros, g_idx: %s) read ahead in %d "
                 "range%s (%s) on %d thread%s in %.2f s; tensor views and checks %.2f s\n",
                 p.tensors, decimal_bytes(p.tensor_bytes).c_str(), p.ranges, p.ranges == 1 ? "" : "s",
                 decimal_bytes(p.range_bytes).c_str(), p.threads, p.threads == 1 ? "" : "s", p.seconds, total - p.seconds);
  }
  return w;
}

}  // namespace xllama
