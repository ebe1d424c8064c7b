// Rotary position embedding as HF Llama applies it (rotate_half): within each head,
// element i pairs with element i + HS/2 (NOT interleaved pairs 2i, 2i+1):
//   y[i]        = x[i] cos θ − x[i + HS/2] sin θ
//   y[i + HS/2] = x[i + HS/2] cos θ + x[i] sin θ,   θ = pos · theta^(−2i/HS)
// Shapes: x (B, T, NHx, HS) in place; positions (B, T).
#pragma once

#include <stdint.h>

namespace zofo::cpu {

void rope_forward(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
                  int threads = 0);
// The rotation is orthogonal: the backward rotates dx by −θ, in place.
void rope_backward(float* dx, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
                   int threads = 0);

}  // namespace zofo::cpu
