// Graphs of a stage's work: the capture itself, and the prompt chunks' graphs by length.
#pragma once
#include <cuda_runtime.h>

#include <deque>
#include <functional>
#include <map>
#include <set>

namespace xllama::cuda {

// What `enqueue` puts on `stream` (and on streams it forks from it and joins back), as an executable graph.
// The stream is captured in thread-local mode; if `enqueue` throws, the capture is ended and dropped.
cudaGraphExec_t capture_graph(cudaStream_t stream, const std::function<void()>& enqueue);

// XLLAMA_PROMPT_GRAPH: "0" runs every prompt chunk launch by launch.
bool prompt_graph_setting();

// Prompt chunks as graphs: a 7B chunk is ~15 launches per layer, cuBLAS's included, each with its host call and its
// gap on the GPU; a graph replays them in one launch. A length gets its graph the second time it comes (a
// perplexity run's chunks, a benchmark's repetitions): that run of a length times its GEMMs' SM targets
// (gemm_sm_targets.h), which can't happen inside a capture, and a chat's prompts rarely repeat a length. Only
// chunks of up to kMaxRows tokens: on the H200, `xllama bench` pp512 ran 1-4% faster as a graph (the host's launches
// through Node; the kernel check's C++ loop, no faster), 1,024-token chunks 2-3% slower in that loop, pp2048 no
// faster, and a 13B's 2048-token capture cost ~50 ms its GPU run did not hide (docs/PERF-NOTES.md, session 25).
class PromptGraphs {
 public:
  explicit PromptGraphs(bool enabled) : enabled_(enabled) {}
  ~PromptGraphs();
  PromptGraphs(const PromptGraphs&) = delete;
  PromptGraphs& operator=(const PromptGraphs&) = delete;

  // Launches the graph of a chunk of m rows on `stream`, if there is one.
  bool launch(int m, cudaStream_t stream);
  // Whether a chunk of m rows just run without a graph should be captured now (the second time m comes, m at most
  // kMaxRows).
  bool capture_next(int m);
  // Keeps `exec` as m's graph; beyond kKept graphs the oldest goes (after `stream` has run what it was given).
  void add(int m, cudaGraphExec_t exec, cudaStream_t stream);

  // Prompt graphs launched in this process, by every stage (the kernel check's evidence that they ran).
  static unsigned long long launched();

  static constexpr int kMaxRows = 512;      // longer chunks run launch by launch
  static constexpr size_t kKept = 4;        // graphs kept (a few hundred nodes each)
  static constexpr size_t kLengths = 1024;  // lengths remembered (then forgotten all at once)

 private:
  bool enabled_;
  std::set<int> seen_;
  std::map<int, cudaGraphExec_t> graphs_;
  std::deque<int> order_;  // lengths of graphs_, oldest first
};

}  // namespace xllama::cuda
