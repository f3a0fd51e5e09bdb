// GPU discovery through the CUDA runtime. Plain C++ interface (no CUDA headers needed to include it).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
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

// The oldest compute capability xllama's kernels support (Ampere: mma.sync m16n8k16, cp.async).
constexpr int kMinComputeCapability = 80;

// The CUDA architectures this build holds, e.g. "sm_80 sm_86 sm_89 sm_90 compute_90".
const char* built_architectures();

// Why GPU `device` can't run this build's kernels, in one line that says what to do instead: a GPU older
// than compute capability 8.0, or no machine code for it and no PTX the driver can JIT (built for other
// architectures, or a driver too old for this build's PTX). Empty when the GPU can run them.
std::string gpu_support_problem(int device);

// Blocks of `kernel` (a __global__ function) the current GPU holds at once over all its SMs, launched with
// block_threads threads and smem_bytes of dynamic shared memory (the occupancy query times the SM count; cached per
// kernel, device, block size and shared memory size, so capturing or launching again costs a lookup).
int resident_blocks(const void* kernel, int block_threads, size_t smem_bytes);

// The current device's index, or -1 where the runtime can't say (its error is cleared).
int current_device_or_none();

// A value worked out once per device and then kept (racing first asks compute the same answer, so no lock): eager
// decode asks some of these once a layer. `compute` gets the device index; a device the runtime can't name, or past
// the 64 slots, is computed every time. T is a bool or a count below 2^63.
template <class T>
class PerDeviceValue {
 public:
  template <class Compute>
  T get(Compute compute) {
    const int device = current_device_or_none();
    if (device < 0 || device >= kSlots) return compute(device);
    if (const int64_t known = slots_[device].load(std::memory_order_relaxed); known != 0) return T(known - 1);
    const T value = compute(device);
    slots_[device].store(int64_t(value) + 1, std::memory_order_relaxed);
    return value;
  }

 private:
  static constexpr int kSlots = 64;
  std::atomic<int64_t> slots_[kSlots] = {};  // 0 not asked yet, else the value + 1
};

// Whether kernels launched on the current device may use programmatic dependent launch: the GPU honours it
// (compute capability 9.0+) and the code the driver picked for it was compiled with griddepcontrol
// (PTX/machine code for 9.0+). A compute_80 PTX build JIT-run on a Hopper GPU answers false. Cached per device.
bool current_device_runs_pdl_code();

// The current device's peak DRAM bandwidth in bytes per second from its memory clock and bus width (double data
// rate), or 0 where the runtime doesn't say. A spec figure, not a measurement: it picks defaults, never a floor.
double current_device_peak_dram_bandwidth();

}  // namespace xllama::cuda
