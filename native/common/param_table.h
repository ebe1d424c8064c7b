// The parameter table: which elements of one flat buffer belong to which tensor.
// One fused pass over the table perturbs or updates the whole model (docs/architecture.md:
// one contiguous buffer per dtype, one launch), instead of one call per tensor.
#pragma once

#include <stdint.h>
#include <stddef.h>
#include <string>

#include "error.h"

namespace zofo {

struct ParamEntry {
  uint64_t offset;  // first element of this slice in the flat buffer
  uint64_t count;   // number of elements
  uint64_t stream;  // Philox stream id: fnv1a64(checkpoint name)
  uint64_t first;   // tensor element index (row-major, checkpoint layout) of buffer[offset]
  float decay;      // weight-decay mask: 1 applies λ to this tensor, 0 exempts it
};

// Rejects slices that leave the buffer, overlap, or overflow 64-bit indices:
// an overlap would perturb the same weight twice.
inline void validate_param_table(const ParamEntry* entries, size_t n_entries, uint64_t buffer_elems) {
  uint64_t prev_end = 0;
  for (size_t i = 0; i < n_entries; ++i) {
    const ParamEntry& e = entries[i];
    const std::string where = "parameter table entry " + std::to_string(i);
    if (e.offset > buffer_elems || e.count > buffer_elems - e.offset)
      throw invalid_arg(where + " (offset " + std::to_string(e.offset) + ", count " + std::to_string(e.count) +
                        ") runs past the end of the buffer of " + std::to_string(buffer_elems) + " elements");
    if (e.first > UINT64_MAX - e.count) throw invalid_arg(where + ": first element index + count overflows 64 bits");
    if (i > 0 && e.offset < prev_end)
      throw invalid_arg(where + " overlaps the previous entry (entries must be sorted by offset and disjoint)");
    if (!(e.decay == e.decay)) throw invalid_arg(where + ": decay mask is NaN");
    prev_end = e.offset + e.count;
  }
}

}  // namespace zofo
