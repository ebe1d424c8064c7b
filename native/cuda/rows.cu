// Gather / scatter-add kernels calling the bodies of rows.cuh.
#include "rows.cuh"

namespace zofo::cuda {

namespace {

using launch::kThreads;

// One block per output row, lanes over its columns.
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(float* out, const float* x, const int32_t* rows, int64_t M, int64_t C) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t m = blockIdx.x; m < M; m += gridDim.x) body::gather_row(lanes, out, x, rows, C, m);
}

// One thread per column (consecutive threads, consecutive columns: coalesced).
__global__ void __launch_bounds__(kThreads)
    scatter_add_rows_kernel(float* dx, const float* dout, const int32_t* rows, int64_t M, int64_t C) {
  grid_stride((uint64_t)C, [=](uint64_t c) { body::scatter_add_column(dx, dout, rows, M, C, (int64_t)c); });
}

}  // namespace

void gather_rows(float* out, const float* x, const int32_t* rows, int64_t M, int64_t C, cudaStream_t s) {
  if (!launch::require_matrix("gather_rows", "M", M, "C", C)) return;
  launch::require_ptr("gather_rows", "out", out);
  launch::require_ptr("gather_rows", "x", x);
  launch::require_ptr("gather_rows", "rows", rows);
  const int lanes = body::lanes_for(C, kThreads);
  gather_rows_kernel<<<launch::row_grid(M, lanes), lanes, 0, s>>>(out, x, rows, M, C);
  check_launch("gather_rows_kernel");
}

void scatter_add_rows(float* dx, const float* dout, const int32_t* rows, int64_t M, int64_t C, cudaStream_t s) {
  if (!launch::require_matrix("scatter_add_rows", "M", M, "C", C)) return;
  launch::require_ptr("scatter_add_rows", "dx", dx);
  launch::require_ptr("scatter_add_rows", "dout", dout);
  launch::require_ptr("scatter_add_rows", "rows", rows);
  // Parallel over columns only (the rows' order is the sum's order): small blocks
  // spread narrow matrices over more SMs.
  constexpr int kScatterThreads = 64;
  const uint64_t blocks = ((uint64_t)C + kScatterThreads - 1) / kScatterThreads;
  scatter_add_rows_kernel<<<(unsigned)(blocks < 0x7fffffffu ? blocks : 0x7fffffffu), kScatterThreads, 0, s>>>(
      dx, dout, rows, M, C);
  check_launch("scatter_add_rows_kernel");
}

}  // namespace zofo::cuda
