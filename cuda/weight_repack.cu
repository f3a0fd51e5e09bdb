#include "cuda/weight_repack.h"

#include "cuda/cuda_check.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

namespace xllama::cuda {

namespace {

[[noreturn]] void bad_tensor(const TensorView& t, const std::string& why) {
  throw BackendError(kBadModel, "tensor " + t.name + ": " + why);
}

void expect_shape(const TensorView& t, int64_t d0, int64_t d1) {
  if (t.shape.size() != 2 || t.shape[0] != d0 || t.shape[1] != d1)
    bad_tensor(t, "expected shape [" + std::to_string(d0) + ", " + std::to_string(d1) + "]");
}

float element(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::F16: return __half2float(reinterpret_cast<const __half*>(t.data)[i]);
    case DType::BF16: {
      uint32_t u = (uint32_t)reinterpret_cast<const uint16_t*>(t.data)[i] << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case DType::F32: return reinterpret_cast<const float*>(t.data)[i];
    default: bad_tensor(t, "expected a floating-point tensor");
  }
}

std::vector<int> group_index(const LinearWeights& l) {
  std::vector<int> g(l.in_features);
  if (l.g_idx.present()) {
    std::memcpy(g.data(), l.g_idx.data, g.size() * 4);
  } else {
    for (int k = 0; k < l.in_features; ++k) g[k] = k / l.group_size;
  }
  return g;
}

}  // namespace

std::vector<__half> to_half(const TensorView& t) {
  std::vector<__half> out((size_t)t.numel());
  if (t.dtype == DType::F16) {
    std::memcpy(out.data(), t.data, out.size() * 2);
  } else {
    for (size_t i = 0; i < out.size(); ++i) out[i] = __float2half(element(t, (int64_t)i));
  }
  return out;
}

bool plan_q4(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq, Q4Plan& out) {
  const LinearWeights& p0 = *parts[0];
  const int K = p0.in_features, gs = p0.group_size;
  if (gs % 8 != 0) return false;  // the kernels read whole packed rows (8 input rows) of one group
  int N = 0;
  for (auto* p : parts) {
    if (!p->quantized() || p->in_features != K || p->group_size != gs) return false;
    N += p->out_features;
  }
  const std::vector<int> g = group_index(p0);
  for (size_t i = 1; i < parts.size(); ++i)
    if (group_index(*parts[i]) != g) return false;
  const int G = (int)p0.scales.shape[0];
  if ((int64_t)G * gs < K) return false;
  for (auto* p : parts)
    if (p->scales.shape[0] != G) return false;
  // Sort rows by group (stable); each group must then fill whole rows [g*gs, (g+1)*gs).
  std::vector<int> perm(K);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return g[a] < g[b]; });
  for (int k = 0; k < K; ++k) {
    if (g[perm[k]] != k / gs || g[perm[k]] >= G) return false;
  }
  bool identity = true;
  for (int k = 0; k < K && identity; ++k) identity = perm[k] == k;

  out = Q4Plan{};
  out.K = K, out.N = N, out.group_size = gs, out.groups = G;
  if (!identity) out.perm = std::move(perm);
  // Symmetric checkpoints store one zero everywhere: one pass over the packed words tells, with no unpacking
  // (a 70B model has half a billion zeros).
  const uint32_t first = *reinterpret_cast<const uint32_t*>(p0.qzeros.data);
  bool uniform = ((first >> 4) | (first << 28)) == first;  // all 8 nibbles alike
  for (size_t i = 0; i < parts.size() && uniform; ++i) {
    const uint32_t* qz = reinterpret_cast<const uint32_t*>(parts[i]->qzeros.data);
    const size_t words = (size_t)G * (parts[i]->out_features / 8);
    for (size_t w = 0; w < words && uniform; ++w) uniform = qz[w] == first;
  }
  if (uniform) {
    out.sym_zero = (int)(first & 15u) + gptq.zero_offset;
    return true;
  }
  out.zeros.resize((size_t)G * N);
  int n0 = 0;
  for (auto* p : parts) {
    const int n_i = p->out_features;
    const uint32_t* qz = reinterpret_cast<const uint32_t*>(p->qzeros.data);
    for (int gi = 0; gi < G; ++gi) {
      const uint32_t* row = qz + (size_t)gi * (n_i / 8);
      uint8_t* dst = out.zeros.data() + (size_t)gi * N + n0;
      for (int w = 0; w < n_i / 8; ++w)
        for (int j = 0; j < 8; ++j) dst[8 * w + j] = (uint8_t)(((row[w] >> (4 * j)) & 15u) + gptq.zero_offset);
    }
    n0 += n_i;
  }
  return true;
}

bool pack_q4(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq, PackedQ4& out) {
  Q4Plan plan;
  if (!plan_q4(parts, gptq, plan)) return false;
  const int K = plan.K, N = plan.N, G = plan.groups;
  out = PackedQ4{};
  out.K = K, out.N = N, out.group_size = plan.group_size, out.groups = G;
  out.qweight.assign((size_t)(K / 8) * N, 0u);
  out.scales.resize((size_t)G * N);
  int n0 = 0;
  for (auto* p : parts) {
    const int n_i = p->out_features;
    const uint32_t* qw = reinterpret_cast<const uint32_t*>(p->qweight.data);
    if (plan.perm.empty()) {
      for (int r = 0; r < K / 8; ++r)
        std::memcpy(&out.qweight[(size_t)r * N + n0], qw + (size_t)r * n_i, (size_t)n_i * 4);
    } else {
      for (int k = 0; k < K; ++k) {
        const int src = plan.perm[k], sr = src / 8, sh = 4 * (src % 8), dsh = 4 * (k % 8);
        const uint32_t* srow = qw + (size_t)sr * n_i;
        uint32_t* drow = &out.qweight[(size_t)(k / 8) * N + n0];
        for (int n = 0; n < n_i; ++n) drow[n] |= ((srow[n] >> sh) & 15u) << dsh;
      }
    }
    for (int gi = 0; gi < G; ++gi)
      for (int n = 0; n < n_i; ++n)
        out.scales[(size_t)gi * N + n0 + n] = __float2half(element(p->scales, (int64_t)gi * n_i + n));
    n0 += n_i;
  }
  out.zeros = std::move(plan.zeros);
  out.sym_zero = plan.sym_zero;
  out.perm = std::move(plan.perm);
  return true;
}

namespace {
// out(k', n) = in(perm[k'], n) on packed words: one thread per output word gathers its 8 nibbles.
__global__ void permute_q4_rows_kernel(const uint32_t* __restrict__ in, uint32_t* __restrict__ out,
                                       const int* __restrict__ perm, int K, int N) {
  const size_t total = (size_t)(K / 8) * N;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i / N), n = (int)(i % N);
    uint32_t w = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int src = perm[r * 8 + j];
      w |= ((in[(size_t)(src / 8) * N + n] >> (4 * (src % 8))) & 15u) << (4 * j);
    }
    out[i] = w;
  }
}
template <class T>
__global__ void permute_columns_kernel(const T* __restrict__ in, T* __restrict__ out, int rows, int N,
                                       const int* __restrict__ perm, int block_cols) {
  const size_t total = (size_t)rows * N;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / N;
    const int j = (int)(i % N), b0 = j / block_cols * block_cols;
    out[i] = in[r * N + b0 + perm[j - b0]];
  }
}
}  // namespace

void permute_columns(const void* in, void* out, int rows, int N, int elem_bytes, const int* perm, int halves,
                     cudaStream_t s) {
  const size_t total = (size_t)rows * N;
  const int grid = (int)std::min<size_t>((total + 255) / 256, 65535);
  const int block_cols = N / halves;
  switch (elem_bytes) {
    case 4: permute_columns_kernel<<<grid, 256, 0, s>>>(static_cast<const uint32_t*>(in), static_cast<uint32_t*>(out),
                                                         rows, N, perm, block_cols); break;
    case 2: permute_columns_kernel<<<grid, 256, 0, s>>>(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out),
                                                         rows, N, perm, block_cols); break;
    default: permute_columns_kernel<<<grid, 256, 0, s>>>(static_cast<const uint8_t*>(in), static_cast<uint8_t*>(out),
                                                          rows, N, perm, block_cols); break;
  }
  XL_CUDA_LAUNCH_CHECK();
}

void permute_q4_rows(const uint32_t* in, uint32_t* out, const int* perm, int K, int N, cudaStream_t s) {
  const size_t total = (size_t)(K / 8) * N;
  const int grid = (int)std::min<size_t>((total + 255) / 256, 65535);
  permute_q4_rows_kernel<<<grid, 256, 0, s>>>(in, out, perm, K, N);
  XL_CUDA_LAUNCH_CHECK();
}

std::vector<__half> dense_half(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq) {
  const int K = parts[0]->in_features;
  size_t N = 0;
  for (auto* p : parts) N += p->out_features;
  std::vector<__half> out(N * K);
  size_t n0 = 0;
  for (auto* p : parts) {
    const int n_i = p->out_features;
    if (p->in_features != K) bad_tensor(p->weight.present() ? p->weight : p->qweight, "input size mismatch");
    if (!p->quantized()) {
      expect_shape(p->weight, n_i, K);
      std::vector<__half> w = to_half(p->weight);
      std::copy(w.begin(), w.end(), out.begin() + n0 * K);
    } else {
        const std::vector<int> g = group_index(*p);
      const uint32_t* qw = reinterpret_cast<const uint32_t*>(p->qweight.data);
      const uint32_t* qz = reinterpret_cast<const uint32_t*>(p->qzeros.data);
      const int G = (int)p->scales.shape[0];
      for (int k = 0; k < K; ++k) {
        if (g[k] < 0 || g[k] >= G) bad_tensor(p->g_idx, "group index out of range");
        for (int n = 0; n < n_i; ++n) {
          const int q = (int)((qw[(size_t)(k / 8) * n_i + n] >> (4 * (k % 8))) & 15u);
          const int z = (int)((qz[(size_t)g[k] * (n_i / 8) + n / 8] >> (4 * (n % 8))) & 15u) + gptq.zero_offset;
          const float s = element(p->scales, (int64_t)g[k] * n_i + n);
          out[(n0 + n) * K + k] = __float2half(s * (float)(q - z));
        }
      }
    }
    n0 += n_i;
  }
  return out;
}

bool dense_is_f16_as_is(const std::vector<const LinearWeights*>& parts) {
  if (parts.size() != 1 || parts[0]->quantized() || parts[0]->weight.dtype != DType::F16) return false;
  expect_shape(parts[0]->weight, parts[0]->out_features, parts[0]->in_features);
  return true;
}

std::vector<__half> concat_bias(const std::vector<const LinearWeights*>& parts) {
  bool any = false;
  size_t N = 0;
  for (auto* p : parts) any |= p->bias.present(), N += p->out_features;
  if (!any) return {};
  std::vector<__half> out(N, __float2half(0.f));
  size_t n0 = 0;
  for (auto* p : parts) {
    if (p->bias.present()) {
      if (p->bias.numel() != p->out_features) bad_tensor(p->bias, "expected [out]");
      std::vector<__half> b = to_half(p->bias);
      std::copy(b.begin(), b.end(), out.begin() + n0);
    }
    n0 += p->out_features;
  }
  return out;
}

}  // namespace xllama::cuda
