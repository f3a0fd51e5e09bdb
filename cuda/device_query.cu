#include "cuda/device_query.h"
#include <sys/stat.h>

#include <cstdlib>

#include <cuda_runtime.h>

namespace xllama::cuda {

bool query_gpus(std::vector<GpuInfo>& gpus, std::string& why) {
  gpus.clear();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    // Say what is true here: no NVIDIA driver at all (for which the runtime itself says "CUDA driver version
    // is insufficient"), a driver too old for this build's runtime, or a driver that shows no GPU.
    auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
    int driver = 0;
    cudaDriverGetVersion(&driver);  // 0 when no driver library (libcuda.so.1) can be loaded
    struct stat st {};
    const bool kernel_driver = stat("/proc/driver/nvidia/version", &st) == 0;  // Linux: the driver is loaded
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    if (driver == 0) {
      why = kernel_driver ? "the NVIDIA kernel driver is loaded but its CUDA library (libcuda.so.1) was not found"
                          : "no NVIDIA driver found";
#ifdef __linux__
    } else if (!kernel_driver) {
      why = "no NVIDIA driver found (the CUDA driver library is installed, but no NVIDIA kernel driver is loaded)";
#endif
    } else if (err == cudaErrorInsufficientDriver) {
      why = "the NVIDIA driver supports CUDA " + version(driver) + ", older than the CUDA " + version(CUDART_VERSION) +
            " runtime of this build: update the driver";
    } else if (err == cudaSuccess || err == cudaErrorNoDevice) {
      why = "the NVIDIA driver (CUDA " + version(driver) + ") shows no GPU" +
            (visible ? std::string(" (CUDA_VISIBLE_DEVICES=") + visible + ")" : std::string());
    } else {
      why = "the CUDA runtime can't use the GPUs (NVIDIA driver for CUDA " + version(driver) + "): " +
            cudaGetErrorString(err);
    }
    cudaGetLastError();  // clear the sticky error so later calls start clean
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
