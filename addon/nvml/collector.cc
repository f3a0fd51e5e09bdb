#include "nvml/collector.h"

#include <chrono>

#include "nvml/device_sampler.h"
#include "nvml/nvml_library.h"

namespace xllama::nvml {
namespace {

std::string DriverVersion(Library& lib) {
  char buf[96] = {0};
  if (lib.nvmlSystemGetDriverVersion && lib.nvmlSystemGetDriverVersion(buf, sizeof buf) == NVML_SUCCESS) return buf;
  return "";
}

double EpochMs() {
  using namespace std::chrono;
  return duration<double, std::milli>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

ProbeResult Collector::Probe() {
  ProbeResult r;
  Library lib;
  r.library = Library::DefaultPath();
  if (!lib.Open(r.reason)) return r;
  r.missing_functions = lib.missing();
  r.driver_version = DriverVersion(lib);
  unsigned int count = 0;
  nvmlReturn_t rc = lib.nvmlDeviceGetCount_v2(&count);
  if (rc != NVML_SUCCESS) {
    r.reason = "NVML could not count the GPUs: " + lib.Describe(rc);
    return r;
  }
  r.gpu_count = count;
  if (count == 0) {
    r.reason = "the NVIDIA driver reports no GPUs";
    return r;
  }
  r.available = true;
  return r;
}

Collector::~Collector() { Stop(); }

bool Collector::Start(double interval_ms, std::string& why) {
  Stop();
  ProbeResult probe = Probe();
  if (!probe.available) {
    why = probe.reason;
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
    latest_.reset();
  }
  thread_ = std::thread(&Collector::Run, this, interval_ms);
  return true;
}

void Collector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const Snapshot> Collector::Latest() {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_;
}

void Collector::Run(double interval_ms) {
  Library lib;
  std::string why;
  std::vector<std::unique_ptr<DeviceSampler>> samplers;
  std::string setup_error;
  std::string driver;
  if (!lib.Open(why)) {
    setup_error = why;
  } else {
    driver = DriverVersion(lib);
    unsigned int count = 0;
    nvmlReturn_t rc = lib.nvmlDeviceGetCount_v2(&count);
    if (rc != NVML_SUCCESS) setup_error = "NVML could not count the GPUs: " + lib.Describe(rc);
    for (unsigned int i = 0; i < count; ++i) samplers.push_back(std::make_unique<DeviceSampler>(lib, i));
  }

  const auto interval = std::chrono::duration<double, std::milli>(interval_ms);
  auto next = std::chrono::steady_clock::now();
  for (uint64_t seq = 1;; ++seq) {
    auto started = std::chrono::steady_clock::now();
    auto snap = std::make_shared<Snapshot>();
    snap->seq = seq;
    snap->time_ms = EpochMs();
    snap->interval_ms = interval_ms;
    snap->driver_version = driver;
    snap->error = setup_error;
    for (auto& sampler : samplers) {
      if (sampler->ok()) {
        snap->gpus.push_back(sampler->Sample());
      } else if (snap->error.empty()) {
        snap->error = sampler->error();
      }
    }
    snap->sample_cost_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();

    std::unique_lock<std::mutex> lock(mu_);
    latest_ = std::move(snap);
    // Fixed-rate schedule; if a pass overran, start the next one from now instead of bursting.
    next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
    if (next < std::chrono::steady_clock::now()) next = std::chrono::steady_clock::now();
    if (wake_.wait_until(lock, next, [this] { return stop_; })) break;
  }
  samplers.clear();  // frees GPM buffers before nvmlShutdown
  lib.Close();
}

}  // namespace xllama::nvml
