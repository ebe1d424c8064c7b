// Row gather and scatter-add on the device (the engine's loss rows and embedding
// gradients): out (M, C) = x[rows[m]], and dx[rows[m]] += dout[m]. rows (M) int32 in
// device memory, checked by the caller (0 ≤ rows[m] < rows of x / dx).
//
// scatter_add_rows takes repeated rows: one thread per column adds the rows m in
// increasing order, the CPU's order, so the sums match it bit for bit and never
// depend on scheduling (no atomics). Each thread loads a chunk of kScatterChunk rows
// at once so the loads overlap.
#pragma once

#include "lanes.cuh"

namespace zofo::cuda {

void gather_rows(float* out, const float* x, const int32_t* rows, int64_t M, int64_t C, cudaStream_t s);
void scatter_add_rows(float* dx, const float* dout, const int32_t* rows, int64_t M, int64_t C, cudaStream_t s);

namespace body {

template <class Lanes>
ZOFO_HD void gather_row(const Lanes& lanes, float* out, const float* x, const int32_t* rows, int64_t C, int64_t m) {
  const float* src = x + (int64_t)rows[m] * C;
  float* dst = out + m * C;
  lanes.each([&](int lane, int nlanes) {
    for (int64_t c = lane; c < C; c += nlanes) dst[c] = src[c];
  });
}

constexpr int kScatterChunk = 8;

// Column c of dx += Σ_m dout[m] scattered to rows[m], m in increasing order. Per chunk:
// load each distinct row's dx once, add the chunk's values in order into the register
// of the row's first occurrence, store. Constant indices after unrolling keep the
// arrays in registers.
ZOFO_HD void scatter_add_column(float* dx, const float* dout, const int32_t* rows, int64_t M, int64_t C, int64_t c) {
  for (int64_t m0 = 0; m0 < M; m0 += kScatterChunk) {
    const int count = M - m0 < kScatterChunk ? (int)(M - m0) : kScatterChunk;
    int64_t row[kScatterChunk];
    float add[kScatterChunk], acc[kScatterChunk];
    int first[kScatterChunk];  // index in the chunk of the first occurrence of row[j]
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 0; j < kScatterChunk; ++j) {
      row[j] = j < count ? rows[m0 + j] : -1;
      add[j] = j < count ? dout[(m0 + j) * C + c] : 0.0f;
      first[j] = j;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int i = 0; i < j; ++i)
        if (first[j] == j && row[i] == row[j]) first[j] = i;
    }
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 0; j < kScatterChunk; ++j) acc[j] = j < count && first[j] == j ? dx[row[j] * C + c] : 0.0f;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 0; j < kScatterChunk; ++j) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int i = 0; i <= j; ++i)
        if (j < count && first[j] == i) acc[i] += add[j];
    }
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 0; j < kScatterChunk; ++j)
      if (j < count && first[j] == j) dx[row[j] * C + c] = acc[j];
  }
}

}  // namespace body

}  // namespace zofo::cuda
