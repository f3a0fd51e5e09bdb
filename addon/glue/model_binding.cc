// Model handles: load, forward, cache. (Filled in by the CPU engine work.)
#include <napi.h>

#include "glue/register.h"

namespace xllama::glue {
void RegisterModel(Napi::Env, Napi::Object) {}
}  // namespace xllama::glue
