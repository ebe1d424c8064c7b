// Activations, forward beside backward. Shapes: all (N) element-wise.
//   gelu_new (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   relu (OPT)
//   swiglu (Llama MLP): out = silu(gate) · up, silu(g) = g·σ(g)
// Backwards accumulate into their input gradients (+=).
#pragma once

#include <stdint.h>

namespace zofo::cpu {

void gelu_new_forward(float* out, const float* inp, int64_t N, int threads = 0);
void gelu_new_backward(float* dinp, const float* inp, const float* dout, int64_t N, int threads = 0);

void relu_forward(float* out, const float* inp, int64_t N, int threads = 0);
void relu_backward(float* dinp, const float* inp, const float* dout, int64_t N, int threads = 0);

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, int threads = 0);
void swiglu_backward(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t N,
                     int threads = 0);

}  // namespace zofo::cpu
