// A Hugging Face checkpoint as the loader (TypeScript) described it: where each tensor lies in which
// safetensors file. build_hf_weights maps the files and turns HF Llama tensor names into ModelWeights.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "loader/mapped_file.h"

namespace xllama {

struct TensorRef {
  std::string file;
  uint64_t offset = 0, bytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

struct HfCheckpoint {
  ModelConfig config;
  int raw_group_size = 128;  // GPTQ group size as stored (-1: one group over the whole input)
  std::map<std::string, TensorRef> tensors;
};

// What ModelWeights' views point into: keep it alive as long as the backend that reads them.
struct CheckpointMemory {
  std::vector<std::unique_ptr<MappedFile>> files;
  std::vector<std::unique_ptr<char[]>> aligned_copies;  // tensors whose file offset was misaligned
};

// Throws BackendError(kBadModel) naming the tensor that is missing or does not fit its file.
ModelWeights build_hf_weights(const HfCheckpoint& checkpoint, CheckpointMemory& memory);

}  // namespace xllama
