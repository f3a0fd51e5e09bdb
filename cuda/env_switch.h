// Process-wide switches read from the environment once (each *_flag() in kernels.h caches its own).
#pragma once
#include <cstdlib>
#include <cstring>

namespace xllama::cuda {

// An on-by-default switch: on unless the variable `name` is exactly "0".
inline bool env_switch_on(const char* name) {
  const char* v = std::getenv(name);
  return !(v && std::strcmp(v, "0") == 0);
}

// An opt-in switch: on when the variable `name` is set, non-empty and does not start with '0'.
inline bool env_switch_set(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && *v != '0';
}

}  // namespace xllama::cuda
