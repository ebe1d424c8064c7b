// CUDA perturbation engine (docs/algorithm.md §3, §2 step 3): the device twin of
// native/cpu/perturb.h. Same generator (common/philox.h), same fp32 expression
// x ← store(fmaf(a, z, d·load(x))), so results are bit-identical to the CPU backend
// (test/cuda/test_perturb.cu checks this). One launch covers the whole parameter table.
//
// All functions are asynchronous on stream `s` unless noted, and throw zofo::Error
// ("ZOFO_INVALID_ARG" for bad arguments, "ZOFO_CUDA" for CUDA failures); none exits.
// Build with nvcc --fmad=false and without -use_fast_math (bit-exactness).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "../common/dtype.h"
#include "../common/param_table.h"

namespace zofo::cuda {

// out[i] = z of element first + i of stream `stream` under `seed`.
//   out_device: (count,) fp32, device memory.
void gaussian(uint64_t seed, uint64_t stream, uint64_t first, uint64_t count, float* out_device, cudaStream_t s);

// x ← store(fmaf(a, z, d·load(x))), d = fmaf(-eta_lambda, entry.decay, 1), over every
// element of every entry, in one launch. perturb is eta_lambda = 0 (d = 1).
//   data_device: (n_elems,) of dtype; table_device: (n_entries,) ParamEntry in device
//   memory, which the caller has checked with validate_param_table(host copy, n_elems);
//   total_elems: Σ entry.count (0 → nothing to do).
// Prefer DeviceParamTable + perturb/restore_update below, which validate for you.
void axpby_table(DType dtype, void* data_device, uint64_t n_elems, const ParamEntry* table_device, size_t n_entries,
                 uint64_t total_elems, uint64_t seed, float a, float eta_lambda, cudaStream_t s);

// A parameter table validated against its buffer and copied to device memory once
// (synchronously), then reused by every launch. Not copyable; movable.
class DeviceParamTable {
 public:
  DeviceParamTable(const ParamEntry* host_entries, size_t n_entries, uint64_t buffer_elems);
  ~DeviceParamTable();
  DeviceParamTable(DeviceParamTable&& other) noexcept;
  DeviceParamTable& operator=(DeviceParamTable&& other) noexcept;
  DeviceParamTable(const DeviceParamTable&) = delete;
  DeviceParamTable& operator=(const DeviceParamTable&) = delete;

  const ParamEntry* entries() const { return entries_; }  // device memory
  size_t size() const { return n_entries_; }
  uint64_t buffer_elems() const { return buffer_elems_; }
  uint64_t total_elems() const { return total_elems_; }  // Σ count

 private:
  ParamEntry* entries_ = nullptr;
  size_t n_entries_ = 0;
  uint64_t buffer_elems_ = 0;
  uint64_t total_elems_ = 0;
};

// x += a·z over every entry (cf. zofo::cpu::perturb). data_device: (table.buffer_elems(),).
void perturb(DType dtype, void* data_device, const DeviceParamTable& table, uint64_t seed, float a, cudaStream_t s);

// x ← (1 − eta_lambda·decay)·x + a·z over every entry (cf. zofo::cpu::restore_update).
void restore_update(DType dtype, void* data_device, const DeviceParamTable& table, uint64_t seed, float a,
                    float eta_lambda, cudaStream_t s);

// Benchmark baseline, MeZO style for one tensor: materialise z into z_scratch_device
// with the gaussian kernel, then a separate x ← store(fmaf(a, z, load(x))) kernel.
// Same result bits as perturb on a one-entry table; twice the launches and the traffic.
//   x_device: (count,) of dtype; z_scratch_device: (count,) fp32.
void materialize_then_axpy(DType dtype, void* x_device, uint64_t count, uint64_t stream, uint64_t first, uint64_t seed,
                           float a, float* z_scratch_device, cudaStream_t s);

// ---- weight views (Backend::weight_view / embedding_view) ----
// The perturbed fp32 weights of one tensor in scratch, the stored weights untouched:
// bit-identical to zofo::cpu::perturbed_copy (a = 0: the plain fp32 conversion, no Philox).
// Cheap argument checks only (null, alignment, sizes): these run once per tensor per forward.

// dst[i] = fmaf(a, z(seed, stream, first + i), fp32(src[i])) for i < n.
//   dst: (n,) fp32, device; src: (n,) of dtype, device, any element offset into a buffer.
void weight_view(float* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first, uint64_t seed,
                 float a, cudaStream_t s);

// The same view rounded to bf16 (nearest even): the operand of a bf16 matmul. dst: (n,) bf16.
void weight_view_bf16(uint16_t* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first,
                      uint64_t seed, float a, cudaStream_t s);

// out[r·C + c] = fmaf(a, z(seed, stream, ids[r]·C + c), fp32(table[ids[r]·C + c])): weight_view of
// each looked-up row, all N rows in one launch (repeated ids are fine).
//   out: (N, C) fp32; table: (V, C) of dtype; ids: (N,) int32 in [0, V) (checked by the caller:
//   the kernel cannot see V); all device memory.
void embedding_view(float* out, const void* table, DType dtype, const int32_t* ids, int64_t N, int64_t C,
                    uint64_t stream, uint64_t seed, float a, cudaStream_t s);

}  // namespace zofo::cuda
