#include "cuda/device_query.h"

#include <cuda_runtime.h>

namespace xllama::cuda {

bool query_gpus(std::vector<GpuInfo>& gpus, std::string& why) {
  gpus.clear();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    why = std::string("CUDA runtime found no usable GPU: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return false;
  }
  if (count == 0) {
    why = "no CUDA GPU found";
    return false;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = prop.name;
    g.total_memory = prop.totalGlobalMem;
    g.cc_major = prop.major;
    g.cc_minor = prop.minor;
    g.multiprocessors = prop.multiProcessorCount;
    g.l2_bytes = static_cast<size_t>(prop.l2CacheSize);
    char bus[32] = {0};
    if (cudaDeviceGetPCIBusId(bus, sizeof(bus), i) == cudaSuccess) g.pci_bus_id = bus;
    size_t free_b = 0, total_b = 0;
    int prev = 0;
    cudaGetDevice(&prev);
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) g.free_memory = free_b;
    cudaSetDevice(prev);
    gpus.push_back(g);
  }
  return !gpus.empty();
}

double measure_copy_bandwidth(int device, std::string& why) {
  const size_t bytes = size_t(1) << 30;  // 1 GiB each way: far past L2, so DRAM is what's measured
  void *src = nullptr, *dst = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  double result = 0.0;
  auto fail = [&](cudaError_t e) { why = cudaGetErrorString(e); cudaGetLastError(); };
  cudaError_t e;
  if ((e = cudaSetDevice(device)) != cudaSuccess) { fail(e); return 0.0; }
  if ((e = cudaMalloc(&src, bytes)) == cudaSuccess && (e = cudaMalloc(&dst, bytes)) == cudaSuccess &&
      (e = cudaMemset(src, 0x5a, bytes)) == cudaSuccess && (e = cudaEventCreate(&start)) == cudaSuccess &&
      (e = cudaEventCreate(&stop)) == cudaSuccess) {
    const int warmup = 2, reps = 10;
    for (int i = 0; i < warmup; ++i) cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(start);
    for (int i = 0; i < reps; ++i) cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(stop);
    if ((e = cudaEventSynchronize(stop)) == cudaSuccess) {
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, start, stop);
      result = 2.0 * bytes * reps / (ms / 1000.0);
    }
  }
  if (e != cudaSuccess) fail(e);
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  cudaFree(src);
  cudaFree(dst);
  return result;
}

std::string runtime_version() {
  int v = CUDART_VERSION;
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace xllama::cuda
