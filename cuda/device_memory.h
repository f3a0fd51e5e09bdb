// Device memory for a backend stage: allocations freed with their owner, an arena for a load's weights, and
// out-of-memory errors that say what was being allocated and what was free.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace xllama {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Bytes as GiB with two decimals, for messages.
inline std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", bytes / kGiB);
  return buf;
}

// Owns device allocations (freed even when construction throws half-way) and turns allocation failures
// into out_of_memory errors that say what was being allocated and what was free. During a checkpoint load
// the weights come out of one allocation (an arena, open_arena) sized beforehand, instead of one cudaMalloc
// each (hundreds of calls for a 7B model); what does not fit in it is allocated on its own.
class DeviceMemory {
 public:
  static constexpr size_t kAlign = 256;  // what cudaMalloc gives; the kernels need 16
  static size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
  static size_t alloc_bytes(size_t bytes) { return std::max<size_t>(bytes, 16); }

  explicit DeviceMemory(int device) : device_(device) {}
  ~DeviceMemory() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <class T>
  T* alloc(size_t count, const char* what, size_t* counter) {
    const size_t bytes = alloc_bytes(count * sizeof(T));
    if (aligned(bytes) <= arena_left_) {
      char* p = arena_;
      arena_ += aligned(bytes), arena_left_ -= aligned(bytes);
      *counter += bytes;
      return reinterpret_cast<T*>(p);
    }
    void* p = owned_malloc(bytes);
    if (!p) throw_oom(bytes, what);
    *counter += bytes;
    return static_cast<T*>(p);
  }
  // One allocation of `bytes` that alloc() serves from until close_arena(). When it can't be had, nothing
  // changes: every allocation is then made on its own, and an out-of-memory error names the one that failed.
  void open_arena(size_t bytes) {
    close_arena();
    void* p = bytes ? owned_malloc(bytes) : nullptr;
    if (p) arena_ = static_cast<char*>(p), arena_left_ = bytes;
  }
  // The arena's unused end stays allocated (it is the estimate's slack); later allocations are on their own.
  size_t close_arena() {
    const size_t left = arena_left_;
    arena_ = nullptr, arena_left_ = 0;
    return left;
  }
  [[noreturn]] void throw_oom(size_t need, const std::string& what) const {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, device_);
    throw BackendError(kOutOfMemory, "the model needs " + gib(need) + " GiB for " + what + ", " +
                                            gib(free_b) + " GiB free on GPU " + std::to_string(device_) + " (" +
                                            prop.name + ")");
  }
  // cudaMalloc calls so far and the seconds they took (the load's breakdown).
  int mallocs() const { return mallocs_; }
  double malloc_seconds() const { return malloc_s_; }

 private:
  // cudaMalloc, counted and timed; the allocation is freed with this object. Null (error cleared) when it fails.
  void* owned_malloc(size_t bytes) {
    void* p = nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    const cudaError_t err = cudaMalloc(&p, bytes);
    malloc_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (err != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    ptrs_.push_back(p);
    ++mallocs_;
    return p;
  }

  int device_;
  std::vector<void*> ptrs_;
  char* arena_ = nullptr;
  size_t arena_left_ = 0;
  int mallocs_ = 0;
  double malloc_s_ = 0;
};

}  // namespace xllama
