// A stage's layers launch by launch (cuda/stage.h): prompt chunks, whose 4-bit GEMMs run fused on Hopper or as
// dequantization tiles + cuBLAS, decode steps of models that are not all 4-bit, and perplexity scoring.
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "cuda/cublas_gemm.h"
#include "cuda/cuda_check.h"
#include "cuda/gemm_q4_wgmma.h"
#include "cuda/stage.h"

namespace xllama {

// Perplexity scoring of the chunk just run (run_chunk with LogitRows::None), last stage only: per
// kLogitRows slice the final norm + lm_head into logits_ and token_nll into score_nll_, so the logits
// stay on the GPU and only m floats come back. Slices with no target skip the lm_head (llama.cpp-style
// runs score only half of each chunk).
void Stage::score_chunk(const int32_t* targets, int m, float* nll) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  XL_CUDA_CHECK(cudaMemcpyAsync(score_targets_, targets, (size_t)m * sizeof(int), cudaMemcpyHostToDevice, stream_));
  // The passes' logits go to gate/up's buffer where it holds more rows than logits_ (it is free once the layers
  // are done): a 2,048-row chunk of a 7B takes 3 lm_head GEMMs instead of 32, each reading the whole lm_head.
  const size_t gu_rows = gu_floats_ / cfg_.vocab_size;
  float* pass_logits = gu_rows > (size_t)kLogitRows ? gu_ : logits_;
  const int pass_rows = (int)std::min<size_t>(std::max<size_t>(gu_rows, kLogitRows), rows_);
  for (int r0 = 0; r0 < m; r0 += pass_rows) {
    const int nr = std::min(pass_rows, m - r0);
    if (std::all_of(targets + r0, targets + r0 + nr, [](int32_t id) { return id < 0; })) continue;
    enqueue_logits(m, r0, nr, pass_logits);
    cuda::token_nll(pass_logits, nr, cfg_.vocab_size, score_targets_ + r0, score_nll_ + r0, stream_);
  }
  XL_CUDA_CHECK(cudaMemcpyAsync(nll, score_nll_, (size_t)m * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int i = 0; i < m; ++i)
    if (targets[i] < 0) nll[i] = 0.f;  // skipped slices left score_nll_ untouched
}

// A prompt chunk's layers: its length's graph if it has one (cuda/graph_capture.h), else launch by launch, and
// the second time a length comes, its graph is captured right after, on the host while the GPU runs the chunk.
void Stage::enqueue_prompt_layers(int m) {
  if (prompt_graphs_.launch(m, stream_)) {
    if (deq_ahead_) deq_ahead_->after_graph(stream_);
    return;
  }
#ifdef XLLAMA_HAVE_CUBLAS
  if (sm_targets_) sm_targets_->begin_chunk();
#endif
  enqueue_layers(m);
  // The run just enqueued, this length's second, timed every GEMM shape of it that a chunk before had run on every
  // SM (gemm_sm_targets.h; they depend on m alone): the capture times none.
  if (!prompt_graphs_.capture_next(m)) return;
  const cudaGraphExec_t exec = cuda::capture_graph(stream_, [&] {
    if (deq_ahead_) deq_ahead_->join_capture(stream_);
    enqueue_layers(m);
    if (deq_ahead_) deq_ahead_->leave_capture(stream_);
  });
  if (deq_ahead_) deq_ahead_->after_graph(stream_);
  prompt_graphs_.add(m, exec, stream_);
}

// y[m, N] += x[m, K] W^T (+ bias); overwrite (prompt chunks only): y = x W^T (+ bias).
void Stage::linear(const GpuLinear& l, const __half* x, int m, int x_stride, float* y, int y_stride,
                   bool overwrite) {
  if (m <= cuda::kGemvMaxRows) {
    if (overwrite) throw BackendError(kCudaError, "linear: GEMV rows accumulate, they can't overwrite");
    if (l.quantized)
      cuda::gemv_q4(l.q, x, cuda::GemvInput::Half, m, x_stride, y, y_stride, stream_);
    else
      cuda::gemv_f16(l.dense, l.bias, l.K, l.N, x, m, x_stride, y, y_stride, stream_);
    return;
  }
  prompt_linear(l, x, m, x_stride, y, y_stride, overwrite ? 0.f : 1.f);
}

Stage::FusedPromptGemm Stage::fused_prompt_gemm_setting() {
  const char* v = std::getenv("XLLAMA_FUSED_PROMPT_GEMM");
  if (!v || !*v) return FusedPromptGemm::Preferred;
  return *v == '0' ? FusedPromptGemm::Off : FusedPromptGemm::All;
}

bool Stage::use_fused_gemm(const cuda::QWeight& q, int m, bool accumulate) const {
  if (!cuda::gemm_q4_wgmma_supported() || !cuda::gemm_q4_wgmma_fits(q)) return false;
  if (fused_prompt_gemm_ == FusedPromptGemm::All) return true;
  return fused_prompt_gemm_ == FusedPromptGemm::Preferred && cuda::gemm_q4_wgmma_preferred(q, m, accumulate);
}

// Prompt chunks (dequantization tiles + GEMMs): y = beta y + x W^T (+ bias). T: float, or __half for q/k/v and
// gate/up (beta 0; read once: fp16 as transformers rounds them, half the bytes for the GEMM to write and for
// RoPE / SiLU to read).
template <class T>
void Stage::prompt_linear(const GpuLinear& l, const __half* x, int m, int x_stride, T* y, int y_stride, float beta) {
  if (l.quantized && fused_scratch_ && use_fused_gemm(l.q, m, beta != 0.f)) {
    cuda::gemm_q4_wgmma_input(x, m, l.K, x_stride, l.q.perm, xperm_, stream_);
    cuda::gemm_q4_wgmma(l.q, xperm_, m, y, y_stride, beta != 0.f, fused_scratch_, stream_);
  } else if (l.quantized) {
    const __half* a = x;
    int lda = x_stride;
    if (l.q.perm) {
      cuda::gather_columns(x, m, l.K, x_stride, l.q.perm, xperm_, stream_);
      a = xperm_, lda = l.K;
    }
    const int chunk = column_chunk(l.N, l.K, deq_halves_);
    const bool skip_dequant = cuda::prompt_ablation() & cuda::kAblatePromptDequant;
    for (int n0 = 0; n0 < l.N; n0 += chunk) {
      const int n1 = std::min(l.N, n0 + chunk);
      const __half* w = deq_;
      if (skip_dequant) {
        // (measurement only: the GEMM reads whatever deq_ holds)
      } else if (deq_ahead_) {
        w = deq_ahead_->dequant(l.q, n0, n1, stream_);
      } else {
        cuda::dequant_q4(l.q, n0, n1, deq_, stream_);
      }
      gemm(a, lda, w, n1 - n0, true, y + n0, y_stride, m, n1 - n0, l.K, beta);
      if (deq_ahead_ && !skip_dequant) deq_ahead_->release(stream_);
    }
  } else {
    gemm(x, x_stride, l.dense, l.K, false, y, y_stride, m, l.N, l.K, beta);
  }
  if (l.bias) cuda::add_bias(y, m, l.N, y_stride, l.bias, stream_);
}

// C[m, N] = beta C + A[m, K] . B with B(k, n) = b_kn ? B[k*ldb + n] : B[n*ldb + k]; beta is 1 or 0 (fp16 C: 0).
template <class T>
void Stage::gemm(const __half* A, int lda, const __half* B, int ldb, bool b_kn, T* C, int ldc, int m, int N,
                 int K, float beta) {
  constexpr bool f32 = std::is_same_v<T, float>;
#ifdef XLLAMA_HAVE_CUBLAS
  const auto gemm_ex = [&](T* c, int ldc_c, int sm_target) {
    if (sm_target != cublas_sm_target_) {  // a handle setting: changed only when it differs
      cublasSetSmCountTarget(cublas_, sm_target);
      cublas_sm_target_ = sm_target;
    }
    return cuda::cublas_gemm(cublas_, {A, lda, B, ldb, b_kn, c, ldc_c, f32, m, N, K, beta});
  };
  const bool accumulate = beta != 0.f;
  const auto shape = cuda::GemmSmTargets::shape_of(m, N, K, f32, accumulate);
  int sm_target = sm_targets_ ? sm_targets_->target(shape) : 0;
  if (sm_target < 0) {  // the shape's first GEMM in its second chunk: timed before it runs
    // Timing runs write C. An overwriting GEMM may run again on its own output; an accumulating one (o_proj and
    // down_proj into h) is timed into gu_ instead, whose last reader in a chunk (silu_mul) ran before either.
    const bool scratch_fits = (size_t)m * N * sizeof(T) <= gu_floats_ * sizeof(float);
    sm_target = 0;
    if (!accumulate || scratch_fits) {
      T* timed = accumulate ? reinterpret_cast<T*>(gu_) : C;
      const int timed_ld = accumulate ? N : ldc;
      const cuda::GemmSmTargets::Gemm timed_gemm{[&](int t) { gemm_ex(timed, timed_ld, t); }, timed, m,
                                                  (size_t)N * sizeof(T), (size_t)timed_ld * sizeof(T)};
      sm_target = sm_targets_->tune(shape, stream_, timed_gemm);
    }
  }
  cublasStatus_t st = gemm_ex(C, ldc, sm_target);
  if (st != CUBLAS_STATUS_SUCCESS)
    throw BackendError(kCudaError, "cublasGemmEx failed with status " + std::to_string((int)st));
#else
  if (f32 && beta == 0.f) XL_CUDA_CHECK(cudaMemset2DAsync(C, (size_t)ldc * 4, 0, (size_t)N * 4, m, stream_));
  cuda::gemm_f16_wmma(A, lda, B, ldb, b_kn, C, ldc, m, N, K, stream_);
#endif
}

void Stage::enqueue_layers(int m) {
  const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
            D = cfg_.head_dim;
  const int qkv_dim = (H + 2 * KV) * D;
  const size_t layer_elems = (size_t)KV * S_ * D;
  if (decode_fused(m)) return enqueue_decode_layers(m);
  // GEMV rows accumulate into zeroed outputs; prompt chunks' GEMMs overwrite them (no zeroing, no C read)
  const bool gemv = m <= cuda::kGemvMaxRows;
  const int splits = gemv ? cuda::attention_rope_splits(m, H, KV, D, S_) : 1;
  if (first_) cuda::embed_rows(embed_, tokens_, m, hid, h_, stream_);  // later stages: receive() filled h_
  const unsigned skip = gemv ? 0u : cuda::prompt_ablation();
  for (size_t li = 0; li < layers_.size(); ++li) {
    const GpuLayer& l = layers_[li];
    __half* kc = kcache_ + li * layer_elems;
    __half* vc = vcache_ + li * layer_elems;
    if (!(skip & cuda::kAblatePromptNorms))
      cuda::rmsnorm(h_, hid, m, hid, l.input_norm, cfg_.rms_norm_eps, xn_, hid, stream_, gemv ? qkv_ : nullptr,
                    gemv ? (size_t)m * qkv_dim : 0);
    if (gemv) {  // decode: RoPE and the KV write happen inside the attention kernel
      linear(l.qkv, xn_, m, hid, qkv_, qkv_dim);
      cuda::attention_rope(qkv_, rope_table(), kc, vc, m, H, KV, D, S_, pos_, splits, work_, attn_done_, att_,
                           stream_);
    } else {  // prompt: q/k/v in fp16 in qkv_'s memory
      __half* qkv16 = reinterpret_cast<__half*>(qkv_);
      prompt_linear(l.qkv, xn_, m, hid, qkv16, qkv_dim, 0.f);
      if (!(skip & cuda::kAblatePromptAttention)) {
        cuda::rope_qkv_to_cache(qkv16, m, H, KV, D, rope_table(), pos_, q_, kc, vc, S_, stream_);
        cuda::attention_prefill(q_, kc, vc, m, H, KV, D, S_, pos_, att_, stream_);
      }
    }
    linear(l.o, att_, m, H * D, h_, hid);  // residual add: o_proj accumulates into h
    if (!(skip & cuda::kAblatePromptNorms))
      cuda::rmsnorm(h_, hid, m, hid, l.post_norm, cfg_.rms_norm_eps, xn_, hid, stream_, gemv ? gu_ : nullptr,
                    gemv ? (size_t)m * 2 * I : 0);
    if (!gemv) {  // prompt: gate/up in fp16 in gu_'s memory
      __half* gu16 = reinterpret_cast<__half*>(gu_);
      prompt_linear(l.gate_up, xn_, m, hid, gu16, 2 * I, 0.f);
      if (!(skip & cuda::kAblatePromptSilu)) cuda::silu_mul(gu16, m, I, act_, stream_);
      linear(l.down, act_, m, I, h_, hid);
    } else {
      linear(l.gate_up, xn_, m, hid, gu_, 2 * I);
      if (l.down.quantized) {  // SiLU(gate) * up fused into the staging
        cuda::gemv_q4(l.down.q, gu_, cuda::GemvInput::SiluGateUp, m, 2 * I, h_, hid, stream_);
      } else {
        cuda::silu_mul(gu_, m, I, act_, stream_);
        linear(l.down, act_, m, I, h_, hid);
      }
    }
  }
}

}  // namespace xllama
