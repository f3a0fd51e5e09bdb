// A stage's weights (cuda/stage.h): a checkpoint's tensors uploaded through a WeightUploader, 4-bit layers laid out
// on the GPU, or a random GPTQ model of the configured shapes built on the GPU (load_dummy).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"
#include "cuda/stage.h"
#include "cuda/weight_repack.h"

namespace xllama {

Stage::LoadFigures Stage::load_checkpoint(const GptqConfig& gptq, const ModelWeights& w, LoadProgress* progress) {
  XL_CUDA_CHECK(cudaSetDevice(device_));
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const int mallocs0 = mem_.mallocs();
  const double malloc_s0 = mem_.malloc_seconds();
  // XLLAMA_LEGACY_UPLOAD=1: the earlier path (host repack, synchronous copies), to compare load times
  std::unique_ptr<cuda::WeightUploader> uploader;
  if (!cuda::env_switch_set("XLLAMA_LEGACY_UPLOAD")) uploader = std::make_unique<cuda::WeightUploader>();
  const double uploader_s = std::chrono::duration<double>(Clock::now() - t0).count();  // mostly pinning staging
  uploader_ = uploader.get();
  progress_ = progress;
  struct Done {  // whatever happens: no dangling uploader or progress, no scratch left behind
    Stage* b;
    ~Done() {
      b->uploader_ = nullptr;
      b->progress_ = nullptr;
      b->mem_.close_arena();
      if (b->permute_scratch_) cudaFree(b->permute_scratch_);
      b->permute_scratch_ = nullptr, b->permute_scratch_words_ = 0;
    }
  } done{this};
  LoadFigures f;
  if (uploader) {
    f.arena_bytes = weight_arena_bytes(gptq, w);
    mem_.open_arena(f.arena_bytes);
  }
  const LayerWeights& lw = w.layers[plan_.first_layer];
  cuda::GemmWarmup warmup(device_, warmup_stream(),
                          prompt_warm_gemms({lw.q.quantized(), lw.o.quantized(), lw.gate.quantized(),
                                             lw.down.quantized()}));
  load_tensors(gptq, w);
  f.arena_slack = mem_.close_arena();
  const auto t1 = Clock::now();
  if (uploader) uploader->finish();
  register_huge_embedding();  // (once the readers have filled it)
  f.gemm_warmup = warmup.finish();
  const auto t2 = Clock::now();
  if (uploader) {
    f.bytes = uploader->bytes(), f.read_s = uploader->read_seconds(), f.wait_s = uploader->wait_seconds();
    f.threads = uploader->threads();
  } else {
    f.bytes = (double)weight_bytes_;
  }
  f.finish_s = std::chrono::duration<double>(t2 - t1).count();
  f.total_s = std::chrono::duration<double>(t2 - t0).count();
  f.pin_s = uploader_s + pin_embedding_s_;
  f.alloc_s = mem_.malloc_seconds() - malloc_s0, f.mallocs = mem_.mallocs() - mallocs0;
  return f;
}

// Read-ahead of what the upload copies next. With a LoadProgress (the glue's checkpoint read-ahead, which
// started at the beginning of the load), the upload says which part it reads. Without one, before layer li
// is copied, layer li + 1 (after the last layer, the final norm and lm_head) is handed to the uploader's own
// read-ahead (cuda/read_ahead.h), so a cold disk stays busy.
void Stage::read_ahead(const TensorView& t) {
  if (uploader_ && t.present()) uploader_->read_ahead(t.data, (size_t)t.numel() * dtype_size(t.dtype));
}

void Stage::read_ahead(const LinearWeights& l) {
  for (const TensorView* t : {&l.weight, &l.qweight, &l.scales, &l.qzeros, &l.g_idx, &l.bias}) read_ahead(*t);
}

void Stage::read_ahead_layer(const ModelWeights& w, int li, bool tied) {
  if (progress_) return;
  if (li < plan_.end_layer) {
    const LayerWeights& L = w.layers[li];
    read_ahead(L.input_norm);
    read_ahead(L.post_attention_norm);
    for (const LinearWeights* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) read_ahead(*l);
  } else if (last_) {
    read_ahead(w.final_norm);
    if (!tied) read_ahead(w.lm_head);
    else if (!first_) read_ahead(w.embed_tokens);
  }
}

void Stage::reading(int part) {
  if (progress_) progress_->reading(part);
}

// A tied lm_head: the embedding table serves as lm_head (one fp16 matrix, uploaded once per GPU).
bool Stage::is_tied(const ModelWeights& w) {
  return w.lm_head.weight.data == w.embed_tokens.data && !w.lm_head.quantized();
}

// The bytes load_tensors allocates for this stage's weights, each rounded to the arena's alignment, counted
// as cli/engine/loader/gpu-memory.ts counts them: GPTQ zeros only for asymmetric checkpoints, a row
// permutation only for act-order ones with more than one group. An estimate: what does not fit in the
// arena is allocated on its own, what is left of it stays unused.
size_t Stage::weight_arena_bytes(const GptqConfig& gptq, const ModelWeights& w) const {
  auto a = [](size_t bytes) { return DeviceMemory::aligned(DeviceMemory::alloc_bytes(bytes)); };
  // Whether a linear is uploaded packed (else as fp16), its groups, and whether it keeps a row permutation.
  auto packed = [](const LinearWeights& p) {
    return p.quantized() && p.group_size > 0 && p.group_size % 8 == 0 && !p.scales.shape.empty();
  };
  auto groups = [](const LinearWeights& p) { return (size_t)std::max<int64_t>(0, p.scales.shape[0]); };
  auto permuted = [&](const LinearWeights& p) { return gptq.desc_act && packed(p) && groups(p) > 1; };
  auto linear = [&](std::initializer_list<const LinearWeights*> parts) {
    const LinearWeights& p0 = **parts.begin();
    const size_t K = (size_t)std::max(0, p0.in_features);
    size_t N = 0, n = 0;
    bool bias = false;
    for (const LinearWeights* p : parts) N += (size_t)std::max(0, p->out_features), bias = bias || p->bias.present();
    if (packed(p0)) {
      const size_t G = groups(p0);
      n += a(K / 8 * N * 4) + a(G * N * 2);
      if (!gptq.sym) n += a(G * N);
      if (permuted(p0)) n += a(K * 4);
    } else {
      n += a(N * K * 2);
    }
    return bias ? n + a(N * 2) : n;
  };
  const size_t hid = (size_t)cfg_.hidden_size, table = a((size_t)cfg_.vocab_size * hid * 2);
  const bool tied = is_tied(w);
  size_t n = first_ && tied ? table : 0;
  for (int li = plan_.first_layer; li < plan_.end_layer; ++li) {
    const LayerWeights& L = w.layers[li];
    n += 2 * a(hid * 2) + linear({&L.q, &L.k, &L.v}) + linear({&L.o}) + linear({&L.gate, &L.up}) + linear({&L.down});
    if (permuted(L.q)) n += 2 * a(hid * 2);  // q/k/v's and gate/up's norms in their row order (norm_in_row_order)
  }
  if (last_) n += a(hid * 2) + (tied ? (first_ ? 0 : table) : linear({&w.lm_head}));
  return n;
}

void Stage::load_tensors(const GptqConfig& gptq, const ModelWeights& w) {
  const bool tied = is_tied(w);
  if (first_) {
    reading(kEmbeddingPart);
    if (!progress_) read_ahead(w.embed_tokens);
  }
  read_ahead_layer(w, plan_.first_layer, tied);
  if (!first_) {
    // Later stages start from the hidden state of the stage before (receive()).
  } else if (tied) {
    embed_ = upload_half(w.embed_tokens, (size_t)cfg_.vocab_size * cfg_.hidden_size, "embed_tokens");
  } else {
    // Untied: the table is only gathered (one row per token), so it stays in pinned host memory that the
    // GPU reads directly, saving vocab x hidden x 2 bytes of GPU memory (262 MB for a 7B model).
    if ((size_t)w.embed_tokens.numel() != (size_t)cfg_.vocab_size * cfg_.hidden_size)
      throw BackendError(kBadModel, "tensor " + w.embed_tokens.name + ": expected vocab x hidden elements");
    const size_t count = (size_t)cfg_.vocab_size * cfg_.hidden_size;
    __half* host = alloc_huge_embedding(count);
    if (w.embed_tokens.dtype == DType::F16 && uploader_) {
      uploader_->host_copy(host, w.embed_tokens.data, count * sizeof(__half));  // on the parallel readers
    } else {
      std::vector<__half> table = cuda::to_half(w.embed_tokens);
      std::copy(table.begin(), table.end(), host);
    }
  }
  for (int li = plan_.first_layer; li < plan_.end_layer; ++li) {
    reading(layer_part(li));
    read_ahead_layer(w, li + 1, tied);
    const LayerWeights& lw = w.layers[li];
    GpuLayer l;
    l.input_norm = upload_half(lw.input_norm, cfg_.hidden_size, "input_layernorm");
    l.post_norm = upload_half(lw.post_attention_norm, cfg_.hidden_size, "post_attention_layernorm");
    l.qkv = upload_linear({&lw.q, &lw.k, &lw.v}, gptq);
    l.o = upload_linear({&lw.o}, gptq);
    l.gate_up = upload_linear({&lw.gate, &lw.up}, gptq);
    l.down = upload_linear({&lw.down}, gptq);
    fold_down_perm(l);
    l.qkv_norm_rows = norm_in_row_order(l.input_norm, l.qkv);
    l.gate_up_norm_rows = norm_in_row_order(l.post_norm, l.gate_up);
    layers_.push_back(l);
  }
  if (last_) reading(final_part(cfg_.num_layers));
  if (!last_) {
    // The final norm and lm_head are on the last stage.
  } else if (tied) {
    final_norm_ = upload_half(w.final_norm, cfg_.hidden_size, "final norm");
    // One stage uses its embedding table; a last stage after others holds its own copy.
    lm_head_.K = cfg_.hidden_size, lm_head_.N = cfg_.vocab_size;
    lm_head_.dense = first_ ? embed_ : upload_half(w.embed_tokens, (size_t)cfg_.vocab_size * cfg_.hidden_size,
                                                   "embed_tokens (the tied lm_head)");
  } else {
    final_norm_ = upload_half(w.final_norm, cfg_.hidden_size, "final norm");
    lm_head_ = upload_linear({&w.lm_head}, gptq);
  }
  check_linear_shapes();
  all_quantized_ = std::all_of(layers_.begin(), layers_.end(), [](const GpuLayer& l) {
    return l.qkv.quantized && l.o.quantized && l.gate_up.quantized && l.down.quantized;
  });
}

void Stage::load_dummy(int group_size, uint64_t seed) {
  const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
            D = cfg_.head_dim;
  if (group_size <= 0 || group_size % 8) throw BackendError(kBadInput, "group size must be a multiple of 8");
  for (int v : {hid, I, H * D, (H + 2 * KV) * D})
    if (v % 8) throw BackendError(kBadInput, "dummy model sizes must be multiples of 8");
  XL_CUDA_CHECK(cudaSetDevice(device_));
  cuda::GemmWarmup warmup(device_, warmup_stream(), prompt_warm_gemms({true, true, true, true}));
  // Every tensor's random stream comes from its place in the model (slot), so a split model holds the same
  // weights as an unsplit one: embeddings 1, lm_head 2, layer li's tensors 16 + 8 li + 0..7.
  const uint64_t base = seed * 1000003ULL + 17;
  uint64_t s = base;
  auto slot = [&](uint64_t k) { s = base + k - 1; };  // the next ++s draws slot k
  auto rand_half = [&](size_t n, float lo, float hi, const char* what) {
    __half* p = mem_.alloc<__half>(n, what, &weight_bytes_);
    cuda::fill_random_half(p, n, ++s, lo, hi, stream_);
    return p;
  };
  auto ones = [&](size_t n) {
    __half* p = mem_.alloc<__half>(n, "norm weights", &weight_bytes_);
    cuda::fill_half(p, n, 1.f, stream_);
    return p;
  };
  auto dummy_linear = [&](int K, int N) {
    GpuLinear l;
    l.K = K, l.N = N, l.quantized = true;
    const int G = (K + group_size - 1) / group_size;
    uint32_t* qw = mem_.alloc<uint32_t>((size_t)K / 8 * N, "4-bit weights", &weight_bytes_);
    cuda::fill_random_u32(qw, (size_t)K / 8 * N, ++s, stream_);
    const float sc = 1.f / (std::sqrt((float)K) * 8.f);
    l.q.qweight = qw;
    l.q.scales = rand_half((size_t)G * N, 0.5f * sc, 1.5f * sc, "scales");
    l.q.K = K, l.q.N = N, l.q.group_size = group_size, l.q.sym_zero = 8;
    return l;
  };
  if (!first_) {
    // Later stages start from the hidden state of the stage before.
  } else if (cfg_.tie_word_embeddings) {
    slot(1);
    embed_ = rand_half((size_t)cfg_.vocab_size * hid, -1.f, 1.f, "embed_tokens");
  } else {
    slot(1);
    alloc_huge_embedding((size_t)cfg_.vocab_size * hid);  // as a checkpoint's, filled on the GPU once registered
    register_huge_embedding();
    cuda::fill_random_half(const_cast<__half*>(embed_), (size_t)cfg_.vocab_size * hid, ++s, -1.f, 1.f, stream_);
  }
  if (last_) final_norm_ = ones(hid);
  for (int i = plan_.first_layer; i < plan_.end_layer; ++i) {
    slot(16 + 8 * (uint64_t)i);
    GpuLayer l;
    l.input_norm = ones(hid);
    l.post_norm = ones(hid);
    l.qkv = dummy_linear(hid, (H + 2 * KV) * D);
    l.o = dummy_linear(H * D, hid);
    l.gate_up = dummy_linear(hid, 2 * I);
    l.down = dummy_linear(I, hid);
    layers_.push_back(l);
  }
  all_quantized_ = true;
  lm_head_.K = hid, lm_head_.N = cfg_.vocab_size;
  if (!last_) {
    // lm_head is on the last stage.
  } else if (cfg_.tie_word_embeddings) {
    slot(1);
    lm_head_.dense = first_ ? embed_
                            : rand_half((size_t)cfg_.vocab_size * hid, -1.f, 1.f, "embed_tokens (the tied lm_head)");
  } else {
    slot(2);
    const float a = 1.f / std::sqrt((float)hid);
    lm_head_.dense = rand_half((size_t)cfg_.vocab_size * hid, -a, a, "lm_head");
  }
  XL_CUDA_CHECK(cudaStreamSynchronize(stream_));
}  // (warmup's thread joined here)

// The load's GEMM warm-up runs on the main stream (cuda/gemm_warmup.h says why); XLLAMA_WARMUP_BESIDE=1 puts it
// on the side stream as session 38 did, to compare.
cudaStream_t Stage::warmup_stream() const {
  static const bool beside = cuda::env_switch_set("XLLAMA_WARMUP_BESIDE");
  return beside ? beside_ : stream_;
}

// The GEMM calls a prompt chunk makes in a layer (q/k/v, o, gate/up, down; quantized: whether each is 4-bit), on
// every SM as a length's first chunk makes them (gemm_sm_targets.h), for GemmWarmup: at a full chunk and at one
// 128-row tile of tokens (a chat turn's usual length). A dense weight operand larger than a dequantization tile
// is left out (the warm-up's scratch stays small).
std::vector<cuda::WarmGemm> Stage::prompt_warm_gemms(const std::array<bool, 4>& quantized) const {
  std::vector<cuda::WarmGemm> gemms;
  if (!cuda::gemm_warmup_setting()) return gemms;
  const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, H = cfg_.num_heads, KV = cfg_.num_kv_heads,
            D = cfg_.head_dim;
  struct Linear {
    int N, K;
    bool f32_out;  // o_proj and down_proj add into the fp32 residual stream; q/k/v and gate/up write fp16
  };
  const Linear linears[4] = {{(H + 2 * KV) * D, hid, false}, {hid, H * D, true}, {2 * I, hid, false}, {hid, I, true}};
  const size_t tile = dequant_tile_halves();
  std::vector<int> rows{chunk_rows()};
  if (rows[0] > 128) rows.push_back(128);
  for (int m : rows)
    for (int i = 0; i < 4; ++i) {
      const Linear& l = linears[i];
      const float beta = l.f32_out ? 1.f : 0.f;
      if (!quantized[i]) {
        if ((size_t)l.N * l.K <= tile) gemms.push_back({m, l.N, l.K, l.K, l.K, l.N, false, l.f32_out, beta});
        continue;
      }
      const int chunk = std::min(column_chunk(l.N, l.K, tile), l.N);  // (a chunk is 128 columns or more)
      gemms.push_back({m, chunk, l.K, l.K, chunk, l.N, true, l.f32_out, beta});
      if (const int rest = l.N % chunk) gemms.push_back({m, rest, l.K, l.K, rest, l.N, true, l.f32_out, beta});
    }
  return gemms;
}

// An untied table: memory of this process's own, on transparent huge pages where the kernel gives them (madvise),
// which the uploader's readers fault in as they fill it, 2 MB at a time, and which is registered with CUDA once
// filled (register_huge_embedding; a random model's is registered first and filled by the GPU). cudaHostAlloc, which
// both took before, zeroes and pins 4 kB pages on the loading thread first: Llama 3's 1.05 GB table took 0.54-0.59 s
// that way on the H200 and 0.07-0.08 s this way, its whole upload 0.79-0.86 s against 0.29-0.36 s
// (docs/PERF-NOTES.md, sessions 57 and 66).
__half* Stage::alloc_huge_embedding(size_t count) {
  constexpr size_t kHuge = 2u << 20;
  const size_t bytes = (count * sizeof(__half) + kHuge - 1) / kHuge * kHuge;
  void* host = std::aligned_alloc(kHuge, bytes);
  if (!host) throw BackendError(kOutOfMemory, "could not allocate " + gib(bytes) + " GiB of host memory for embed_tokens");
#ifdef MADV_HUGEPAGE
  madvise(host, bytes, MADV_HUGEPAGE);  // (advice only: without huge pages it is 4 kB pages, still correct)
#endif
  host_embed_ = host, host_embed_bytes_ = bytes;
  return static_cast<__half*>(host);
}

void Stage::register_huge_embedding() {
  if (!host_embed_bytes_ || host_embed_registered_) return;
  const auto t0 = std::chrono::steady_clock::now();
  const cudaError_t err = cudaHostRegister(host_embed_, host_embed_bytes_, cudaHostRegisterMapped | cudaHostRegisterPortable);
  pin_embedding_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw BackendError(kOutOfMemory, "could not pin " + gib(host_embed_bytes_) + " GiB of host memory for embed_tokens");
  }
  host_embed_registered_ = true;
  void* dev = nullptr;
  XL_CUDA_CHECK(cudaHostGetDevicePointer(&dev, host_embed_, 0));
  embed_ = static_cast<const __half*>(dev);
}

template <class T>
T* Stage::upload(const std::vector<T>& v, const char* what) {
  T* p = mem_.alloc<T>(v.size(), what, &weight_bytes_);
  if (uploader_)
    uploader_->copy(p, v.data(), v.size() * sizeof(T));
  else
    XL_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

const __half* Stage::upload_half(const TensorView& t, size_t expect, const char* what) {
  if (!t.present()) throw BackendError(kBadModel, std::string("missing tensor: ") + what);
  if ((size_t)t.numel() != expect)
    throw BackendError(kBadModel, "tensor " + t.name + ": expected " + std::to_string(expect) + " elements");
  if (t.dtype == DType::F16 && uploader_) {  // straight from the checkpoint
    __half* p = mem_.alloc<__half>(expect, what, &weight_bytes_);
    uploader_->copy(p, t.data, expect * sizeof(__half));
    return p;
  }
  return upload(cuda::to_half(t), what);
}

// A scratch buffer for act-order qweight before its rows are permuted on the GPU (freed after the load).
uint32_t* Stage::permute_scratch(size_t words) {
  if (words > permute_scratch_words_) {
    if (permute_scratch_) XL_CUDA_CHECK(cudaStreamSynchronize(load_stream()));  // earlier permutes done
    if (permute_scratch_) cudaFree(permute_scratch_);
    permute_scratch_ = nullptr, permute_scratch_words_ = 0;
    if (cudaMalloc(&permute_scratch_, words * 4) != cudaSuccess) {
      cudaGetLastError();
      mem_.throw_oom(words * 4, "act-order repacking");
    }
    permute_scratch_words_ = words;
  }
  return permute_scratch_;
}

// The fast path for GPTQ parts with fp16 scales: qweight and scales go to the GPU as they lie in the
// checkpoint (each part's rows into its columns of the concatenated layout), act-order rows are sorted by a
// kernel; only zeros, g_idx and the permutation are prepared on the host.
bool Stage::upload_q4_direct(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq, GpuLinear& l) {
  if (!uploader_ || !parts[0]->quantized()) return false;
  for (auto* p : parts)
    if (!p->quantized() || p->scales.dtype != DType::F16) return false;
  cuda::Q4Plan plan;
  if (!cuda::plan_q4(parts, gptq, plan)) return false;
  const int K = plan.K, N = plan.N, G = plan.groups;
  uint32_t* qw = mem_.alloc<uint32_t>((size_t)K / 8 * N, "4-bit weights", &weight_bytes_);
  __half* sc = mem_.alloc<__half>((size_t)G * N, "scales", &weight_bytes_);
  uint32_t* rows = plan.perm.empty() ? qw : permute_scratch((size_t)K / 8 * N);
  int n0 = 0;
  for (auto* p : parts) {
    const size_t n_i = (size_t)p->out_features;
    uploader_->copy_rows(rows + n0, (size_t)N * 4, p->qweight.data, n_i * 4, (size_t)K / 8);
    uploader_->copy_rows(sc + n0, (size_t)N * 2, p->scales.data, n_i * 2, (size_t)G);
    n0 += (int)n_i;
  }
  l.quantized = true;
  l.q.qweight = qw, l.q.scales = sc;
  if (!plan.zeros.empty()) l.q.zeros = upload(plan.zeros, "zeros");
  if (!plan.perm.empty()) {
    int* perm = upload(plan.perm, "act-order permutation");
    cuda::permute_q4_rows(rows, qw, perm, K, N, uploader_->stream());
    l.q.perm = perm;
  }
  l.q.K = K, l.q.N = N, l.q.group_size = plan.group_size, l.q.sym_zero = plan.sym_zero;
  return true;
}

// Act-order down_proj reads its input in its own row order (q.perm). Here gate/up's output columns are put in that
// order once (gate's and up's by the same permutation: their scales and zeros with them), so SiLU(gate) * up
// arrives in down_proj's order and nothing gathers it at run time: the decode GEMV's staging gathered it with one
// L2 request per value in every block, and prompt chunks with a column gather before the GEMM (an act-order 7B
// decoded and ran prompts ~14% slower than the same model without act-order on the H200; docs/PERF-NOTES.md,
// session 30). XLLAMA_FOLD_DOWN_PERM=0 keeps the gather.
void Stage::fold_down_perm(GpuLayer& l) {
  static const bool on = cuda::env_switch_on("XLLAMA_FOLD_DOWN_PERM");
  cuda::QWeight& gu = l.gate_up.q;
  const int I = cfg_.intermediate_size;
  if (!on || !l.down.quantized || !l.down.q.perm || !l.gate_up.quantized || l.gate_up.bias || gu.N != 2 * I ||
      l.down.q.K != I)
    return;
  const cudaStream_t s = load_stream();
  const int groups = (gu.K + gu.group_size - 1) / gu.group_size;
  auto fold = [&](const void* data, int rows, int elem_bytes) {
    const size_t bytes = (size_t)rows * gu.N * elem_bytes;
    void* before = permute_scratch((bytes + 3) / 4);  // the load stream orders its earlier use before this copy
    XL_CUDA_CHECK(cudaMemcpyAsync(before, data, bytes, cudaMemcpyDeviceToDevice, s));
    cuda::permute_columns(before, const_cast<void*>(data), rows, gu.N, elem_bytes, l.down.q.perm, 2, s);
  };
  fold(gu.qweight, gu.K / 8, 4);
  fold(gu.scales, groups, 2);
  if (gu.zeros) fold(gu.zeros, groups, 1);
  l.down.q.perm = nullptr;
}

// An act-order linear's input norm in its row order, or null: the decode staging then reads the norm weights
// contiguously and gathers only h (each gathered value is an L2 request of its own).
const __half* Stage::norm_in_row_order(const __half* norm, const GpuLinear& l) {
  if (!norm || !l.quantized || !l.q.perm) return nullptr;
  __half* rows = mem_.alloc<__half>(l.K, "act-order norm", &weight_bytes_);
  cuda::permute_columns(norm, rows, 1, l.K, 2, l.q.perm, 1, load_stream());
  return rows;
}

GpuLinear Stage::upload_linear(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq) {
  GpuLinear l;
  l.K = parts[0]->in_features;
  for (auto* p : parts) l.N += p->out_features;
  cuda::PackedQ4 pk;
  if (upload_q4_direct(parts, gptq, l)) {
    // laid out on the GPU
  } else if (parts[0]->quantized() && cuda::pack_q4(parts, gptq, pk)) {
    l.quantized = true;
    l.q.qweight = upload(pk.qweight, "4-bit weights");
    l.q.scales = upload(pk.scales, "scales");
    if (!pk.zeros.empty()) l.q.zeros = upload(pk.zeros, "zeros");
    if (!pk.perm.empty()) l.q.perm = upload(pk.perm, "act-order permutation");
    l.q.K = pk.K, l.q.N = pk.N, l.q.group_size = pk.group_size, l.q.sym_zero = pk.sym_zero;
  } else if (uploader_ && cuda::dense_is_f16_as_is(parts)) {  // e.g. an untied lm_head: as it lies
    __half* d = mem_.alloc<__half>((size_t)l.N * l.K, "fp16 weights", &weight_bytes_);
    uploader_->copy(d, parts[0]->weight.data, (size_t)l.N * l.K * sizeof(__half));
    l.dense = d;
  } else {
    l.dense = upload(cuda::dense_half(parts, gptq), "fp16 weights");
  }
  std::vector<__half> b = cuda::concat_bias(parts);
  if (!b.empty()) l.bias = upload(b, "biases");
  l.q.bias = l.bias;
  return l;
}

void Stage::check_linear_shapes() const {
  const int hid = cfg_.hidden_size, I = cfg_.intermediate_size, HD = cfg_.num_heads * cfg_.head_dim,
            qkv = (cfg_.num_heads + 2 * cfg_.num_kv_heads) * cfg_.head_dim;
  auto expect = [](const GpuLinear& l, int K, int N, const char* what) {
    if (l.K != K || l.N != N)
      throw BackendError(kBadModel, std::string(what) + ": expected " + std::to_string(N) + "x" +
                                            std::to_string(K) + ", got " + std::to_string(l.N) + "x" +
                                            std::to_string(l.K));
  };
  for (const GpuLayer& l : layers_) {
    expect(l.qkv, hid, qkv, "q/k/v projections");
    expect(l.o, HD, hid, "o_proj");
    expect(l.gate_up, hid, 2 * I, "gate/up projections");
    expect(l.down, I, hid, "down_proj");
  }
  if (last_) expect(lm_head_, hid, cfg_.vocab_size, "lm_head");
}

}  // namespace xllama
