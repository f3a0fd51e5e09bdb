// How far a backend's load has come through the checkpoint, for a read-ahead that keeps the disk a bounded
// window ahead of it (loader/checkpoint_read_ahead.h). Parts in the order a load reads them: the embeddings,
// each decoder layer, then the final norm and lm_head. Plain C++: the CUDA backend includes it.
#pragma once

namespace xllama {

constexpr int kEmbeddingPart = 0;
inline int layer_part(int layer) { return 1 + layer; }
inline int final_part(int num_layers) { return 1 + num_layers; }  // the final norm and lm_head

class LoadProgress {
 public:
  virtual ~LoadProgress() = default;
  // The backend starts reading `part` now: what comes before it is read. Called from the loading thread, in
  // increasing order (a part may be skipped: a later stage of a split starts at its first layer).
  virtual void reading(int part) = 0;
};

}  // namespace xllama
