// A stage's decode steps (cuda/stage.h): the fused 5-kernel layers (or the opt-in persistent kernel), the graphs
// they are replayed as, the logits, and the token picks made on the GPU.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"
#include "cuda/stage.h"

namespace xllama {

// The token picked from the last row's logits (after run_chunk with LogitRows::Last): greedy or top-k on
// the device, only the id comes back (enqueue_pick, then wait_token with the slot it returns). Last stage only.
// feed_pos >= 0 (a stage that is also the first): the pick is also the input of a one-row decode step at that
// position (run_fed_step). Picks alternate between two pinned slots, so a fed step's pick can land while the
// caller reads the one before.
int Stage::enqueue_pick(const TokenSampling& s, int feed_pos) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  const cuda::StepFeed feed = feed_pos >= 0 ? cuda::StepFeed{pos_, tokens_, feed_pos} : cuda::StepFeed{};
  const int slot = pick_slot_;
  pick_slot_ ^= 1;
  // The kernel writes the pick straight into the mapped pinned slot: no copy between one step and the next.
  int* out = host_token_dev_ + slot;
  if (s.temperature <= 0.f)
    cuda::argmax(logits_, cfg_.vocab_size, out, stream_, feed);
  else
    cuda::sample_top_k(logits_, cfg_.vocab_size, s, top_k_, out, stream_, feed);
  XL_CUDA_CHECK(cudaEventRecord(token_picked_[slot], stream_));
  return slot;
}

// The penalties' token history (Backend::set_token_history's host copy), ordered after the work queued so far.
void Stage::upload_token_history(const std::vector<uint32_t>& history) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  XL_CUDA_CHECK(cudaMemcpyAsync(top_k_.history, history.data(), history.size() * sizeof(uint32_t),
                                cudaMemcpyHostToDevice, stream_));
}

int32_t Stage::wait_token(int slot) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  XL_CUDA_CHECK(cudaEventSynchronize(token_picked_[slot]));
  return host_token_[slot];
}

// The one-row decode step (logits of its row) whose position and token the last pick fed (enqueue_pick's
// feed_pos), started without the host's inputs: the GPU goes from one step to the next without waiting for
// the host to read the token. seq_len: the step's position + 1 (RoPE frequencies, as begin_call updates them).
// One stage only (it is the first and the last). Then the pick for s, which feeds the step after (enqueue_pick's
// with feed_pos = seq_len); returns its slot. The pick is part of the step's graph (graph_pick), so nothing is
// launched between two steps' graphs; a sampled pick reads its draw from the slot's draw_host_, written here.
int Stage::run_fed_step(int seq_len, const TokenSampling& s) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  update_inv_freq(seq_len, false);
  const GraphPick kind = graph_pick(s);
  if (kind == GraphPick::None) {
    XL_CUDA_CHECK(cudaGraphLaunch(decode_graph(1, LogitRows::Last), stream_));
    return enqueue_pick(s, seq_len);
  }
  const int slot = pick_slot_;
  pick_slot_ ^= 1;
  // The step that last read this slot's draw was picked before the caller got its token: free to rewrite.
  if (kind == GraphPick::TopK) draw_host_[slot] = s;
  XL_CUDA_CHECK(cudaGraphLaunch(decode_graph(1, LogitRows::Last, kind, slot), stream_));
  XL_CUDA_CHECK(cudaEventRecord(token_picked_[slot], stream_));
  return slot;
}

// How a fed step's graph picks for s (one stage only: fed steps): greedy by its own lm_head where that can
// (gemv_f16_rmsnorm's GreedyPick: the dense lm_head with the final norm folded in; XLLAMA_LM_HEAD_PICK=0: never),
// else by the argmax or top-k kernel captured after the lm_head (XLLAMA_GRAPH_PICK=0: launched between graphs).
GraphPick Stage::graph_pick(const TokenSampling& s) const {
  static const bool lm_head_on = cuda::env_switch_on("XLLAMA_LM_HEAD_PICK");
  static const bool graph_on = cuda::env_switch_on("XLLAMA_GRAPH_PICK");
  if (!first_ || !last_) return GraphPick::None;
  if (s.temperature > 0.f) return graph_on ? GraphPick::TopK : GraphPick::None;
  if (lm_head_on && decode_fused(1) && !lm_head_.quantized &&
      cuda::gemv_f16_rmsnorm_supported(lm_head_.dense, cfg_.hidden_size, h_, cfg_.hidden_size))
    return GraphPick::LmHead;
  return graph_on ? GraphPick::Argmax : GraphPick::None;
}

// The fed steps' graphs, one per pick slot and way of picking (greedy, sampled), captured at load so that a
// reply's first steps don't pay for them.
void Stage::capture_fed_step_graphs() {
  TokenSampling greedy, sampled;
  sampled.temperature = 1.f;
  for (const TokenSampling& s : {greedy, sampled}) {
    const GraphPick kind = graph_pick(s);
    if (kind != GraphPick::None)
      for (int slot = 0; slot < 2; ++slot) decode_graph(1, LogitRows::Last, kind, slot);
  }
}

// The decode graph of m rows (m <= kGemvMaxRows) with these logits, captured on first use. The backend asks
// for the one-row graph when it is created (allocate_runtime), so a chat's first reply does not pay for the
// capture and the kernels' first load between its first and second token.
// pick (m = 1, Last; graph_pick): the graph also picks the token into pick_slot and feeds it to the next step
// (run_fed_step).
cudaGraphExec_t Stage::decode_graph(int m, LogitRows mode, GraphPick pick, int pick_slot) {
  const int key = ((m * 4 + (int)mode) * 4 + (int)pick) * 2 + pick_slot;
  auto it = graphs_.find(key);
  if (it != graphs_.end()) return it->second;
  XL_CUDA_CHECK(cudaSetDevice(device_));
  const cudaGraphExec_t exec = cuda::capture_graph(stream_, [&] {
    enqueue_layers(m);
    if (mode == LogitRows::Last) enqueue_logits(m, m - 1, 1, nullptr, pick == GraphPick::LmHead ? pick_slot : -1);
    if (mode == LogitRows::All) enqueue_logits(m, 0, m);
    // Fed: the next step's token, and its position one on (the graph is launched at every position).
    const cuda::StepFeed feed{pos_, tokens_, 0, /*advance=*/true};
    int* out = host_token_dev_ + pick_slot;
    if (pick == GraphPick::Argmax) cuda::argmax(logits_, cfg_.vocab_size, out, stream_, feed);
    if (pick == GraphPick::TopK)
      cuda::sample_top_k_at(logits_, cfg_.vocab_size, draw_dev_ + pick_slot, top_k_, out, stream_, feed);
  });
  return graphs_.emplace(key, exec).first->second;
}

namespace {

// What a one-row decode step's attention requests into L2 of its layer's gate/up weights (cuda::L2LookAhead):
// decode_l2_look_ahead_bytes() in all, the last part of each eighth of the packed rows, so that the GEMV's blocks
// (8-16 K slices on 7B-70B shapes, each reading its rows in order) find the rows they read last in L2.
constexpr int kLookAheadStrides = 8;
cuda::L2LookAhead gate_up_look_ahead(const cuda::QWeight& w) {
  const size_t bytes = (size_t)w.K / 8 * w.N * sizeof(uint32_t), stride = bytes / kLookAheadStrides;
  const size_t request = cuda::kL2LookAheadRequest;
  const size_t chunk = std::min(stride, cuda::decode_l2_look_ahead_bytes() / kLookAheadStrides) / request * request;
  if (!w.qweight || chunk == 0 || stride % 16 != 0) return {};
  return {w.qweight, stride, chunk, kLookAheadStrides};
}

}  // namespace

// Decode with the RMSNorms folded into the GEMVs, 5 kernels per layer: q/k/v (normalizing h while staging),
// attention (RoPE + KV write + split combine), o_proj (adds into h), gate/up (normalizing), down (SiLU-gate while
// staging; adds into h). Every buffer a kernel accumulates into is zeroed by an earlier kernel that runs after the
// buffer's last reader.
// Where they can (defer_norms_), the q/k/v and gate/up GEMVs defer their RMSNorm factor: they multiply h by the
// norm weights only and sum h's squares themselves (GemvInput::RmsNormDeferred), and the next kernel (attention,
// down) applies the factor. Otherwise o_proj and down_proj square their finished outputs for the next GEMV, which
// costs the last block of every column slice a fence, a counter and a re-read at the end of the kernel (7B decode
// on the H200: 575 t/s that way, 615 deferred; docs/PERF-NOTES.md, session 11). Deferred, the last down_proj of
// a stage still squares its output, for lm_head's norm (the next stage's first q/k/v sums its input itself, as every
// layer does, so a split model computes what an unsplit one does).
void Stage::enqueue_decode_layers(int m) {
  const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
            D = cfg_.head_dim;
  const size_t qkv_floats = (size_t)m * (H + 2 * KV) * D, layer_elems = (size_t)KV * S_ * D;
  if (m == 1 && step_ready_ && cuda::persistent_decode_flag()) {
    // One row: every layer in one persistent kernel (kernels_decode_persistent.cu), which wants q/k/v and
    // gate/up zero at its start and leaves h's sum of squares for the fused lm_head.
    cuda::embed_rows(embed_, tokens_, 1, hid, h_, stream_, nullptr, {qkv_, qkv_floats}, {gu_, (size_t)2 * I});
    cuda::decode_step(step_, stream_);
    return;
  }
  const int splits = cuda::attention_rope_splits(m, H, KV, D, S_);
  const float eps = cfg_.rms_norm_eps;
  const bool defer = defer_norms_;
  const unsigned ablate = cuda::decode_ablation();
  const bool skip_attention = ablate & cuda::kAblateAttention, skip_sums = ablate & cuda::kAblateSumsOfSquares;
  // How q/k/v and gate/up take h (the ablation's Half input: h's bytes read as fp16, timing only).
  const cuda::GemvInput norm_input = (ablate & cuda::kAblateNormStaging) ? cuda::GemvInput::Half
                                     : defer                             ? cuda::GemvInput::RmsNormDeferred
                                                                         : cuda::GemvInput::RmsNorm;
  float* attn_sum_sq = row_sum_sq_;                    // h's row sums of squares before attention
  float* mlp_sum_sq = row_sum_sq_ + cuda::kGemvMaxRows;  // ... and before the MLP
  // Later stages: receive() brought h_ and its sums of squares, and zeroed qkv_ and mlp_sum_sq.
  // Deferred, every q/k/v sums h's squares itself: embed_rows zeroes both sums instead of writing the first.
  if (first_)
    cuda::embed_rows(embed_, tokens_, m, hid, h_, stream_, defer ? nullptr : attn_sum_sq, {qkv_, qkv_floats},
                     defer ? cuda::ZeroFill{row_sum_sq_, (size_t)2 * cuda::kGemvMaxRows}
                           : cuda::ZeroFill{mlp_sum_sq, (size_t)m});
  const std::vector<bool> one_launch_mlp = one_launch_mlp_layers(m, ablate);
  // The residual stream: h_, or gu_'s first hid floats after an odd number of one-launch MLPs (which read one
  // buffer and write the other); one_launch_mlp_layers makes the count even, so the stage ends in h_.
  float* h = h_;
  for (size_t li = 0; li < layers_.size(); ++li) {
    const GpuLayer& l = layers_[li];
    const bool last = li + 1 == layers_.size();
    float* h_next = h == h_ ? gu_ : h_;
    cuda::GemvFusion qkv;
    qkv.in_sum_sq = attn_sum_sq, qkv.in_norm = l.input_norm, qkv.eps = eps;
    if (norm_input == cuda::GemvInput::RmsNormDeferred && l.qkv_norm_rows)
      qkv.in_norm = l.qkv_norm_rows, qkv.in_norm_rows = true;
    if (one_launch_mlp[li])
      qkv.zero[0] = {h_next, (size_t)hid};  // the MLP adds into it; its last reader was the previous MLP
    else
      qkv.zero[0] = {gu_, (size_t)m * 2 * I};  // down_proj (previous layer) has read it
    if (defer) qkv.zero[1] = {mlp_sum_sq, (size_t)m};  // ... and these (gate/up sums into them)
    cuda::gemv_q4(l.qkv.q, h, norm_input, m, hid, qkv_, (H + 2 * KV) * D, stream_, {}, qkv);
    cuda::DeferredNorm qkv_norm;
    if (defer) qkv_norm = {attn_sum_sq, hid, eps};
    if (!skip_attention)
      cuda::attention_rope(qkv_, rope_table(), kcache_ + li * layer_elems, vcache_ + li * layer_elems, m, H, KV, D, S_,
                           pos_, splits, work_, attn_done_, att_, stream_, qkv_norm,
                           m == 1 ? gate_up_look_ahead(l.gate_up.q) : cuda::L2LookAhead{});
    cuda::GemvFusion o;
    if (!defer && !skip_sums) o.out_sum_sq = mlp_sum_sq, o.col_done = col_done_;
    o.zero[0] = {qkv_, qkv_floats};            // attention has read it
    o.zero[1] = {attn_sum_sq, (size_t)m};      // q/k/v and attention have read it; q/k/v or down_proj sum into it
    cuda::gemv_q4(l.o.q, att_, cuda::GemvInput::Half, m, H * D, h, hid, stream_, {}, o);
    if (one_launch_mlp[li]) {
      cuda::mlp_decode(l.gate_up.q, l.down.q, l.post_norm, eps, h, h_next, stream_);
      h = h_next;
      continue;
    }
    cuda::GemvFusion gate_up;
    gate_up.in_sum_sq = mlp_sum_sq, gate_up.in_norm = l.post_norm, gate_up.eps = eps;
    if (norm_input == cuda::GemvInput::RmsNormDeferred && l.gate_up_norm_rows)
      gate_up.in_norm = l.gate_up_norm_rows, gate_up.in_norm_rows = true;
    cuda::gemv_q4(l.gate_up.q, h, norm_input, m, hid, gu_, 2 * I, stream_, {}, gate_up);
    cuda::GemvFusion down;
    if (last || (!defer && !skip_sums)) down.out_sum_sq = attn_sum_sq, down.col_done = col_done_;
    if (defer) down.in_sum_sq = mlp_sum_sq, down.norm_dim = hid, down.eps = eps;
    else down.zero[0] = {mlp_sum_sq, (size_t)m};  // gate/up has read it; the next o_proj sums into it
    cuda::gemv_q4(l.down.q, gu_, cuda::GemvInput::SiluGateUp, m, 2 * I, h, hid, stream_, {}, down);
  }
}

// Which layers of a decode step run their MLP as one launch (cuda::mlp_decode, opt-in: slower on the H200,
// docs/PERF-NOTES.md session 28) instead of gate/up then down_proj: one row, deferred norms, where the kernel fits
// the weights, and not the stage's last layer (its down_proj squares h for lm_head or the next stage). Each such
// MLP moves the residual stream to the other buffer, so the count is kept even (the first layer left out if need
// be) and the stage ends in h_.
std::vector<bool> Stage::one_launch_mlp_layers(int m, unsigned ablate) const {
  std::vector<bool> on(layers_.size(), false);
  if (m != 1 || !defer_norms_ || ablate || !cuda::fused_mlp_flag() || gu_floats_ < (size_t)cfg_.hidden_size)
    return on;
  size_t count = 0;
  for (size_t li = 0; li + 1 < layers_.size(); ++li)
    if (cuda::mlp_decode_fits(layers_[li].gate_up.q, layers_[li].down.q)) on[li] = true, ++count;
  if (count % 2 == 1)
    for (size_t li = 0; li < on.size(); ++li)
      if (on[li]) {
        on[li] = false;
        break;
      }
  return on;
}

// Decides once, before any decode graph is captured, whether every q/k/v and gate/up GEMV takes its RMSNorm
// deferred (enqueue_decode_layers, receive).
void Stage::choose_decode_norms() {
  defer_norms_ = cuda::deferred_norm_flag() && std::all_of(layers_.begin(), layers_.end(), [](const GpuLayer& l) {
                   return cuda::gemv_q4_defers_norm(l.qkv.q) && cuda::gemv_q4_defers_norm(l.gate_up.q);
                 });
}

// The persistent one-row decode kernel's plan: per-layer descriptors on the device, its counters, and the
// launch shape. Models it can't run (mixed layer shapes, a dense layer, too little shared memory) keep the
// 5-kernel path (step_ready_ false).
void Stage::prepare_decode_step() {
  // Only when asked for (XLLAMA_PERSISTENT_DECODE=1: slower than the 5-kernel path today, see PERF-NOTES),
  // and for one stage holding every layer and the embeddings.
  if (!cuda::persistent_decode_flag() || !all_quantized_ || !(first_ && last_)) return;
  const size_t layer_elems = (size_t)cfg_.num_kv_heads * S_ * cfg_.head_dim;
  std::vector<cuda::DecodeLayer> host(layers_.size());
  for (size_t li = 0; li < layers_.size(); ++li) {
    const GpuLayer& l = layers_[li];
    cuda::DecodeLayer& d = host[li];
    d.lin[0] = l.qkv.q, d.lin[1] = l.o.q, d.lin[2] = l.gate_up.q, d.lin[3] = l.down.q;
    d.input_norm = l.input_norm, d.post_norm = l.post_norm;
    d.kcache = kcache_ + li * layer_elems, d.vcache = vcache_ + li * layer_elems;
  }
  cuda::DecodeStep st;
  st.num_layers = cfg_.num_layers, st.hidden = cfg_.hidden_size, st.inter = cfg_.intermediate_size;
  st.heads = cfg_.num_heads, st.kv_heads = cfg_.num_kv_heads, st.head_dim = cfg_.head_dim, st.max_seq = S_;
  st.max_splits = cuda::attention_splits(1, cfg_.num_heads, S_), st.eps = cfg_.rms_norm_eps;
  if (!cuda::decode_step_prepare(st, host)) return;
  cuda::DecodeLayer* dev_layers = mem_.alloc<cuda::DecodeLayer>(host.size(), "scratch", &scratch_bytes_);
  XL_CUDA_CHECK(cudaMemcpy(dev_layers, host.data(), host.size() * sizeof(cuda::DecodeLayer), cudaMemcpyHostToDevice));
  const size_t ncount = cuda::decode_step_counters(cfg_.num_layers);
  unsigned* counters = mem_.alloc<unsigned>(ncount, "scratch", &scratch_bytes_);
  XL_CUDA_CHECK(cudaMemset(counters, 0, ncount * sizeof(unsigned)));
  st.layers = dev_layers, st.counters = counters;
  st.rope = rope_table(), st.pos = pos_, st.h = h_, st.qkv = qkv_, st.gu = gu_, st.att = att_, st.work = work_;
  st.head_done = attn_done_, st.final_sum_sq = row_sum_sq_;  // enqueue_logits reads row 0's sum there
  step_ = st;
  step_ready_ = true;
}

// Final norm + lm_head for rows [r0, r0 + nr) of an m-row step into rows [0, nr) of out (default logits_). After
// enqueue_decode_layers the last down_proj has left h's row sums of squares: a dense lm_head normalizes
// while staging and writes the logits (no norm kernel, no zeroing).
// pick_slot >= 0 (one row, GraphPick::LmHead): the lm_head also picks greedily into that slot, fed to the next step.
void Stage::enqueue_logits(int m, int r0, int nr, float* out, int pick_slot) {
  float* logits = out ? out : logits_;
  const int hid = cfg_.hidden_size;
  const float* h = h_ + (size_t)r0 * hid;
  if (decode_fused(m) && !lm_head_.quantized && cuda::gemv_f16_rmsnorm_supported(lm_head_.dense, hid, h, hid)) {
    const float* sum_sq = row_sum_sq_ + r0;  // enqueue_decode_layers' attn_sum_sq
    const cuda::GreedyPick pick{pick_best_, pick_done_, host_token_dev_ + std::max(pick_slot, 0), tokens_, pos_};
    cuda::gemv_f16_rmsnorm(lm_head_.dense, lm_head_.bias, hid, cfg_.vocab_size, h, hid, sum_sq, final_norm_,
                           cfg_.rms_norm_eps, nr, logits, cfg_.vocab_size, stream_, pick_slot >= 0 ? &pick : nullptr);
    return;
  }
  if (pick_slot >= 0) throw std::logic_error("enqueue_logits: no lm_head pick on this path");
  const bool gemv = nr <= cuda::kGemvMaxRows;  // GEMV rows accumulate into zeroed logits, GEMMs overwrite
  cuda::rmsnorm(h, hid, nr, hid, final_norm_, cfg_.rms_norm_eps, xn_, hid, stream_, gemv ? logits : nullptr,
                gemv ? (size_t)nr * cfg_.vocab_size : 0);
  linear(lm_head_, xn_, nr, hid, logits, cfg_.vocab_size, /*overwrite=*/!gemv);
}

}  // namespace xllama
