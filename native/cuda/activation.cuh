// Activations on the device, forward beside backward: the twins of native/cpu/activation.h
// with the same fp32 expressions (results differ from the CPU only where CUDA's tanhf /
// expf round differently from the host's, ≤ 2 ulp). All shapes (N), element-wise.
//   gelu_new (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   relu (OPT)
//   swiglu (Llama MLP): out = silu(gate) · up, silu(g) = g·σ(g)
#pragma once

#include "lanes.cuh"
#include "store.cuh"

namespace zofo::cuda {

// kind: 0 gelu_new, 1 relu (anything else: ZOFO_INVALID_ARG).
void activation_forward(int kind, float* out, const float* inp, int64_t N, cudaStream_t s);
// The same with out (N) in bf16 (nearest even): the operand of the next matmul.
void activation_forward(int kind, uint16_t* out, const float* inp, int64_t N, cudaStream_t s);
// dinp += dout · act'(inp)
void activation_backward(int kind, float* dinp, const float* inp, const float* dout, int64_t N, cudaStream_t s);
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, cudaStream_t s);
// The same with out (N) in bf16 (nearest even): the operand of the next matmul.
void swiglu_forward(uint16_t* out, const float* gate, const float* up, int64_t N, cudaStream_t s);
// dgate += dout · up · σ(g)(1 + g(1 − σ(g))); dup += dout · silu(g)
void swiglu_backward(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t N,
                     cudaStream_t s);

namespace body {

constexpr float kGeluScale = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluCubic = 0.044715f;

ZOFO_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

template <class OutT>  // float, or uint16_t for a bf16 output (the next matmul's operand)
ZOFO_HD void gelu_new_forward_one(OutT* out, const float* inp, uint64_t i) {
  const float x = inp[i];
  store_as(out + i, 0.5f * x * (1.0f + tanhf(kGeluScale * (x + kGeluCubic * x * x * x))));
}

ZOFO_HD void gelu_new_backward_one(float* dinp, const float* inp, const float* dout, uint64_t i) {
  const float x = inp[i];
  const float t = tanhf(kGeluScale * (x + kGeluCubic * x * x * x));
  const float dt = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x) * (1.0f - t * t);
  dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * dt);
}

template <class OutT>
ZOFO_HD void relu_forward_one(OutT* out, const float* inp, uint64_t i) {
  store_as(out + i, inp[i] > 0.0f ? inp[i] : 0.0f);
}

ZOFO_HD void relu_backward_one(float* dinp, const float* inp, const float* dout, uint64_t i) {
  dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

template <class OutT>  // float, or uint16_t for a bf16 output (the next matmul's operand)
ZOFO_HD void swiglu_forward_one(OutT* out, const float* gate, const float* up, uint64_t i) {
  store_as(out + i, gate[i] * sigmoid(gate[i]) * up[i]);
}

ZOFO_HD void swiglu_backward_one(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                                 uint64_t i) {
  const float g = gate[i], s = sigmoid(g);
  dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
  dup[i] += dout[i] * g * s;
}

}  // namespace body

}  // namespace zofo::cuda
