// Element-wise kernels: thin wrappers that compute an index and call the bodies of
// elementwise.cuh.
#include "elementwise.cuh"

namespace zofo::cuda {

namespace {

using launch::kThreads;

__global__ void __launch_bounds__(kThreads) fill_kernel(float* dst, float value, uint64_t n) {
  grid_stride(n, [=](uint64_t i) { body::fill_one(dst, value, i); });
}

// y: (N, C); one block per row, blockDim.x lanes over its columns.
__global__ void __launch_bounds__(kThreads) add_bias_kernel(float* y, const float* bias, int64_t N, int64_t C) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) body::add_bias_row(lanes, y, bias, C, n);
}

__global__ void __launch_bounds__(kThreads) axpy_kernel(float* y, const float* x, float alpha, uint64_t n) {
  grid_stride(n, [=](uint64_t i) { body::axpy_one(y, x, alpha, i); });
}

// Any thread that sees a non-finite value stores 1: every writer stores the same value,
// so no atomics are needed.
__global__ void __launch_bounds__(kThreads) all_finite_kernel(const float* p, uint64_t n, int* flag) {
  bool bad = false;
  grid_stride(n, [&](uint64_t i) { bad |= body::is_nonfinite(p[i]); });
  if (bad) *flag = 1;
}

}  // namespace

void fill(float* dst, float value, size_t n, cudaStream_t s) {
  if (n == 0) return;
  launch::require_ptr("fill", "dst", dst);
  if (f32_bits(value) == 0) {  // +0.0f: all-zero bytes
    cuda_check(cudaMemsetAsync(dst, 0, n * sizeof(float), s), "fill (cudaMemsetAsync)");
    return;
  }
  fill_kernel<<<launch::flat_grid(n), kThreads, 0, s>>>(dst, value, n);
  check_launch("fill_kernel");
}

void add_bias(float* y, const float* bias, int64_t N, int64_t C, cudaStream_t s) {
  if (!launch::require_matrix("add_bias", "N", N, "C", C)) return;
  launch::require_ptr("add_bias", "y", y);
  launch::require_ptr("add_bias", "bias", bias);
  const int lanes = body::lanes_for(C, kThreads);
  add_bias_kernel<<<launch::row_grid(N, lanes), lanes, 0, s>>>(y, bias, N, C);
  check_launch("add_bias_kernel");
}

void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C, cudaStream_t s) {
  if (!launch::require_matrix("bias_backward", "N", N, "C", C)) return;
  launch::require_ptr("bias_backward", "dbias", dbias);
  launch::require_ptr("bias_backward", "dy", dy);
  launch_column_sums(dbias, body::ColumnOf{dy, C}, N, C, s, "bias_backward (column_sums_kernel)");
}

void axpy(float* y, const float* x, float alpha, size_t n, cudaStream_t s) {
  if (n == 0) return;
  launch::require_ptr("axpy", "y", y);
  launch::require_ptr("axpy", "x", x);
  axpy_kernel<<<launch::flat_grid(n), kThreads, 0, s>>>(y, x, alpha, n);
  check_launch("axpy_kernel");
}

void all_finite(const float* p, size_t n, int* flag_device, cudaStream_t s) {
  launch::require_ptr("all_finite", "flag_device", flag_device);
  if (n > 0) launch::require_ptr("all_finite", "p", p);
  cuda_check(cudaMemsetAsync(flag_device, 0, sizeof(int), s), "all_finite (cudaMemsetAsync)");
  if (n == 0) return;
  all_finite_kernel<<<launch::flat_grid(n), kThreads, 0, s>>>(p, n, flag_device);
  check_launch("all_finite_kernel");
}

}  // namespace zofo::cuda
