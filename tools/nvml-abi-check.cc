// Checks addon/nvml/nvml_abi.h, which copies the slice of NVML's C ABI the collector uses (so that builds need no
// nvml.h), against the machine's real nvml.h: every mirrored struct's size and field offsets and every constant the
// collector passes, then reads the power fields live through the collector's own Library. Built and run on the GPU
// machine by scripts/device/check-nvml-abi.sh; exits non-zero on a mismatch.
//
// Our headers come first: nvml.h defines macros (NVML_GPM_SUPPORT_VERSION, ...) that would rewrite our constants'
// names if it were included before them. Below, `::` names NVIDIA's declarations and `ours::` the copies.
#include "nvml/nvml_library.h"
// (nvml.h after ours, on purpose)
#include <nvml.h>

#include <cstddef>
#include <cstdio>
#include <string>

namespace ours = xllama::nvml;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

#define SAME_SIZE(T) expect(sizeof(ours::T) == sizeof(::T), "sizeof " #T " " + std::to_string(sizeof(ours::T)) + \
                            " (nvml.h " + std::to_string(sizeof(::T)) + ")")
#define SAME_OFFSET(T, f) expect(offsetof(ours::T, f) == offsetof(::T, f), #T "." #f " at " + \
                                 std::to_string(offsetof(ours::T, f)) + " (nvml.h " + std::to_string(offsetof(::T, f)) + ")")
#define SAME_FIELD(T, f) expect(offsetof(ours::T, f) == offsetof(::T, f) && sizeof(ours::T::f) == sizeof(::T::f), \
                                #T "." #f " at " + std::to_string(offsetof(ours::T, f)) + ", " + \
                                std::to_string(sizeof(ours::T::f)) + " bytes (nvml.h at " + \
                                std::to_string(offsetof(::T, f)) + ", " + std::to_string(sizeof(::T::f)) + " bytes)")
#define SAME_VALUE(a, b) expect((long long)(a) == (long long)(b), #a " = " + std::to_string((long long)(a)) + \
                                " (nvml.h " + std::to_string((long long)(b)) + ")")

void check_layouts() {
  SAME_SIZE(nvmlUtilization_t);
  SAME_FIELD(nvmlUtilization_t, gpu);
  SAME_FIELD(nvmlUtilization_t, memory);
  SAME_SIZE(nvmlMemory_t);
  SAME_FIELD(nvmlMemory_t, total);
  SAME_FIELD(nvmlMemory_t, used);
  SAME_SIZE(nvmlPciInfo_t);
  SAME_FIELD(nvmlPciInfo_t, busIdLegacy);
  SAME_FIELD(nvmlPciInfo_t, pciSubSystemId);
  SAME_FIELD(nvmlPciInfo_t, busId);
  SAME_SIZE(nvmlProcessInfo_t);
  SAME_FIELD(nvmlProcessInfo_t, pid);
  SAME_FIELD(nvmlProcessInfo_t, usedGpuMemory);
  SAME_FIELD(nvmlProcessInfo_t, gpuInstanceId);
  SAME_FIELD(nvmlProcessInfo_t, computeInstanceId);
  SAME_SIZE(nvmlProcessUtilizationSample_t);
  SAME_FIELD(nvmlProcessUtilizationSample_t, timeStamp);
  SAME_FIELD(nvmlProcessUtilizationSample_t, decUtil);
  SAME_SIZE(nvmlValue_t);
  SAME_SIZE(nvmlFieldValue_t);
  SAME_FIELD(nvmlFieldValue_t, fieldId);
  SAME_FIELD(nvmlFieldValue_t, scopeId);
  SAME_FIELD(nvmlFieldValue_t, timestamp);
  SAME_FIELD(nvmlFieldValue_t, latencyUsec);
  SAME_FIELD(nvmlFieldValue_t, valueType);
  SAME_FIELD(nvmlFieldValue_t, nvmlReturn);
  SAME_FIELD(nvmlFieldValue_t, value);
  SAME_SIZE(nvmlGpmMetric_t);
  SAME_FIELD(nvmlGpmMetric_t, metricId);
  SAME_FIELD(nvmlGpmMetric_t, nvmlReturn);
  SAME_FIELD(nvmlGpmMetric_t, value);
  SAME_FIELD(nvmlGpmMetric_t, metricInfo);
  SAME_FIELD(nvmlGpmMetricsGet_t, version);
  SAME_FIELD(nvmlGpmMetricsGet_t, numMetrics);
  SAME_FIELD(nvmlGpmMetricsGet_t, sample1);
  SAME_FIELD(nvmlGpmMetricsGet_t, sample2);
  // The metrics array grows in newer headers (98 entries in NVML 12.2, 210 in 13.0): its start must match; its
  // length is checked against the collector's slack below (NVML writes only numMetrics entries).
  SAME_OFFSET(nvmlGpmMetricsGet_t, metrics);
  SAME_SIZE(nvmlGpmSupport_t);
  // The collector passes the array with 256 entries of slack (GpmRequest).
  std::printf("info NVML_GPM_METRIC_MAX: ours %d, nvml.h %d\n", (int)ours::NVML_GPM_METRIC_MAX, (int)::NVML_GPM_METRIC_MAX);
  expect((int)::NVML_GPM_METRIC_MAX <= (int)ours::NVML_GPM_METRIC_MAX + 256, "nvml.h's GPM metric array fits our slack");
}

void check_constants() {
  SAME_VALUE(ours::kNvmlFieldPowerInstant, NVML_FI_DEV_POWER_INSTANT);
  SAME_VALUE(ours::NVML_VALUE_TYPE_DOUBLE, ::NVML_VALUE_TYPE_DOUBLE);
  SAME_VALUE(ours::NVML_VALUE_TYPE_UNSIGNED_INT, ::NVML_VALUE_TYPE_UNSIGNED_INT);
  SAME_VALUE(ours::NVML_VALUE_TYPE_UNSIGNED_LONG, ::NVML_VALUE_TYPE_UNSIGNED_LONG);
  SAME_VALUE(ours::NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, ::NVML_VALUE_TYPE_UNSIGNED_LONG_LONG);
  SAME_VALUE(ours::NVML_VALUE_TYPE_SIGNED_LONG_LONG, ::NVML_VALUE_TYPE_SIGNED_LONG_LONG);
  SAME_VALUE(ours::NVML_VALUE_TYPE_SIGNED_INT, ::NVML_VALUE_TYPE_SIGNED_INT);
  SAME_VALUE(ours::NVML_ERROR_NOT_SUPPORTED, ::NVML_ERROR_NOT_SUPPORTED);
  SAME_VALUE(ours::NVML_ERROR_INSUFFICIENT_SIZE, ::NVML_ERROR_INSUFFICIENT_SIZE);
  SAME_VALUE(ours::NVML_ERROR_NOT_FOUND, ::NVML_ERROR_NOT_FOUND);
  SAME_VALUE(ours::NVML_CLOCK_SM, ::NVML_CLOCK_SM);
  SAME_VALUE(ours::NVML_CLOCK_MEM, ::NVML_CLOCK_MEM);
  SAME_VALUE(ours::NVML_PCIE_UTIL_TX_BYTES, ::NVML_PCIE_UTIL_TX_BYTES);
  SAME_VALUE(ours::NVML_PCIE_UTIL_RX_BYTES, ::NVML_PCIE_UTIL_RX_BYTES);
  SAME_VALUE(ours::NVML_GPM_METRIC_SM_UTIL, ::NVML_GPM_METRIC_SM_UTIL);
  SAME_VALUE(ours::NVML_GPM_METRIC_SM_OCCUPANCY, ::NVML_GPM_METRIC_SM_OCCUPANCY);
  SAME_VALUE(ours::NVML_GPM_METRIC_INTEGER_UTIL, ::NVML_GPM_METRIC_INTEGER_UTIL);
  SAME_VALUE(ours::NVML_GPM_METRIC_ANY_TENSOR_UTIL, ::NVML_GPM_METRIC_ANY_TENSOR_UTIL);
  SAME_VALUE(ours::NVML_GPM_METRIC_DRAM_BW_UTIL, ::NVML_GPM_METRIC_DRAM_BW_UTIL);
  SAME_VALUE(ours::NVML_GPM_METRIC_FP16_UTIL, ::NVML_GPM_METRIC_FP16_UTIL);
  SAME_VALUE(ours::NVML_GPM_METRIC_PCIE_RX_PER_SEC, ::NVML_GPM_METRIC_PCIE_RX_PER_SEC);
  SAME_VALUE(ours::NVML_GPM_METRIC_NVDEC_0_UTIL, ::NVML_GPM_METRIC_NVDEC_0_UTIL);
  SAME_VALUE(ours::NVML_GPM_METRIC_NVJPG_0_UTIL, ::NVML_GPM_METRIC_NVJPG_0_UTIL);
  SAME_VALUE(ours::NVML_GPM_METRIC_NVOFA_0_UTIL, ::NVML_GPM_METRIC_NVOFA_0_UTIL);
}

// The power fields read through the collector's Library (dlopen'ed libnvidia-ml), as the addon reads them.
void read_power() {
  ours::Library lib;
  std::string why;
  if (!lib.Open(why)) {
    expect(false, "NVML opens: " + why);
    return;
  }
  ours::nvmlDevice_t dev = nullptr;
  expect(lib.nvmlDeviceGetHandleByIndex_v2(0, &dev) == ours::NVML_SUCCESS, "GPU 0's handle");
  unsigned int mw = 0;
  if (lib.nvmlDeviceGetPowerUsage && lib.nvmlDeviceGetPowerUsage(dev, &mw) == ours::NVML_SUCCESS)
    std::printf("info nvmlDeviceGetPowerUsage: %.3f W (an average over about a second)\n", mw / 1000.0);
  expect(lib.nvmlDeviceGetFieldValues != nullptr, "the driver has nvmlDeviceGetFieldValues");
  if (!lib.nvmlDeviceGetFieldValues) return;
  ours::nvmlFieldValue_t f[2] = {};
  f[0].fieldId = 185;  // NVML_FI_DEV_POWER_AVERAGE, for comparison
  f[1].fieldId = ours::kNvmlFieldPowerInstant;
  expect(lib.nvmlDeviceGetFieldValues(dev, 2, f) == ours::NVML_SUCCESS, "nvmlDeviceGetFieldValues answers");
  for (const auto& v : f)
    std::printf("info field %u: return %d, value type %d, uiVal %u, ullVal %llu, dVal %g, latency %lld us\n",
                v.fieldId, (int)v.nvmlReturn, (int)v.valueType, v.value.uiVal, v.value.ullVal, v.value.dVal,
                v.latencyUsec);
  expect(f[1].nvmlReturn == ours::NVML_SUCCESS, "the instantaneous power field is supported");
}

}  // namespace

int main() {
  check_layouts();
  check_constants();
  read_power();
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
