#include "activation.h"

#include <math.h>

#include "parallel.h"

namespace zofo::cpu {

namespace {
constexpr uint64_t kMinPerThread = 1 << 14;
constexpr float kGeluScale = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluCubic = 0.044715f;

template <class Fn>
void elementwise(int64_t N, int threads, Fn fn) {
  parallel_ranges((uint64_t)N, threads, kMinPerThread, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t i = lo; i < hi; ++i) fn(i);
  });
}

inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
}  // namespace

void gelu_new_forward(float* out, const float* inp, int64_t N, int threads) {
  elementwise(N, threads, [&](uint64_t i) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(kGeluScale * (x + kGeluCubic * x * x * x)));
  });
}

void gelu_new_backward(float* dinp, const float* inp, const float* dout, int64_t N, int threads) {
  elementwise(N, threads, [&](uint64_t i) {
    const float x = inp[i];
    const float t = tanhf(kGeluScale * (x + kGeluCubic * x * x * x));
    const float dt = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x) * (1.0f - t * t);
    dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * dt);
  });
}

void relu_forward(float* out, const float* inp, int64_t N, int threads) {
  elementwise(N, threads, [&](uint64_t i) { out[i] = inp[i] > 0.0f ? inp[i] : 0.0f; });
}

void relu_backward(float* dinp, const float* inp, const float* dout, int64_t N, int threads) {
  elementwise(N, threads, [&](uint64_t i) { dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f; });
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N, int threads) {
  elementwise(N, threads, [&](uint64_t i) { out[i] = gate[i] * sigmoid(gate[i]) * up[i]; });
}

void swiglu_backward(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t N,
                     int threads) {
  elementwise(N, threads, [&](uint64_t i) {
    const float g = gate[i], s = sigmoid(g);
    dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] += dout[i] * g * s;
  });
}

}  // namespace zofo::cpu
