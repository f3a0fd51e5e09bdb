// The prompt path's 4-bit GEMMs with their dequantization beside them instead of before them. Dequantization is
// bandwidth-bound and short; cuBLAS's GEMMs at prompt sizes end in a partial wave (a 7B gate/up tile at 512
// tokens: ~1.3 waves of tiles) and the kernels between them (attention, RoPE, SiLU) leave SMs idle too. Here a side
// stream of the lowest priority dequantizes the next tiles into a ring of slots: its short blocks take the SMs the
// main stream (created with the highest priority, so its pending blocks go first) leaves free. Events order each
// slot: its GEMM waits until it is filled, its next fill until that GEMM is done.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <vector>

#include "cuda/kernels.h"

namespace xllama::cuda {

// XLLAMA_DEQUANT_AHEAD: "0" turns it off (dequantization and GEMM alternate on one stream).
bool dequant_ahead_setting();

class DequantAhead {
 public:
  // slots: device buffers of slot_halves fp16 values each (at least 2), owned by the caller. side: the stream the
  // tiles are dequantized on, of the lowest priority, owned by the caller and alive until this is destroyed. The
  // current device is the one the caller's streams run on.
  DequantAhead(std::vector<__half*> slots, size_t slot_halves, cudaStream_t side);
  ~DequantAhead();
  DequantAhead(const DequantAhead&) = delete;
  DequantAhead& operator=(const DequantAhead&) = delete;

  // Enqueues the dequantization of columns [n0, n1) into the next slot on the side stream (after the GEMM that read
  // that slot last) and makes `main` wait for it. Returns the slot; call release() once its GEMM is enqueued.
  // Every tile of a stage goes through here, so no slot is written outside the ring's order.
  const __half* dequant(const QWeight& w, int n0, int n1, cudaStream_t main);
  // The slot dequant() returned last may be refilled once `main` has run what is enqueued on it so far.
  void release(cudaStream_t main);

  // A prompt captured as a graph on `main` (cudaStreamBeginCapture) takes the side stream into its capture:
  // join_capture() right after the capture begins, leave_capture() before it ends. The slots' events recorded
  // before the capture can't be waited on inside it, so joining marks every slot consumed as of the fork.
  void join_capture(cudaStream_t main);
  void leave_capture(cudaStream_t main);
  // After a capture ends and after each launch of its graph (outside any capture): the next fill of every slot
  // waits for all that `main` has been given so far, the graph's reads of the slots included.
  void after_graph(cudaStream_t main);

 private:
  std::vector<__half*> slots_;
  size_t slot_halves_ = 0;
  cudaStream_t side_ = nullptr;  // the caller's
  std::vector<cudaEvent_t> filled_, consumed_;
  cudaEvent_t fork_ = nullptr, join_ = nullptr;  // the side stream into and out of a capture
  size_t next_ = 0;  // the slot the next dequant() fills
};

}  // namespace xllama::cuda
