// The row walk the few-row GPTQ kernels share (kernels_avx2.cc, kernels_avx512.cc): a panel's rows of qweight in
// order, each with where its 8 inputs' groups start in the panel's scale and zero, and the row to prefetch.
#pragma once
#include <cstdint>

#include "cpu/kernels.h"

namespace xllama::cpu {

struct GptqRow {
  int index;
  const int32_t* words;  // the panel's words in this row
  const int32_t* ahead;  // ... in the row to prefetch now (this row near the end)
  int64_t group[8];      // where input 8 * index + j's group starts in scale and zero
};

// Measured on a 2-core Xeon (7B decode): 1, 4 and 8 rows ahead were slower than 2.
constexpr int kGptqPrefetchRows = 2;

template <class Visit>
inline void walk_gptq_rows(const GptqPanel& p, Visit&& visit) {
  const int rows = p.in / 8;
  const int64_t group_floats = static_cast<int64_t>(p.tiles) * 8;
  GptqRow row;
  for (row.index = 0; row.index < rows; ++row.index) {
    row.words = p.qweight + static_cast<int64_t>(row.index) * p.out;
    row.ahead = row.index + kGptqPrefetchRows < rows ? row.words + kGptqPrefetchRows * p.out : row.words;
    for (int j = 0; j < 8; ++j) row.group[j] = p.group_of_row[row.index * 8 + j] * group_floats;
    visit(static_cast<const GptqRow&>(row));
  }
}

}  // namespace xllama::cpu
