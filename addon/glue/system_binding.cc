// systemInfo(): which backends this build has, and the GPUs the CUDA runtime sees (or why none).
// buildInfo(): what this binary was built with (no GPU or driver needed to answer).
#include <napi.h>

#include "glue/register.h"

#ifdef XLLAMA_HAVE_CUDA
#include "cuda/device_query.h"
#endif

namespace xllama::glue {

static Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array gpus = Napi::Array::New(env);
#ifdef XLLAMA_HAVE_CUDA
  out.Set("cudaCompiled", true);
  out.Set("cudaRuntime", cuda::runtime_version());
  std::vector<cuda::GpuInfo> found;
  std::string why;
  if (cuda::query_gpus(found, why)) {
    for (size_t i = 0; i < found.size(); ++i) {
      const cuda::GpuInfo& g = found[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", g.index);
      o.Set("name", g.name);
      o.Set("totalMemory", static_cast<double>(g.total_memory));
      o.Set("freeMemory", static_cast<double>(g.free_memory));
      o.Set("computeCapability", std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor));
      o.Set("multiprocessors", g.multiprocessors);
      o.Set("l2Bytes", static_cast<double>(g.l2_bytes));
      o.Set("pciBusId", g.pci_bus_id);
      // Whether this build can run on it (compute capability 8.0+, code for its architecture); why not.
      const std::string problem = cuda::gpu_support_problem(g.index);
      o.Set("supported", problem.empty());
      if (!problem.empty()) o.Set("unsupportedReason", problem);
      gpus.Set(static_cast<uint32_t>(i), o);
    }
  } else {
    out.Set("gpuUnavailableReason", why);
  }
#else
  out.Set("cudaCompiled", false);
  out.Set("gpuUnavailableReason", "this build of xllama has no CUDA backend (no CUDA compiler was found at build time)");
#endif
  out.Set("gpus", gpus);
  return out;
}

// measureCopyBandwidth(device) → bytes/s (read + written) of a device-to-device copy; throws without CUDA.
static Napi::Value MeasureCopyBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef XLLAMA_HAVE_CUDA
  const int device = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  std::string why;
  const double bw = cuda::measure_copy_bandwidth(device, why);
  if (bw <= 0.0) {
    Napi::Error::New(env, "copy bandwidth measurement failed on GPU " + std::to_string(device) + ": " + why)
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, bw);
#else
  Napi::Error::New(env, "this build of xllama has no CUDA backend").ThrowAsJavaScriptException();
  return env.Undefined();
#endif
}

static Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array backends = Napi::Array::New(env);
  backends.Set(0u, "cpu");
#ifdef XLLAMA_HAVE_CUDA
  backends.Set(1u, "cuda");
  out.Set("cudaRuntime", cuda::runtime_version());
  out.Set("cudaArchitectures", cuda::built_architectures());
#ifdef XLLAMA_BUILT_WITH_CUBLAS
  out.Set("cublas", true);
#else
  out.Set("cublas", false);
#endif
#endif
  out.Set("backends", backends);
#ifdef XLLAMA_HAVE_AVX2
  out.Set("avx2Kernels", true);
#else
  out.Set("avx2Kernels", false);
#endif
#ifdef XLLAMA_HAVE_AVX512
  out.Set("avx512Kernels", true);
#else
  out.Set("avx512Kernels", false);
#endif
  return out;
}

void RegisterSystem(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("measureCopyBandwidth", Napi::Function::New(env, MeasureCopyBandwidth, "measureCopyBandwidth"));
  exports.Set("systemInfo", Napi::Function::New(env, SystemInfo, "systemInfo"));
}

}  // namespace xllama::glue
