#include "cuda/graph_capture.h"

#include <atomic>

#include "cuda/cuda_check.h"
#include "cuda/env_switch.h"

namespace xllama::cuda {

cudaGraphExec_t capture_graph(cudaStream_t stream, const std::function<void()>& enqueue) {
  cudaGraph_t graph = nullptr;
  XL_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue();
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  XL_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  // Each kernel keeps the priority of the stream it was captured from (by default a graph's nodes all take the
  // priority of the stream it is launched into, and a prompt's dequantization side stream would lose its low one).
  const cudaError_t err = cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagUseNodePriority);
  cudaGraphDestroy(graph);
  XL_CUDA_CHECK(err);
  return exec;
}

bool prompt_graph_setting() { return env_switch_on("XLLAMA_PROMPT_GRAPH"); }

PromptGraphs::~PromptGraphs() {
  for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
}

namespace {
std::atomic<unsigned long long> prompt_graph_launches{0};
}

bool PromptGraphs::launch(int m, cudaStream_t stream) {
  const auto it = graphs_.find(m);
  if (it == graphs_.end()) return false;
  XL_CUDA_CHECK(cudaGraphLaunch(it->second, stream));
  prompt_graph_launches.fetch_add(1, std::memory_order_relaxed);
  return true;
}

unsigned long long PromptGraphs::launched() { return prompt_graph_launches.load(std::memory_order_relaxed); }

bool PromptGraphs::capture_next(int m) {
  if (!enabled_ || m > kMaxRows) return false;
  if (seen_.size() >= kLengths) seen_.clear();
  return !seen_.insert(m).second;
}

void PromptGraphs::add(int m, cudaGraphExec_t exec, cudaStream_t stream) {
  if (graphs_.size() >= kKept) {
    XL_CUDA_CHECK(cudaStreamSynchronize(stream));  // the oldest graph may still be running
    cudaGraphExecDestroy(graphs_[order_.front()]);
    graphs_.erase(order_.front());
    order_.pop_front();
  }
  graphs_[m] = exec;
  order_.push_back(m);
}

}  // namespace xllama::cuda
