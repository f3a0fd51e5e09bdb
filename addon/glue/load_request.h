// A load request as the JS side describes it (cli/native/types.ts: NativeModelSpec and NativeOpenOptions),
// parsed and checked on the JS thread before any work is queued.
#pragma once
#include <napi.h>

#include <string>

#include "backend/backend.h"
#include "loader/hf_checkpoint.h"

namespace xllama::glue {

struct LoadRequest {
  HfCheckpoint checkpoint;  // config, stored group size, tensor locations
  GptqConfig gptq;
  std::string backend = "cpu";
  BackendOptions options;
};

// The model spec (arch, quant, tensors) and the options (backend, sizes, stages).
LoadRequest parse_load_request(Napi::Env env, Napi::Value spec, Napi::Value options);

// The architecture object alone (spec.arch; a dummy model is nothing but one).
void parse_arch(Napi::Env env, Napi::Value arch, ModelConfig& config);

// Only the options (loadDummyModel has no checkpoint).
void parse_options(Napi::Env env, Napi::Value options, LoadRequest& req);

// Helpers shared with the other bindings: a number field, or `fallback` when it is absent.
double num_or(Napi::Object o, const char* key, double fallback);

}  // namespace xllama::glue
