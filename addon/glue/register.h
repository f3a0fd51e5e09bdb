#pragma once
#include <napi.h>

namespace xllama::glue {
void RegisterSystem(Napi::Env env, Napi::Object exports);   // system_binding.cc: backends and GPUs
void RegisterModel(Napi::Env env, Napi::Object exports);    // model_binding.cc: load, forward, cache
void RegisterMonitor(Napi::Env env, Napi::Object exports);  // monitor_binding.cc: NVML collector
}  // namespace xllama::glue
