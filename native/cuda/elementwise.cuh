// Element-wise CUDA kernels: fill, bias and its gradient, axpy, the finiteness check.
// The lanes, column sums and launch helpers they share with the other layer families
// are in lanes.cuh.
//
// Launchers take device pointers, run asynchronously on stream `s`, return at once
// for empty sizes, and throw zofo::Error (ZOFO_INVALID_ARG for a negative size or a
// null required pointer, ZOFO_CUDA for a failed launch); none exits. Backwards
// accumulate (+=), as native/engine/backend.h. Build with nvcc --fmad=false.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <string>

#include <cuda_runtime.h>

#include "../common/error.h"
#include "../common/philox.h"  // ZOFO_HD, f32_bits
#include "check.cuh"
#include "lanes.cuh"

namespace zofo::cuda {

// dst (n) = value. A +0.0f fill is a cudaMemsetAsync.
void fill(float* dst, float value, size_t n, cudaStream_t s);
// y (N, C) += bias (C) on every row.
void add_bias(float* y, const float* bias, int64_t N, int64_t C, cudaStream_t s);
// dbias (C) += Σ_rows dy (N, C): column sums in double, deterministic (fixed lane shape).
void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C, cudaStream_t s);
// y (n) += alpha · x (n)
void axpy(float* y, const float* x, float alpha, size_t n, cudaStream_t s);
// *flag_device = 1 if any of p (n) is ±inf or NaN, else 0. The flag (one int of device
// memory, required even for n = 0) is first zeroed on `s`; read it back after `s`.
void all_finite(const float* p, size_t n, int* flag_device, cudaStream_t s);

namespace body {

// ---- element-wise bodies ----

ZOFO_HD void fill_one(float* dst, float value, uint64_t i) { dst[i] = value; }

template <class Lanes>
ZOFO_HD void add_bias_row(const Lanes& lanes, float* y, const float* bias, int64_t C, int64_t n) {
  float* row = y + n * C;
  lanes.each([&](int lane, int nlanes) {
    for (int64_t c = lane; c < C; c += nlanes) row[c] += bias[c];
  });
}

// The term of bias_backward's column sums (and of layernorm's dbias): dy[n, c].
struct ColumnOf {
  const float* dy;
  int64_t C;
  ZOFO_HD double operator()(int64_t n, int64_t c) const { return dy[n * C + c]; }
};

ZOFO_HD void axpy_one(float* y, const float* x, float alpha, uint64_t i) { y[i] += alpha * x[i]; }

// Exponent all ones: ±inf or NaN (a bit test, immune to fast-math assumptions).
ZOFO_HD bool is_nonfinite(float v) { return (f32_bits(v) & 0x7f800000u) == 0x7f800000u; }

}  // namespace body

}  // namespace zofo::cuda
