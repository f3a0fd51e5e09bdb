// The one interface every compute backend implements (CPU in addon/cpu, CUDA in cuda/).
// Plain C++17: no Node-API or CUDA headers here, so both sides can include it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace xllama {

enum class DType : int { F16 = 0, BF16 = 1, F32 = 2, I32 = 3 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

// A tensor as it lies in (memory-mapped) host memory: row-major, shape as stored in the checkpoint.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::string name;  // checkpoint name, for error messages
  bool present() const { return data != nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

enum class RopeType : int { Default = 0, Linear = 1, Dynamic = 2, Llama3 = 3, Yarn = 4 };

struct RopeConfig {
  float theta = 10000.0f;
  RopeType type = RopeType::Default;
  float factor = 1.0f;                 // linear / dynamic / llama3 / yarn
  float low_freq_factor = 1.0f;        // llama3
  float high_freq_factor = 4.0f;       // llama3
  int original_max_position = 8192;    // llama3 / dynamic / yarn
  float beta_fast = 32.0f;             // yarn: the ramp between extrapolated and interpolated frequencies
  float beta_slow = 1.0f;
  bool truncate = true;                // yarn: the ramp's bounds rounded to whole dimensions
  // cos and sin are multiplied by it, so q.k by its square (HF's attention_scaling: YaRN's; 1 for the others).
  float attention_factor = 1.0f;
};

struct ModelConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-5f;
  RopeConfig rope;
  bool tie_word_embeddings = false;
};

// GPTQ 4-bit settings shared by every quantized linear of a model.
struct GptqConfig {
  bool enabled = false;
  int bits = 4;
  int group_size = 128;          // rows of the input dimension per group; the loader resolves -1 to in_features
  bool sym = true;
  bool desc_act = false;         // act-order: g_idx is a permuted group map
  int zero_offset = 1;           // checkpoint_format "gptq" (v1) stores zero-1, so add 1; "gptq_v2" stores it as is: 0
};

// y = x W^T + b. Dense: weight [out, in]. GPTQ: qweight int32 [in/8, out] (8 nibbles along `in`),
// qzeros int32 [groups, out/8], scales f16 [groups, out], g_idx int32 [in]. bias [out] when present.
struct LinearWeights {
  int in_features = 0;
  int out_features = 0;
  int group_size = 0;            // GPTQ only: resolved group size for this layer
  TensorView weight;
  TensorView qweight, qzeros, scales, g_idx;
  TensorView bias;
  bool quantized() const { return qweight.present(); }
};

struct LayerWeights {
  TensorView input_norm, post_attention_norm;
  LinearWeights q, k, v, o, gate, up, down;
};

struct ModelWeights {
  TensorView embed_tokens;       // [vocab, hidden]
  TensorView final_norm;         // [hidden]
  LinearWeights lm_head;         // dense; weight == embed_tokens when tied
  std::vector<LayerWeights> layers;
};

// Prompt tokens per forward chunk unless told otherwise (bounds scratch memory). The TypeScript side
// has the same number as DEFAULT_CHUNK_TOKENS in cli/engine/model-handle.ts.
constexpr int kDefaultChunkTokens = 512;

// One GPU's share of a layer split: layers [first_layer, end_layer) on CUDA device `device`. The first
// stage also holds the embeddings, the last the final norm and lm_head. A device may appear in several
// stages (that is how a split is tested on one GPU).
struct StagePlan {
  int device = 0;
  int first_layer = 0;
  int end_layer = 0;
};

struct BackendOptions {
  int max_seq_len = 0;           // KV-cache capacity in positions (0: the model's max_position_embeddings)
  int threads = 0;               // CPU threads (0: all cores)
  int device = 0;                // CUDA device ordinal when `stages` is empty
  int max_chunk_tokens = kDefaultChunkTokens;  // prompt tokens per forward chunk (bounds scratch memory)
  std::vector<StagePlan> stages; // CUDA layer split in order, covering every layer; empty: all on `device`
};

// What one device (or the host, device -1) holds for the model.
struct DeviceMemoryReport {
  int device = -1;
  size_t weights_bytes = 0;
  size_t kv_cache_bytes = 0;
  size_t scratch_bytes = 0;
};

struct MemoryReport {
  size_t weights_bytes = 0;      // totals over `devices`
  size_t kv_cache_bytes = 0;
  size_t scratch_bytes = 0;
  std::vector<DeviceMemoryReport> devices;  // one entry per stage (CUDA) or one for the host (CPU)
};

// The error codes every backend uses (BackendError::code), one set for both; the TypeScript side maps
// them to one-line messages in one place (cli/engine/native-model.ts).
inline constexpr const char* kBadInput = "bad_input";              // the caller's arguments (ids, positions)
inline constexpr const char* kBadModel = "bad_model";              // the checkpoint or its config is broken
inline constexpr const char* kUnsupportedModel = "unsupported_model";  // valid, but this backend can't run it
inline constexpr const char* kContextFull = "context_full";        // more positions than the KV cache holds
inline constexpr const char* kOutOfMemory = "out_of_memory";
inline constexpr const char* kNoCuda = "no_cuda";                  // this build or machine has no usable GPU
inline constexpr const char* kUnsupportedGpu = "unsupported_gpu";  // a GPU this build has no code for, or too old
inline constexpr const char* kCudaError = "cuda_error";            // a CUDA call failed
// A sampled pick met NaN or +infinity among the logits, or only -infinity (the message says which): damaged weights.
inline constexpr const char* kNonFiniteLogits = "non_finite_logits";
// (the glue adds "internal" for anything else, and "closed" for a closed handle)

// Raised for user-facing failures (out of memory, a prompt longer than the cache, ...):
// the glue turns it into a one-line error without a stack trace.
struct BackendError : std::runtime_error {
  std::string code;
  BackendError(std::string code_, const std::string& message) : std::runtime_error(message), code(std::move(code_)) {}
};

// How to pick the next token from the last logits row without copying the logits back: greedy, or temperature
// sampling after top-k, then top-p, then min-p (the order of the host sampler, cli/engine/sampler.ts).
struct TokenSampling {
  float temperature = 0.0f;      // <= 0: greedy (argmax, lowest index on ties)
  int top_k = 0;                 // 0: whole vocabulary
  float top_p = 1.0f;            // 1: off; else the smallest most-likely-first prefix whose mass reaches it
  float min_p = 0.0f;            // 0: off; else drops tokens less likely than min_p x the most likely one
  float uniform = 0.0f;          // a uniform random number in [0, 1) drawn by the caller (keeps seeds on the host)
  // Penalties from the backend's token history (Backend::set_token_history), applied to the logits before the
  // pick as the host sampler's applyPenalties does, in double like its JavaScript numbers; a pick with any of
  // them on records its token in that history. Sampled picks only (temperature > 0; greedy is top_k 1).
  double repeat_penalty = 1.0;     // 1: off; a seen token's logit divided by it (>= 0) or multiplied (< 0)
  double frequency_penalty = 0.0;  // 0: off; minus count x it for a token generated count times
  double presence_penalty = 0.0;   // 0: off; minus it for a token generated at least once
  // After top-p and min-p: 1: off; else locally typical sampling (backend/sampled_rank.h, as typicalFilter). The CUDA
  // backend picks it on the GPU from a top-k of at most kMaxDeviceTopK; over more candidates, on the host.
  float typical_p = 1.0f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual const ModelConfig& config() const = 0;

  // Runs `n` tokens at positions [pos, pos + n) against the KV cache and appends their keys and values.
  // `pos` must equal the current cache length (positions below it stay; anything above is discarded).
  // Writes float32 logits into `out`: n rows × vocab when all_logits, else the last row only.
  virtual void forward(const int32_t* tokens, int n, int pos, bool all_logits, float* out) = 0;

  // Scoring (perplexity): runs `n` tokens at [pos, pos + n) exactly as forward() does, and writes for each
  // row i the negative log-likelihood of targets[i] under that row's logits, -log softmax(logits_i)[targets[i]],
  // into nll[i]. A target < 0 is not scored (nll[i] = 0). The default forwards slices of rows with all
  // logits and reduces them on the host; the CUDA backend reduces on the device so the logits stay there.
  virtual void score(const int32_t* tokens, int n, int pos, const int32_t* targets, float* nll);

  // Keeps the first `length` cached positions and drops the rest.
  virtual void trim_cache(int length) = 0;
  void clear_cache() { trim_cache(0); }
  virtual int cache_length() const = 0;
  virtual int max_seq_len() const = 0;
  virtual MemoryReport memory() const = 0;

  // forward() for the last row only, then picks one token as `sampling` says. The default copies the
  // logits to the host and samples there; the CUDA backend overrides it to sample on the device.
  // `next` (decode pipelining): the sampling of the step that will feed the picked token at pos + n. A backend may
  // start that step before returning, so the device works while the token travels to the caller; the next
  // forward_sample of exactly that step then returns its pick, and any other call first waits for it and drops it
  // (as if that step had run and the cache had been trimmed back). The default ignores it.
  virtual int32_t forward_sample(const int32_t* tokens, int n, int pos, const TokenSampling& sampling,
                                 const TokenSampling* next = nullptr);

  // The token history the penalties read: `seen` (the prompt, earlier output: the repetition penalty) and
  // `generated` in order (the frequency and presence penalties' counts), as the host sampler's observePrompt and
  // accept keep them; ids outside the vocabulary are ignored. Each pick with penalties then records its own token,
  // so pipelined steps need nothing from the host. Ordered with the calls before it (a step started ahead
  // records its pick first; this replaces it). Overrides call this one too (the host picks read it).
  virtual void set_token_history(const int32_t* seen, int n_seen, const int32_t* generated, int n_generated);

 protected:
  // Per token id: bit 0 seen, the rest the generated count (backend/token_penalties.h); empty until set.
  std::vector<uint32_t> token_history_;
};

// Host-side token pick shared by the default forward_sample and the tests: softmax(logits / T) over the
// top_k largest, cut by top-p and min-p (backend/sampled_rank.h), then the first token whose cumulative
// probability exceeds `uniform`. A sampled pick refuses logits it can't rank (BackendError kNonFiniteLogits);
// greedy takes the first largest whatever the rest hold (and refuses penalties: kBadInput).
// With penalties on, `history` (vocab entries, or null: none seen) supplies them and gets the pick recorded.
int32_t sample_token_host(const float* logits, int vocab, const TokenSampling& sampling,
                          uint32_t* history = nullptr);

// -log softmax(logits)[target], computed in double (score()'s host reduction and its tests).
double token_nll_host(const float* logits, int vocab, int target);

// score()'s argument check, shared by the backends' overrides: every target is below vocab (BackendError otherwise).
void check_score_targets(const int32_t* targets, int n, int vocab);

std::unique_ptr<Backend> create_cpu_backend(const ModelConfig& config, const GptqConfig& gptq,
                                            const ModelWeights& weights, const BackendOptions& options);

}  // namespace xllama
