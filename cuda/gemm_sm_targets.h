// How many SMs each prompt GEMM shape asks cuBLAS for (cublasSetSmCountTarget). cuBLAS runs a GEMM as waves of
// tiles, one CTA per SM; where the last wave is partial, the same GEMM takes as long on fewer SMs (a 7B gate/up
// half at 512 tokens on the H200: 232 tiles, 75 us on any of 116-132 SMs, 158 on 112). The SMs it does not need
// then run the dequantization side stream's blocks (dequant_ahead.h) for the whole GEMM instead of only in its
// last wave. cuBLAS's tile choice is not public and changes with the shape, so the count is found by timing each
// shape once (a rule from guessed tile shapes put 13B and 70B GEMMs past their cliff: docs/PERF-NOTES.md, session
// 21). On some counts cuBLAS switches to another kernel whose sums round differently, so a count is kept only if
// its output equals the every-SM output bit for bit: a prompt's logits do not depend on what the timing found.
// A shape is timed in the second prompt chunk it comes in, not the first: timing tries each count, and cuBLAS
// chooses and loads a kernel for each (~50 ms for a 7B's four shapes at a new length on the H200,
// docs/PERF-NOTES.md, session 36) to save well under 1 ms per chunk, which only pays for lengths that come again
// (a perplexity run's chunks, a benchmark's repetitions), not for a one-off prompt (`generate`'s, most chat turns').
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <map>
#include <tuple>

namespace xllama::cuda {

// XLLAMA_GEMM_SM_TARGETS: "0" keeps every GEMM on every SM.
bool gemm_sm_targets_setting();

class GemmSmTargets {
 public:
  // A GEMM as cuBLAS tiles it: output features N, inputs K, token rows bucketed by 128 (its tiles' width), fp32
  // output, accumulating into the output (beta 1).
  struct Shape {
    int row_tiles, N, K;
    bool f32, accumulate;
    bool operator<(const Shape& o) const {
      return std::tie(row_tiles, N, K, f32, accumulate) < std::tie(o.row_tiles, o.N, o.K, o.f32, o.accumulate);
    }
  };
  // One GEMM of a shape, as the tuner may run it: `run(target)` enqueues it with that SM count target, writing
  // `rows` rows of `row_bytes` at `stride` from `out` (adding into them where the shape accumulates).
  struct Gemm {
    std::function<void(int)> run;
    void* out;
    int rows;
    size_t row_bytes, stride;
  };
  // Shapes of one 128-row tile of tokens (128 rows or fewer) keep every SM: their GEMMs are short, and a chat turn's
  // prompt would pay for a timing per new length.
  static constexpr int kMinRowTiles = 2;

  explicit GemmSmTargets(int sm_count);
  ~GemmSmTargets();
  GemmSmTargets(const GemmSmTargets&) = delete;
  GemmSmTargets& operator=(const GemmSmTargets&) = delete;

  static Shape shape_of(int m, int N, int K, bool f32, bool accumulate) {
    return {(m + 127) / 128, N, K, f32, accumulate};
  }
  // A prompt chunk begins (its GEMMs repeat each shape once per layer).
  void begin_chunk() { ++chunk_; }
  // The SM count target for `shape`'s GEMM now: 0 (every SM) for shapes of too few rows and in the first chunk a
  // shape comes in, the one kept once timed, or -1 when it is to be timed (the shape's first GEMM of a later chunk):
  // a lookup, so a GEMM's caller builds a Gemm for tune() only then.
  int target(const Shape& shape);
  // Times `gemm` for each candidate on `stream` (the host waits for the timings) and keeps and returns the fewest SMs
  // within 2% of the fastest candidate whose output equals the every-SM output (0 if none).
  int tune(const Shape& shape, cudaStream_t stream, const Gemm& gemm);

 private:
  // A fingerprint of gemm's output after one run with `target` (zeroed first where the shape accumulates).
  unsigned long long output_fingerprint(const Shape& shape, cudaStream_t stream, const Gemm& gemm, int target);

  int sm_count_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  unsigned long long* fingerprint_ = nullptr;  // device: [xor, sum], allocated at the first timing
  std::map<Shape, int> chosen_;
  std::map<Shape, unsigned long long> first_chunk_;  // untimed shapes: the chunk they first came in, on every SM
  unsigned long long chunk_ = 0;
};

}  // namespace xllama::cuda
