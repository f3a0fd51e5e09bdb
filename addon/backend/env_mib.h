// A size in MiB from the environment, for the host code of both backends (the loader's read-ahead, the CUDA decode's
// L2 look-ahead).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace xllama {

// A whole number of MiB from the environment, in bytes, or `otherwise` where it is unset, empty or not one.
inline uint64_t env_mib(const char* name, uint64_t otherwise) {
  if (const char* v = std::getenv(name); v && *v) {
    char* end = nullptr;
    const long long mib = std::strtoll(v, &end, 10);
    if (end && *end == '\0' && mib >= 0) return (uint64_t)std::min(mib, 1LL << 40) << 20;  // no wrap-around
  }
  return otherwise;
}

}  // namespace xllama
