/* A fake libnvidia-ml for tests on machines without a GPU: two GPUs with fixed, known readings.
 * GPU 0 supports GPM (SM 42.5%, tensor 12%, DRAM 77%, integer pipe 30%, FP32 18%), GPU 1 does not. Built by monitor-native.test.ts
 * with `cc -shared -fPIC`; -DFAKE_OLD_DRIVER leaves out every GPM, JPEG/OFA and field-value entry point, the way
 * an older driver would. Struct layouts mirror NVIDIA's nvml.h (see addon/nvml/nvml_abi.h). */
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct { int index; } dev_t_;
typedef dev_t_* nvmlDevice_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { char busIdLegacy[16]; unsigned int domain, bus, device, pciDeviceId, pciSubSystemId; char busId[32]; } nvmlPciInfo_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId; } nvmlProcessInfo_t;
typedef struct { unsigned int pid; unsigned long long timeStamp; unsigned int smUtil, memUtil, encUtil, decUtil; } nvmlProcessUtilizationSample_t;
typedef struct { int taken; } sample_t_;
typedef sample_t_* nvmlGpmSample_t;
typedef struct { unsigned int metricId; nvmlReturn_t nvmlReturn; double value; struct { char *shortName, *longName, *unit; } metricInfo; } nvmlGpmMetric_t;
typedef struct { unsigned int version, numMetrics; nvmlGpmSample_t sample1, sample2; nvmlGpmMetric_t metrics[98]; } nvmlGpmMetricsGet_t;
typedef struct { unsigned int version, isSupportedDevice; } nvmlGpmSupport_t;
typedef union { double dVal; int siVal; unsigned int uiVal; unsigned long ulVal; unsigned long long ullVal; long long sllVal; } nvmlValue_t;
typedef struct { unsigned int fieldId, scopeId; long long timestamp, latencyUsec; int valueType; nvmlReturn_t nvmlReturn; nvmlValue_t value; } nvmlFieldValue_t;

#define OK 0
#define INVALID 2
#define NOT_SUPPORTED 3
#define INSUFFICIENT_SIZE 7

static dev_t_ devs[2] = {{0}, {1}};
static int inits = 0;

nvmlReturn_t nvmlInit_v2(void) { inits++; return OK; }
nvmlReturn_t nvmlShutdown(void) { inits--; return OK; }
const char* nvmlErrorString(nvmlReturn_t rc) { return rc == NOT_SUPPORTED ? "Not Supported" : "Fake Error"; }
nvmlReturn_t nvmlSystemGetDriverVersion(char* b, unsigned int n) { strncpy(b, "999.fake", n); return OK; }
nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char* b, unsigned int n) { strncpy(b, "fake-trainer", n); return OK; }
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* n) { *n = 2; return OK; }
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t* d) {
  if (i > 1) return INVALID;
  *d = &devs[i];
  return OK;
}
nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char* b, unsigned int n) { strncpy(b, d->index ? "Fake Ampere" : "Fake Hopper", n); return OK; }
nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char* b, unsigned int n) { strncpy(b, d->index ? "GPU-fake-1" : "GPU-fake-0", n); return OK; }
nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t* p) { memset(p, 0, sizeof *p); strcpy(p->busId, "00000000:18:00.0"); return OK; }
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t* u) { u->gpu = d->index ? 35 : 100; u->memory = d->index ? 20 : 60; return OK; }
nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t d, unsigned int* u, unsigned int* p) { return NOT_SUPPORTED; }
nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t d, unsigned int* u, unsigned int* p) { *u = d->index ? 9 : 0; *p = 100000; return OK; }
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t* m) { m->total = 80ULL << 30; m->used = 10ULL << 30; m->free = 70ULL << 30; return OK; }
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int* mw) { *mw = 350500; return OK; }
nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int* mw) { *mw = 700000; return OK; }
nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int* mhz) { *mhz = type == 1 ? 1980 : 2619; return OK; }
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int* t) { *t = 47; return OK; }
nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, int counter, unsigned int* kbps) { *kbps = counter ? 1024 : 2048; return OK; }
nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t d, unsigned int* v) { *v = 5; return OK; }
nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t d, unsigned int* v) { *v = 16; return OK; }
nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t d, unsigned int* v) { *v = 5; return OK; }
nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t d, unsigned int* v) { *v = 16; return OK; }
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int* count, nvmlProcessInfo_t* infos) {
  if (d->index) { *count = 0; return OK; }
  if (*count < 1 || !infos) { *count = 1; return INSUFFICIENT_SIZE; }
  *count = 1;
  infos[0].pid = 4242; infos[0].usedGpuMemory = 3ULL << 30; infos[0].gpuInstanceId = ~0u; infos[0].computeInstanceId = ~0u;
  return OK;
}
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t d, nvmlProcessUtilizationSample_t* s, unsigned int* n, unsigned long long last) {
  if (d->index) return 6; /* NOT_FOUND: no samples */
  if (!s || *n < 1) { *n = 1; return INSUFFICIENT_SIZE; }
  *n = 1;
  s[0].pid = 4242; s[0].timeStamp = last + 1; s[0].smUtil = 40; s[0].memUtil = 70; s[0].encUtil = 0; s[0].decUtil = 0;
  return OK;
}

#ifndef FAKE_OLD_DRIVER
nvmlReturn_t nvmlDeviceGetJpgUtilization(nvmlDevice_t d, unsigned int* u, unsigned int* p) { *u = 0; *p = 100000; return OK; }
nvmlReturn_t nvmlDeviceGetOfaUtilization(nvmlDevice_t d, unsigned int* u, unsigned int* p) { return NOT_SUPPORTED; }
/* The instantaneous power field (186): 412.25 W on GPU 0, as an unsigned int of mW; GPU 1 does not have it. */
nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int n, nvmlFieldValue_t* v) {
  for (int i = 0; i < n; i++) {
    v[i].nvmlReturn = NOT_SUPPORTED;
    if (v[i].fieldId == 186 && d->index == 0) { v[i].nvmlReturn = OK; v[i].valueType = 1; v[i].value.uiVal = 412250; }
  }
  return OK;
}
nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t d, nvmlGpmSupport_t* s) {
  if (s->version != 1) return INVALID;
  s->isSupportedDevice = d->index == 0;
  return OK;
}
nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t* s) { *s = calloc(1, sizeof(sample_t_)); return OK; }
nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t s) { free(s); return OK; }
nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t d, nvmlGpmSample_t s) { s->taken = 1; return OK; }
nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t* g) {
  if (g->version != 1 || !g->sample1 || !g->sample2 || g->sample1 == g->sample2) return INVALID;
  if (!g->sample1->taken || !g->sample2->taken || g->numMetrics > 98) return INVALID;
  for (unsigned int i = 0; i < g->numMetrics; i++) {
    nvmlGpmMetric_t* m = &g->metrics[i];
    m->nvmlReturn = OK;
    switch (m->metricId) {
      case 2: m->value = 42.5; break;                 /* SM_UTIL */
      case 3: m->value = 20.0; break;                 /* SM_OCCUPANCY */
      case 5: m->value = 12.0; break;                 /* ANY_TENSOR_UTIL */
      case 10: m->value = 77.0; break;                /* DRAM_BW_UTIL */
      case 4: m->value = 30.0; break;                 /* INTEGER_UTIL */
      case 11: case 13: m->value = 1.0; break;        /* FP64, FP16 */
      case 12: m->value = 18.0; break;                /* FP32 */
      case 20: m->value = 100.0; break;               /* PCIE_TX MiB/s */
      case 21: m->value = 3000.0; break;              /* PCIE_RX MiB/s */
      default:
        if (m->metricId >= 30 && m->metricId <= 36) m->value = m->metricId == 30 ? 70.0 : 0.0; /* 7 NVDECs */
        else if (m->metricId >= 40 && m->metricId <= 46) m->value = 0.0;                      /* 7 NVJPGs */
        else if (m->metricId == 50) m->value = 0.0;
        else m->nvmlReturn = NOT_SUPPORTED;
    }
  }
  return OK;
}
#endif
