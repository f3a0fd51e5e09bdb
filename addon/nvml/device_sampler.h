// Samples one GPU: legacy counters every pass, GPM metrics between consecutive passes.
#pragma once
#include <chrono>
#include <map>
#include <string>

#include "nvml/gpu_sample.h"
#include "nvml/nvml_library.h"

namespace xllama::nvml {

class DeviceSampler {
 public:
  DeviceSampler(Library& lib, unsigned int index);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  bool ok() const { return device_ != nullptr; }
  const std::string& error() const { return error_; }
  GpuSample Sample();

 private:
  void SampleIdentity(GpuSample& s);
  void SampleLegacy(GpuSample& s);
  void SamplePowerInstant(GpuSample& s);
  void SamplePcie(GpuSample& s);
  void SampleProcesses(GpuSample& s);
  void SampleGpm(GpuSample& s);
  // Records why a field group is missing when rc is an error; returns rc == success.
  bool Check(GpuSample& s, const char* group, nvmlReturn_t rc);

  Library& lib_;
  unsigned int index_;
  nvmlDevice_t device_ = nullptr;
  std::string error_;
  std::string name_, uuid_, bus_id_;
  // GPM: two sample buffers used alternately; prev_ holds the last successful sample.
  bool gpm_supported_ = false;
  std::string gpm_reason_;
  nvmlGpmSample_t prev_ = nullptr, cur_ = nullptr;
  bool have_prev_ = false;
  std::chrono::steady_clock::time_point prev_time_;
  unsigned long long last_process_ts_ = 0;
  std::map<unsigned int, std::string> process_names_;
};

}  // namespace xllama::nvml
