// GPU discovery through the CUDA runtime. Plain C++ interface (no CUDA headers needed to include it).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace xllama::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;
  size_t total_memory = 0;
  size_t free_memory = 0;
  int cc_major = 0;
  int cc_minor = 0;
  int multiprocessors = 0;
  size_t l2_bytes = 0;
  std::string pci_bus_id;
};

// Fills `gpus`; returns false with a reason in `why` when the runtime can't count devices
// (no driver, no device, driver too old). Zero devices is reported as false with a reason too.
bool query_gpus(std::vector<GpuInfo>& gpus, std::string& why);

// Device-to-device copy bandwidth of GPU `device` in bytes per second, counting bytes read plus bytes
// written (the practical ceiling for memory-bound kernels). Returns 0 with a reason in `why` on failure.
double measure_copy_bandwidth(int device, std::string& why);

// The CUDA runtime version this build was compiled against, e.g. "13.0".
std::string runtime_version();

}  // namespace xllama::cuda
