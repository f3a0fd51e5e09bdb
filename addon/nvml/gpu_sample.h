// What one sampling pass measures: plain C++ values, converted to JS by glue/monitor_binding.cc.
// An empty optional means "not available"; `unavailable` says why, keyed by field group.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace xllama::nvml {

using Value = std::optional<double>;

struct ProcessSample {
  unsigned int pid = 0;
  std::string name;
  Value used_memory;  // bytes
  Value sm_util, mem_util, enc_util, dec_util;  // % over the last interval, from nvmlDeviceGetProcessUtilization
};

// GPM metrics (Hopper and newer): averages over the interval between two GPM samples.
struct GpmValues {
  Value sm_activity, sm_occupancy, tensor_activity, dram_bandwidth;
  Value fp16, fp32, fp64, integer;  // SM pipe utilizations: % of the interval each pipe was issuing
  Value pcie_tx, pcie_rx;  // bytes/s
  std::vector<Value> nvdec, nvjpg, nvofa;  // % per engine instance
};

struct GpuSample {
  unsigned int index = 0;
  std::string name, uuid, pci_bus_id;
  bool gpm_supported = false;
  bool gpm_ready = false;  // values present (needs two samples >= 100 ms apart)
  GpmValues gpm;
  Value util_gpu, util_memory;  // NVML's legacy utilization.gpu / .memory
  Value encoder, decoder, jpeg, ofa;
  Value memory_used, memory_total;  // bytes
  Value power_w, power_limit_w;  // power_w: NVML's average over about a second on Ampere and newer
  Value power_instant_w;         // the power at the sample (NVML_FI_DEV_POWER_INSTANT), where the driver has it
  Value sm_clock_mhz, mem_clock_mhz, temperature_c;
  Value pcie_tx, pcie_rx;  // bytes/s, nvmlDeviceGetPcieThroughput (20 ms window)
  Value pcie_max_gen, pcie_max_width, pcie_gen, pcie_width;
  bool processes_ok = false;
  std::vector<ProcessSample> processes;
  std::map<std::string, std::string> unavailable;  // field group -> reason
};

struct Snapshot {
  uint64_t seq = 0;
  double time_ms = 0;      // Unix epoch, milliseconds
  double interval_ms = 0;  // the collector's interval
  double sample_cost_ms = 0;  // how long this sampling pass took
  std::string driver_version;
  std::vector<GpuSample> gpus;
  std::string error;  // set when the whole pass failed
};

}  // namespace xllama::nvml
