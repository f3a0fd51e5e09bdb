// XLLAMA_VERBOSE=1 (set by `xllama bench --verbose`): a load says where its time went, on stderr, in lines
// that start with "xllama: load:".
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace xllama {

inline bool verbose_load() {
  const char* v = std::getenv("XLLAMA_VERBOSE");
  return v && *v && *v != '0';
}

// 812 B, 3.5 kB, 130.4 MB, 1.3 GB (one decimal, powers of 1000 as the other load figures).
inline std::string decimal_bytes(uint64_t bytes) {
  const char* units[] = {"kB", "MB", "GB", "TB"};
  if (bytes < 1000) return std::to_string(bytes) + " B";
  double v = bytes / 1e3;
  int u = 0;
  while (v >= 999.95 && u < 3) v /= 1e3, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace xllama
