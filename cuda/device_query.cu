#include "cuda/device_query.h"
#include <sys/stat.h>

#include <cstdlib>

#include <cuda_runtime.h>

#include "cuda/cuda_check.h"

#include <map>
#include <mutex>
#include <tuple>

#ifndef XLLAMA_CUDA_ARCHS_TEXT
#define XLLAMA_CUDA_ARCHS_TEXT "unknown architectures"
#endif

namespace xllama::cuda {

namespace {

// An empty kernel compiled like every other: asking the driver for its attributes tells whether this build
// holds code the GPU can run, and which PTX version that code came from.
__global__ void architecture_probe_kernel() {}

std::string describe_gpu(int device, const cudaDeviceProp& prop) {
  return "GPU " + std::to_string(device) + " (" + prop.name + ", compute capability " +
         std::to_string(prop.major) + "." + std::to_string(prop.minor) + ")";
}

}  // namespace

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

const char* built_architectures() { return XLLAMA_CUDA_ARCHS_TEXT; }

std::string gpu_support_problem(int device) {
  cudaDeviceProp prop{};
  cudaError_t err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return "GPU " + std::to_string(device) + " can't be queried: " + cudaGetErrorString(err);
  }
  const int cc = prop.major * 10 + prop.minor;
  if (cc < kMinComputeCapability) {
    return describe_gpu(device, prop) + " is not supported: xllama's CUDA backend needs compute capability 8.0 " +
           "(Ampere) or newer; --backend cpu runs on any machine";
  }
  int prev = 0;
  cudaGetDevice(&prev);
  cudaFuncAttributes attr{};
  err = cudaSetDevice(device);
  if (err == cudaSuccess) err = cudaFuncGetAttributes(&attr, architecture_probe_kernel);
  cudaSetDevice(prev);
  if (err == cudaSuccess) return "";
  cudaGetLastError();  // not sticky, but leave no error behind for the next call
  const std::string arch = std::to_string(cc);
  const std::string rebuild = "rebuild for it with `xllama build --cuda --cuda-arch " + arch +
                              "` (or XLLAMA_CUDA_ARCH=" + arch + " npm rebuild xllama)";
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction) {
    return "this build of xllama has no code for " + describe_gpu(device, prop) + ": it holds " +
           XLLAMA_CUDA_ARCHS_TEXT + "; " + rebuild;
  }
  if (err == cudaErrorUnsupportedPtxVersion) {
    return "the NVIDIA driver is too old to compile this build's PTX (CUDA " + runtime_version() + ") for " +
           describe_gpu(device, prop) + ": update the driver, or " + rebuild;
  }
  return describe_gpu(device, prop) + " can't run this build's kernels (" + XLLAMA_CUDA_ARCHS_TEXT + "): " +
         cudaGetErrorString(err) + "; " + rebuild;
}

int current_device_or_none() {
  int device = 0;
  if (cudaGetDevice(&device) == cudaSuccess) return device;
  cudaGetLastError();
  return -1;
}

bool current_device_runs_pdl_code() {
  static PerDeviceValue<bool> cache;
  return cache.get([](int device) {
    int major = 0;
    cudaFuncAttributes attr{};
    const bool yes = device >= 0 &&
                     cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
                     major >= 9 && cudaFuncGetAttributes(&attr, architecture_probe_kernel) == cudaSuccess &&
                     attr.ptxVersion >= 90;
    cudaGetLastError();
    return yes;
  });
}

double current_device_peak_dram_bandwidth() {
  int device = 0, khz = 0, bits = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return 2.0 * khz * 1e3 * bits / 8;
}

int resident_blocks(const void* kernel, int block_threads, size_t smem_bytes) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, int, int, size_t>, int> cache;
  int device = 0;
  XL_CUDA_CHECK(cudaGetDevice(&device));
  const auto key = std::make_tuple(kernel, device, block_threads, smem_bytes);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int per_sm = 0, sms = 0;
  XL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block_threads, smem_bytes));
  XL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return cache[key] = per_sm * sms;
}

std::string runtime_version() {
  int v = CUDART_VERSION;
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace xllama::cuda
