// xllama kernel check: runs every CUDA kernel of the backend on fresh random inputs against a
// straightforward float64 host reference, then times the decode GEMVs at 7B shapes.
//   xllama_kernel_check [--no-timing] [--tune] [--bench-prompt [7b]] [--prompt-attention] [--decode-attention]
//                       [--decode-step [quick]] [--bench-depths] [--time-attention]
//                       [--profile-step prefill|prefill2048|decode] [--bench-decode] [--bench-ablate] [--timeline]
//                       [--prompt-gemm [checks]] [--bench-dequant-ahead] [--gemm-algos] [--gemm-sm] [--backend-paths]
//                       [--release-latency]
// --tune also times every 4-bit GEMV variant on the 7B/13B/70B decode shapes, then the prompt path's settings
// (dequantization tile, chunk) side by side; --decode-step [quick] runs only the persistent decode kernel's timings
// (quick: 7B at length 128, for a profiler); --bench-prompt times the prompt attention and the dummies' prompt
// speeds (--bench-prompt 7b: the 7B's 512 and 2048 only, as the backend is set);
// --prompt-attention / --decode-attention run only the prompt / decode attention's checks (for
// compute-sanitizer's racecheck); --bench-depths times decode at bench's depths on the dummies
// (XLLAMA_KC_MODELS=7B,13B: those only); --release-latency times a load right after a kernel boundary
// (time_release.cu); --time-attention
// times the decode attention alone (XLLAMA_PROFILE_ONCE=1: two untimed launches per case, for ncu); --profile-step
// runs one 7B prompt chunk (512 or 2048 tokens) or decode step between cudaProfilerStart/Stop (ncu
// --profile-from-start off); --bench-decode times decode's variants (dots, where the norms apply) side by side;
// --bench-ablate times decode steps with parts left out (what they cost inside the graph); --timeline (a build with
// -DXLLAMA_KERNEL_TRACE=ON) shows when each decode kernel is released inside the graph and what its block 0 spends
// where. --prompt-gemm checks the prompt GEMMs, then times the fused Hopper GEMM against dequantization + cuBLAS
// on 7B and 70B shapes (--prompt-gemm checks: only the checks, for compute-sanitizer). --bench-dequant-ahead times
// a GEMM with the next tile's dequantization beside it, then the dummies' prompts with XLLAMA_DEQUANT_AHEAD off and
// on, side by side. --gemm-algos (cuBLAS builds) times the prompt
// GEMM shapes through cublasGemmEx's choice and every cublasLt heuristic candidate; --gemm-sm times them at SM-count
// targets from the GPU's down to 96. --backend-paths runs only the whole-backend path checks (decode steps against
// prompt chunks, sampling, decode pipelining, scoring) in every setting, for repeating them.
// Prints name / max rel err / PASS|FAIL; exits 1 on any failure.
#include <cstdlib>

#include "tools/kernel-check/suites.h"

using namespace xllama::kcheck;

namespace {
// The prompt GEMMs' checks (dequantization + wmma / cuBLAS, and the fused Hopper kernel where the GPU runs it).
void check_prompt_gemms() {
  check_gemm_q4(512, 512, 128, 40, false);
  check_gemm_q4(512, 512, 64, 77, true);
  check_gemm_q4(1024, 768, 32, 300, false);  // two groups per k64 step; three token tiles, the last partial
  check_gemm_q4(2048, 512, 128, 200, false);  // 32 k64 steps a tile: stream-K cuts tiles in several places
}
}  // namespace

int main(int argc, char** argv) {
  bool timing = true, tune = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-timing") == 0) timing = false;
    if (std::strcmp(argv[i], "--tune") == 0) tune = true;
    if (std::strcmp(argv[i], "--profile-step") == 0 && i + 1 < argc) {
      const bool decode = std::strcmp(argv[i + 1], "decode") == 0;
      const int prompt = std::strcmp(argv[i + 1], "prefill2048") == 0 ? 2048 : 512;
      guarded("profile step", [&] { profile_step(decode, prompt); });
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--prompt-gemm") == 0) {  // the prompt GEMMs' checks, then their shapes timed
      guarded("prompt gemms", check_prompt_gemms);
      const bool checks_only = i + 1 < argc && std::strcmp(argv[i + 1], "checks") == 0;
      if (!checks_only) guarded("prompt gemm timings", time_prompt_gemms);
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
#ifdef XLLAMA_HAVE_CUBLAS
    if (std::strcmp(argv[i], "--gemm-sm") == 0) {  // cublasGemmEx's time per SM-count target
      guarded("gemm sm targets", time_gemm_sm_shapes);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--gemm-algos") == 0) {  // cublasGemmEx's choice against cublasLt's candidates
      guarded("gemm algorithms", time_gemm_algo_shapes);
      return failures ? 1 : 0;
    }
#endif
    if (std::strcmp(argv[i], "--bench-prompt-graph") == 0) {  // prompt chunks as graphs or not, side by side
      guarded("prompt graphs", check_prompt_graphs);
      guarded("bench prompt graphs", bench_prompt_graphs);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-dequant-ahead") == 0) {  // the prompt's dequantization on a side stream
      guarded("bench dequant ahead", bench_dequant_ahead);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-prompt") == 0) {  // prompt speeds (run per build or setting to compare)
      if (i + 1 < argc && std::strcmp(argv[i + 1], "7b") == 0) {  // the 7B's 512 and 2048 only, as the backend runs
        const ModelConfig c7 = llama_7b_config();
        guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 512, 8, 512); });
        guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 512, 8, 2048); });  // the CLI's chunk
        guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 8, 2048); });
        return failures ? 1 : 0;
      }
      if (i + 1 < argc && std::strcmp(argv[i + 1], "dummies") == 0) {  // unfused, every dummy at 512 and 2048
        for (const ModelConfig& c : {llama_7b_config(), llama_13b_config(), llama_70b_config()}) {
          const char* name = c.hidden_size == 4096 ? "7B" : c.hidden_size == 5120 ? "13B" : "70B";
          guarded("bench", [&] { bench_backend(name, c, 4096, 512, 8, 512); });
          guarded("bench", [&] { bench_backend(name, c, 4096, 2048, 8, 2048); });
        }
        return failures ? 1 : 0;
      }
      guarded("bench prompt speeds", bench_prompt_speeds);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--backend-paths") == 0) {  // only the backend's path checks (decode pipelining too)
      check_backend_paths_every_setting();
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--sampling") == 0) {  // only the device picks' checks, then their times
      // --sampling VOCAB: one vocabulary size (short enough for compute-sanitizer's racecheck)
      const int one = i + 1 < argc ? std::atoi(argv[i + 1]) : 0;
      for (int vocab : {32000, 128256, 512, 1001, 2049})
        if (!one || vocab == one) check_sampling(vocab);
      for (int vocab : {32000, 128256, 1001})
        if (!one || vocab == one) check_penalized_sampling(vocab);
      if (timing)
        for (int vocab : {32000, 128256}) time_picks(vocab);
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--time-read") == 0) {  // the DRAM's read ceiling against the copy bandwidth
      time_read_ceiling();
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--time-lm-head") == 0) {  // the decode lm_head in one wave against its waves
      for (int K : {4096, 5120, 8192}) time_lm_head_rmsnorm(K, 32000);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--time-fused-fp32") == 0) {  // fp32 fused GEMMs: bulk against register reductions
      guarded("fused fp32 variants", time_fused_fp32_variants);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--prompt-attention") == 0) {  // only the prompt attention's checks
      guarded("prompt attention", check_prompt_attention);
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--decode-attention") == 0) {  // only the decode attention's checks
      guarded("decode attention", check_decode_attention);
      std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--mlp") == 0) {  // only the one-launch decode MLP's checks (XLLAMA_MLP_SHAPE picks)
      check_mlp_decode_shapes();
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-ablate") == 0) {  // decode steps with parts left out (timing only)
      guarded("bench ablations", bench_ablations);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-7b-at") == 0) {  // 7B decode after prompts of the lengths that follow
      const ModelConfig c7 = llama_7b_config();
      for (int j = i + 1; j < argc; ++j) {
        const int prompt = std::atoi(argv[j]);
        guarded("bench 7B", [&] { bench_backend("7B", c7, prompt + 256, prompt, 64, 2048); });
      }
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-prompt-switch") == 0 && i + 1 < argc) {  // NAME off and on, or NAME=v1,v2,...
      guarded("bench prompt switch", [&] { bench_prompt_switch(argv[i + 1]); });
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-prompt-ablate") == 0) {  // prompt chunks with parts left out (timing only)
      guarded("bench prompt ablations", bench_prompt_ablations);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--release-latency") == 0) {  // a load right after a kernel boundary, and of what
      guarded("release latency", time_release_latency);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--time-attention") == 0) {
      guarded("time decode attention", time_decode_attention);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--timeline") == 0) {
      guarded("decode timelines", decode_timelines);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-depths") == 0) {  // decode at three depths, for the environment's settings
      guarded("bench decode depths", bench_decode_depths);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--bench-decode") == 0) {  // decode's variants, side by side
      guarded("bench decode variants", bench_decode_variants);
      return failures ? 1 : 0;
    }
    if (std::strcmp(argv[i], "--decode-step") == 0) {  // only the persistent decode kernel's timings (profiling)
      const bool quick = i + 1 < argc && std::strcmp(argv[i + 1], "quick") == 0;
      guarded("decode steps", [quick] { time_decode_steps(quick); });
      return failures ? 1 : 0;
    }
  }
  try {
    cudaDeviceProp prop{};
    XL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (%d SMs)\n%-52s %12s  %s\n", prop.name, prop.multiProcessorCount, "kernel",
                "max rel err", "result");
    check_permute_q4(512, 384, 64);
    check_permute_q4(4096, 1000, 128);
    check_gemv_q4(4096, 1024, 128, 1, false, false, 1);
    check_gemv_q4(4096, 512, 128, 8, false, false, 1);
    check_gemv_q4(512, 384, 64, 3, true, false, 1);
    check_gemv_q4(512, 384, 32, 5, true, true, 1);
    check_gemv_q4(1024, 256, 128, 2, false, true, 0);  // gptq_v2 zeros
    check_gemv_q4(64, 192, 32, 1, false, false, 1);    // the stories260K shapes
    // Grids of more than one wave (on the H200's 132 SMs): the 7B's gate/up (1.7 waves, the uncapped kernel as it
    // is), the 13B's q/k/v (the 7-blocks-per-SM kernel, reshaped into one wave; 13B down_proj below)
    check_gemv_q4(4096, 22016, 128, 1, false, false, 1);
    check_gemv_q4(5120, 15360, 128, 1, true, true, 1);
    check_gemv_q4(192, 64, 64, 7, true, false, 1);
    check_gemv_q4(2048, 256, 128, 2, false, true, 1, 4000.f);  // large activations must not overflow fp16
    check_gemv_q4(4096, 1024, 128, 1, false, false, 1, 1.f, true);
    check_gemv_q4(4096, 512, 128, 3, true, true, 1, 1.f, true);
    check_gemv_q4_nonfinite();
    check_gemv_q4_silu(1024, 256, 128, 1, false);
    check_gemv_q4_silu(512, 128, 64, 4, true);
    check_gemv_q4_silu(13824, 5120, 128, 1, true);  // more than one wave: reshaped into one (see above)
    check_gemv_q4_silu(28672, 8192, 128, 1, false);  // the 70B down_proj: 4.5 waves, the 7-block kernel as it is
    // Several column slices per block (gemv_q4_tiles_kernel) where a grid of 1-3 waves fits one wave that way: the
    // 7B's gate/up (also above), a column count that leaves the last block one slice, the 13B's gate/up (3 slices)
    const int tiled[][2] = {{4096, 22016}, {4096, 22144}, {5120, 27648}};
    for (const auto& kn : tiled) {
      const int K = kn[0], N = kn[1];
      QWeight shape;
      shape.K = K, shape.N = N, shape.group_size = 128;
      std::printf("gemv_q4 %dx%d, one row: %d column slice(s) per block\n", K, N,
                  gemv_q4_column_slices_per_block(shape, GemvInput::RmsNormDeferred));
      check_gemv_q4(K, N, 128, 1, true, false, 1);
      check_gemv_q4_rmsnorm(K, N, 128, 1, N % 256 != 0);
      check_gemv_q4_silu(K, N, 128, 1, N % 256 == 0);
    }
    for (int m = 1; m <= kGemvMaxRows; ++m) {
      check_gemv_q4_rmsnorm(m % 2 ? 512 : 1024, 384, 128, m, m % 3 == 0);
      check_gemv_q4_sum_sq(m % 2 ? 512 : 64, 320, 64, m, GemvInput::Half);  // K = 64: one block owns all of K
      check_gemv_q4_sum_sq(1024, 256, 128, m, GemvInput::SiluGateUp);
      check_embed(m, 4096, 300);
      check_gemv_f16_rmsnorm(m % 2 ? 4096 : 520, 1003, m);  // N % 8 != 0: the last block has idle warps
    }
    check_mlp_decode_shapes();
    check_embed(1, 64, 300);      // stories260K: fewer 16-byte pieces than threads in a warp
    check_embed(2, 40960, 50);    // rows wider than one round of loads
    check_gemv_f16_rmsnorm(8192, 264, kGemvMaxRows);  // 3 rows per launch fit the staging area: 3 + 3 + 2
    check_lm_head_wave_bits(4096, 32000);
    check_lm_head_wave_bits(8192, 32000);
    check_lm_head_wave_bits(520, 1003);
    check_lm_head_pick(4096, 32000);  // the 7B's lm_head: 4,000 blocks
    check_lm_head_pick(520, 1003);    // the last block has idle warps
    check_gemv_q4_rmsnorm(4096, 1024, 128, 1, false);  // the 7B hidden size
    check_gemv_q4_sum_sq(4096, 4096, 128, 1, GemvInput::Half);
    check_dequant_q4_exact(512, 384, 128, false, true, 0, 384);
    check_dequant_q4_exact(1024, 768, 32, false, false, 128, 640);  // a tile of columns, symmetric
    check_dequant_q4_exact(512, 384, 64, true, true, 0, 384);
    check_dequant_q4_exact(256, 40, 128, false, true, 4, 36);       // columns not in 8s: the generic kernel
    check_gather_columns(37, 4096, 4096);   // shared memory
    check_gather_columns(5, 24576, 24576);  // a row wider than 48 KB: the generic kernel
    check_gather_columns(9, 512, 515);      // a stride not in 8s: the generic kernel
    check_permute_columns(64, 2 * 344);
    check_prompt_gemms();
#ifdef XLLAMA_HAVE_CUBLAS
    check_gemm_sm_targets(4096, 11008, 512, false);  // a 7B gate/up half at 512 tokens: 116 of the H200's 132
    check_gemm_sm_targets(11008, 4096, 2048, true);   // 7B down_proj at 2048
    check_gemm_sm_targets(13824, 2560, 512, true);    // a 13B down_proj tile at 512 (108 in the CLI)
#endif
    check_dense(4096, 1000, 1, false);
    check_dense(4096, 1000, 4, false);
    check_dense(172, 64, 3, false);  // K not a multiple of 8
    check_dense(256, 200, 70, true);
    check_rmsnorm(3, 4096);
    check_rmsnorm(2, 64);
    check_rmsnorm(12, 4096);  // prompt rows: one block per row (vectorized)
    check_rmsnorm(40, 5120);  // the 13B hidden size
    check_rmsnorm(17, 8192);  // the 70B hidden size: 8 float4 per thread
    check_rmsnorm(9, 8196);   // too long for the vectorized kernel: the scalar one
    check_rmsnorm(11, 100);   // short rows: most threads idle
    check_silu(3, 11008);
    check_silu(70, 11008, true);  // a prompt chunk's fp16 gate/up
    check_silu(5, 10, true);      // I % 4 != 0: scalar loads
    check_rope(2, 4, 2, 128, 1000, 1100);
    check_rope(3, 8, 4, 8, 7, 16);
    check_rope(70, 8, 2, 128, 30, 128, true);  // a prompt chunk's fp16 q/k/v
    check_rope(4, 6, 3, 64, 5, 16, true);      // head_dim 64: 16 heads per stride, 12 in all
    check_rope(3, 2, 1, 6, 4, 16, true);       // head_dim 6 (D % 4 != 0): one frequency per thread
    check_prompt_attention();
    {  // both block sizes, then the other softmax update
      const int threads = attention_threads_flag();
      for (int t : {threads, threads >= 256 ? 128 : 256}) {
        attention_threads_flag() = t;
        check_decode_attention();
      }
      attention_threads_flag() = threads;
      attention_batch_flag() = !attention_batch_flag();
      check_decode_attention();
      attention_batch_flag() = !attention_batch_flag();
      attention_mma_flag() = !attention_mma_flag();  // head_dim 128 through the other kernel
      check_decode_attention();
      attention_mma_flag() = !attention_mma_flag();
    }
    check_sampling(32000);
    check_sampling(128256);
    check_sampling(512);
    check_sampling(1001);  // vocab % 4 != 0: the tail after the 16-byte loads
    check_sampling(2049);  // the top-k's last slice shorter than k: its list padded
    check_penalized_sampling(32000);
    check_penalized_sampling(128256);
    check_token_nll(1, 512, 0.f);
    check_token_nll(64, 32000, 0.f);
    check_token_nll(7, 128256, 0.f);
    check_token_nll(5, 32000, 1e4f);   // max-subtraction: exp of the raw logits would overflow
    check_token_nll(3, 1000, -1e4f);
    check_backend_paths_every_setting();
    guarded("backend gptq", check_backend_gptq);
    guarded("prompt graphs", check_prompt_graphs);
    if (timing) {
      std::printf("\n7B decode shapes (group 128; bytes = qweight + scales)\n");
      time_decode_gemv_shapes();
      time_gemv_q4("gate+up", 4096, 22016, 4);
      time_gemv_f16("lm_head", 4096, 32000);
      time_lm_head_rmsnorm(4096, 32000);
      time_attention(32, 32, 128, 2048);
      time_attention(64, 8, 128, 2048);
      time_attention(32, 32, 128, 16384);
      for (int len : {128, 600, 2048}) time_attention_split_rule(32, 32, 128, len, 2048);
      time_attention_prefill(32, 32, 128, 512);
      std::printf("\nwhole backend on dummy models (group 128, greedy decode on the device)\n");
      const ModelConfig c7 = llama_7b_config();
      const ModelConfig c70 = llama_70b_config();
      const ModelConfig c13 = llama_13b_config();
      time_decode_steps();
      const bool persistent = persistent_decode_flag();
      for (bool on : {persistent, !persistent}) {
        persistent_decode_flag() = on;
        const char* tag = on ? "[persistent decode]" : "[5-kernel decode]";
        std::printf("%s\n", tag);
        guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
        guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 512, 64); });
        guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 64); });
      }
      persistent_decode_flag() = persistent;
      const bool pdl = pdl_enabled();
      set_pdl_enabled(!pdl);
      guarded("bench 7B (PDL switched)", [&] { bench_backend("7B", c7, 2048, 512, 128); });
      set_pdl_enabled(pdl);
    }
    if (tune) {
      guarded("tune gemv_q4", tune_gemv_q4);
      guarded("prompt settings", bench_prompt_settings);
    }
  } catch (const std::exception& e) {
    std::printf("kernel check aborted: %s\n", e.what());
    return 2;
  }
  std::printf("\n%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
