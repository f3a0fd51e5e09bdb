// rotate_half RoPE of one pair, shared by the RoPE and decode attention kernels.
#pragma once

namespace xllama::cuda {

// The pair (j, j + D/2) at position p. HF: angle in fp32 (inv_freq * position), cos/sin precisely
// (positions can be large).
__device__ __forceinline__ void rotate_pair(float& a, float& b, int p, float inv_freq) {
  const float angle = (float)p * inv_freq;
  double sn, cs;
  sincos((double)angle, &sn, &cs);
  const float c = (float)cs, s = (float)sn;
  const float ra = a * c - b * s, rb = b * c + a * s;
  a = ra, b = rb;
}

}  // namespace xllama::cuda
