// The kernel check's whole-backend benchmarks and probes on the dummies: prompt and decode speeds, decode
// variants and depths, the decode timeline, ablations, the prompt's settings, profiler steps and GEMV tuning.
#include "tools/kernel-check/suites.h"

namespace xllama::kcheck {

// The persistent decode kernel alone on random weights of a model's shapes (group 128), back to back, against the
// bytes it must read (weights + the KV cache at this length); then one profiled launch: where a block's time
// goes (thread 0's clock per segment, mean over blocks), waiting on the previous phase vs working.
void time_decode_step(const char* name, const ModelConfig& c, int len, double copy_gbs, int threads) {
  const int hid = c.hidden_size, I = c.intermediate_size, H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim,
            NL = c.num_layers, S = len + 8;
  const int Ks[4] = {hid, H * D, hid, I}, Ns[4] = {(H + 2 * KV) * D, hid, 2 * I, hid};
  size_t words = 0, scales = 0;
  for (int i = 0; i < 4; ++i) words += (size_t)Ks[i] / 8 * Ns[i], scales += (size_t)(Ks[i] / 128) * Ns[i];
  Dev<uint32_t> qw(words * NL);
  Dev<__half> sc(scales * NL), norms((size_t)NL * 2 * hid), kc((size_t)NL * KV * S * D), vc((size_t)NL * KV * S * D);
  fill_random_u32(qw.p, qw.n, 11, nullptr);
  fill_half(norms.p, norms.n, 1.f, nullptr);
  fill_random_half(kc.p, kc.n, 12, -1.f, 1.f, nullptr);
  fill_random_half(vc.p, vc.n, 13, -1.f, 1.f, nullptr);
  std::vector<DecodeLayer> layers(NL);
  size_t wo = 0, so = 0;
  for (int l = 0; l < NL; ++l) {
    for (int i = 0; i < 4; ++i) {
      QWeight& q = layers[l].lin[i];
      q.qweight = qw.p + wo, q.scales = sc.p + so, q.K = Ks[i], q.N = Ns[i], q.group_size = 128, q.sym_zero = 8;
      const float a = 1.f / (std::sqrt((float)Ks[i]) * 8.f);
      fill_random_half(sc.p + so, (size_t)(Ks[i] / 128) * Ns[i], 20 + l * 4 + i, 0.5f * a, 1.5f * a, nullptr);
      wo += (size_t)Ks[i] / 8 * Ns[i], so += (size_t)(Ks[i] / 128) * Ns[i];
    }
    layers[l].input_norm = norms.p + (size_t)l * 2 * hid, layers[l].post_norm = norms.p + (size_t)l * 2 * hid + hid;
    layers[l].kcache = kc.p + (size_t)l * KV * S * D, layers[l].vcache = vc.p + (size_t)l * KV * S * D;
  }
  DecodeStep st;
  st.num_layers = NL, st.hidden = hid, st.inter = I, st.heads = H, st.kv_heads = KV, st.head_dim = D, st.max_seq = S;
  st.max_splits = attention_splits(1, H, S), st.eps = 1e-5f, st.threads = threads;
  if (!decode_step_prepare(st, layers)) {
    report(std::string("decode step ") + name + ": kernel fits", INFINITY, 0);
    return;
  }
  Dev<DecodeLayer> dl(layers);
  std::vector<float> inv(D / 2);
  for (int i = 0; i < D / 2; ++i) inv[i] = (float)(1.0 / std::pow(10000.0, 2.0 * i / D));
  Dev<float> dinv(inv), h(hid), qkv((size_t)(H + 2 * KV) * D), gu((size_t)2 * I), work((size_t)H * st.max_splits * (D + 2)),
      ss(1);
  Dev<__half> att((size_t)H * D);
  Dev<unsigned> done(H), counters(decode_step_counters(NL));
  Dev<int> dpos(std::vector<int>{len - 1});
  std::vector<float> h0(hid);
  for (auto& v : h0) v = urand(-1.f, 1.f);
  h.upload(h0);
  XL_CUDA_CHECK(cudaMemset(qkv.p, 0, qkv.n * 4));
  XL_CUDA_CHECK(cudaMemset(gu.p, 0, gu.n * 4));
  XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * 4));
  XL_CUDA_CHECK(cudaMemset(counters.p, 0, counters.n * 4));
  st.layers = dl.p, st.rope = dinv.p, st.pos = dpos.p, st.h = h.p, st.qkv = qkv.p, st.gu = gu.p, st.att = att.p;
  st.work = work.p, st.head_done = done.p, st.final_sum_sq = ss.p, st.counters = counters.p;
  const float us = batch_us([&] { decode_step(st, nullptr); }, 10, 20);
  const double bytes = (double)words * NL * 4 + (double)scales * NL * 2 + 2.0 * NL * KV * (double)len * D * 2;
  const double floor_us = bytes / (copy_gbs * 1e9) * 1e6;
  std::printf("time decode step %-4s len %-5d %d blocks x %d threads x %d stages: %8.1f us/token (%.0f GB/s; floor "
              "%.1f us at %.0f GB/s copy = %.0f%%)\n",
              name, len, st.grid, st.threads, st.stages, us, bytes / (us * 1e-6) / 1e9, floor_us, copy_gbs, 100.0 * floor_us / us);
  Dev<unsigned long long> prof((size_t)st.grid * kProfileSlots);
  st.profile = prof.p;
  decode_step(st, nullptr);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<unsigned long long> pv = prof.download();
  int clock_khz = 0;
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  const char* names[kProfileSlots] = {"start", "wait qkv", "qkv", "wait attn", "attn", "wait o", "o",
                                      "wait gate/up", "gate/up", "wait down", "down", "end"};
  std::printf("     profile (us per token, mean over blocks, at %d MHz):", clock_khz / 1000);
  for (int k = 0; k < kProfileSlots; ++k) {
    double sum = 0;
    for (int bi = 0; bi < st.grid; ++bi) sum += (double)pv[(size_t)bi * kProfileSlots + k];
    std::printf(" %s %.1f%s", names[k], sum / st.grid / (clock_khz * 1e-3), k + 1 < kProfileSlots ? "," : "\n");
  }
}

void bench_backend(const char* name, const ModelConfig& c, int ctx, int prompt, int gen, int chunk) {
  BackendOptions o;
  o.max_seq_len = ctx, o.max_chunk_tokens = chunk;
  size_t free0 = 0, total = 0;
  XL_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  const char* seed = std::getenv("XLLAMA_DUMMY_SEED");  // xllama's CLI builds its dummies with 0x5eed
  auto b = create_cuda_dummy_backend(c, 128, o, seed ? std::strtoul(seed, nullptr, 0) : 1);
  size_t free1 = 0;
  XL_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  const MemoryReport r = b->memory();
  const std::vector<int32_t> toks = random_tokens(prompt, c.vocab_size);
  std::vector<float> logits(c.vocab_size);
  using clk = std::chrono::steady_clock;
  double best_pp = 0, sum_pp = 0;
  std::string each;  // every run's t/s (printed when there are more than 3)
  const char* reps_env = std::getenv("XLLAMA_BENCH_REPS");  // default 3 (best of); more shows a trend's mean
  const int reps = reps_env ? std::max(1, std::atoi(reps_env)) : 3;
  for (int rep = 0; rep < reps; ++rep) {
    b->clear_cache();
    XL_CUDA_CHECK(cudaDeviceSynchronize());
    auto t0 = clk::now();
    b->forward(toks.data(), prompt, 0, false, logits.data());
    const double sec = std::chrono::duration<double>(clk::now() - t0).count();
    best_pp = std::max(best_pp, prompt / sec);
    each += " " + std::to_string((int)(prompt / sec));
    sum_pp += prompt / sec;
  }
  if (reps > 3) std::printf("bench %-4s chunk=%d prompt %d: best %.0f mean %.0f t/s over %d:%s\n", name, chunk, prompt,
                            best_pp, sum_pp / reps, reps, each.c_str());
  TokenSampling greedy;
  int32_t tok = toks.back();
  int pos = prompt;
  // each step starts the next (decode pipelining, as xllama bench and generation run it)
  for (int i = 0; i < 8; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy, &greedy);  // capture + warm up
  auto t0 = clk::now();
  for (int i = 0; i < gen; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy, &greedy);
  const double sec = std::chrono::duration<double>(clk::now() - t0).count();
  std::printf("bench %-4s%s ctx=%d: prompt %d tokens %8.0f t/s | decode %6.1f t/s (%.3f ms/token at %d..%d, "
              "L2 look-ahead %zu MiB, DRAM peak %.2f TB/s) | weights %.2f GiB, KV %.2f GiB, scratch %.2f GiB, "
              "GPU memory used by the backend %.2f GiB\n",
              name, pdl_enabled() ? "" : " [no PDL]", ctx, prompt, best_pp, gen / sec, sec / gen * 1e3, prompt + 8, pos,
              cuda::decode_l2_look_ahead_bytes() >> 20,
              cuda::current_device_peak_dram_bandwidth() / 1e12, r.weights_bytes / 1073741824.0,
              r.kv_cache_bytes / 1073741824.0, r.scratch_bytes / 1073741824.0, (free0 - free1) / 1073741824.0);
}

// The 7B's decode GEMVs and the 70B's MLP ones, one launch at a time (each dot).
void time_decode_gemv_shapes() {
  time_gemv_q4("q+k+v", 4096, 12288, 1);
  time_gemv_q4("o_proj", 4096, 4096, 1);
  time_gemv_q4("gate+up", 4096, 22016, 1);
  time_gemv_q4("down_proj", 11008, 4096, 1);
  time_gemv_q4("70B gate+up", 8192, 57344, 1);
  time_gemv_q4("70B down_proj", 28672, 8192, 1);
}

// Decode's variants side by side: the fp16 dot, the fixed-point dot with the RMSNorm factors applied in the GEMVs,
// and with them deferred to the next kernel (the default). The GEMV
// shapes one launch at a time first, then whole-backend decode on the 7B, 13B and 70B dummies, the variants
// alternated twice over for the spread, then the back-to-back GEMV tuning.
void bench_decode_variants() {
  std::printf("GEMV shapes (group 128, m=1, one launch at a time)\n");
  time_decode_gemv_shapes();
  const bool saved_fixed = gemv_q4_fixed_point_flag(), saved_defer = deferred_norm_flag();
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  struct Variant {
    const char* name;
    bool fixed, defer;
  };
  for (int rep = 0; rep < 2; ++rep)
    for (const Variant& v : {Variant{"fp16 dot", false, false}, Variant{"fixed-point dot, norms in the GEMVs", true, false},
                             Variant{"fixed-point dot, norms deferred (the default)", true, true}}) {
      gemv_q4_fixed_point_flag() = v.fixed, deferred_norm_flag() = v.defer;
      std::printf("[%s]\n", v.name);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
      guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 512, 64); });
      guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 64); });
    }
  gemv_q4_fixed_point_flag() = saved_fixed, deferred_norm_flag() = saved_defer;
  tune_gemv_q4();
}

// The decode attention alone (RoPE fused, one row) at the 7B's, 70B's and Llama-3 8B's head counts and bench's
// depths, for the per-head kernel's two softmax updates and the tensor-core kernel (grouped-query or not): us per
// launch, back to back (XLLAMA_PROFILE_ONCE: two launches per case, untimed, for ncu -k).
void time_decode_attention() {
  struct Case {
    const char* name;
    int H, KV, pos;
  };
  const Case cases[] = {{"7B", 32, 32, 40}, {"7B", 32, 32, 551}, {"7B", 32, 32, 2047}, {"7B", 32, 32, 2055},
                        {"7B", 32, 32, 2087},
                        {"70B", 64, 8, 40}, {"70B", 64, 8, 551}, {"70B", 64, 8, 2087},
                        {"8B", 32, 8, 40}, {"8B", 32, 8, 2087}};  // Llama-3 8B
  const int D = 128, S = 4096;
  const bool saved = attention_batch_flag(), saved_mma = attention_mma_flag();
  for (const Case& c : cases)
    for (int variant = 0; variant < 3; ++variant) {  // per head one by one, per head batched, tensor cores
      const bool batch = variant >= 1, mma = variant == 2;
      attention_mma_flag() = mma;
      attention_batch_flag() = batch;
      const int width = (c.H + 2 * c.KV) * D;
      Dev<float> qkv(width), inv(D / 2), work((size_t)c.H * 64 * (D + 2));
      Dev<__half> kc((size_t)c.KV * S * D), vc((size_t)c.KV * S * D), out((size_t)c.H * D);
      Dev<int> pos(std::vector<int>{c.pos});
      Dev<unsigned> done(c.H);
      XL_CUDA_CHECK(cudaMemset(done.p, 0, done.n * sizeof(unsigned)));
      XL_CUDA_CHECK(cudaMemset(qkv.p, 0, qkv.n * 4));
      XL_CUDA_CHECK(cudaMemset(inv.p, 0, inv.n * 4));
      fill_random_half(kc.p, kc.n, 1, -1.f, 1.f, nullptr);
      fill_random_half(vc.p, vc.n, 2, -1.f, 1.f, nullptr);
      const int splits = attention_rope_splits(1, c.H, c.KV, D, S);
      auto run = [&] {
        attention_rope(qkv.p, inv.p, kc.p, vc.p, 1, c.H, c.KV, D, S, pos.p, splits, work.p, done.p, out.p, nullptr);
      };
      const float us = std::getenv("XLLAMA_PROFILE_ONCE") ? (run(), run(), 0.f) : batch_us(run);
      XL_CUDA_CHECK(cudaDeviceSynchronize());
      const double kv_mb = 2.0 * c.KV * (c.pos + 1) * D * 2 / 1e6;
      std::printf("time attention %-4s H=%d KV=%d len %4d %-6s splits %2d: %7.2f us  (%.1f MB of K/V: %5.0f GB/s)\n",
                  c.name, c.H, c.KV, c.pos + 1, mma ? "tensor" : batch ? "batch" : "1 by 1", splits, us, kv_mb,
                  kv_mb * 1e3 / us);
    }
  attention_batch_flag() = saved, attention_mma_flag() = saved_mma;
}

// Whole-backend decode at the depths xllama bench reports (positions 9..137 after a 1-token prompt, 520..648, and
// 2056..2120; the 70B at 2056..2088 too) on the 7B, 13B and 70B dummies, for the settings the environment selects:
// run once per build or setting, alternated, to compare side by side.
void bench_decode_depths() {
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  const char* only = std::getenv("XLLAMA_KC_MODELS");  // e.g. "7B,13B": those models only
  auto guarded = [only](const char* what, auto&& f) {
    if (!only || std::strstr(only, what + std::strlen("bench "))) kcheck::guarded(what, f);
  };
  guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 1, 128); });
  guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
  guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 64, 2048); });
  guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 1, 64); });
  guarded("bench 13B", [&] { bench_backend("13B", c13, 2048, 512, 64); });
  guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 1, 32); });
  guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 32); });
  guarded("bench 70B", [&] { bench_backend("70B", c70, 4096, 2048, 32, 2048); });
}

// ---- the decode timeline (--timeline; cuda/kernel_trace.cuh, a build with -DXLLAMA_KERNEL_TRACE=ON) ----
// What the hooks recorded over some decode steps: every launch's release record (in release order), and per
// launch slot the last block's end and block 0's stage marks (the last replay's).
struct DecodeTrace {
  std::vector<KernelTrace> launches;
  std::vector<unsigned long long> ends, marks;
};

DecodeTrace record_decode_trace(Backend& b, int32_t& tok, int& pos, int steps) {
  const unsigned cap = 1u << 16;
  Dev<KernelTrace> rec(cap);
  Dev<unsigned> count(std::vector<unsigned>{0});
  Dev<unsigned long long> ends(std::vector<unsigned long long>(kTraceSlots, 0)),
      marks(std::vector<unsigned long long>(kTraceSlots * kTraceMarks, 0));
  XL_CUDA_CHECK(cudaDeviceSynchronize());  // the warm-up steps are not traced
  set_kernel_trace({rec.p, count.p, cap, ends.p, marks.p});
  TokenSampling greedy;
  for (int i = 0; i < steps; ++i) tok = b.forward_sample(&tok, 1, pos++, greedy, &greedy);
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  set_kernel_trace({});
  DecodeTrace t{rec.download(), ends.download(), marks.download()};
  t.launches.resize(std::min(count.download()[0], cap));
  // %gridid does not follow launch order in a graph; one stream's kernels are released in order
  std::sort(t.launches.begin(), t.launches.end(),
            [](const KernelTrace& a, const KernelTrace& x) { return a.t_released < x.t_released; });
  return t;
}

// One kind of launch (its grid and block size), its times summed over the trace, in microseconds.
struct LaunchKind {
  std::string name;
  int n = 0;
  double until_next = 0;  // release to the next launch's release
  double waited = 0;      // block 0 at its wait until released
  double resident = 0;    // the previous launch's release until block 0 reached its wait
  int staged = 0;         // launches with block 0's marks: release -> mark 0 -> mark 1 -> mark 2
  double mark[3] = {0, 0, 0};
  // marks 3.. from the release: a GEMV's first input arrived; the attention's q, norm factor, new rows, merge weights
  int late_n[kTraceMarks] = {};
  double late[kTraceMarks] = {};
  int ended = 0;  // launches with block ends: release -> the last block's end -> the next release
  double end = 0, after_end = 0;
};

std::vector<LaunchKind> summarize_decode_trace(const DecodeTrace& t) {
  const std::vector<KernelTrace>& r = t.launches;
  const auto us = [](unsigned long long a, unsigned long long b) { return ((double)a - (double)b) * 1e-3; };
  // A graph's kernels keep their %gridid on every replay: the ends and marks are the last replay's, so each is
  // joined with its gridid's last launch only.
  std::map<unsigned long long, size_t> last_of;
  for (size_t i = 0; i < r.size(); ++i) last_of[r[i].gridid] = i;
  std::vector<LaunchKind> kinds;
  for (size_t i = 0; i + 1 < r.size(); ++i) {
    char name[96];
    std::snprintf(name, sizeof name, "grid %u,%u,%u x %u", r[i].grid[0], r[i].grid[1], r[i].grid[2], r[i].threads);
    auto k = std::find_if(kinds.begin(), kinds.end(), [&](const LaunchKind& x) { return x.name == name; });
    if (k == kinds.end()) kinds.push_back({name}), k = kinds.end() - 1;
    k->n++;
    k->until_next += us(r[i + 1].t_released, r[i].t_released);
    k->waited += us(r[i].t_released, r[i].t_reached);
    if (i) k->resident += us(r[i].t_reached, r[i - 1].t_released);
    if (last_of[r[i].gridid] != i) continue;
    const size_t slot = r[i].gridid & (kTraceSlots - 1);
    const unsigned long long* m = &t.marks[slot * kTraceMarks];
    if (m[2]) {
      k->staged++;
      k->mark[0] += us(m[0], r[i].t_released), k->mark[1] += us(m[1], m[0]), k->mark[2] += us(m[2], m[1]);
    }
    for (int j = 3; j < kTraceMarks; ++j)
      if (m[j]) k->late_n[j]++, k->late[j] += us(m[j], r[i].t_released);
    if (t.ends[slot]) {
      k->ended++;
      k->end += us(t.ends[slot], r[i].t_released), k->after_end += us(r[i + 1].t_released, t.ends[slot]);
    }
  }
  return kinds;
}

// A dummy CUDA backend of shape c (group size 128, seed 1) after a prompt of random tokens.
struct PromptedDummy {
  std::unique_ptr<Backend> backend;
  std::vector<int32_t> prompt;
  std::vector<float> logits;
};
PromptedDummy dummy_after_prompt(const ModelConfig& c, int ctx, int chunk, int prompt_len) {
  BackendOptions o;
  o.max_seq_len = ctx, o.max_chunk_tokens = chunk;
  PromptedDummy d{create_cuda_dummy_backend(c, 128, o, 1), random_tokens(prompt_len, c.vocab_size),
                  std::vector<float>(c.vocab_size)};
  d.backend->forward(d.prompt.data(), prompt_len, 0, false, d.logits.data());
  return d;
}

void decode_timeline(const char* name, const ModelConfig& c, int ctx, int prompt) {
  const PromptedDummy d = dummy_after_prompt(c, ctx, 512, prompt);
  Backend* b = d.backend.get();
  TokenSampling greedy;
  int32_t tok = d.prompt.back();
  int pos = prompt;
  for (int i = 0; i < 8; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy, &greedy);  // capture + warm up
  const int steps = 16, first_pos = pos;
  const DecodeTrace t = record_decode_trace(*b, tok, pos, steps);
  if (t.launches.size() < 2) throw std::runtime_error("timeline: no launches recorded");
  const double span_ms = (double)(t.launches.back().t_released - t.launches.front().t_released) * 1e-6 / steps;
  std::printf("timeline %s at %d..%d: %zu launches, %.3f ms per token\n", name, first_pos, pos, t.launches.size(),
              span_ms);
  std::printf("  %-24s %8s %9s %10s %9s %9s | block 0 after release: staged, dot, reduce | last end, then\n",
              "launch", "per step", "us each", "us / step", "waited", "resident");
  for (const LaunchKind& k : summarize_decode_trace(t)) {
    std::printf("  %-24s %8.1f %9.2f %10.1f %9.2f %9.2f |", k.name.c_str(), (double)k.n / steps, k.until_next / k.n,
                k.until_next / steps, k.waited / k.n, k.resident / k.n);
    if (k.staged)
      std::printf(" %6.2f %6.2f %6.2f", k.mark[0] / k.staged, k.mark[1] / k.staged, k.mark[2] / k.staged);
    if (k.ended) std::printf(" | %6.2f %6.2f", k.end / k.ended, k.after_end / k.ended);
    for (int j = 3; j < kTraceMarks; ++j)
      if (k.late_n[j]) std::printf(" | m%d %5.2f", j, k.late[j] / k.late_n[j]);
    std::printf("\n");
  }
}

void decode_timelines() {
  if (!kKernelTraceBuilt) {
    std::printf("--timeline needs a build with -DXLLAMA_KERNEL_TRACE=ON\n");
    ++failures;
    return;
  }
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  guarded("timeline 7B", [&] { decode_timeline("7B", c7, 2048, 1); });
  guarded("timeline 7B", [&] { decode_timeline("7B", c7, 2048, 512); });
  guarded("timeline 7B", [&] { decode_timeline("7B", c7, 4096, 2048); });
  guarded("timeline 13B", [&] { decode_timeline("13B", c13, 2048, 1); });
  guarded("timeline 70B", [&] { decode_timeline("70B", c70, 2048, 1); });
  guarded("timeline 70B", [&] { decode_timeline("70B", c70, 4096, 2048); });
}

// One ablation setting: its name and the parts it leaves out (DecodeAblation or PromptAblation bits).
struct AblationPart {
  const char* name;
  unsigned parts;
};

// Every part in turn, twice over: `setting` (decode_ablation() or prompt_ablation()) set to its bits, then
// run(rep), then the setting cleared.
template <class Run>
void run_ablations(unsigned& setting, std::initializer_list<AblationPart> parts, Run run) {
  for (int rep = 0; rep < 2; ++rep)
    for (const AblationPart& p : parts) {
      setting = p.parts;
      std::printf("[%s]\n", p.name);
      run(rep);
    }
  setting = 0;
}

// Where a decode step's time goes inside its graph: the step with parts left out (decode_ablation(); the logits are
// wrong, the timing is not), each against the full step, on the 7B (twice over) and the 70B, for the decode
// variant the switches select (XLLAMA_DEFER_NORM=0: the norms in the GEMVs).
void bench_ablations() {
  const ModelConfig c7 = llama_7b_config(), c70 = llama_70b_config();
  std::printf("decode ablations%s\n", deferred_norm_flag() ? " [deferred norms]" : " [norms in the GEMVs]");
  run_ablations(decode_ablation(),
                {{"full step", 0},
                 {"without attention", kAblateAttention},
                 {"without the sums of squares in o_proj and down_proj", kAblateSumsOfSquares},
                 {"without the RMSNorm in the q/k/v and gate/up staging", kAblateNormStaging},
                 {"without all three", kAblateAttention | kAblateSumsOfSquares | kAblateNormStaging},
                 {"full step", 0}},
                [&](int rep) {
                  guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 1, 128); });
                  guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 128); });
                  if (rep == 0) guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 64); });
                });
}

// Where a prompt chunk's time goes: whole chunks (as long as the prompt) with parts left out (prompt_ablation(); the
// logits are wrong, the timing is not), each against the full chunk, on the 7B at 512 and 2048 tokens and the 13B at
// 512, twice over. XLLAMA_BENCH_REPS=N prints the best and the mean of N.
void bench_prompt_ablations() {
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config();
  const unsigned small_kernels = kAblatePromptAttention | kAblatePromptSilu | kAblatePromptNorms;
  run_ablations(prompt_ablation(),
                {{"prompt: full chunk", 0},
                 {"prompt without RoPE and attention", kAblatePromptAttention},
                 {"prompt without SiLU", kAblatePromptSilu},
                 {"prompt without RMSNorms", kAblatePromptNorms},
                 {"prompt without the three", small_kernels},
                 {"prompt without dequantization", kAblatePromptDequant},
                 {"prompt: GEMMs only", small_kernels | kAblatePromptDequant}},
                [&](int) {
                  guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 512, 1, 512); });
                  guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 1, 2048); });
                  guarded("bench 13B", [&] { bench_backend("13B", c13, 4096, 512, 1, 512); });
                });
}

// Prompt-path settings side by side: the dequantization tile (read when a backend is created) on the 7B and
// 70B dummies at 512 tokens, then the prompt chunk size on the 7B at 2048 tokens; twice over for the spread.
void bench_prompt_settings() {
  const ModelConfig c7 = llama_7b_config();
  const ModelConfig c70 = llama_70b_config();
  for (int rep = 0; rep < 2; ++rep)
    for (const char* mib : {"64", "128", "256", "512"}) {
      setenv("XLLAMA_DEQUANT_MIB", mib, 1);
      std::printf("[prompt: dequantization tile %s MiB]\n", mib);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 2048, 512, 8); });
      guarded("bench 70B", [&] { bench_backend("70B", c70, 2048, 512, 8); });
    }
  unsetenv("XLLAMA_DEQUANT_MIB");
  for (int rep = 0; rep < 2; ++rep)
    for (int chunk : {512, 1024, 2048}) {
      std::printf("[prompt: chunks of %d tokens]\n", chunk);
      guarded("bench 7B", [&] { bench_backend("7B", c7, 4096, 2048, 8, chunk); });
    }
}

// Whole prompts (chunks as long as the prompt, 8 decode steps) under each value of the environment switch `name`,
// the values alternated twice; a backend reads its switches when it is created.
struct PromptRun {
  const char* name;
  ModelConfig config;
  int tokens;
};
void prompts_side_by_side(const char* name, const std::vector<std::string>& values,
                          const std::vector<PromptRun>& runs) {
  for (int rep = 0; rep < 2; ++rep)
    for (const std::string& v : values) {
      setenv(name, v.c_str(), 1);
      std::printf("[prompt: %s=%s]\n", name, v.c_str());
      for (const PromptRun& r : runs)
        guarded("bench", [&] { bench_backend(r.name, r.config, 4096, r.tokens, 8, r.tokens); });
    }
  unsetenv(name);
}

// A 7B gate/up tile's GEMM at 512 and 2048 tokens (cuBLAS on a high-priority stream, on sm_target SMs, 0: all) with
// the next tile's dequantization on a low-priority stream beside it, against the two one after the other.
void time_dequant_beside_gemm(int sm_target) {
#ifdef XLLAMA_HAVE_CUBLAS
  const int K = 4096, N = 11008;
  HostGptq h = make_gptq(K, N, 128, false, true);
  DevQ d(h, 1);
  int least = 0, greatest = 0;
  XL_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // Blocking streams: median_ms's events on the legacy stream wait for both.
  cudaStream_t hi, lo;
  XL_CUDA_CHECK(cudaStreamCreateWithPriority(&hi, cudaStreamDefault, greatest));
  XL_CUDA_CHECK(cudaStreamCreateWithPriority(&lo, cudaStreamDefault, least));
  cublasHandle_t hb;
  cublasCreate(&hb);
  cublasSetStream(hb, hi);
  cublasSetSmCountTarget(hb, sm_target);
  for (int m : {512, 2048}) {
    Dev<__half> x((size_t)m * K), y((size_t)m * N), deq((size_t)K * N), deq2((size_t)K * N);
    fill_random_half(x.p, x.n, 12, -1.f, 1.f, nullptr);
    dequant_q4(d.q, 0, N, deq.p, nullptr);
    const float one = 1.f, zero = 0.f;
    const auto gemm = [&] {
      cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, m, K, &one, deq.p, CUDA_R_16F, N, x.p, CUDA_R_16F, K, &zero,
                   y.p, CUDA_R_16F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    const float g = median_ms(gemm, 3, 20);
    const float dq = median_ms([&] { dequant_q4(d.q, 0, N, deq2.p, hi); }, 3, 20);
    const float serial = median_ms([&] {
      dequant_q4(d.q, 0, N, deq2.p, hi);
      gemm();
    }, 3, 20);
    const float beside = median_ms([&] {
      gemm();
      dequant_q4(d.q, 0, N, deq2.p, lo, /*beside=*/true);
    }, 3, 20);
    const float beside2 = median_ms([&] {  // two GEMMs, the dequantization beside the first
      gemm();
      dequant_q4(d.q, 0, N, deq2.p, lo, /*beside=*/true);
      gemm();
    }, 3, 20);
    std::printf("time %dx%d m=%d sm target %d: gemm %7.1f us, dequant %6.1f us, one after the other %7.1f us, "
                "dequant beside the gemm %7.1f us, beside the first of two gemms %7.1f us (2 gemms alone %7.1f)\n",
                K, N, m, sm_target, g * 1e3, dq * 1e3, serial * 1e3, beside * 1e3, beside2 * 1e3, 2 * g * 1e3);
  }
  cublasDestroy(hb);
  XL_CUDA_CHECK(cudaStreamDestroy(hi));
  XL_CUDA_CHECK(cudaStreamDestroy(lo));
#else
  (void)sm_target;
#endif
}

// time_dequant_beside_gemm on every SM and on 116 (the gate/up tile's usual SM target, gemm_sm_targets.h: 16 SMs
// left to the dequantization), then whole prompts with XLLAMA_DEQUANT_AHEAD off and on, side by side twice.
void bench_dequant_ahead() {
  for (int sm : {0, 116}) time_dequant_beside_gemm(sm);
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  prompts_side_by_side("XLLAMA_DEQUANT_AHEAD", {"0", "1"},
                       {{"7B", c7, 512}, {"7B", c7, 2048}, {"13B", c13, 2048}, {"70B", c70, 512}, {"70B", c70, 2048}});
}

// Prompt chunks as graphs (XLLAMA_PROMPT_GRAPH) off and on, side by side twice: each prompt 8 times (the best, the
// mean and each run; with graphs, run 1 times its GEMMs, run 2 is captured, runs 3-8 replay), in chunks of at most
// PromptGraphs::kMaxRows tokens (longer ones run launch by launch either way).
void bench_prompt_graphs() {
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config(), c70 = llama_70b_config();
  setenv("XLLAMA_BENCH_REPS", "8", 1);
  prompts_side_by_side("XLLAMA_PROMPT_GRAPH", {"0", "1"},
                       {{"7B", c7, 512}, {"7B", c7, 1024}, {"13B", c13, 512}, {"70B", c70, 512}});
  unsetenv("XLLAMA_BENCH_REPS");
}

// Any on-by-default prompt switch (`name`, read when a chunk is enqueued or a backend created) off and on, or
// `NAME=v1,v2,...` at those values, side by side twice: the 7B at 512 and 2048 tokens and the 13B at 512, each prompt
// 6 times (best and mean).
void bench_prompt_switch(const char* name) {
  const ModelConfig c7 = llama_7b_config(), c13 = llama_13b_config();
  setenv("XLLAMA_BENCH_REPS", "6", 1);
  // NAME=v1,v2,...: those values instead of 0 and 1
  std::string var = name;
  std::vector<std::string> values{"0", "1"};
  if (const size_t eq = var.find('='); eq != std::string::npos) {
    values.clear();
    for (size_t at = eq + 1; at <= var.size();) {
      const size_t comma = std::min(var.find(',', at), var.size());
      values.push_back(var.substr(at, comma - at));
      at = comma + 1;
    }
    var.resize(eq);
  }
  prompts_side_by_side(var.c_str(), values, {{"7B", c7, 512}, {"7B", c7, 2048}, {"13B", c13, 512}});
  unsetenv("XLLAMA_BENCH_REPS");
}

// Prompt speeds of the dummies (7B at 512 and 2048 tokens, 13B and 70B at 2048; each chunk as long as the prompt),
// after the prompt attention alone at 7B and 70B shapes, with the fused 4-bit GEMMs and without, side by side.
void bench_prompt_speeds() {
  const ModelConfig c7 = llama_7b_config();
  const ModelConfig c13 = llama_13b_config();
  const ModelConfig c70 = llama_70b_config();
  for (int m : {512, 2048}) time_attention_prefill(32, 32, 128, m);
  time_attention_prefill(64, 8, 128, 2048);
  // the 4-bit GEMMs fused (Hopper) or dequantized + cuBLAS
  prompts_side_by_side("XLLAMA_FUSED_PROMPT_GEMM", {"1", "0"},
                       {{"7B", c7, 512}, {"7B", c7, 2048}, {"13B", c13, 2048}, {"70B", c70, 2048}});
}

// The persistent decode kernel alone at 7B / 13B / 70B shapes, both block sizes.
void time_decode_steps(bool quick) {
  const ModelConfig c7 = llama_7b_config();
  const ModelConfig c13 = llama_13b_config();
  const ModelConfig c70 = llama_70b_config();
  std::printf("\npersistent decode kernel alone (random weights, group 128)\n");
  const double copy = copy_bandwidth_gbs();
  if (quick) {  // 7B at length 128 only (a profiler's run); XLLAMA_DECODE_THREADS picks one block size
    const char* t = std::getenv("XLLAMA_DECODE_THREADS");
    if (t && *t) time_decode_step("7B", c7, 128, copy, std::atoi(t));
    else for (int threads : {256, 512}) time_decode_step("7B", c7, 128, copy, threads);
    return;
  }
  for (int threads : {256, 512}) {
    for (int len : {128, 2048}) guarded("decode step 7B", [&] { time_decode_step("7B", c7, len, copy, threads); });
    guarded("decode step 13B", [&] { time_decode_step("13B", c13, 128, copy, threads); });
    for (int len : {128, 2048}) guarded("decode step 70B", [&] { time_decode_step("70B", c70, len, copy, threads); });
  }
}

// One 512-token prompt chunk or one decode step of the 7B dummy between cudaProfilerStart/Stop, for
// `ncu --profile-from-start off`: the per-kernel breakdown of issue 13.
void profile_step(bool decode, int prompt) {
  PromptedDummy d = dummy_after_prompt(llama_7b_config(), 4096, prompt, prompt);
  Backend* b = d.backend.get();
  TokenSampling greedy;
  int32_t tok = d.prompt.back();
  int pos = prompt;
  for (int i = 0; i < 8; ++i) tok = b->forward_sample(&tok, 1, pos++, greedy);  // capture + warm up
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  XL_CUDA_CHECK(cudaProfilerStart());
  if (decode) {
    tok = b->forward_sample(&tok, 1, pos++, greedy);
  } else {
    b->clear_cache();
    b->forward(d.prompt.data(), prompt, 0, false, d.logits.data());
  }
  XL_CUDA_CHECK(cudaDeviceSynchronize());
  XL_CUDA_CHECK(cudaProfilerStop());
  if (decode) std::printf("profiled one decode step at position %d\n", pos - 1);
  else std::printf("profiled one %d-token prompt chunk\n", prompt);
}

// ---- tuning: every GEMV variant on every decode shape, timed as a graph would run them (back to back) ----

void tune_gemv_q4() {
  struct Shape {
    const char* name;
    int K, N;
    bool silu;
  };
  const Shape shapes[] = {
      {"7B q+k+v", 4096, 12288, false},     {"7B o_proj", 4096, 4096, false},
      {"7B gate+up", 4096, 22016, false},   {"7B down (silu)", 11008, 4096, true},
      {"13B q+k+v", 5120, 15360, false},    {"13B o_proj", 5120, 5120, false},
      {"13B gate+up", 5120, 27648, false},  {"13B down (silu)", 13824, 5120, true},
      {"70B q+k+v", 8192, 10240, false},    {"70B o_proj", 8192, 8192, false},
      {"70B gate+up", 8192, 57344, false},  {"70B down (silu)", 28672, 8192, true},
  };
  std::printf("\ntune gemv_q4 (m=1, group 128; us per launch, back to back; h/f = fp16/fixed-point dot, then packed rows per warp)\n");
  for (const Shape& sh : shapes) {
    const int K = sh.K, N = sh.N, G = K / 128;
    Dev<uint32_t> qw((size_t)K / 8 * N);
    Dev<__half> sc((size_t)G * N), x(K);
    Dev<float> gu(2 * (size_t)K), y(N);
    fill_random_u32(qw.p, qw.n, 1, nullptr);
    fill_random_half(sc.p, sc.n, 2, 0.001f, 0.002f, nullptr);
    fill_random_half(x.p, x.n, 3, -1.f, 1.f, nullptr);
    XL_CUDA_CHECK(cudaMemset(gu.p, 0, gu.n * 4));
    QWeight q;
    q.qweight = qw.p, q.scales = sc.p, q.K = K, q.N = N, q.group_size = 128, q.sym_zero = 8;
    const void* xp = sh.silu ? (const void*)gu.p : (const void*)x.p;
    const int xs = sh.silu ? 2 * K : K;
    const double gb = ((double)qw.n * 4 + sc.n * 2) / 1e9;
    auto time_cfg = [&](const GemvQ4Config& c) {
      return batch_us([&] { gemv_q4(q, xp, sh.silu ? GemvInput::SiluGateUp : GemvInput::Half, 1, xs, y.p, N, nullptr, c); });
    };
    const GemvQ4Config def = gemv_q4_resolve(q, {});
    const float t_def = time_cfg(def);
    GemvQ4Config best = def;
    float t_best = t_def;
    std::string all;
    for (const GemvQ4Config& c : gemv_q4_candidates()) {
      if (c.rows_per_warp == 0) continue;  // the rule: timed above
      const float t = time_cfg(c);
      char buf[48];
      std::snprintf(buf, sizeof buf, " %c%d=%.1f", c.dot == GemvDot::Half ? 'h' : 'f', c.rows_per_warp, t);
      all += buf;
      if (t < t_best) t_best = t, best = c;
    }
    std::printf("tune %-16s %5dx%-5d rule r%-3d %6.1f us %5.0f GB/s | best %c%-3d %6.1f us %5.0f GB/s\n", sh.name,
                K, N, def.rows_per_warp, t_def, gb / (t_def * 1e-6), best.dot == GemvDot::Half ? 'h' : 'f',
                best.rows_per_warp, t_best, gb / (t_best * 1e-6));
    std::printf("     all:%s\n", all.c_str());
  }
}

}  // namespace xllama::kcheck
