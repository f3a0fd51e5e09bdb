#include "nvml/device_sampler.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace xllama::nvml {
namespace {

constexpr unsigned long long kNotAvailable = ~0ULL;  // NVML_VALUE_NOT_AVAILABLE as unsigned long long
// GPM needs samples about 100 ms apart or more; the collector schedules passes at >= 100 ms, and the
// 5 ms tolerance absorbs scheduling jitter (the metrics are rates over the measured gap, so stay exact).
constexpr auto kGpmMinGap = std::chrono::milliseconds(95);
constexpr int kMaxInstances = 8;  // NVDEC_0..7, NVJPG_0..7 ids exist; NVOFA has one id in NVML 12.2

// nvmlGpmMetricsGet_t plus slack: a newer driver with a larger NVML_GPM_METRIC_MAX can never write
// past our allocation.
struct GpmRequest {
  nvmlGpmMetricsGet_t get;
  nvmlGpmMetric_t slack[256];
};

// A field value's number, whichever member NVML filled (drivers differ in the type they report a field in).
std::optional<double> FieldNumber(const nvmlFieldValue_t& f) {
  switch (f.valueType) {
    case NVML_VALUE_TYPE_DOUBLE: return f.value.dVal;
    case NVML_VALUE_TYPE_UNSIGNED_INT: return static_cast<double>(f.value.uiVal);
    case NVML_VALUE_TYPE_UNSIGNED_LONG: return static_cast<double>(f.value.ulVal);
    case NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: return static_cast<double>(f.value.ullVal);
    case NVML_VALUE_TYPE_SIGNED_LONG_LONG: return static_cast<double>(f.value.sllVal);
    case NVML_VALUE_TYPE_SIGNED_INT: return static_cast<double>(f.value.siVal);
  }
  return std::nullopt;
}

}  // namespace

DeviceSampler::DeviceSampler(Library& lib, unsigned int index) : lib_(lib), index_(index) {
  nvmlReturn_t rc = lib_.nvmlDeviceGetHandleByIndex_v2(index, &device_);
  if (rc != NVML_SUCCESS) {
    device_ = nullptr;
    error_ = "GPU " + std::to_string(index) + ": " + lib_.Describe(rc);
    return;
  }
  char buf[256] = {0};
  if (lib_.nvmlDeviceGetName && lib_.nvmlDeviceGetName(device_, buf, sizeof buf) == NVML_SUCCESS) name_ = buf;
  buf[0] = 0;
  if (lib_.nvmlDeviceGetUUID && lib_.nvmlDeviceGetUUID(device_, buf, sizeof buf) == NVML_SUCCESS) uuid_ = buf;
  nvmlPciInfo_t pci{};
  if (lib_.nvmlDeviceGetPciInfo_v3 && lib_.nvmlDeviceGetPciInfo_v3(device_, &pci) == NVML_SUCCESS) {
    pci.busId[sizeof pci.busId - 1] = 0;
    bus_id_ = pci.busId;
  }

  if (!lib_.nvmlGpmQueryDeviceSupport || !lib_.nvmlGpmSampleAlloc || !lib_.nvmlGpmSampleFree ||
      !lib_.nvmlGpmSampleGet || !lib_.nvmlGpmMetricsGet) {
    gpm_reason_ = "this NVIDIA driver has no GPM interface (too old)";
    return;
  }
  nvmlGpmSupport_t support{};
  support.version = NVML_GPM_SUPPORT_VERSION;
  rc = lib_.nvmlGpmQueryDeviceSupport(device_, &support);
  if (rc != NVML_SUCCESS) {
    gpm_reason_ = "GPM support query failed: " + lib_.Describe(rc);
  } else if (!support.isSupportedDevice) {
    gpm_reason_ = "GPM metrics need a Hopper or newer data-center GPU";
  } else if ((rc = lib_.nvmlGpmSampleAlloc(&prev_)) != NVML_SUCCESS ||
             (rc = lib_.nvmlGpmSampleAlloc(&cur_)) != NVML_SUCCESS) {
    gpm_reason_ = "GPM sample allocation failed: " + lib_.Describe(rc);
  } else {
    gpm_supported_ = true;
  }
}

DeviceSampler::~DeviceSampler() {
  if (lib_.nvmlGpmSampleFree) {
    if (prev_) lib_.nvmlGpmSampleFree(prev_);
    if (cur_) lib_.nvmlGpmSampleFree(cur_);
  }
}

bool DeviceSampler::Check(GpuSample& s, const char* group, nvmlReturn_t rc) {
  if (rc == NVML_SUCCESS) return true;
  s.unavailable.emplace(group, lib_.Describe(rc));
  return false;
}

GpuSample DeviceSampler::Sample() {
  GpuSample s;
  SampleIdentity(s);
  SampleGpm(s);
  SampleLegacy(s);
  SamplePcie(s);
  SampleProcesses(s);
  return s;
}

void DeviceSampler::SampleIdentity(GpuSample& s) {
  s.index = index_;
  s.name = name_;
  s.uuid = uuid_;
  s.pci_bus_id = bus_id_;
}

// Each legacy counter is optional: a missing symbol or an error leaves the field empty.
void DeviceSampler::SampleLegacy(GpuSample& s) {
  auto missing = [&](const char* group) { s.unavailable.emplace(group, "not in this NVIDIA driver"); };
  if (lib_.nvmlDeviceGetUtilizationRates) {
    nvmlUtilization_t u{};
    if (Check(s, "utilization", lib_.nvmlDeviceGetUtilizationRates(device_, &u))) {
      s.util_gpu = u.gpu;
      s.util_memory = u.memory;
    }
  } else missing("utilization");

  struct EngineQuery {
    const char* group;
    nvmlReturn_t (*fn)(nvmlDevice_t, unsigned int*, unsigned int*);
    Value* out;
  };
  const EngineQuery engines[] = {
      {"encoder", lib_.nvmlDeviceGetEncoderUtilization, &s.encoder},
      {"decoder", lib_.nvmlDeviceGetDecoderUtilization, &s.decoder},
      {"jpeg", lib_.nvmlDeviceGetJpgUtilization, &s.jpeg},
      {"ofa", lib_.nvmlDeviceGetOfaUtilization, &s.ofa},
  };
  for (const EngineQuery& q : engines) {
    if (!q.fn) { missing(q.group); continue; }
    unsigned int util = 0, period_us = 0;
    if (Check(s, q.group, q.fn(device_, &util, &period_us))) *q.out = util;
  }

  if (lib_.nvmlDeviceGetMemoryInfo) {
    nvmlMemory_t m{};
    if (Check(s, "memory", lib_.nvmlDeviceGetMemoryInfo(device_, &m))) {
      s.memory_used = static_cast<double>(m.used);
      s.memory_total = static_cast<double>(m.total);
    }
  } else missing("memory");

  unsigned int v = 0;
  if (!lib_.nvmlDeviceGetPowerUsage) missing("power");
  else if (Check(s, "power", lib_.nvmlDeviceGetPowerUsage(device_, &v))) s.power_w = v / 1000.0;
  SamplePowerInstant(s);
  if (!lib_.nvmlDeviceGetEnforcedPowerLimit) missing("powerLimit");
  else if (Check(s, "powerLimit", lib_.nvmlDeviceGetEnforcedPowerLimit(device_, &v))) s.power_limit_w = v / 1000.0;
  if (!lib_.nvmlDeviceGetClockInfo) {
    missing("clocks");
  } else {
    if (Check(s, "smClock", lib_.nvmlDeviceGetClockInfo(device_, NVML_CLOCK_SM, &v))) s.sm_clock_mhz = v;
    if (Check(s, "memClock", lib_.nvmlDeviceGetClockInfo(device_, NVML_CLOCK_MEM, &v))) s.mem_clock_mhz = v;
  }
  if (!lib_.nvmlDeviceGetTemperature) missing("temperature");
  else if (Check(s, "temperature", lib_.nvmlDeviceGetTemperature(device_, NVML_TEMPERATURE_GPU, &v)))
    s.temperature_c = v;
}

// The board's power at this moment (NVML_FI_DEV_POWER_INSTANT), where the driver has the field: bench averages
// the samples taken inside each test, and nvmlDeviceGetPowerUsage's one-second average still holds the previous
// test for most of a sub-second one.
void DeviceSampler::SamplePowerInstant(GpuSample& s) {
  if (!lib_.nvmlDeviceGetFieldValues) {
    s.unavailable.emplace("powerInstant", "not in this NVIDIA driver");
    return;
  }
  nvmlFieldValue_t f{};
  f.fieldId = kNvmlFieldPowerInstant;  // scopeId 0: the whole GPU
  if (!Check(s, "powerInstant", lib_.nvmlDeviceGetFieldValues(device_, 1, &f))) return;
  if (!Check(s, "powerInstant", f.nvmlReturn)) return;
  const std::optional<double> mw = FieldNumber(f);
  if (!mw) s.unavailable.emplace("powerInstant", "unknown value type " + std::to_string(static_cast<int>(f.valueType)));
  else if (*mw <= 0) s.unavailable.emplace("powerInstant", "the driver reads 0 W");  // no GPU draws that: no reading
  else s.power_instant_w = *mw / 1000.0;
}

void DeviceSampler::SamplePcie(GpuSample& s) {
  unsigned int v = 0;
  // nvmlDeviceGetPcieThroughput blocks ~20 ms per call; skip it when GPM already measured PCIe.
  const bool gpm_has_pcie = s.gpm.pcie_tx.has_value() && s.gpm.pcie_rx.has_value();
  if (gpm_has_pcie) {
    // nothing: the Copy engine uses the GPM rates
  } else if (!lib_.nvmlDeviceGetPcieThroughput) {
    s.unavailable.emplace("pcieThroughput", "not in this NVIDIA driver");
  } else {
    // NVML reports KB/s measured over a 20 ms window.
    if (Check(s, "pcieThroughput", lib_.nvmlDeviceGetPcieThroughput(device_, NVML_PCIE_UTIL_TX_BYTES, &v)))
      s.pcie_tx = v * 1024.0;
    if (Check(s, "pcieThroughput", lib_.nvmlDeviceGetPcieThroughput(device_, NVML_PCIE_UTIL_RX_BYTES, &v)))
      s.pcie_rx = v * 1024.0;
  }
  struct LinkQuery {
    const char* group;
    nvmlReturn_t (*fn)(nvmlDevice_t, unsigned int*);
    Value* out;
  };
  const LinkQuery links[] = {
      {"pcieLink", lib_.nvmlDeviceGetMaxPcieLinkGeneration, &s.pcie_max_gen},
      {"pcieLink", lib_.nvmlDeviceGetMaxPcieLinkWidth, &s.pcie_max_width},
      {"pcieLink", lib_.nvmlDeviceGetCurrPcieLinkGeneration, &s.pcie_gen},
      {"pcieLink", lib_.nvmlDeviceGetCurrPcieLinkWidth, &s.pcie_width},
  };
  for (const LinkQuery& q : links) {
    if (!q.fn) { s.unavailable.emplace(q.group, "not in this NVIDIA driver"); continue; }
    if (Check(s, q.group, q.fn(device_, &v))) *q.out = v;
  }
}

void DeviceSampler::SampleProcesses(GpuSample& s) {
  auto list = lib_.nvmlDeviceGetComputeRunningProcesses_v3 ? lib_.nvmlDeviceGetComputeRunningProcesses_v3
                                                           : lib_.nvmlDeviceGetComputeRunningProcesses_v2;
  if (!list) {
    s.unavailable.emplace("processes", "not in this NVIDIA driver");
    return;
  }
  std::vector<nvmlProcessInfo_t> infos;
  unsigned int count = 0;
  nvmlReturn_t rc = list(device_, &count, nullptr);
  // The list can grow between the two calls: retry a few times with headroom.
  for (int attempt = 0; attempt < 3 && rc == NVML_ERROR_INSUFFICIENT_SIZE; ++attempt) {
    count += 8;
    infos.resize(count);
    rc = list(device_, &count, infos.data());
  }
  if (!Check(s, "processes", rc)) return;
  infos.resize(count);
  s.processes_ok = true;

  // Per-process SM/memory/encoder/decoder utilization since the previous pass, where NVML has it.
  std::map<unsigned int, nvmlProcessUtilizationSample_t> util;
  if (lib_.nvmlDeviceGetProcessUtilization) {
    unsigned int n = 0;
    rc = lib_.nvmlDeviceGetProcessUtilization(device_, nullptr, &n, last_process_ts_);
    // The size query answers INSUFFICIENT_SIZE (or SUCCESS on some drivers) with the sample count.
    if ((rc == NVML_ERROR_INSUFFICIENT_SIZE || rc == NVML_SUCCESS) && n > 0) {
      std::vector<nvmlProcessUtilizationSample_t> samples(n + 8);
      n = static_cast<unsigned int>(samples.size());
      rc = lib_.nvmlDeviceGetProcessUtilization(device_, samples.data(), &n, last_process_ts_);
      if (rc == NVML_SUCCESS) {
        for (unsigned int i = 0; i < n && i < samples.size(); ++i) {
          const auto& smp = samples[i];
          auto it = util.find(smp.pid);
          if (it == util.end() || smp.timeStamp > it->second.timeStamp) util[smp.pid] = smp;
          if (smp.timeStamp > last_process_ts_) last_process_ts_ = smp.timeStamp;
        }
      }
    }
    // NOT_FOUND means no new samples since the last pass: the fields stay empty.
    if (rc != NVML_SUCCESS && rc != NVML_ERROR_NOT_FOUND && rc != NVML_ERROR_INSUFFICIENT_SIZE)
      s.unavailable.emplace("processUtilization", lib_.Describe(rc));
  } else {
    s.unavailable.emplace("processUtilization", "not in this NVIDIA driver");
  }

  std::map<unsigned int, std::string> names;
  for (const nvmlProcessInfo_t& info : infos) {
    ProcessSample p;
    p.pid = info.pid;
    if (info.usedGpuMemory != kNotAvailable) p.used_memory = static_cast<double>(info.usedGpuMemory);
    auto known = process_names_.find(info.pid);
    if (known != process_names_.end()) {
      p.name = known->second;
    } else if (lib_.nvmlSystemGetProcessName) {
      char buf[256] = {0};
      if (lib_.nvmlSystemGetProcessName(info.pid, buf, sizeof buf) == NVML_SUCCESS) p.name = buf;
    }
    names[info.pid] = p.name;  // keeps the cache to live processes only
    auto u = util.find(info.pid);
    if (u != util.end()) {
      p.sm_util = u->second.smUtil;
      p.mem_util = u->second.memUtil;
      p.enc_util = u->second.encUtil;
      p.dec_util = u->second.decUtil;
    }
    s.processes.push_back(std::move(p));
  }
  process_names_.swap(names);
}

void DeviceSampler::SampleGpm(GpuSample& s) {
  s.gpm_supported = gpm_supported_;
  if (!gpm_supported_) {
    s.unavailable.emplace("gpm", gpm_reason_);
    return;
  }
  auto now = std::chrono::steady_clock::now();
  if (have_prev_ && now - prev_time_ < kGpmMinGap) {
    // Too soon for a valid GPM interval: keep the older sample and report nothing this pass.
    s.unavailable.emplace("gpm", "waiting for a GPM interval of at least 100 ms");
    return;
  }
  nvmlReturn_t rc = lib_.nvmlGpmSampleGet(device_, cur_);
  if (rc != NVML_SUCCESS) {
    have_prev_ = false;
    s.unavailable.emplace("gpm", "GPM sample failed: " + lib_.Describe(rc));
    return;
  }
  if (!have_prev_) {
    std::swap(prev_, cur_);
    prev_time_ = now;
    have_prev_ = true;
    s.unavailable.emplace("gpm", "waiting for a second GPM sample");
    return;
  }

  auto req = std::make_unique<GpmRequest>();
  nvmlGpmMetricsGet_t& get = req->get;
  get.version = NVML_GPM_METRICS_GET_VERSION;
  get.sample1 = prev_;
  get.sample2 = cur_;
  struct Slot {
    unsigned int id;
    Value* out;
    double scale;
  };
  std::vector<Slot> slots = {
      {NVML_GPM_METRIC_SM_UTIL, &s.gpm.sm_activity, 1},
      {NVML_GPM_METRIC_SM_OCCUPANCY, &s.gpm.sm_occupancy, 1},
      {NVML_GPM_METRIC_ANY_TENSOR_UTIL, &s.gpm.tensor_activity, 1},
      {NVML_GPM_METRIC_DRAM_BW_UTIL, &s.gpm.dram_bandwidth, 1},
      {NVML_GPM_METRIC_FP16_UTIL, &s.gpm.fp16, 1},
      {NVML_GPM_METRIC_FP32_UTIL, &s.gpm.fp32, 1},
      {NVML_GPM_METRIC_FP64_UTIL, &s.gpm.fp64, 1},
      {NVML_GPM_METRIC_INTEGER_UTIL, &s.gpm.integer, 1},
      {NVML_GPM_METRIC_PCIE_TX_PER_SEC, &s.gpm.pcie_tx, 1024.0 * 1024.0},  // MiB/s -> bytes/s
      {NVML_GPM_METRIC_PCIE_RX_PER_SEC, &s.gpm.pcie_rx, 1024.0 * 1024.0},
  };
  std::vector<Value> nvdec(kMaxInstances), nvjpg(kMaxInstances), nvofa(1);
  for (int i = 0; i < kMaxInstances; ++i) {
    slots.push_back({NVML_GPM_METRIC_NVDEC_0_UTIL + static_cast<unsigned int>(i), &nvdec[i], 1});
    slots.push_back({NVML_GPM_METRIC_NVJPG_0_UTIL + static_cast<unsigned int>(i), &nvjpg[i], 1});
  }
  slots.push_back({NVML_GPM_METRIC_NVOFA_0_UTIL, &nvofa[0], 1});
  get.numMetrics = static_cast<unsigned int>(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) get.metrics[i].metricId = slots[i].id;

  rc = lib_.nvmlGpmMetricsGet(&get);
  if (rc != NVML_SUCCESS) {
    s.unavailable.emplace("gpm", "GPM metrics failed: " + lib_.Describe(rc));
  } else {
    s.gpm_ready = true;
    for (size_t i = 0; i < slots.size(); ++i) {
      if (get.metrics[i].nvmlReturn == NVML_SUCCESS) *slots[i].out = get.metrics[i].value * slots[i].scale;
    }
    // Instances the GPU doesn't have report an error: keep only those that answered.
    auto present = [](std::vector<Value>& v) {
      std::vector<Value> out;
      for (const Value& x : v) if (x) out.push_back(x);
      return out;
    };
    s.gpm.nvdec = present(nvdec);
    s.gpm.nvjpg = present(nvjpg);
    s.gpm.nvofa = present(nvofa);
  }
  std::swap(prev_, cur_);
  prev_time_ = now;
}

}  // namespace xllama::nvml
