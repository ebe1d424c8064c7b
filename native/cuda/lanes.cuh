// What every layer-kernel family (norm, activation, rope, optim, rows, loss, the
// element-wise kernels) shares:
//
//  - "lanes": how the work of one row (or one column) is split over threads, and how
//    the lanes' partial sums are combined. A row body is a template on Lanes: on the
//    device it runs with BlockLanes (the threads of one block are the lanes, combined
//    by a shuffle/shared-memory reduction), in the tests' host emulation with
//    SerialLanes{n} (n lanes run one after another with the same striding). So the
//    kernels' exact code runs on machines without a GPU (test/cuda/test_layers.cu
//    --host-only), lane striding included.
//  - column sums (bias and norm parameter gradients), deterministic;
//  - launch sizing and argument checks for the launchers.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <string>

#include <cuda_runtime.h>

#include "../common/error.h"
#include "../common/philox.h"  // ZOFO_HD, f32_bits
#include "check.cuh"

namespace zofo::cuda {

namespace body {

// The larger of a and b as native/cpu's row max does it (a NaN b never wins).
ZOFO_HD float max_keep(float a, float b) { return b > a ? b : a; }

// ---- lanes ----

// n lanes run one after another: the host emulation of a block (n = 1 is the CPU's
// sequential loop). Partial sums are combined in lane order.
struct SerialLanes {
  int n;
  template <class F>
  ZOFO_HD double sum(F f) const {
    double total = 0;
    for (int l = 0; l < n; ++l) total += f(l, n);
    return total;
  }
  template <class F>
  ZOFO_HD float max(F f) const {
    float m = -INFINITY;
    for (int l = 0; l < n; ++l) m = max_keep(m, f(l, n));
    return m;
  }
  template <class F>
  ZOFO_HD void each(F f) const {
    for (int l = 0; l < n; ++l) f(l, n);
  }
};

// The threads of a block (x dimension, a multiple of 32, at most 1024) are the lanes.
// sum/max return the block total to every thread; every thread of the block must call
// them (they hold barriers). scratch_*: __shared__ arrays of 32.
struct BlockLanes {
  double* scratch_d;
  float* scratch_f;
  template <class F>
  ZOFO_HD double sum(F f) const {
#if defined(__CUDA_ARCH__)
    double v = f((int)threadIdx.x, (int)blockDim.x);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();  // the previous reduction's readers are done with the scratch
    if ((threadIdx.x & 31) == 0) scratch_d[threadIdx.x >> 5] = v;
    __syncthreads();
    double total = 0;  // every thread adds the warps' sums in the same order: one value for all
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += scratch_d[w];
    return total;
#else
    return f(0, 1);  // not used on the host (SerialLanes is)
#endif
  }
  template <class F>
  ZOFO_HD float max(F f) const {
#if defined(__CUDA_ARCH__)
    float v = f((int)threadIdx.x, (int)blockDim.x);
    for (int o = 16; o > 0; o >>= 1) v = max_keep(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) scratch_f[threadIdx.x >> 5] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) m = max_keep(m, scratch_f[w]);
    return m;
#else
    return f(0, 1);
#endif
  }
  template <class F>
  ZOFO_HD void each(F f) const {
#if defined(__CUDA_ARCH__)
    f((int)threadIdx.x, (int)blockDim.x);
#else
    f(0, 1);
#endif
  }
};

// Column sums: threadIdx.x picks the column of a tile, threadIdx.y is the lane (the
// rows n ≡ lane mod blockDim.y). Lanes are combined in lane order, exactly as
// SerialLanes{blockDim.y} does, so host emulation and device agree to the bit.
// scratch: __shared__ double[blockDim.x · blockDim.y].
struct ColumnLanes {
  double* scratch;
  template <class F>
  ZOFO_HD double sum(F f) const {
#if defined(__CUDA_ARCH__)
    const double v = f((int)threadIdx.y, (int)blockDim.y);
    __syncthreads();
    scratch[threadIdx.y * blockDim.x + threadIdx.x] = v;
    __syncthreads();
    double total = 0;
    for (unsigned l = 0; l < blockDim.y; ++l) total += scratch[l * blockDim.x + threadIdx.x];
    return total;
#else
    return f(0, 1);
#endif
  }
  template <class F>
  ZOFO_HD void each(F f) const {
#if defined(__CUDA_ARCH__)
    f((int)threadIdx.y, (int)blockDim.y);
#else
    f(0, 1);
#endif
  }
};

// Lanes (threads) for rows of `cols` columns: ≥ 8 columns per lane so the reduction
// stays a small share of the work, a multiple of 32 (whole warps), at most max_lanes.
ZOFO_HD int lanes_for(int64_t cols, int max_lanes) {
  const int64_t want = (cols + 7) / 8;
  const int64_t rounded = (want + 31) / 32 * 32;
  return (int)(rounded < 32 ? 32 : rounded > max_lanes ? max_lanes : rounded);
}

// Column sums: 32 columns per tile, 16 row lanes (512 threads).
constexpr int kColumnTile = 32;
constexpr int kColumnLanes = 16;

// dst[c] += (float)Σ_n term(n, c), the sum in double over rows in lane order; c ≥ C
// is a padding column of the last tile (takes part in the barriers, writes nothing).
template <class Lanes, class Term>
ZOFO_HD void column_sum_into(const Lanes& lanes, float* dst, const Term& term, int64_t N, int64_t C, int64_t c) {
  const double total = lanes.sum([&](int lane, int nlanes) {
    double part = 0;
    if (c < C)
      for (int64_t n = lane; n < N; n += nlanes) part += term(n, c);
    return part;
  });
  lanes.each([&](int lane, int) {
    if (lane == 0 && c < C) dst[c] += (float)total;
  });
}

}  // namespace body

// ---- launch helpers shared by the layer launchers (host side) ----
namespace launch {

constexpr int kThreads = 256;  // element-wise kernels

inline int sm_count() {
  int dev = 0, sms = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  return sms > 0 ? sms : 1;
}

// Blocks of kThreads for n independent items: one item per thread up to a few waves of
// a full device; grid-stride loops do the rest.
inline unsigned flat_grid(uint64_t n) {
  const uint64_t want = (n + kThreads - 1) / kThreads;
  const uint64_t cap = (uint64_t)sm_count() * 32;
  return (unsigned)(want < cap ? (want > 0 ? want : 1) : cap);
}

// One block of `lanes` threads per row, at most a device full of them (2048 threads
// per SM); blocks stride over the remaining rows.
inline unsigned row_grid(int64_t rows, int lanes) {
  const int64_t cap = (int64_t)sm_count() * (2048 / lanes);
  return (unsigned)(rows < cap ? (rows > 0 ? rows : 1) : cap);
}

inline unsigned column_grid(int64_t C) {
  const int64_t tiles = (C + body::kColumnTile - 1) / body::kColumnTile;
  const int64_t cap = (int64_t)sm_count() * 64;
  return (unsigned)(tiles < cap ? (tiles > 0 ? tiles : 1) : cap);
}

inline void require_size(const char* fn, const char* arg, int64_t v) {
  if (v < 0) throw invalid_arg(std::string(fn) + ": " + arg + " is negative (" + std::to_string(v) + ")");
}

// Checks a (rows, cols) launch's sizes (named in the error); false when it is empty.
inline bool require_matrix(const char* fn, const char* rows_name, int64_t rows, const char* cols_name, int64_t cols) {
  require_size(fn, rows_name, rows);
  require_size(fn, cols_name, cols);
  return rows > 0 && cols > 0;
}

inline void require_ptr(const char* fn, const char* arg, const void* p) {
  if (p == nullptr) throw invalid_arg(std::string(fn) + ": " + arg + " is null");
}

}  // namespace launch

#if defined(__CUDACC__)
// f(i) for i in [0, n), a grid-stride loop: the body of every element-wise kernel.
template <class F>
__device__ __forceinline__ void grid_stride(uint64_t n, F f) {
  const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) f(i);
}

// The lanes of a row kernel: the threads of this block, reducing through shared memory.
__device__ __forceinline__ body::BlockLanes block_lanes() {
  __shared__ double scratch_d[32];
  __shared__ float scratch_f[32];
  return body::BlockLanes{scratch_d, scratch_f};
}

// Column sums dst[c] += Σ_n term(n, c) over (N, C): a tile of 32 columns per block,
// 16 row lanes. Shared by bias_backward and the norms' dweight / dbias.
template <class Term>
__global__ void __launch_bounds__(body::kColumnTile* body::kColumnLanes)
    column_sums_kernel(float* dst, Term term, int64_t N, int64_t C) {
  __shared__ double scratch[body::kColumnTile * body::kColumnLanes];
  const body::ColumnLanes lanes{scratch};
  for (int64_t c0 = (int64_t)blockIdx.x * body::kColumnTile; c0 < C; c0 += (int64_t)gridDim.x * body::kColumnTile)
    body::column_sum_into(lanes, dst, term, N, C, c0 + threadIdx.x);
}

// Arguments already checked, N and C > 0.
template <class Term>
void launch_column_sums(float* dst, const Term& term, int64_t N, int64_t C, cudaStream_t s, const char* kernel) {
  column_sums_kernel<Term>
      <<<launch::column_grid(C), dim3(body::kColumnTile, body::kColumnLanes), 0, s>>>(dst, term, N, C);
  check_launch(kernel);
}
#endif

}  // namespace zofo::cuda
