// XLLAMA_VERBOSE=1 (set by `xllama bench --verbose`): a load says where its time went, on stderr, in lines
// that start with "xllama: load:".
#pragma once
#include <cstdlib>

namespace xllama {

inline bool verbose_load() {
  const char* v = std::getenv("XLLAMA_VERBOSE");
  return v && *v && *v != '0';
}

}  // namespace xllama
