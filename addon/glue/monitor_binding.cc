// NVML collector. (Filled in by the gpu-monitor work.)
#include <napi.h>

#include "glue/register.h"

namespace xllama::glue {
void RegisterMonitor(Napi::Env, Napi::Object) {}
}  // namespace xllama::glue
