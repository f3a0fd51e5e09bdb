// The checkpoint read from the disk into the page cache from the very start of a load, in the order the load
// reads it, on a thread of its own: first every small tensor (the loader's checks and the backends' layout
// planning read those first), then the big tensors part by part (embeddings, layer 0, 1, ..., final norm and
// lm_head; backend/load_progress.h), never more than a window of bytes ahead of the part the backend says it
// is reading (or than the end of the part after it, where that is further). The disk so works while the
// process starts the GPU, plans the placement and maps the files, and stays ahead of the upload. Page cache
// hints only (posix_fadvise WILLNEED): no memory of its own. Optionally with a bound on the bytes asked for
// that have not arrived yet (ReadAheadLimits::in_flight).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/load_progress.h"
#include "loader/hf_checkpoint.h"

namespace xllama {

// What to read, in order: byte ranges of the checkpoint's files, widened to whole pages and merged.
struct CheckpointReads {
  struct Range {
    int file = 0;  // index into files
    uint64_t begin = 0, end = 0;
  };
  std::vector<std::string> files;
  std::vector<Range> small;               // every small tensor (loader/prefetch.h's is_small_tensor)
  std::vector<std::vector<Range>> parts;  // the big tensors of each LoadProgress part
};

// The reads of a checkpoint's tensors. Tensors outside the parts' names (model.embed_tokens, model.layers.N.,
// model.norm, lm_head) are not read.
CheckpointReads plan_checkpoint_reads(const HfCheckpoint& checkpoint);

// The window and in-flight bound a GPU load reads ahead with unless told otherwise: the disk reads the
// checkpoint from the load's start, while the CUDA driver starts, yet keeps at most 32 MiB queued in front of
// the driver's own cold reads. A cold 7B load on an H100 machine (dd 1.45 s): 1.54-1.56 s, where a 256 MiB window
// asked for at once (the default before) took 1.82-1.83 s and none 1.85-1.95 s; the driver's start alone beside
// 4 GiB asked for at once took 1.63-1.68 s, beside it with 32 MiB in flight 0.40-0.49 s (docs/PERF-NOTES.md,
// sessions 59 and 61).
constexpr uint64_t kGpuReadAheadWindow = (uint64_t)4096 << 20;
constexpr uint64_t kGpuReadAheadInFlight = (uint64_t)32 << 20;

// How far ahead of the backend the read-ahead may go, and how much it may keep waiting on the disk.
struct ReadAheadLimits {
  uint64_t window = 0;  // bytes ahead of the backend's part (0: no read-ahead)
  // Bytes asked for that may not have arrived yet (0: no bound, every piece inside the window is asked for at
  // once). A bound keeps the disk's queue short, so that another reader (the CUDA driver's cold start) waits for
  // that much, not for the whole window: the window can then be wide without delaying the driver.
  uint64_t in_flight = 0;
};

// XLLAMA_READ_AHEAD_MIB when set, else kGpuReadAheadWindow for a load that starts a GPU and 0 (none) for one
// that doesn't; XLLAMA_READ_AHEAD_IN_FLIGHT_MIB when set, else kGpuReadAheadInFlight for a GPU load (0: no bound).
ReadAheadLimits read_ahead_limits(bool gpu);

class CheckpointReadAhead final : public LoadProgress {
 public:
  // Starts the thread at once (none where the system cannot advise, or no thread can be started).
  CheckpointReadAhead(CheckpointReads reads, ReadAheadLimits limits);
  ~CheckpointReadAhead() override;  // stop()
  CheckpointReadAhead(const CheckpointReadAhead&) = delete;
  CheckpointReadAhead& operator=(const CheckpointReadAhead&) = delete;

  void reading(int part) override;
  // Ends the thread (promptly: it advises 128 KiB at a time); safe to call more than once, from any thread.
  void stop();

  struct Figures {
    uint64_t window = 0, in_flight = 0, small_bytes = 0, part_bytes = 0;
    uint64_t small_asked = 0, parts_asked = 0;
    int64_t asked_before_progress = -1;  // parts' bytes asked for when the backend first reported (-1: never)
    double done_s = -1;                  // when everything was asked for, from the start (-1: not all)
    double stopped_s = -1;               // when stop() ended it, from the start
    double waited_s = 0;                 // spent waiting for asked bytes to arrive (with an in-flight bound)
  };
  Figures figures() const;
  // One verbose line ("xllama: load: read-ahead ...").
  std::string describe() const;

 private:
  void run();
  // Waits until the parts' byte position `pos` is inside the window; false once stopped.
  bool wait_for_room(uint64_t pos);
  uint64_t limit() const;  // the parts' byte position the read-ahead may ask up to (mu_ held)
  bool progressed() const { return f_.asked_before_progress >= 0; }  // the backend has reported a part (mu_ held)
  bool stopped() const;
  double seconds() const;

  CheckpointReads reads_;
  std::vector<uint64_t> part_start_;  // bytes of the parts before each part
  const std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int part_ = 0;  // the part the backend reads now
  Figures f_;
  std::mutex join_mu_;
  std::thread thread_;
};

}  // namespace xllama
