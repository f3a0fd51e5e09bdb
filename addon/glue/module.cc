// Node-API entry point: each area registers its own functions on the module's exports.
#include <napi.h>

#include "glue/register.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  xllama::glue::RegisterSystem(env, exports);
  xllama::glue::RegisterModel(env, exports);
  xllama::glue::RegisterMonitor(env, exports);
  return exports;
}

NODE_API_MODULE(xllama, Init)
