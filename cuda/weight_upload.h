// Checkpoint weights from (memory-mapped, pageable) host memory to the GPU at the speed of the slower of
// reading and the host-to-device link: several threads copy each chunk into one of a few pinned staging
// buffers (touching the mapping's pages in parallel: page faults, and disk reads when cold), and the copy
// engine moves a filled buffer while the next one fills. Copies run in call order on one stream.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "cuda/read_ahead.h"

namespace xllama::cpu {
class ThreadPool;
}

namespace xllama::cuda {

class WeightUploader {
 public:
  WeightUploader();
  ~WeightUploader();
  WeightUploader(const WeightUploader&) = delete;
  WeightUploader& operator=(const WeightUploader&) = delete;

  // `rows` rows of `width` bytes, contiguous at src, to dst with a pitch of dpitch bytes. src may be freed
  // when this returns (it has been staged).
  void copy_rows(void* dst, size_t dpitch, const void* src, size_t width, size_t rows);
  void copy(void* dst, const void* src, size_t bytes) { copy_rows(dst, bytes, src, bytes, 1); }
  // A host-to-host copy on the same readers (into memory the GPU reads directly, e.g. the mapped embedding).
  void host_copy(void* dst, const void* src, size_t bytes) {
    parallel_memcpy(static_cast<char*>(dst), static_cast<const char*>(src), bytes);
  }
  // Bytes the upload will copy soon (the next layer's tensors): the kernel starts reading them now.
  void read_ahead(const void* src, size_t bytes) { ahead_.request(src, bytes); }
  cudaStream_t stream() const { return stream_; }
  // Waits for every copy and kernel on the stream.
  void finish();

  // For the load breakdown: bytes staged, seconds spent copying into staging (reading the checkpoint), and
  // seconds waiting for a staging buffer to come back from the copy engine.
  double bytes() const { return bytes_; }
  double read_seconds() const { return read_s_; }
  double wait_seconds() const { return wait_s_; }
  int threads() const;

 private:
  struct Staging {
    char* host = nullptr;
    cudaEvent_t free = nullptr;  // recorded after the last copy out of it
  };
  char* reserve(size_t bytes);  // space in the current staging buffer (moves to the next when full)
  void parallel_memcpy(char* dst, const char* src, size_t bytes);

  cudaStream_t stream_ = nullptr;
  std::vector<Staging> staging_;
  size_t current_ = 0, used_ = 0;
  std::unique_ptr<cpu::ThreadPool> pool_;
  ReadAhead ahead_;
  double bytes_ = 0, read_s_ = 0, wait_s_ = 0;
};

}  // namespace xllama::cuda
