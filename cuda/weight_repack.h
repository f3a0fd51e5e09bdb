// Host-side preparation of checkpoint weights for the GPU: fp16 conversion and GPTQ repacking
// (act-order rows sorted so groups are contiguous, zeros unpacked with the zero offset applied).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace xllama::cuda {

// Any dense tensor as fp16 (F16 copied, BF16/F32 converted). Throws BackendError on I32.
std::vector<__half> to_half(const TensorView& t);

struct PackedQ4 {
  int K = 0, N = 0, group_size = 0, groups = 0;
  std::vector<uint32_t> qweight;  // [K/8, N], rows reordered
  std::vector<__half> scales;     // [groups, N]
  std::vector<uint8_t> zeros;     // [groups, N], empty when every zero equals sym_zero
  int sym_zero = 8;
  std::vector<int> perm;          // [K], empty for identity
};

// How the parts (one input, outputs concatenated) map to the GPU's 4-bit layout, from the small tensors only
// (shapes, g_idx, zeros): rows sorted by group, zeros unpacked with the zero offset applied. Returns false
// when the parts can't share one layout (different g_idx or group size, or groups that aren't whole packed
// rows after sorting); the caller then dequantizes them to fp16. Throws BackendError on malformed tensors.
struct Q4Plan {
  int K = 0, N = 0, group_size = 0, groups = 0;
  std::vector<int> perm;       // [K], empty for identity: row k' of the layout is checkpoint row perm[k']
  std::vector<uint8_t> zeros;  // [groups, N], empty when every zero equals sym_zero
  int sym_zero = 8;
};
bool plan_q4(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq, Q4Plan& out);

// The plan carried out on the host (qweight rows permuted and concatenated, scales as fp16).
bool pack_q4(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq, PackedQ4& out);

// The row permutation on the GPU: out(k', n) = in(perm[k'], n), both [K/8, N] packed words.
void permute_q4_rows(const uint32_t* in, uint32_t* out, const int* perm, int K, int N, cudaStream_t s);

// A column permutation on the GPU, out(r, j) = in(r, src(j)), for a [rows, N] matrix of elem_bytes-sized elements
// (4: packed words, 2: fp16 scales, 1: zeros) whose N columns are `halves` blocks of N / halves (gate and up): column
// j of block b comes from column perm[j - b N / halves] of that block. The act-order fold of down_proj's input order
// into gate/up's output columns (CudaBackend's fold_down_perm).
void permute_columns(const void* in, void* out, int rows, int N, int elem_bytes, const int* perm, int halves,
                     cudaStream_t s);

// fp16 [N, K] of the parts concatenated along the output dimension (dequantizing GPTQ parts).
std::vector<__half> dense_half(const std::vector<const LinearWeights*>& parts, const GptqConfig& gptq);

// Whether dense_half would return the one part's weight unchanged (an fp16 [out, in] tensor), so it can be
// copied to the GPU as it lies; throws BackendError on a wrong shape as dense_half does.
bool dense_is_f16_as_is(const std::vector<const LinearWeights*>& parts);

// Concatenated biases as fp16, empty when no part has one.
std::vector<__half> concat_bias(const std::vector<const LinearWeights*>& parts);

}  // namespace xllama::cuda
