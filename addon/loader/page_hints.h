// Hints to the kernel about mapped checkpoint bytes, so that a load from a cold page cache keeps the disk's
// queue full instead of faulting pages in one at a time. Header-only: the loader and the CUDA upload path
// (built into the kernel check too) both use it. Where the system has no madvise, the hints do nothing.
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace xllama {

inline size_t page_size() {
  static const size_t page = [] {
    const long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : static_cast<size_t>(4096);
  }();
  return page;
}

// Linux reads at most max(read_ahead_kb, max_sectors_kb) from the start of a WILLNEED range and ignores the
// rest, so ranges are advised in pieces of the smallest usual read-ahead window.
constexpr size_t kWillNeedPiece = 128 << 10;

#if defined(MADV_WILLNEED) || defined(POSIX_MADV_WILLNEED)
constexpr bool kCanAdviseWillNeed = true;
#else
constexpr bool kCanAdviseWillNeed = false;
#endif

// Asks the kernel to start reading [p, p + bytes) of a file mapping into the page cache, and returns without
// waiting for the disk (it may wait for room in the device's queue). Errors are ignored: it is a hint, and
// memory that is not a file mapping (an aligned heap copy of a tensor) is left as it is.
inline void advise_willneed(const void* p, size_t bytes) {
  if (!p || bytes == 0) return;
  const size_t page = page_size();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t a = begin; a < end; a += kWillNeedPiece) {
    const size_t n = end - a < kWillNeedPiece ? end - a : kWillNeedPiece;
#if defined(MADV_WILLNEED)
    ::madvise(reinterpret_cast<void*>(a), n, MADV_WILLNEED);
#elif defined(POSIX_MADV_WILLNEED)
    ::posix_madvise(reinterpret_cast<void*>(a), n, POSIX_MADV_WILLNEED);
#else
    (void)n;
#endif
  }
}

// The same for bytes [offset, offset + bytes) of an open file (no mapping needed): posix_fadvise WILLNEED in
// the same pieces. Where the system has no fadvise, it does nothing (kCanAdviseFile says so).
#if defined(POSIX_FADV_WILLNEED)
constexpr bool kCanAdviseFile = true;
#else
constexpr bool kCanAdviseFile = false;
#endif

inline void advise_file_willneed(int fd, uint64_t offset, uint64_t bytes) {
#if defined(POSIX_FADV_WILLNEED)
  for (uint64_t off = 0; off < bytes; off += kWillNeedPiece) {
    const uint64_t n = bytes - off < kWillNeedPiece ? bytes - off : kWillNeedPiece;
    ::posix_fadvise(fd, static_cast<off_t>(offset + off), static_cast<off_t>(n), POSIX_FADV_WILLNEED);
  }
#else
  (void)fd, (void)offset, (void)bytes;
#endif
}

}  // namespace xllama
