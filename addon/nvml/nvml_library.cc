#include "nvml/nvml_library.h"

#include <dlfcn.h>

#include <cstdlib>

namespace xllama::nvml {

std::string Library::DefaultPath() {
  const char* env = std::getenv("XLLAMA_NVML_LIBRARY");
  return (env && *env) ? std::string(env) : std::string("libnvidia-ml.so.1");
}

Library::~Library() { Close(); }

bool Library::Open(std::string& why) {
  Close();
  path_ = DefaultPath();
  dlerror();
  handle_ = dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char* err = dlerror();
    why = "NVIDIA driver library " + path_ + " could not be loaded (" + (err ? err : "unknown error") +
          "); is the NVIDIA driver installed?";
    return false;
  }
  missing_.clear();
#define XLLAMA_NVML_RESOLVE(name, ret, args)                              \
  name = reinterpret_cast<ret(*) args>(dlsym(handle_, #name));            \
  if (!name) missing_.push_back(#name);
  XLLAMA_NVML_FUNCTIONS(XLLAMA_NVML_RESOLVE)
#undef XLLAMA_NVML_RESOLVE
  if (!nvmlInit_v2 || !nvmlShutdown || !nvmlDeviceGetCount_v2 || !nvmlDeviceGetHandleByIndex_v2) {
    why = path_ + " lacks nvmlInit_v2/nvmlDeviceGetCount_v2/nvmlDeviceGetHandleByIndex_v2 (driver too old?)";
    Close();
    return false;
  }
  nvmlReturn_t rc = nvmlInit_v2();
  if (rc != NVML_SUCCESS) {
    why = "NVML failed to initialize: " + Describe(rc);
    Close();
    return false;
  }
  initialized_ = true;
  return true;
}

void Library::Close() {
  if (initialized_ && nvmlShutdown) nvmlShutdown();
  initialized_ = false;
  if (handle_) dlclose(handle_);
  handle_ = nullptr;
#define XLLAMA_NVML_RESET(name, ret, args) name = nullptr;
  XLLAMA_NVML_FUNCTIONS(XLLAMA_NVML_RESET)
#undef XLLAMA_NVML_RESET
}

std::string Library::Describe(nvmlReturn_t rc) const {
  if (nvmlErrorString) {
    const char* s = nvmlErrorString(rc);
    if (s && *s) return s;
  }
  return "NVML error " + std::to_string(static_cast<int>(rc));
}

}  // namespace xllama::nvml
