#include "cuda/read_ahead.h"

#include <algorithm>
#include <system_error>

#include "loader/page_hints.h"

namespace xllama::cuda {

ReadAhead::ReadAhead() {
  if (!kCanAdviseWillNeed) return;
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error&) {
    // No thread to spare: the readers' page faults do the reading, as without madvise.
  }
}

ReadAhead::~ReadAhead() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void ReadAhead::request(const void* p, size_t bytes) {
  if (!thread_.joinable() || !p || bytes == 0) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({static_cast<const char*>(p), bytes});
  }
  cv_.notify_one();
}

void ReadAhead::run() {
  for (;;) {
    Range r;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      r = queue_.front();
      queue_.pop_front();
    }
    // In pieces, so that stopping never waits for a whole tensor's worth of queued reads.
    constexpr size_t kPiece = 4 << 20;
    for (size_t off = 0; off < r.bytes && !stop_; off += kPiece) advise_willneed(r.p + off, std::min(kPiece, r.bytes - off));
  }
}

}  // namespace xllama::cuda
