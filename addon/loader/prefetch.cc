#include "loader/prefetch.h"

#include <algorithm>
#include <chrono>

#include "cpu/thread_pool.h"
#include "loader/page_hints.h"

namespace xllama {

namespace {
// Threads touching pages: they mostly wait for the disk, so more than the cores is fine; 8 keep a queue deep
// enough where madvise is missing.
constexpr int kPrefetchThreads = 8;
// Touched pieces: small enough to spread a few MB over the threads.
constexpr uint64_t kTouchPiece = 256 << 10;

struct Piece {
  const char* p;
  uint64_t bytes;
};

// One read per page, through a volatile pointer so that it is not optimized away.
void touch_pages(const char* p, uint64_t bytes, uint64_t page) {
  const volatile char* v = p;
  for (uint64_t off = 0; off < bytes; off += page) (void)v[off];
}
}  // namespace

std::vector<ByteRange> merge_ranges(std::vector<ByteRange> ranges, uint64_t page, uint64_t max_gap, uint64_t file_size) {
  std::vector<ByteRange> aligned;
  aligned.reserve(ranges.size());
  for (const ByteRange& r : ranges) {
    if (r.end <= r.begin) continue;
    const uint64_t begin = r.begin / page * page;
    const uint64_t end = std::min((r.end + page - 1) / page * page, std::max(file_size, r.end));
    aligned.push_back({begin, end});
  }
  std::sort(aligned.begin(), aligned.end(), [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  std::vector<ByteRange> out;
  for (const ByteRange& r : aligned) {
    if (!out.empty() && r.begin <= out.back().end + max_gap) {
      out.back().end = std::max(out.back().end, r.end);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

bool is_small_tensor(const std::string& name, const std::vector<int64_t>& shape) {
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with(".qweight")) return false;
  if (ends_with(".weight") && shape.size() >= 2) return false;
  return true;
}

PrefetchFigures prefetch_ranges(const std::vector<FileRanges>& files) {
  const auto t0 = std::chrono::steady_clock::now();
  PrefetchFigures f;
  const uint64_t page = page_size();
  std::vector<Piece> pieces;
  for (const FileRanges& fr : files) {
    if (!fr.file || !fr.file->data()) continue;
    for (const ByteRange& t : fr.tensors) {
      if (t.end <= t.begin) continue;
      f.tensors++;
      f.tensor_bytes += t.end - t.begin;
    }
    for (const ByteRange& r : merge_ranges(fr.tensors, page, kPrefetchMaxGap, fr.file->size())) {
      f.ranges++;
      f.range_bytes += r.end - r.begin;
      const char* base = fr.file->data() + r.begin;
      advise_willneed(base, r.end - r.begin);  // all reads queued now; the touches below wait for them
      for (uint64_t off = 0; off < r.end - r.begin; off += kTouchPiece)
        pieces.push_back({base + off, std::min(kTouchPiece, r.end - r.begin - off)});
    }
  }
  if (!pieces.empty()) {
    cpu::ThreadPool pool(std::min<int>(kPrefetchThreads, (int)pieces.size()));
    f.threads = pool.size();
    pool.parallel_for((int64_t)pieces.size(), 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) touch_pages(pieces[i].p, pieces[i].bytes, page);
    });
  }
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return f;
}

}  // namespace xllama
