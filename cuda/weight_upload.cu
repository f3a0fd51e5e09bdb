#include "cuda/weight_upload.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "cpu/thread_pool.h"
#include "cuda/cuda_check.h"

namespace xllama::cuda {

namespace {
constexpr size_t kStagingBytes = (size_t)32 << 20;  // per buffer: a few ms of the link, ~1 ms of 8 readers
constexpr int kStagingBuffers = 4;
constexpr size_t kParallelMin = (size_t)1 << 20;    // smaller copies are staged by the calling thread
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

WeightUploader::WeightUploader() {
  XL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  staging_.resize(kStagingBuffers);
  for (Staging& s : staging_) {
    if (cudaHostAlloc(reinterpret_cast<void**>(&s.host), kStagingBytes, cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      s.host = nullptr;
      throw BackendError("out_of_memory", "could not pin host memory for the weight upload");
    }
    XL_CUDA_CHECK(cudaEventCreateWithFlags(&s.free, cudaEventDisableTiming));
  }
  // Readers: page faults and memcpy scale with cores; beyond ~8 the link or the disk is the limit.
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<cpu::ThreadPool>((int)std::min(8u, hw));
}

WeightUploader::~WeightUploader() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (Staging& s : staging_) {
    if (s.free) cudaEventDestroy(s.free);
    if (s.host) cudaFreeHost(s.host);
  }
  if (stream_) cudaStreamDestroy(stream_);
}

int WeightUploader::threads() const { return pool_->size(); }

char* WeightUploader::reserve(size_t bytes) {
  if (used_ + bytes > kStagingBytes) {
    XL_CUDA_CHECK(cudaEventRecord(staging_[current_].free, stream_));  // after the copies out of it
    current_ = (current_ + 1) % staging_.size();
    const auto t = Clock::now();
    XL_CUDA_CHECK(cudaEventSynchronize(staging_[current_].free));  // its last copies have left
    wait_s_ += since(t);
    used_ = 0;
  }
  char* p = staging_[current_].host + used_;
  used_ += (bytes + 255) / 256 * 256;
  return p;
}

void WeightUploader::parallel_memcpy(char* dst, const char* src, size_t bytes) {
  const auto t = Clock::now();
  if (bytes < kParallelMin) {
    std::memcpy(dst, src, bytes);
  } else {
    constexpr int64_t kPiece = 256 << 10;
    const int64_t pieces = (int64_t)((bytes + kPiece - 1) / kPiece);
    pool_->parallel_for(pieces, 1, [&](int64_t b, int64_t e, int) {
      const size_t lo = (size_t)b * kPiece, hi = std::min(bytes, (size_t)e * kPiece);
      std::memcpy(dst + lo, src + lo, hi - lo);
    });
  }
  read_s_ += since(t);
  bytes_ += (double)bytes;
}

void WeightUploader::copy_rows(void* dst, size_t dpitch, const void* src, size_t width, size_t rows) {
  if (width == 0 || rows == 0) return;
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  if (width > kStagingBytes) {  // one long row (a 1-D tensor): in buffer-sized pieces
    for (size_t r = 0; r < rows; ++r)
      for (size_t off = 0; off < width; off += kStagingBytes) {
        const size_t n = std::min(kStagingBytes, width - off);
        copy_rows(d + r * dpitch + off, n, s + r * width + off, n, 1);
      }
    return;
  }
  const size_t rows_per_chunk = kStagingBytes / width;
  for (size_t r = 0; r < rows;) {
    // fill what is left of the current buffer, or a whole one
    size_t n = std::min(rows - r, std::max<size_t>(1, (kStagingBytes - std::min(used_, kStagingBytes)) / width));
    if (n * width > kStagingBytes - std::min(used_, kStagingBytes)) n = std::min(rows - r, rows_per_chunk);
    char* stage = reserve(n * width);
    parallel_memcpy(stage, s + r * width, n * width);
    XL_CUDA_CHECK(cudaMemcpy2DAsync(d + r * dpitch, dpitch, stage, width, width, n, cudaMemcpyHostToDevice, stream_));
    r += n;
  }
}

void WeightUploader::finish() { XL_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace xllama::cuda
