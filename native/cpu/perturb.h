// CPU perturbation engine (docs/algorithm.md §3, §2 step 3): Gaussian generation, the
// in-place perturbation and the fused restore+update, over a whole parameter table
// in one threaded pass. fp32 math; bf16/f16 storage rounded to nearest even.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../common/dtype.h"
#include "../common/param_table.h"

namespace zofo::cpu {

// out[i] = z of element first + i of stream `stream` under `seed`.
void gaussian(uint64_t seed, uint64_t stream, uint64_t first, uint64_t count, float* out, int threads);

// x += a·z over every entry of the table.
void perturb(DType dtype, void* data, uint64_t n_elems, const ParamEntry* table, size_t n_entries, uint64_t seed,
             float a, int threads);

// x ← (1 − eta_lambda·decay)·x + a·z over every entry (decay = the entry's mask):
// the restore of the last perturbation folded with the SGD step, in one pass.
void restore_update(DType dtype, void* data, uint64_t n_elems, const ParamEntry* table, size_t n_entries, uint64_t seed,
                    float a, float eta_lambda, int threads);

// dst[i] = fp32(src[i]) + a·z(first + i) for i < count (a = 0: the plain fp32 conversion,
// no Philox). The perturbed weights of one tensor, computed into scratch so the stored
// weights are never modified by a perturbation (exact restore by construction).
void perturbed_copy(DType dtype, const void* src, float* dst, uint64_t count, uint64_t stream, uint64_t first,
                    uint64_t seed, float a, int threads);

// x ← x + a·z with z already materialised (the MeZO-style second pass; benchmarks use
// it as the baseline the fused kernels are compared with).
void axpy_materialized(DType dtype, void* data, const float* z, uint64_t n, float a, int threads);

// Which instruction-set clone of the hot loops this CPU runs ("avx512", "avx2", "baseline").
const char* simd_level();

}  // namespace zofo::cpu
