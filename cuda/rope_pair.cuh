// rotate_half RoPE of one pair, shared by the RoPE and decode attention kernels.
#pragma once

namespace xllama::cuda {

// The pair (j, j + D/2) at position p. HF: angle in fp32 (inv_freq * position), then cos/sin of it. The angle
// is reduced to [-pi, pi] in double (exact enough for any position), then the fast fp32 sincos runs on the
// small argument (absolute error ~4e-7, far below the fp16 rounding of q and k); a full double-precision
// sincos per element cost ~60 us per layer of a 512-token prompt.
// Both are then multiplied by the attention factor (YaRN's attention scaling, HF's cos * attention_scaling; 1, an exact
// no-op, for every other rope type).
__device__ __forceinline__ void rope_cos_sin(int p, float inv_freq, float attention_factor, float& c, float& s) {
  const float angle = (float)p * inv_freq;
  const double turns = rint((double)angle * 0.15915494309189535);  // angle / 2pi
  const float r = (float)fma(-turns, 6.283185307179586, (double)angle);
  __sincosf(r, &s, &c);
  c *= attention_factor, s *= attention_factor;
}

__device__ __forceinline__ void rotate_pair_cs(float& a, float& b, float c, float s) {
  const float ra = a * c - b * s, rb = b * c + a * s;
  a = ra, b = rb;
}

__device__ __forceinline__ void rotate_pair(float& a, float& b, int p, float inv_freq, float attention_factor) {
  float c, s;
  rope_cos_sin(p, inv_freq, attention_factor, c, s);
  rotate_pair_cs(a, b, c, s);
}

}  // namespace xllama::cuda
