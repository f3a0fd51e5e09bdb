#include "cuda/dequant_ahead.h"

#include <stdexcept>

#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"

namespace xllama::cuda {

bool dequant_ahead_setting() { return env_switch_on("XLLAMA_DEQUANT_AHEAD"); }

DequantAhead::DequantAhead(std::vector<__half*> slots, size_t slot_halves, cudaStream_t side)
    : slots_(std::move(slots)), slot_halves_(slot_halves), side_(side) {
  if (slots_.size() < 2) throw std::invalid_argument("DequantAhead: needs two slots");
  filled_.resize(slots_.size());
  consumed_.resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    XL_CUDA_CHECK(cudaEventCreateWithFlags(&filled_[i], cudaEventDisableTiming));
    XL_CUDA_CHECK(cudaEventCreateWithFlags(&consumed_[i], cudaEventDisableTiming));
  }
  XL_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
  XL_CUDA_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
}

DequantAhead::~DequantAhead() {
  if (side_) cudaStreamSynchronize(side_);
  for (cudaEvent_t e : filled_) cudaEventDestroy(e);
  for (cudaEvent_t e : consumed_) cudaEventDestroy(e);
  if (fork_) cudaEventDestroy(fork_);
  if (join_) cudaEventDestroy(join_);
}

const __half* DequantAhead::dequant(const QWeight& w, int n0, int n1, cudaStream_t main) {
  if ((size_t)w.K * (n1 - n0) > slot_halves_) throw std::invalid_argument("DequantAhead: the tile exceeds a slot");
  const size_t s = next_;
  next_ = (next_ + 1) % slots_.size();
  // A never-recorded event is complete: the first round waits for nothing.
  XL_CUDA_CHECK(cudaStreamWaitEvent(side_, consumed_[s], 0));
  dequant_q4(w, n0, n1, slots_[s], side_, /*beside=*/true);
  XL_CUDA_CHECK(cudaEventRecord(filled_[s], side_));
  XL_CUDA_CHECK(cudaStreamWaitEvent(main, filled_[s], 0));
  return slots_[s];
}

void DequantAhead::release(cudaStream_t main) {
  const size_t last = (next_ + slots_.size() - 1) % slots_.size();  // the slot dequant() returned
  XL_CUDA_CHECK(cudaEventRecord(consumed_[last], main));
}

void DequantAhead::join_capture(cudaStream_t main) {
  XL_CUDA_CHECK(cudaEventRecord(fork_, main));
  XL_CUDA_CHECK(cudaStreamWaitEvent(side_, fork_, 0));
  for (cudaEvent_t e : consumed_) XL_CUDA_CHECK(cudaEventRecord(e, side_));
}

void DequantAhead::leave_capture(cudaStream_t main) {
  XL_CUDA_CHECK(cudaEventRecord(join_, side_));
  XL_CUDA_CHECK(cudaStreamWaitEvent(main, join_, 0));
}

void DequantAhead::after_graph(cudaStream_t main) {
  for (cudaEvent_t e : consumed_) XL_CUDA_CHECK(cudaEventRecord(e, main));
}

}  // namespace xllama::cuda
