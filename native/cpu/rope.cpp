#include "rope.h"

#include <math.h>

#include <vector>

#include "parallel.h"

namespace zofo::cpu {

namespace {

// sign = +1 forward, −1 backward. Angles in double, like HF's fp32 inv_freq·pos to
// well within fp32 rounding.
void rope_rotate(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
                 float sign, int threads) {
  const int64_t half = HS / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = 1.0 / pow((double)theta, (double)(2 * i) / (double)HS);
  parallel_ranges((uint64_t)(B * T), threads, 4, [&](uint64_t lo, uint64_t hi) {
    std::vector<float> cos_t(half), sin_t(half);
    for (uint64_t bt = lo; bt < hi; ++bt) {
      const double pos = positions[bt];
      for (int64_t i = 0; i < half; ++i) {
        cos_t[i] = (float)cos(pos * inv_freq[i]);
        sin_t[i] = sign * (float)sin(pos * inv_freq[i]);
      }
      for (int64_t h = 0; h < NH; ++h) {
        float* v = x + (bt * NH + h) * HS;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cos_t[i] - b * sin_t[i];
          v[i + half] = b * cos_t[i] + a * sin_t[i];
        }
      }
    }
  });
}

}  // namespace

void rope_forward(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
                  int threads) {
  rope_rotate(x, positions, B, T, NH, HS, theta, 1.0f, threads);
}

void rope_backward(float* dx, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
                   int threads) {
  rope_rotate(dx, positions, B, T, NH, HS, theta, -1.0f, threads);
}

}  // namespace zofo::cpu
