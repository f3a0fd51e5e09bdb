// The penalties' rule, shared by the host pick (token_sampling.cc) and the GPU's top-k kernel
// (cuda/kernels_sample.cu) so that both apply what the host sampler's applyPenalties does (cli/engine/sampler.ts):
// the repetition penalty on every token seen (prompt and output), then the frequency and presence penalties on every
// token generated, each in double and rounded to float once, as its Float32Array store does. Plain C++ that nvcc
// also compiles for the device.
#pragma once
#include <cstdint>

#include "backend/backend.h"        // TokenSampling
#include "backend/sampled_rank.h"  // XLLAMA_HOST_DEVICE

namespace xllama {

XLLAMA_HOST_DEVICE inline bool penalties_on(const TokenSampling& s) {
  return s.repeat_penalty != 1.0 || s.frequency_penalty != 0.0 || s.presence_penalty != 0.0;
}

// A token's history entry: bit 0 seen (in the prompt or generated), the bits above how often it was generated.
// A pick records its token as the host sampler's accept does: seen, and generated once more.
XLLAMA_HOST_DEVICE inline uint32_t history_after_pick(uint32_t entry) { return (entry | 1u) + 2u; }

XLLAMA_HOST_DEVICE inline float penalized_logit(float v, uint32_t entry, const TokenSampling& s) {
  if ((entry & 1u) && s.repeat_penalty != 1.0)
    v = (float)(v < 0.0f ? (double)v * s.repeat_penalty : (double)v / s.repeat_penalty);
  const uint32_t count = entry >> 1;
  if (count > 0 && (s.frequency_penalty != 0.0 || s.presence_penalty != 0.0))
    v = (float)((double)v - (double)count * s.frequency_penalty - s.presence_penalty);
  return v;
}

}  // namespace xllama
