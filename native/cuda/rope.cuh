// Rotary position embedding on the device, as native/cpu/rope.h (HF Llama rotate_half):
// within each head, element i pairs with element i + HS/2:
//   y[i]        = x[i] cos θ − x[i + HS/2] sin θ
//   y[i + HS/2] = x[i + HS/2] cos θ + x[i] sin θ,   θ = pos · theta^(−2i/HS)
// The angle is computed in double and cos/sin rounded to fp32, like the CPU (CUDA's
// double pow/cos/sin are within 2 ulp of double: the fp32 values match but for rare
// rounding ties). The backward rotates by −θ (the rotation is orthogonal).
#pragma once

#include "lanes.cuh"

namespace zofo::cuda {

// x (B·T, NH, HS) in place; positions (B·T) int32, device memory.
void rope(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta, bool backward,
          cudaStream_t s);

namespace body {

// Pair i (< HS/2) of every head of token bt: one angle, NH rotations.
// sign = +1 forward, −1 backward.
ZOFO_HD void rope_pair(float* x, const int32_t* positions, int64_t NH, int64_t HS, float theta, float sign, int64_t bt,
                       int64_t i) {
  const int64_t half = HS / 2;
  const double inv_freq = 1.0 / pow((double)theta, (double)(2 * i) / (double)HS);
  const double pos = positions[bt];
  const float cos_t = (float)cos(pos * inv_freq);
  const float sin_t = sign * (float)sin(pos * inv_freq);
  for (int64_t h = 0; h < NH; ++h) {
    float* v = x + (bt * NH + h) * HS;
    const float a = v[i], b = v[i + half];
    v[i] = a * cos_t - b * sin_t;
    v[i + half] = b * cos_t + a * sin_t;
  }
}

}  // namespace body

}  // namespace zofo::cuda
