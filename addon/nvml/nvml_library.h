// libnvidia-ml loaded at run time. Every symbol is optional: a missing one (older driver) leaves its
// pointer null and disables only the fields that need it.
#pragma once
#include <string>
#include <vector>

#include "nvml/nvml_abi.h"

namespace xllama::nvml {

// X(name, return, args): the NVML entry points the collector may use.
#define XLLAMA_NVML_FUNCTIONS(X)                                                                         \
  X(nvmlInit_v2, nvmlReturn_t, (void))                                                                     \
  X(nvmlShutdown, nvmlReturn_t, (void))                                                                    \
  X(nvmlErrorString, const char*, (nvmlReturn_t))                                                          \
  X(nvmlSystemGetDriverVersion, nvmlReturn_t, (char*, unsigned int))                                       \
  X(nvmlSystemGetProcessName, nvmlReturn_t, (unsigned int, char*, unsigned int))                           \
  X(nvmlDeviceGetCount_v2, nvmlReturn_t, (unsigned int*))                                                  \
  X(nvmlDeviceGetHandleByIndex_v2, nvmlReturn_t, (unsigned int, nvmlDevice_t*))                            \
  X(nvmlDeviceGetName, nvmlReturn_t, (nvmlDevice_t, char*, unsigned int))                                  \
  X(nvmlDeviceGetUUID, nvmlReturn_t, (nvmlDevice_t, char*, unsigned int))                                  \
  X(nvmlDeviceGetPciInfo_v3, nvmlReturn_t, (nvmlDevice_t, nvmlPciInfo_t*))                                 \
  X(nvmlDeviceGetUtilizationRates, nvmlReturn_t, (nvmlDevice_t, nvmlUtilization_t*))                       \
  X(nvmlDeviceGetEncoderUtilization, nvmlReturn_t, (nvmlDevice_t, unsigned int*, unsigned int*))           \
  X(nvmlDeviceGetDecoderUtilization, nvmlReturn_t, (nvmlDevice_t, unsigned int*, unsigned int*))           \
  X(nvmlDeviceGetJpgUtilization, nvmlReturn_t, (nvmlDevice_t, unsigned int*, unsigned int*))               \
  X(nvmlDeviceGetOfaUtilization, nvmlReturn_t, (nvmlDevice_t, unsigned int*, unsigned int*))               \
  X(nvmlDeviceGetMemoryInfo, nvmlReturn_t, (nvmlDevice_t, nvmlMemory_t*))                                  \
  X(nvmlDeviceGetPowerUsage, nvmlReturn_t, (nvmlDevice_t, unsigned int*))                                  \
  X(nvmlDeviceGetEnforcedPowerLimit, nvmlReturn_t, (nvmlDevice_t, unsigned int*))                          \
  X(nvmlDeviceGetFieldValues, nvmlReturn_t, (nvmlDevice_t, int, nvmlFieldValue_t*))                     \
  X(nvmlDeviceGetClockInfo, nvmlReturn_t, (nvmlDevice_t, nvmlClockType_t, unsigned int*))                  \
  X(nvmlDeviceGetTemperature, nvmlReturn_t, (nvmlDevice_t, nvmlTemperatureSensors_t, unsigned int*))       \
  X(nvmlDeviceGetPcieThroughput, nvmlReturn_t, (nvmlDevice_t, nvmlPcieUtilCounter_t, unsigned int*))       \
  X(nvmlDeviceGetMaxPcieLinkGeneration, nvmlReturn_t, (nvmlDevice_t, unsigned int*))                       \
  X(nvmlDeviceGetMaxPcieLinkWidth, nvmlReturn_t, (nvmlDevice_t, unsigned int*))                            \
  X(nvmlDeviceGetCurrPcieLinkGeneration, nvmlReturn_t, (nvmlDevice_t, unsigned int*))                      \
  X(nvmlDeviceGetCurrPcieLinkWidth, nvmlReturn_t, (nvmlDevice_t, unsigned int*))                           \
  X(nvmlDeviceGetComputeRunningProcesses_v3, nvmlReturn_t, (nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*)) \
  X(nvmlDeviceGetComputeRunningProcesses_v2, nvmlReturn_t, (nvmlDevice_t, unsigned int*, nvmlProcessInfo_t*)) \
  X(nvmlDeviceGetProcessUtilization, nvmlReturn_t,                                                         \
    (nvmlDevice_t, nvmlProcessUtilizationSample_t*, unsigned int*, unsigned long long))                     \
  X(nvmlGpmQueryDeviceSupport, nvmlReturn_t, (nvmlDevice_t, nvmlGpmSupport_t*))                            \
  X(nvmlGpmSampleAlloc, nvmlReturn_t, (nvmlGpmSample_t*))                                                  \
  X(nvmlGpmSampleFree, nvmlReturn_t, (nvmlGpmSample_t))                                                    \
  X(nvmlGpmSampleGet, nvmlReturn_t, (nvmlDevice_t, nvmlGpmSample_t))                                       \
  X(nvmlGpmMetricsGet, nvmlReturn_t, (nvmlGpmMetricsGet_t*))

class Library {
 public:
#define XLLAMA_NVML_POINTER(name, ret, args) ret(*name) args = nullptr;
  XLLAMA_NVML_FUNCTIONS(XLLAMA_NVML_POINTER)
#undef XLLAMA_NVML_POINTER

  Library() = default;
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  ~Library();

  // Opens the library (XLLAMA_NVML_LIBRARY overrides libnvidia-ml.so.1), resolves the symbols and calls
  // nvmlInit. On failure returns false with a one-line reason in `why`.
  bool Open(std::string& why);
  // nvmlShutdown + dlclose (safe to call twice).
  void Close();

  bool initialized() const { return initialized_; }
  const std::string& path() const { return path_; }
  // Names of the optional entry points this driver lacks (reported by monitorProbe).
  const std::vector<std::string>& missing() const { return missing_; }
  // A readable message for an NVML return code ("Not Supported", ...).
  std::string Describe(nvmlReturn_t rc) const;

  static std::string DefaultPath();

 private:
  void* handle_ = nullptr;
  bool initialized_ = false;
  std::string path_;
  std::vector<std::string> missing_;
};

}  // namespace xllama::nvml
