// Cross-entropy kernels: one block per row running the row bodies of loss.cuh.
#include "loss.cuh"

namespace zofo::cuda {

namespace {

using body::kSoftmaxMaxLanes;

__global__ void __launch_bounds__(kSoftmaxMaxLanes)
    log_softmax_at_kernel(float* logits, const int32_t* targets, double* logp, int64_t M, int64_t V, bool probs) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t i = blockIdx.x; i < M; i += gridDim.x) body::log_softmax_row(lanes, logits, targets, logp, V, probs, i);
}

__global__ void __launch_bounds__(launch::kThreads)
    xent_backward_kernel(float* probs, const int32_t* targets, const double* drow, int64_t M, int64_t V) {
  const body::BlockLanes lanes = block_lanes();
  for (int64_t i = blockIdx.x; i < M; i += gridDim.x) body::xent_backward_row(lanes, probs, targets, drow, V, i);
}

}  // namespace

void log_softmax_at(float* logits, const int32_t* targets, double* logp, int64_t M, int64_t V, bool probs,
                    cudaStream_t s) {
  if (!launch::require_matrix("log_softmax_at", "M", M, "V", V)) return;
  launch::require_ptr("log_softmax_at", "logits", logits);
  launch::require_ptr("log_softmax_at", "targets", targets);
  launch::require_ptr("log_softmax_at", "logp", logp);
  const int lanes = body::lanes_for(V, kSoftmaxMaxLanes);
  log_softmax_at_kernel<<<launch::row_grid(M, lanes), lanes, 0, s>>>(logits, targets, logp, M, V, probs);
  check_launch("log_softmax_at_kernel");
}

void xent_backward(float* probs, const int32_t* targets, const double* drow, int64_t M, int64_t V, cudaStream_t s) {
  if (!launch::require_matrix("xent_backward", "M", M, "V", V)) return;
  launch::require_ptr("xent_backward", "probs", probs);
  launch::require_ptr("xent_backward", "targets", targets);
  launch::require_ptr("xent_backward", "drow", drow);
  const int lanes = body::lanes_for(V, launch::kThreads);
  xent_backward_kernel<<<launch::row_grid(M, lanes), lanes, 0, s>>>(probs, targets, drow, M, V);
  check_launch("xent_backward_kernel");
}

}  // namespace zofo::cuda
