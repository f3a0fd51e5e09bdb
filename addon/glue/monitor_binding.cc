// gpu-monitor's native side: monitorProbe(), monitorStart(intervalMs), monitorSnapshot(), monitorStop().
// The NVML collector (addon/nvml) samples on its own thread; these calls only copy its latest snapshot.
#include <napi.h>

#include <cmath>

#include "glue/register.h"
#include "nvml/collector.h"

namespace xllama::glue {
namespace {

using nvml::Value;

nvml::Collector& TheCollector() {
  static nvml::Collector collector;
  return collector;
}

Napi::Value Num(Napi::Env env, const Value& v) {
  return v ? Napi::Number::New(env, *v) : env.Null();
}

Napi::Array Instances(Napi::Env env, const std::vector<Value>& values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) a.Set(static_cast<uint32_t>(i), Num(env, values[i]));
  return a;
}

Napi::Object GpmToJs(Napi::Env env, const nvml::GpuSample& g) {
  Napi::Object o = Napi::Object::New(env);
  const nvml::GpmValues& m = g.gpm;
  o.Set("supported", g.gpm_supported);
  o.Set("ready", g.gpm_ready);
  o.Set("smActivity", Num(env, m.sm_activity));
  o.Set("smOccupancy", Num(env, m.sm_occupancy));
  o.Set("tensorActivity", Num(env, m.tensor_activity));
  o.Set("dramBandwidth", Num(env, m.dram_bandwidth));
  o.Set("fp16", Num(env, m.fp16));
  o.Set("fp32", Num(env, m.fp32));
  o.Set("fp64", Num(env, m.fp64));
  o.Set("integer", Num(env, m.integer));
  o.Set("pcieTxBytesPerSec", Num(env, m.pcie_tx));
  o.Set("pcieRxBytesPerSec", Num(env, m.pcie_rx));
  o.Set("nvdec", Instances(env, m.nvdec));
  o.Set("nvjpg", Instances(env, m.nvjpg));
  o.Set("nvofa", Instances(env, m.nvofa));
  return o;
}

Napi::Object GpuToJs(Napi::Env env, const nvml::GpuSample& g) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", g.index);
  o.Set("name", g.name);
  o.Set("uuid", g.uuid);
  o.Set("pciBusId", g.pci_bus_id);
  o.Set("gpm", GpmToJs(env, g));
  o.Set("utilGpu", Num(env, g.util_gpu));
  o.Set("utilMemory", Num(env, g.util_memory));
  o.Set("encoder", Num(env, g.encoder));
  o.Set("decoder", Num(env, g.decoder));
  o.Set("jpeg", Num(env, g.jpeg));
  o.Set("ofa", Num(env, g.ofa));
  o.Set("memoryUsed", Num(env, g.memory_used));
  o.Set("memoryTotal", Num(env, g.memory_total));
  o.Set("powerW", Num(env, g.power_w));
  o.Set("powerLimitW", Num(env, g.power_limit_w));
  o.Set("powerInstantW", Num(env, g.power_instant_w));
  o.Set("smClockMHz", Num(env, g.sm_clock_mhz));
  o.Set("memClockMHz", Num(env, g.mem_clock_mhz));
  o.Set("temperatureC", Num(env, g.temperature_c));
  Napi::Object pcie = Napi::Object::New(env);
  pcie.Set("txBytesPerSec", Num(env, g.pcie_tx));
  pcie.Set("rxBytesPerSec", Num(env, g.pcie_rx));
  pcie.Set("maxGen", Num(env, g.pcie_max_gen));
  pcie.Set("maxWidth", Num(env, g.pcie_max_width));
  pcie.Set("gen", Num(env, g.pcie_gen));
  pcie.Set("width", Num(env, g.pcie_width));
  o.Set("pcie", pcie);
  if (g.processes_ok) {
    Napi::Array procs = Napi::Array::New(env, g.processes.size());
    for (size_t i = 0; i < g.processes.size(); ++i) {
      const nvml::ProcessSample& p = g.processes[i];
      Napi::Object po = Napi::Object::New(env);
      po.Set("pid", p.pid);
      po.Set("name", p.name);
      po.Set("usedMemory", Num(env, p.used_memory));
      po.Set("smUtil", Num(env, p.sm_util));
      po.Set("memUtil", Num(env, p.mem_util));
      po.Set("encUtil", Num(env, p.enc_util));
      po.Set("decUtil", Num(env, p.dec_util));
      procs.Set(static_cast<uint32_t>(i), po);
    }
    o.Set("processes", procs);
  } else {
    o.Set("processes", env.Null());
  }
  Napi::Object unavailable = Napi::Object::New(env);
  for (const auto& [group, reason] : g.unavailable) unavailable.Set(group, reason);
  o.Set("unavailable", unavailable);
  return o;
}

Napi::Value MonitorProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  nvml::ProbeResult r = nvml::Collector::Probe();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", r.available);
  o.Set("reason", r.available ? env.Null() : Napi::String::New(env, r.reason));
  o.Set("library", r.library);
  o.Set("driverVersion", r.driver_version.empty() ? env.Null() : Napi::String::New(env, r.driver_version));
  o.Set("gpuCount", r.gpu_count);
  Napi::Array missing = Napi::Array::New(env, r.missing_functions.size());
  for (size_t i = 0; i < r.missing_functions.size(); ++i) missing.Set(static_cast<uint32_t>(i), r.missing_functions[i]);
  o.Set("missingFunctions", missing);
  return o;
}

// monitorStart(intervalMs) -> { ok: true } | { ok: false, reason }
Napi::Value MonitorStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "monitorStart(intervalMs): intervalMs must be a number");
  }
  double interval = info[0].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(interval) || interval < 50 || interval > 3600000) {
    throw Napi::RangeError::New(env, "monitorStart(intervalMs): intervalMs must be between 50 and 3600000");
  }
  std::string why;
  Napi::Object o = Napi::Object::New(env);
  bool ok = TheCollector().Start(interval, why);
  o.Set("ok", ok);
  if (!ok) o.Set("reason", why);
  return o;
}

// monitorSnapshot(afterSeq?) -> the latest snapshot, or null when there is none newer than afterSeq
// (so polling costs nothing until the collector has published something new).
Napi::Value MonitorSnapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const nvml::Snapshot> snap = TheCollector().Latest();
  if (!snap) return env.Null();
  if (info.Length() > 0 && info[0].IsNumber() && static_cast<double>(snap->seq) <= info[0].As<Napi::Number>().DoubleValue()) {
    return env.Null();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("seq", static_cast<double>(snap->seq));
  o.Set("time", snap->time_ms);
  o.Set("intervalMs", snap->interval_ms);
  o.Set("sampleCostMs", snap->sample_cost_ms);
  o.Set("driverVersion", snap->driver_version);
  o.Set("error", snap->error.empty() ? env.Null() : Napi::String::New(env, snap->error));
  Napi::Array gpus = Napi::Array::New(env, snap->gpus.size());
  for (size_t i = 0; i < snap->gpus.size(); ++i) gpus.Set(static_cast<uint32_t>(i), GpuToJs(env, snap->gpus[i]));
  o.Set("gpus", gpus);
  return o;
}

Napi::Value MonitorStop(const Napi::CallbackInfo& info) {
  TheCollector().Stop();
  return info.Env().Undefined();
}

}  // namespace

void RegisterMonitor(Napi::Env env, Napi::Object exports) {
  exports.Set("monitorProbe", Napi::Function::New(env, MonitorProbe, "monitorProbe"));
  exports.Set("monitorStart", Napi::Function::New(env, MonitorStart, "monitorStart"));
  exports.Set("monitorSnapshot", Napi::Function::New(env, MonitorSnapshot, "monitorSnapshot"));
  exports.Set("monitorStop", Napi::Function::New(env, MonitorStop, "monitorStop"));
  // The sampling thread must not outlive the environment (process exit, worker teardown).
  env.AddCleanupHook([] { TheCollector().Stop(); });
}

}  // namespace xllama::glue
