// The CUDA backend: weights uploaded once, fp16 KV cache, decode steps replayed as CUDA graphs
// (one per row count), prompt chunks through fused 4-bit GEMMs or dequantization + tensor-core GEMMs.
//
// The model runs as stages (a layer split across GPUs, BackendOptions::stages): each Stage (cuda/stage.h) owns its
// device, stream, layer range, its part of the KV cache, scratch and graphs. CudaBackend runs the stages in order
// and moves the hidden state across each boundary (Stage::send / Stage::receive). Unsplit is one stage.
#include "cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/model_checks.h"
#include "backend/token_penalties.h"
#include "backend/verbose_load.h"
#include "cuda/cuda_check.h"
#include "cuda/device_query.h"
#include "cuda/kernels.h"
#include "cuda/stage.h"

namespace xllama {
namespace {

void validate_config(const ModelConfig& c) {
  check_model_config(c);
  if (c.hidden_size % 8)  // the embedding rows are read 16 bytes at a time (embed_rows)
    throw BackendError(kUnsupportedModel, "the CUDA backend needs hidden_size a multiple of 8 (got " +
                                              std::to_string(c.hidden_size) + ")");
  if (c.head_dim % 8 || c.head_dim > 256)
    throw BackendError(kUnsupportedModel, "the CUDA backend needs head_dim a multiple of 8, at most 256 (got " +
                                              std::to_string(c.head_dim) + ")");
}

// Free memory kept back on each stage's device when the KV cache is sized: CUDA graphs, cuBLAS workspace,
// fragmentation. cli/engine/gpu-footprint.ts counts the same per stage.
constexpr size_t kStageReserveBytes = (size_t)256 << 20;

// The Backend: the stages in order. Each forward chunk runs through every stage (each waits for the
// hidden state of the one before on its own stream); the logits, and the token picked from them, come from
// the last stage.
class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& config, const BackendOptions& options) : cfg_(config), opt_(options) {
    validate_config(cfg_);
    int count = 0;
    XL_CUDA_CHECK(cudaGetDeviceCount(&count));
    std::vector<StagePlan> plans = options.stages;
    if (plans.empty()) plans.push_back({options.device, 0, cfg_.num_layers});
    validate_plans(plans, count);
    // A GPU too old, or one this build has no code for: one line now, not a failed launch later.
    for (const StagePlan& p : plans) {
      if (std::string why = cuda::gpu_support_problem(p.device); !why.empty()) throw BackendError(kUnsupportedGpu, why);
      XL_CUDA_CHECK(cudaSetDevice(p.device));
      cuda::current_device_runs_pdl_code();  // asked once here rather than first inside a graph capture
    }
    for (size_t i = 0; i < plans.size(); ++i)
      stages_.push_back(std::make_unique<Stage>(cfg_, opt_, plans[i], i == 0, i + 1 == plans.size()));
  }

  ~CudaBackend() override {
    // Receivers first: a stage waits for its own stream before freeing, so its copies out of the stage
    // before are done by the time that one frees its buffers.
    try {
      settle_step_ahead();
    } catch (...) {  // freeing goes on regardless
    }
    while (!stages_.empty()) stages_.pop_back();
  }

  // ---- loading ----
  // Each stage loads its own layers; the figures (for --verbose) add up over the stages.
  Stage::LoadFigures load_checkpoint(const GptqConfig& gptq, const ModelWeights& w, LoadProgress* progress) {
    check_layer_count(cfg_, w);
    Stage::LoadFigures all;
    for (auto& st : stages_) {
      const Stage::LoadFigures f = st->load_checkpoint(gptq, w, progress);
      all.bytes += f.bytes, all.read_s += f.read_s, all.wait_s += f.wait_s, all.finish_s += f.finish_s;
      all.total_s += f.total_s, all.threads = std::max(all.threads, f.threads);
      all.pin_s += f.pin_s, all.alloc_s += f.alloc_s, all.mallocs += f.mallocs;
      all.arena_bytes += f.arena_bytes, all.arena_slack += f.arena_slack;
      if (!f.gemm_warmup.empty())
        all.gemm_warmup += (all.gemm_warmup.empty() ? "" : "; ") + ("GPU " + std::to_string(st->device()) + ": ") +
                           f.gemm_warmup;
    }
    agree_on_decode_path();
    return all;
  }

  void load_dummy(int group_size, uint64_t seed) {
    for (auto& st : stages_) st->load_dummy(group_size, seed);
    agree_on_decode_path();
  }

  // Scratch on every stage, then one KV-cache length for all: max_seq_len, or (0) the model's context capped
  // by what every device has left, then the boundaries.
  void allocate_runtime() {
    for (auto& st : stages_) st->allocate_scratch();
    S_ = choose_seq_len();
    for (auto& st : stages_) {
      st->allocate_kv(S_);
      st->choose_decode_norms();
      st->prepare_decode_step();
    }
    for (size_t i = 1; i < stages_.size(); ++i) stages_[i]->connect_from(stages_[i - 1].get());
    for (auto& st : stages_) st->decode_graph(1, st.get() == stages_.back().get() ? LogitRows::Last : LogitRows::None);
    last().capture_fed_step_graphs();
  }

  // ---- Backend ----
  const char* name() const override { return "cuda"; }
  const ModelConfig& config() const override { return cfg_; }
  int cache_length() const override { return cache_len_; }
  int max_seq_len() const override { return S_; }
  MemoryReport memory() const override {
    MemoryReport r;
    for (const auto& st : stages_) {
      const DeviceMemoryReport d = st->memory();
      r.weights_bytes += d.weights_bytes, r.kv_cache_bytes += d.kv_cache_bytes, r.scratch_bytes += d.scratch_bytes;
      r.devices.push_back(d);
    }
    return r;
  }

  void trim_cache(int length) override {
    if (length < 0) throw BackendError(kBadInput, "cache length must be >= 0");
    settle_step_ahead();
    cache_len_ = std::min(cache_len_, length);  // positions past the length are simply overwritten later
  }

  void forward(const int32_t* tokens, int n, int pos, bool all_logits, float* out) override {
    settle_step_ahead();
    run(tokens, n, pos, all_logits ? LogitRows::All : LogitRows::Last, out);
  }

  int32_t forward_sample(const int32_t* tokens, int n, int pos, const TokenSampling& s,
                         const TokenSampling* next) override {
    if (!device_pick(s)) {
      settle_step_ahead();
      return Backend::forward_sample(tokens, n, pos, s);
    }
    // Decode pipelining: the step that feeds this pick's token is started before the token goes back to the
    // caller. The cache length stays what the caller knows until that step is asked for. On one GPU the pick
    // itself feeds that step (fed), which is enqueued before the pick is read, so the GPU does not wait for the
    // host between steps; across stages the host passes the token on once it has it.
    const bool ahead = next && device_pick(*next) && pos + n < S_;
    const bool fed = ahead && stages_.size() == 1;
    int slot;
    if (ahead_.pending && n == 1 && tokens[0] == ahead_.token && pos == ahead_.pos && same_sampling(s, ahead_.s)) {
      ahead_.pending = false;  // the step asked for is the one started ahead (fed if this one is)
      slot = ahead_.slot;
      cache_len_ = pos + 1;
    } else {
      settle_step_ahead();
      run(tokens, n, pos, LogitRows::Last, nullptr);
      slot = last().enqueue_pick(s, fed ? pos + n : -1);
    }
    int fed_slot = 0;
    if (fed) fed_slot = last().run_fed_step(pos + n + 1, *next);
    const int32_t token = last().wait_token(slot);
    if (token == cuda::kNonFinitePick) {
      if (fed) last().sync();  // the step it fed (token 0) is dropped
      throw BackendError(kNonFiniteLogits, "NaN or +infinity among the " + std::to_string(cfg_.vocab_size) +
                                               ", or all -infinity");
    }
    if (fed) {
      ahead_ = {true, token, pos + n, *next, fed_slot};
    } else if (ahead && token >= 0 && token < cfg_.vocab_size) {
      const int committed = cache_len_;
      run(&token, 1, pos + n, LogitRows::Last, nullptr);
      ahead_ = {true, token, pos + n, *next, last().enqueue_pick(*next)};
      cache_len_ = committed;
    }
    return token;
  }

  // The device picks read and extend the last stage's copy; a host pick (Backend::forward_sample) the host's. A
  // step started ahead picked from the old history: it is dropped, not handed to the next call.
  void set_token_history(const int32_t* seen, int n_seen, const int32_t* generated, int n_generated) override {
    settle_step_ahead();
    Backend::set_token_history(seen, n_seen, generated, n_generated);
    last().upload_token_history(token_history_);
  }

  // Perplexity scoring: the stages run each chunk as forward() does; the last stage turns the chunk's rows
  // into NLLs on its own GPU (Stage::score_chunk), so the logits never cross to the host.
  void score(const int32_t* tokens, int n, int pos, const int32_t* targets, float* nll) override {
    settle_step_ahead();
    begin_call(tokens, n, pos);
    check_score_targets(targets, n, cfg_.vocab_size);
    const int rows_per_chunk = last().rows();
    for (int done = 0; done < n;) {
      const int m = std::min(n - done, rows_per_chunk);
      for (auto& st : stages_) st->run_chunk(tokens + done, m, pos + done, LogitRows::None, nullptr);
      last().score_chunk(targets + done, m, nll + done);
      cache_len_ = pos + done + m;
      done += m;
    }
  }

 private:
  Stage& last() { return *stages_.back(); }

  // Stages in order, each at least one layer, together covering every layer once, on GPUs that exist.
  void validate_plans(const std::vector<StagePlan>& plans, int count) const {
    int next = 0;
    for (size_t i = 0; i < plans.size(); ++i) {
      const StagePlan& p = plans[i];
      const std::string which = plans.size() == 1 ? "" : "stage " + std::to_string(i) + ": ";
      if (p.device < 0 || p.device >= count)
        throw BackendError(kBadInput, which + "GPU " + std::to_string(p.device) + " does not exist (" +
                                                   std::to_string(count) + " found)");
      if (p.first_layer != next || p.end_layer <= p.first_layer || p.end_layer > cfg_.num_layers)
        throw BackendError(kBadInput, which + "layers [" + std::to_string(p.first_layer) + ", " +
                                                   std::to_string(p.end_layer) + ") do not continue the split at layer " +
                                                   std::to_string(next) + " of " + std::to_string(cfg_.num_layers));
      next = p.end_layer;
    }
    if (next != cfg_.num_layers)
      throw BackendError(kBadInput, "the GPU split ends at layer " + std::to_string(next) + " of " +
                                                 std::to_string(cfg_.num_layers));
  }

  void agree_on_decode_path() {
    bool all = true;
    for (auto& st : stages_) all = all && st->all_quantized();
    for (auto& st : stages_) st->set_all_quantized(all);
  }

  // The KV-cache length: max_seq_len when given (refused if a device can't hold its stages' share), else
  // the model's context capped so that every device keeps kStageReserveBytes per stage free.
  int choose_seq_len() {
    std::map<int, std::vector<Stage*>> by_device;
    for (auto& st : stages_) by_device[st->device()].push_back(st.get());
    int S = opt_.max_seq_len > 0 ? opt_.max_seq_len : std::max(1, cfg_.max_position_embeddings);
    for (auto& [device, stages] : by_device) {
      size_t per_pos = 0, reserve = 0;
      for (Stage* st : stages) per_pos += st->kv_bytes_per_position(), reserve += kStageReserveBytes;
      size_t free_b = 0, total_b = 0;
      XL_CUDA_CHECK(cudaSetDevice(device));
      XL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
      DeviceMemory& mem = stages.front()->device_memory();
      if (opt_.max_seq_len <= 0) {
        const size_t avail = free_b > reserve ? free_b - reserve : 0;
        S = (int)std::min<size_t>(S, avail / per_pos);
        if (S < 1) mem.throw_oom(reserve + per_pos, "a 1-position KV cache and its reserve");
      } else if ((size_t)S * per_pos + reserve > free_b) {
        mem.throw_oom((size_t)S * per_pos + reserve, "a " + std::to_string(S) + "-position KV cache and its reserve");
      }
    }
    return S;
  }

  // ---- forward ----
  // The checks every call of n tokens at pos passes before anything is enqueued; then the cache is cut to
  // pos and the RoPE frequencies set for the call's length (dynamic NTK scales every chunk by the whole
  // call's length, as HF and the CPU backend do).
  void begin_call(const int32_t* tokens, int n, int pos) {
    if (n <= 0) throw BackendError(kBadInput, "forward needs at least one token");
    if (pos < 0 || pos > cache_len_)
      throw BackendError(kBadInput, "position " + std::to_string(pos) + " is past the cached " +
                                        std::to_string(cache_len_) + " positions");
    if ((int64_t)pos + n > S_)
      throw BackendError(kContextFull, "the context holds " + std::to_string(S_) + " positions; " +
                                           std::to_string(pos + n) + " were asked for");
    for (int i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
        throw BackendError(kBadInput, "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
    cache_len_ = pos;
    for (auto& st : stages_) {
      XL_CUDA_CHECK(cudaSetDevice(st->device()));
      st->update_inv_freq(pos + n, false);
    }
  }

  void run(const int32_t* tokens, int n, int pos, LogitRows rows, float* out) {
    begin_call(tokens, n, pos);
    const int rows_per_chunk = last().rows();
    for (int done = 0; done < n;) {
      const int m = std::min(n - done, rows_per_chunk);
      const bool last_chunk = done + m == n;
      const LogitRows mode =
          rows == LogitRows::All ? LogitRows::All : (last_chunk ? LogitRows::Last : LogitRows::None);
      float* chunk_out = out ? (rows == LogitRows::All ? out + (size_t)done * cfg_.vocab_size : out) : nullptr;
      for (auto& st : stages_) {
        const bool is_last = st.get() == stages_.back().get();
        st->run_chunk(tokens + done, m, pos + done, is_last ? mode : LogitRows::None, is_last ? chunk_out : nullptr);
      }
      cache_len_ = pos + done + m;
      done += m;
    }
  }

  bool device_pick(const TokenSampling& s) const {
    if (s.temperature <= 0.f) return !penalties_on(s);  // greedy with penalties: refused by the host pick
    // any k, 0 for the whole vocabulary; typical-p from a top-k list only
    return s.top_k >= 0 && cuda::device_pick_takes(s, cfg_.vocab_size);
  }
  static bool same_sampling(const TokenSampling& a, const TokenSampling& b) {
    return a.temperature == b.temperature && a.top_k == b.top_k && a.top_p == b.top_p && a.min_p == b.min_p &&
           a.typical_p == b.typical_p && a.uniform == b.uniform && a.repeat_penalty == b.repeat_penalty &&
           a.frequency_penalty == b.frequency_penalty && a.presence_penalty == b.presence_penalty;
  }

  // The decode step forward_sample started ahead (its `next`): waits for it and drops its pick. Its KV entries lie
  // past cache_len_, so whatever runs at that position next overwrites them.
  void settle_step_ahead() {
    if (!ahead_.pending) return;
    ahead_.pending = false;
    last().sync();
  }

  ModelConfig cfg_;
  BackendOptions opt_;
  std::vector<std::unique_ptr<Stage>> stages_;
  int S_ = 0, cache_len_ = 0;
  struct StepAhead {
    bool pending = false;
    int32_t token = 0;  // the token it feeds ...
    int pos = 0;        // ... at this position
    TokenSampling s;    // ... and how it picks
    int slot = 0;       // its pick's slot (Stage::enqueue_pick)
  };
  StepAhead ahead_;
};

}  // namespace

namespace cuda {
unsigned& decode_ablation() {
  static unsigned parts = 0;
  return parts;
}
unsigned& prompt_ablation() {
  static unsigned parts = 0;
  return parts;
}
}  // namespace cuda

std::unique_ptr<Backend> create_cuda_backend(const ModelConfig& config, const GptqConfig& gptq,
                                             const ModelWeights& weights, const BackendOptions& options,
                                             LoadProgress* progress) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto b = std::make_unique<CudaBackend>(config, options);
  const auto t1 = Clock::now();
  const Stage::LoadFigures f = b->load_checkpoint(gptq, weights, progress);
  const auto t2 = Clock::now();
  b->allocate_runtime();
  const auto t3 = Clock::now();
  if (verbose_load()) {
    auto s = [](Clock::time_point a, Clock::time_point c) { return std::chrono::duration<double>(c - a).count(); };
    if (f.threads == 0) {  // XLLAMA_LEGACY_UPLOAD
      std::fprintf(stderr,
                   "xllama: load: CUDA context and handles %.2f s; weights %.2f GB in %.2f s by the earlier path (host "
                   "repack, synchronous copies); KV cache, scratch and decode plan %.2f s\n",
                   s(t0, t1), f.bytes / 1e9, f.total_s, s(t2, t3));
      return b;
    }
    // The rest of the weights' time is on the loading thread: pinning host memory, cudaMalloc, and layout
    // planning (g_idx, zeros) with the small copies' bookkeeping.
    const double other = std::max(0.0, f.total_s - f.read_s - f.wait_s - f.finish_s);
    const double planning = std::max(0.0, other - f.pin_s - f.alloc_s);
    std::fprintf(stderr,
                 "xllama: load: CUDA context and handles %.2f s; weights %.2f GB in %.2f s (%.2f GB/s): reading into "
                 "pinned staging on %d threads %.2f s (%.2f GB/s), waiting for the copy engine %.2f s, last copies "
                 "and GPU repacking %.2f s, pinning host memory (staging buffers, embedding table) %.2f s, %d weight "
                 "allocation%s %.2f s (arena %s, %s of it unused), layout planning and the rest %.2f s; KV cache, "
                 "scratch and decode plan %.2f s\n",
                 s(t0, t1), f.bytes / 1e9, f.total_s, f.bytes / 1e9 / std::max(f.total_s, 1e-9), f.threads, f.read_s,
                 f.bytes / 1e9 / std::max(f.read_s, 1e-9), f.wait_s, f.finish_s, f.pin_s, f.mallocs,
                 f.mallocs == 1 ? "" : "s", f.alloc_s, decimal_bytes(f.arena_bytes).c_str(),
                 decimal_bytes(f.arena_slack).c_str(), planning, s(t2, t3));
    if (!f.gemm_warmup.empty()) std::fprintf(stderr, "xllama: load: %s\n", f.gemm_warmup.c_str());
  }
  return b;
}

std::unique_ptr<Backend> create_cuda_dummy_backend(const ModelConfig& config, int group_size,
                                                   const BackendOptions& options, uint64_t seed) {
  auto b = std::make_unique<CudaBackend>(config, options);
  b->load_dummy(group_size, seed);
  b->allocate_runtime();
  return b;
}

}  // namespace xllama
