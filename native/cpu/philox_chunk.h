// Philox words for a chunk of consecutive blocks, as structure-of-arrays:
// words[i][j] = output word i of block b0 + j. The scalar reference is the header's
// philox4x32_10; on x86 with AVX2 an explicit vpmuludq version (gcc cannot be made
// to emit a single 32x32->64 vector multiply from portable code) is used instead.
// Tests check the two are bit-identical.
#pragma once

#include <stdint.h>

#include "../common/philox.h"

namespace zofo::cpu {

constexpr int kChunkBlocks = 64;  // 256 normals: scratch stays in L1

using PhiloxChunkFn = void (*)(const PhiloxKeys& k, uint64_t stream, uint64_t b0, uint32_t (*words)[kChunkBlocks]);

void philox_chunk_portable(const PhiloxKeys& k, uint64_t stream, uint64_t b0, uint32_t (*words)[kChunkBlocks]);

// The fastest implementation this CPU supports (chosen once).
PhiloxChunkFn philox_chunk_best();
const char* philox_chunk_best_name();

}  // namespace zofo::cpu
