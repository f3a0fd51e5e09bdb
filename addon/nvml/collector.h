// Samples every GPU on its own thread at a fixed interval and publishes the latest snapshot.
// Readers never block on NVML: Latest() only copies what the thread last published.
#pragma once
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nvml/gpu_sample.h"

namespace xllama::nvml {

struct ProbeResult {
  bool available = false;
  std::string reason;  // why not, when !available
  std::string library;
  std::string driver_version;
  unsigned int gpu_count = 0;
  std::vector<std::string> missing_functions;
};

class Collector {
 public:
  ~Collector();
  // Loads NVML and reports what it finds, without starting the thread.
  static ProbeResult Probe();
  // Starts (or restarts with a new interval). Returns false with `why` when NVML is unusable.
  bool Start(double interval_ms, std::string& why);
  void Stop();
  bool running() const { return thread_.joinable(); }
  // The latest published snapshot; null before the first pass.
  std::shared_ptr<const Snapshot> Latest();

 private:
  void Run(double interval_ms);

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::shared_ptr<const Snapshot> latest_;
};

}  // namespace xllama::nvml
