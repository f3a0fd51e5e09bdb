// The checkpoint's small tensors (norms, GPTQ scales, zeros and g_idx, biases) read into the page cache up
// front, all at once: the loader's checks and the backends' layout planning read them on one thread,
// between the parallel reads of the big tensors, and from a cold page cache each would be a disk round trip.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "loader/mapped_file.h"

namespace xllama {

struct ByteRange {
  uint64_t begin = 0, end = 0;  // [begin, end)
};

// The ranges widened to whole pages (the last one clipped to file_size), sorted, and merged where they
// overlap or lie at most max_gap bytes apart: few reads that cover them, without much that was not asked for.
// Empty ranges are dropped.
std::vector<ByteRange> merge_ranges(std::vector<ByteRange> ranges, uint64_t page, uint64_t max_gap, uint64_t file_size);

// Whether the load reads a tensor on one thread (checks, layout planning, small copies): everything but the
// 4-bit weights (.qweight) and matrices (a .weight of two or more dimensions), which go through the
// backends' parallel readers.
bool is_small_tensor(const std::string& name, const std::vector<int64_t>& shape);

// Gaps up to this size between small tensors are read too (one read instead of two).
constexpr uint64_t kPrefetchMaxGap = 64 << 10;

struct FileRanges {
  const MappedFile* file = nullptr;
  std::vector<ByteRange> tensors;  // byte ranges inside the file, already checked against its size
};

struct PrefetchFigures {
  int tensors = 0, ranges = 0, threads = 0;
  uint64_t tensor_bytes = 0, range_bytes = 0;  // asked for; read (whole pages, merged gaps)
  double seconds = 0;
};

// Reads the tensors' ranges (merged per file) into the page cache: the kernel is asked for all of them at
// once (madvise WILLNEED, so the disk gets a deep queue), then every page is touched on several threads, so
// that they are resident when this returns. Without madvise the threads' page faults do the reading.
PrefetchFigures prefetch_ranges(const std::vector<FileRanges>& files);

}  // namespace xllama
