// RoPE kernel: one thread per (token, pair index); consecutive threads take consecutive
// pair indices, so each head's halves are read and written coalesced.
#include "rope.cuh"

namespace zofo::cuda {

namespace {

using launch::kThreads;

__global__ void __launch_bounds__(kThreads)
    rope_kernel(float* x, const int32_t* positions, int64_t BT, int64_t NH, int64_t HS, float theta, float sign) {
  const int64_t half = HS / 2;
  grid_stride((uint64_t)(BT * half), [=](uint64_t j) {
    body::rope_pair(x, positions, NH, HS, theta, sign, (int64_t)(j / half), (int64_t)(j % half));
  });
}

}  // namespace

void rope(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta, bool backward,
          cudaStream_t s) {
  launch::require_size("rope", "B", B);
  launch::require_size("rope", "T", T);
  launch::require_size("rope", "NH", NH);
  launch::require_size("rope", "HS", HS);
  if (B == 0 || T == 0 || NH == 0 || HS < 2) return;  // HS < 2: no pairs
  launch::require_ptr("rope", "x", x);
  launch::require_ptr("rope", "positions", positions);
  const int64_t BT = B * T;
  rope_kernel<<<launch::flat_grid((uint64_t)(BT * (HS / 2))), kThreads, 0, s>>>(x, positions, BT, NH, HS, theta,
                                                                                backward ? -1.0f : 1.0f);
  check_launch("rope_kernel");
}

}  // namespace zofo::cuda
