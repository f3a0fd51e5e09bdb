#include "loader/checkpoint_read_ahead.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <system_error>

#include "backend/env_mib.h"
#include "backend/verbose_load.h"
#include "loader/page_hints.h"
#include "loader/prefetch.h"

namespace xllama {
namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// The LoadProgress part a big tensor belongs to, or -1.
int part_of(const std::string& name, int num_layers) {
  if (starts_with(name, "model.embed_tokens.")) return kEmbeddingPart;
  if (starts_with(name, "model.norm.") || starts_with(name, "lm_head.")) return final_part(num_layers);
  static const std::string layers = "model.layers.";
  if (!starts_with(name, layers.c_str())) return -1;
  size_t i = layers.size();
  int layer = 0;
  const size_t first = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && i - first < 9) layer = layer * 10 + (name[i++] - '0');
  if (i == first || i >= name.size() || name[i] != '.' || layer >= num_layers) return -1;
  return layer_part(layer);
}

// Ranges of several files, each file's merged (loader/prefetch.h), in file order then offset order.
std::vector<CheckpointReads::Range> merged(const std::map<int, std::vector<ByteRange>>& by_file) {
  std::vector<CheckpointReads::Range> out;
  for (const auto& [file, ranges] : by_file)
    for (const ByteRange& r : merge_ranges(ranges, page_size(), kPrefetchMaxGap, UINT64_MAX))
      out.push_back({file, r.begin, r.end});
  return out;
}

uint64_t bytes_of(const std::vector<CheckpointReads::Range>& ranges) {
  uint64_t n = 0;
  for (const auto& r : ranges) n += r.end - r.begin;
  return n;
}

}  // namespace

CheckpointReads plan_checkpoint_reads(const HfCheckpoint& checkpoint) {
  CheckpointReads out;
  const int num_layers = std::max(0, checkpoint.config.num_layers);
  std::map<std::string, int> file_index;
  std::map<int, std::vector<ByteRange>> small;
  std::vector<std::map<int, std::vector<ByteRange>>> parts(final_part(num_layers) + 1);
  for (const auto& [name, t] : checkpoint.tensors) {
    if (t.bytes == 0) continue;
    const bool is_small = is_small_tensor(name, t.shape);
    const int part = is_small ? -1 : part_of(name, num_layers);
    if (!is_small && part < 0) continue;
    auto [it, added] = file_index.emplace(t.file, (int)out.files.size());
    if (added) out.files.push_back(t.file);
    const ByteRange r{t.offset, t.offset + t.bytes};
    (is_small ? small[it->second] : parts[part][it->second]).push_back(r);
  }
  out.small = merged(small);
  for (const auto& p : parts) out.parts.push_back(merged(p));
  return out;
}

ReadAheadLimits read_ahead_limits(bool gpu) {
  // A GPU load spends its first ~0.3 s starting the CUDA driver, with the disk idle unless this reads ahead. A
  // CPU load starts reading at once and reports no parts, so it keeps none (not measured there).
  return {env_mib("XLLAMA_READ_AHEAD_MIB", gpu ? kGpuReadAheadWindow : 0),
          env_mib("XLLAMA_READ_AHEAD_IN_FLIGHT_MIB", gpu ? kGpuReadAheadInFlight : 0)};
}

CheckpointReadAhead::CheckpointReadAhead(CheckpointReads reads, ReadAheadLimits limits) : reads_(std::move(reads)) {
  f_.window = limits.window;
  f_.in_flight = limits.in_flight;
  f_.small_bytes = bytes_of(reads_.small);
  uint64_t at = 0;
  for (const auto& p : reads_.parts) part_start_.push_back(at), at += bytes_of(p);
  f_.part_bytes = at;
  if (!kCanAdviseFile || limits.window == 0) return;
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error&) {
    // No thread to spare: the load reads as it would without this.
  }
}

CheckpointReadAhead::~CheckpointReadAhead() { stop(); }

void CheckpointReadAhead::reading(int part) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!progressed()) f_.asked_before_progress = (int64_t)f_.parts_asked;
    part_ = std::max(part_, std::min(part, (int)part_start_.size() - 1));
  }
  cv_.notify_all();
}

void CheckpointReadAhead::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) f_.stopped_s = seconds();
    stop_ = true;
  }
  cv_.notify_all();
  std::lock_guard<std::mutex> lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

bool CheckpointReadAhead::stopped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

double CheckpointReadAhead::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

// Before the backend reports a part, the window from the start; after, the window from the part it reads or
// the end of the part after it, whichever is further: a part (a 70B layer is ~460 MB) can be larger than the
// window, and the next one must be on its way while this one is copied, as cuda/read_ahead.h does without this.
uint64_t CheckpointReadAhead::limit() const {
  if (!progressed()) return f_.window;
  const size_t after_next = (size_t)part_ + 2;
  const uint64_t next_end = after_next < part_start_.size() ? part_start_[after_next] : f_.part_bytes;
  return std::max(part_start_[part_] + f_.window, next_end);
}

bool CheckpointReadAhead::wait_for_room(uint64_t pos) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stop_ || part_start_.empty() || pos < limit(); });
  return !stop_;
}

void CheckpointReadAhead::run() {
  std::vector<int> fds(reads_.files.size(), -2);  // -2: not opened yet, -1: could not be opened
  auto fd_of = [&](int file) {
    if (fds[file] == -2) fds[file] = ::open(reads_.files[file].c_str(), O_RDONLY | O_CLOEXEC);
    return fds[file];
  };
  // The pieces asked for whose arrival has not been seen yet, oldest first (only with an in-flight bound).
  struct Asked {
    int fd;
    uint64_t last_byte, bytes;
  };
  std::deque<Asked> waiting;
  uint64_t waiting_bytes = 0;
  // Once more than the bound is in flight, waits until a quarter of it has arrived (one wait per quarter, not
  // one per piece: a 70B has ~280,000 pieces): reading a piece's last byte blocks until the disk has delivered
  // its page, and the disk serves the pieces about in order, so the ones before it have arrived too.
  auto keep_in_flight_bound = [&] {
    if (!f_.in_flight || waiting_bytes <= f_.in_flight || stopped()) return;
    Asked last{};
    while (waiting_bytes > f_.in_flight - f_.in_flight / 4) {
      last = waiting.front();
      waiting.pop_front();
      waiting_bytes -= last.bytes;
    }
    const double t = seconds();
    char byte;
    (void)!::pread(last.fd, &byte, 1, (off_t)last.last_byte);  // a hint's wait: a short read is the load's to find
    std::lock_guard<std::mutex> lock(mu_);
    f_.waited_s += seconds() - t;
  };
  // Advises one range in pieces; `pos` (parts only) is the byte position in the parts' order.
  auto advise = [&](const CheckpointReads::Range& r, uint64_t* pos) {
    for (uint64_t off = r.begin; off < r.end; off += kWillNeedPiece) {
      const uint64_t n = std::min<uint64_t>(kWillNeedPiece, r.end - off);
      if (pos ? !wait_for_room(*pos) : stopped()) return false;
      const int fd = fd_of(r.file);
      if (fd >= 0) {  // a missing file: the load itself will say so
        advise_file_willneed(fd, off, n);
        if (f_.in_flight) waiting.push_back({fd, off + n - 1, n}), waiting_bytes += n;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (pos) *pos += n, f_.parts_asked += n;
        else f_.small_asked += n;
      }
      keep_in_flight_bound();
    }
    return true;
  };
  bool all = true;
  for (const auto& r : reads_.small) all = all && advise(r, nullptr);
  uint64_t pos = 0;
  for (const auto& part : reads_.parts)
    for (const auto& r : part) all = all && advise(r, &pos);
  if (all) {
    std::lock_guard<std::mutex> lock(mu_);
    f_.done_s = seconds();
  }
  for (int fd : fds)
    if (fd >= 0) ::close(fd);
}

CheckpointReadAhead::Figures CheckpointReadAhead::figures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return f_;
}

std::string CheckpointReadAhead::describe() const {
  const Figures f = figures();
  char when[96];
  if (f.done_s >= 0)
    std::snprintf(when, sizeof when, "all asked for %.2f s after the load's start", f.done_s);
  else
    std::snprintf(when, sizeof when, "stopped %.2f s after the load's start", f.stopped_s);
  std::string progress = f.asked_before_progress >= 0
                             ? decimal_bytes((uint64_t)f.asked_before_progress) + " of it before the backend began on its weights"
                             : "the backend reported no progress";
  std::string bound;
  if (f.in_flight) {
    char waited[64];
    std::snprintf(waited, sizeof waited, "%.2f s", f.waited_s);
    bound = "; at most " + decimal_bytes(f.in_flight) + " in flight, " + waited + " waiting for the disk";
  }
  return "xllama: load: read-ahead from the load's start (window " + decimal_bytes(f.window) + "): small tensors " +
         decimal_bytes(f.small_asked) + " of " + decimal_bytes(f.small_bytes) + ", then weights in load order " +
         decimal_bytes(f.parts_asked) + " of " + decimal_bytes(f.part_bytes) + ", " + progress + "; " + when + bound;
}

}  // namespace xllama
