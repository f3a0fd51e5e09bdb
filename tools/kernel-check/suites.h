// The kernel check's suites, one file each; main.cu picks what runs from its flags.
#pragma once
#include "tools/kernel-check/harness.h"

namespace xllama::kcheck {

// ---- check_linear.cu: the decode path's linear kernels ----
void check_permute_q4(int K, int N, int gs);
void check_gather_columns(int m, int K, int x_stride);
void check_permute_columns(int rows, int N);
void check_gemv_q4(int K, int N, int gs, int m, bool act_order, bool asym, int offset, float x_range = 1.f,
                   bool outliers = false);
void check_gemv_q4_nonfinite();
void check_gemv_q4_silu(int K, int N, int gs, int m, bool act_order);
void check_gemv_q4_rmsnorm(int K, int N, int gs, int m, bool act_order);
void check_gemv_q4_sum_sq(int K, int N, int gs, int m, GemvInput input);
void check_mlp_decode(int hid, int I, int gs, bool act_order, bool asym);
void check_mlp_decode_shapes();
void check_embed(int m, int hidden, int vocab);
void check_dense(int K, int N, int m, bool use_gemm);
void check_gemv_f16_rmsnorm(int K, int N, int m);
void check_lm_head_wave_bits(int K, int N);
void check_lm_head_pick(int K, int N);

// ---- check_prompt_gemm.cu: the prompt path's 4-bit GEMMs ----
void check_gemm_q4_wgmma(const QWeight& q, const Dev<__half>& dx, int m, const std::vector<double>& ref,
                         bool act_order);
void check_dequant_q4_exact(int K, int N, int gs, bool act_order, bool asym, int n0, int n1);
void check_gemm_q4(int K, int N, int gs, int m, bool act_order);

// ---- check_layers.cu: norms, SiLU, RoPE, attention ----
void check_rmsnorm(int m, int n);
void check_silu(int m, int I, bool half_input = false);
void check_rope(int m, int H, int KV, int D, int pos, int S, bool half_input = false);
const char* attn_threads_tag();
void check_attention_rope(int m, int H, int KV, int D, int pos, int S, bool look_ahead = false);
void check_attention(int m, int H, int KV, int D, int len_after, int S, bool prefill_splits,
                     int min_keys = kAttnMinKeysPerSplit);
void check_decode_attention();
void check_prompt_attention();

// ---- check_sampling.cu: the device's token picks, token_nll ----
int ref_sample(const std::vector<float>& l, const TokenSampling& s);
bool near_tie_pick(const std::vector<float>& l, const TokenSampling& s, int a, int b);
void check_sampling(int vocab);
void check_penalized_sampling(int vocab);
void check_token_nll(int rows, int vocab, float offset);

// ---- time_kernels.cu: single-kernel timings ----
void time_gemv_q4(const char* what, int K, int N, int m);
void time_gemv_f16(const char* what, int K, int N);
void time_lm_head_rmsnorm(int K, int N);
void time_picks(int vocab);
void time_attention(int H, int KV, int D, int len);
void time_attention_split_rule(int H, int KV, int D, int len, int S);
void time_attention_prefill(int H, int KV, int D, int m);
void time_prompt_gemm(const char* what, int K, int N, int m, bool half_out);
void time_prompt_gemms();
void time_fused_fp32_variants();

// ---- time_read.cu: what a kernel that only reads gets from DRAM ----
void time_read_ceiling();  // then the chained reads

// ---- check_backend.cu: whole-backend checks ----
void check_backend_paths(int layers = 2);
void check_backend_paths_every_setting();
void check_backend_gptq();
void check_prompt_graphs();

// ---- bench_backend.cu: whole-backend benchmarks and probes ----
void time_decode_step(const char* name, const ModelConfig& c, int len, double copy_gbs, int threads);
void bench_backend(const char* name, const ModelConfig& c, int ctx, int prompt, int gen, int chunk = 512);
void tune_gemv_q4();
void time_decode_gemv_shapes();
void bench_decode_variants();
void time_decode_attention();
void time_release_latency();  // time_release.cu
void bench_decode_depths();
void decode_timeline(const char* name, const ModelConfig& c, int ctx, int prompt);
void decode_timelines();
void bench_ablations();
void bench_prompt_ablations();
void bench_prompt_settings();
void bench_dequant_ahead();
void bench_prompt_speeds();
void bench_prompt_graphs();
void bench_prompt_switch(const char* name);
void time_decode_steps(bool quick = false);
void profile_step(bool decode, int prompt = 512);

// ---- gemm_sm.cu: cuBLAS prompt GEMM shapes (cuBLAS builds) ----
#ifdef XLLAMA_HAVE_CUBLAS
void time_gemm_algos(const char* what, int K, int N, int m, bool f32);
void time_gemm_sm_targets(const char* what, int K, int N, int m, bool f32);
void time_gemm_sm_shapes();
void check_gemm_sm_targets(int K, int N, int m, bool f32);
void time_gemm_algo_shapes();
#endif

}  // namespace xllama::kcheck
