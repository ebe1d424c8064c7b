// RMSNorm / LayerNorm kernels: one block per row running the row bodies of norm.cuh
// with BlockLanes; the parameter gradients go through column_sums_kernel.
#include "norm.cuh"

namespace zofo::cuda {

namespace {

using body::kNormMaxLanes;

// Every kernel here: grid-stride over rows (uniform per block, so the barriers inside
// the lanes' reductions are reached by all threads), blockDim.x = lanes_for(C).

template <class OutT>
__global__ void __launch_bounds__(kNormMaxLanes)
    rmsnorm_forward_kernel(OutT* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                           float eps) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x)
    body::rmsnorm_forward_row(lanes, out, rstd, inp, weight, C, eps, n);
}

__global__ void __launch_bounds__(kNormMaxLanes)
    rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* weight, const float* rstd,
                            int64_t N, int64_t C) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x)
    body::rmsnorm_backward_row(lanes, dinp, dout, inp, weight, rstd, C, n);
}

template <class OutT>
__global__ void __launch_bounds__(kNormMaxLanes)
    layernorm_forward_kernel(OutT* out, float* mean, float* rstd, const float* inp, const float* weight,
                             const float* bias, int64_t N, int64_t C, float eps) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x)
    body::layernorm_forward_row(lanes, out, mean, rstd, inp, weight, bias, C, eps, n);
}

__global__ void __launch_bounds__(kNormMaxLanes)
    layernorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* weight, const float* mean,
                              const float* rstd, int64_t N, int64_t C) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x)
    body::layernorm_backward_row(lanes, dinp, dout, inp, weight, mean, rstd, C, n);
}

template <class OutT>
void launch_rmsnorm_forward(OutT* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                            float eps, cudaStream_t s) {
  if (!launch::require_matrix("rmsnorm_forward", "N", N, "C", C)) return;
  launch::require_ptr("rmsnorm_forward", "out", out);
  launch::require_ptr("rmsnorm_forward", "rstd", rstd);
  launch::require_ptr("rmsnorm_forward", "inp", inp);
  launch::require_ptr("rmsnorm_forward", "weight", weight);
  const int lanes = body::lanes_for(C, kNormMaxLanes);
  rmsnorm_forward_kernel<<<launch::row_grid(N, lanes), lanes, 0, s>>>(out, rstd, inp, weight, N, C, eps);
  check_launch("rmsnorm_forward_kernel");
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps,
                     cudaStream_t s) {
  launch_rmsnorm_forward(out, rstd, inp, weight, N, C, eps, s);
}

void rmsnorm_forward(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps,
                     cudaStream_t s) {
  launch_rmsnorm_forward(out, rstd, inp, weight, N, C, eps, s);
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C, cudaStream_t s) {
  if (!launch::require_matrix("rmsnorm_backward", "N", N, "C", C)) return;
  launch::require_ptr("rmsnorm_backward", "dinp", dinp);
  launch::require_ptr("rmsnorm_backward", "dout", dout);
  launch::require_ptr("rmsnorm_backward", "inp", inp);
  launch::require_ptr("rmsnorm_backward", "weight", weight);
  launch::require_ptr("rmsnorm_backward", "rstd", rstd);
  const int lanes = body::lanes_for(C, kNormMaxLanes);
  rmsnorm_backward_kernel<<<launch::row_grid(N, lanes), lanes, 0, s>>>(dinp, dout, inp, weight, rstd, N, C);
  check_launch("rmsnorm_backward_kernel");
  if (dweight)
    launch_column_sums(dweight, body::RmsnormDweightTerm{dout, inp, rstd, C}, N, C, s,
                       "rmsnorm_backward dweight (column_sums_kernel)");
}

namespace {
template <class OutT>
void launch_layernorm_forward(OutT* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, int64_t N, int64_t C, float eps, cudaStream_t s) {
  if (!launch::require_matrix("layernorm_forward", "N", N, "C", C)) return;
  launch::require_ptr("layernorm_forward", "out", out);
  launch::require_ptr("layernorm_forward", "mean", mean);
  launch::require_ptr("layernorm_forward", "rstd", rstd);
  launch::require_ptr("layernorm_forward", "inp", inp);
  launch::require_ptr("layernorm_forward", "weight", weight);
  const int lanes = body::lanes_for(C, kNormMaxLanes);
  layernorm_forward_kernel<<<launch::row_grid(N, lanes), lanes, 0, s>>>(out, mean, rstd, inp, weight, bias, N, C, eps);
  check_launch("layernorm_forward_kernel");
}
}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps, cudaStream_t s) {
  launch_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps, s);
}

void layernorm_forward(uint16_t* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps, cudaStream_t s) {
  launch_layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps, s);
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                        cudaStream_t s) {
  if (!launch::require_matrix("layernorm_backward", "N", N, "C", C)) return;
  launch::require_ptr("layernorm_backward", "dinp", dinp);
  launch::require_ptr("layernorm_backward", "dout", dout);
  launch::require_ptr("layernorm_backward", "inp", inp);
  launch::require_ptr("layernorm_backward", "weight", weight);
  launch::require_ptr("layernorm_backward", "mean", mean);
  launch::require_ptr("layernorm_backward", "rstd", rstd);
  const int lanes = body::lanes_for(C, kNormMaxLanes);
  layernorm_backward_kernel<<<launch::row_grid(N, lanes), lanes, 0, s>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  check_launch("layernorm_backward_kernel");
  if (dweight)
    launch_column_sums(dweight, body::LayernormDweightTerm{dout, inp, mean, rstd, C}, N, C, s,
                       "layernorm_backward dweight (column_sums_kernel)");
  if (dbias)
    launch_column_sums(dbias, body::ColumnOf{dout, C}, N, C, s, "layernorm_backward dbias (column_sums_kernel)");
}

}  // namespace zofo::cuda
