// First-order update kernels: grid-stride loops over elements calling the bodies of optim.cuh.
#include "optim.cuh"

namespace zofo::cuda {

namespace {

using launch::kThreads;

__global__ void __launch_bounds__(kThreads) sgd_kernel(body::FoScalars k, float* x, const float* g, uint64_t n) {
  grid_stride(n, [=](uint64_t i) { body::sgd_one(k, x, g, i); });
}

__global__ void __launch_bounds__(kThreads)
    momentum_kernel(body::FoScalars k, float* x, const float* g, float* m, uint64_t n) {
  grid_stride(n, [=](uint64_t i) { body::momentum_one(k, x, g, m, i); });
}

__global__ void __launch_bounds__(kThreads)
    adamw_kernel(body::FoScalars k, float* x, const float* g, float* m, float* v, uint64_t n) {
  grid_stride(n, [=](uint64_t i) { body::adamw_one(k, x, g, m, v, i); });
}

}  // namespace

void fo_update(const FoHyper& h, float* x, const float* g, float* m, float* v, size_t n, cudaStream_t s) {
  if (h.kind != FoKind::SGD && h.kind != FoKind::Momentum && h.kind != FoKind::AdamW)
    throw invalid_arg("fo_update: unknown optimizer kind " + std::to_string((int)h.kind));
  if (n == 0) return;
  launch::require_ptr("fo_update", "x", x);
  launch::require_ptr("fo_update", "g", g);
  if (h.kind != FoKind::SGD) launch::require_ptr("fo_update", "m", m);
  if (h.kind == FoKind::AdamW) launch::require_ptr("fo_update", "v", v);
  const body::FoScalars k = body::fo_scalars(h);
  const unsigned grid = launch::flat_grid(n);
  switch (h.kind) {
    case FoKind::SGD:
      sgd_kernel<<<grid, kThreads, 0, s>>>(k, x, g, n);
      check_launch("sgd_kernel");
      break;
    case FoKind::Momentum:
      momentum_kernel<<<grid, kThreads, 0, s>>>(k, x, g, m, n);
      check_launch("momentum_kernel");
      break;
    case FoKind::AdamW:
      adamw_kernel<<<grid, kThreads, 0, s>>>(k, x, g, m, v, n);
      check_launch("adamw_kernel");
      break;
  }
}

}  // namespace zofo::cuda
