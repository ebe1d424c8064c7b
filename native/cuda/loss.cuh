// Cross-entropy pieces over logits (M, V) on the device, as the CPU backend
// (native/cpu/backend_cpu.cpp). One block per row; the row max and Σ exp are block
// reductions (V up to ~150k), Σ exp in double.
//   log_softmax_at: logp[i] = row[t] − max − log Σ exp(row − max), t = targets[i];
//     with probs the row is overwritten by softmax: exp(row − max) · (1/Σ).
//   xent_backward: row ← −d·row, then row[t] += d, d = (float)drow[i] (in place on
//     the probabilities: row ← d·(onehot(t) − softmax)).
// targets (M) int32, logp / drow (M) double: device memory. A target outside [0, V)
// (the caller checks them; the CPU would read out of bounds) gives logp = NaN, and
// xent_backward then adds nothing.
#pragma once

#include "lanes.cuh"

namespace zofo::cuda {

void log_softmax_at(float* logits, const int32_t* targets, double* logp, int64_t M, int64_t V, bool probs,
                    cudaStream_t s);
void xent_backward(float* probs, const int32_t* targets, const double* drow, int64_t M, int64_t V, cudaStream_t s);

namespace body {

constexpr int kSoftmaxMaxLanes = 1024;

template <class Lanes>
ZOFO_HD void log_softmax_row(const Lanes& lanes, float* logits, const int32_t* targets, double* logp, int64_t V,
                             bool probs, int64_t i) {
  float* row = logits + i * V;
  const int32_t t = targets[i];
  const bool valid = t >= 0 && t < V;
  const float target_logit = valid ? row[t] : 0.0f;  // read before any lane overwrites the row (barriers follow)
  const float mx = lanes.max([&](int lane, int nlanes) {
    float part = -INFINITY;
    for (int64_t j = lane; j < V; j += nlanes) part = max_keep(part, row[j]);
    return part;
  });
  const double z = lanes.sum([&](int lane, int nlanes) {
    double part = 0;
    for (int64_t j = lane; j < V; j += nlanes) part += expf(row[j] - mx);
    return part;
  });
  lanes.each([&](int lane, int nlanes) {
    if (lane == 0) logp[i] = valid ? (double)target_logit - mx - log(z) : (double)NAN;
    if (probs) {
      const float inv = (float)(1.0 / z);
      for (int64_t j = lane; j < V; j += nlanes) row[j] = expf(row[j] - mx) * inv;
    }
  });
}

template <class Lanes>
ZOFO_HD void xent_backward_row(const Lanes& lanes, float* probs, const int32_t* targets, const double* drow, int64_t V,
                               int64_t i) {
  float* row = probs + i * V;
  const int32_t t = targets[i];
  const float d = (float)drow[i];
  lanes.each([&](int lane, int nlanes) {
    for (int64_t j = lane; j < V; j += nlanes) {
      float p = row[j] * -d;
      if (j == t) p += d;  // after the product, as the CPU's two passes
      row[j] = p;
    }
  });
}

}  // namespace body

}  // namespace zofo::cuda
