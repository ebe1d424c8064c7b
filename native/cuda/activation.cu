// Activation kernels: grid-stride loops over elements calling the bodies of activation.cuh.
#include "activation.cuh"

namespace zofo::cuda {

namespace {

using launch::kThreads;

template <class OutT>
__global__ void __launch_bounds__(kThreads) gelu_new_forward_kernel(OutT* out, const float* inp, int64_t N) {
  grid_stride(N, [=](uint64_t i) { body::gelu_new_forward_one(out, inp, i); });
}

__global__ void __launch_bounds__(kThreads)
    gelu_new_backward_kernel(float* dinp, const float* inp, const float* dout, int64_t N) {
  grid_stride(N, [=](uint64_t i) { body::gelu_new_backward_one(dinp, inp, dout, i); });
}

template <class OutT>
__global__ void __launch_bounds__(kThreads) relu_forward_kernel(OutT* out, const float* inp, int64_t N) {
  grid_stride(N, [=](uint64_t i) { body::relu_forward_one(out, inp, i); });
}

__global__ void __launch_bounds__(kThreads)
    relu_backward_kernel(float* dinp, const float* inp, const float* dout, int64_t N) {
  grid_stride(N, [=](uint64_t i) { body::relu_backward_one(dinp, inp, dout, i); });
}

template <class OutT>
__global__ void __launch_bounds__(kThreads)
    swiglu_forward_kernel(OutT* out, const float* gate, const float* up, int64_t N) {
  grid_stride(N, [=](uint64_t i) { body::swiglu_forward_one(out, gate, up, i); });
}

__global__ void __launch_bounds__(kThreads)
    swiglu_backward_kernel(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t N) {
  grid_stride(N, [=](uint64_t i) { body::swiglu_backward_one(dgate, dup, gate, up, dout, i); });
}

void check_kind(const char* fn, int kind) {
  if (kind != 0 && kind != 1)
    throw invalid_arg(std::string(fn) + ": unknown kind " + std::to_string(kind) + " (0 gelu_new, 1 relu)");
}

}  // namespace

namespace {
template <class OutT>
void launch_activation_forward(int kind, OutT* out, const float* inp, int64_t N, cudaStream_t s) {
  check_kind("activation_forward", kind);
  launch::require_size("activation_forward", "N", N);
  if (N == 0) return;
  launch::require_ptr("activation_forward", "out", out);
  launch::require_ptr("activation_forward", "inp", inp);
  const unsigned grid = launch::flat_grid((uint64_t)N);
  if (kind == 0) {
    gelu_new_forward_kernel<<<grid, kThreads, 0, s>>>(out, inp, N);
    check_launch("gelu_new_forward_kernel");
  } else {
    relu_forward_kernel<<<grid, kThreads, 0, s>>>(out, inp, N);
    check_launch("relu_forward_kernel");
  }
}
}  // namespace

void activation_forward(int kind, float* out, const float* inp, int64_t N, cudaStream_t s) {
  launch_activation_forward(kind, out, inp, N, s);
}

void activation_forward(int kind, uint16_t* out, const float* inp, int64_t N, cudaStream_t s) {
  launch_activation_forward(kind, out, inp, N, s);
}

void activation_backward(int kind, float* dinp, const float* inp, const float* dout, int64_t N, cudaStream_t s) {
  check_kind("activation_backward", kind);
  launch::require_size("activation_backward", "N", N);
  if (N == 0) return;
  launch::require_ptr("activation_backward", "dinp", dinp);
  launch::require_ptr("activation_backward", "inp", inp);
  launch::require_ptr("activation_backward", "dout", dout);
  const unsigned grid = launch::flat_grid((uint64_t)N);
  if (kind == 0) {
    gelu_new_backward_kernel<<<grid, kThreads, 0, s>>>(dinp, inp, dout, N);
    check_launch("gelu_new_backward_kernel");
  } else {
    relu_backward_kernel<<<grid, kThreads, 0, s>>>(dinp, inp, dout, N);
    check_launch("relu_backward_kernel");
  }
}

namespace {
template <class OutT>
void launch_swiglu_forward(OutT* out, const float* gate, const float* up, int64_t N, cudaStream_t s) {
  launch::require_size("swiglu_forward", "N", N);
  if (N == 0) return;
  launch::require_ptr("swiglu_forward", "out", out);
  launch::require_ptr("swiglu_forward", "gate", gate);
  launch::require_ptr("swiglu_forward", "up", up);
  swiglu_forward_kernel<<<launch::flat_grid((uint64_t)N), kThreads, 0, s>>>(out, gate, up, N);
  check_launch("swiglu_forward_kernel");
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, cudaStream_t s) {
  launch_swiglu_forward(out, gate, up, N, s);
}

void swiglu_forward(uint16_t* out, const float* gate, const float* up, int64_t N, cudaStream_t s) {
  launch_swiglu_forward(out, gate, up, N, s);
}

void swiglu_backward(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t N,
                     cudaStream_t s) {
  launch::require_size("swiglu_backward", "N", N);
  if (N == 0) return;
  launch::require_ptr("swiglu_backward", "dgate", dgate);
  launch::require_ptr("swiglu_backward", "dup", dup);
  launch::require_ptr("swiglu_backward", "gate", gate);
  launch::require_ptr("swiglu_backward", "up", up);
  launch::require_ptr("swiglu_backward", "dout", dout);
  swiglu_backward_kernel<<<launch::flat_grid((uint64_t)N), kThreads, 0, s>>>(dgate, dup, gate, up, dout, N);
  check_launch("swiglu_backward_kernel");
}

}  // namespace zofo::cuda
