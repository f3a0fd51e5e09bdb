// Read-ahead for the weight upload: byte ranges of the mapped checkpoint that the upload will copy next are
// handed to the kernel (madvise WILLNEED) on a thread of its own, so the disk's queue stays full while the
// readers copy what came before, and the caller never waits for room in that queue. A cold load then runs
// at the disk's speed rather than that of the readers' page faults. Plain C++ (no CUDA).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>

namespace xllama::cuda {

class ReadAhead {
 public:
  ReadAhead();   // no thread where the system cannot advise, or none can be started: request() does nothing
  ~ReadAhead();  // drops what is still queued (ranges are advised in pieces, so this is quick)
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Queues [p, p + bytes); ranges are advised in the order asked. Returns at once.
  void request(const void* p, size_t bytes);

 private:
  struct Range {
    const char* p;
    size_t bytes;
  };
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Range> queue_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace xllama::cuda
