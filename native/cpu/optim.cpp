#include "optim.h"

#include <math.h>

#include "parallel.h"

namespace zofo::cpu {

void fo_update(const FoHyper& h, float* x, const float* g, float* m, float* v, size_t n, int threads) {
  const float lr = h.lr, wd = h.weight_decay;
  switch (h.kind) {
    case FoKind::SGD:
      parallel_ranges(n, threads, 1 << 15, [&](uint64_t lo, uint64_t hi) {
        for (uint64_t i = lo; i < hi; ++i) x[i] -= lr * (g[i] + wd * x[i]);
      });
      break;
    case FoKind::Momentum:
      parallel_ranges(n, threads, 1 << 15, [&](uint64_t lo, uint64_t hi) {
        for (uint64_t i = lo; i < hi; ++i) {
          m[i] = h.momentum * m[i] + (g[i] + wd * x[i]);
          x[i] -= lr * m[i];
        }
      });
      break;
    case FoKind::AdamW: {
      const float c1 = (float)(1.0 - pow((double)h.beta1, (double)h.t));
      const float c2 = (float)(1.0 - pow((double)h.beta2, (double)h.t));
      const float step = lr / c1, root_c2 = sqrtf(c2);
      parallel_ranges(n, threads, 1 << 15, [&](uint64_t lo, uint64_t hi) {
        for (uint64_t i = lo; i < hi; ++i) {
          x[i] *= 1.0f - lr * wd;
          m[i] = h.beta1 * m[i] + (1.0f - h.beta1) * g[i];
          v[i] = h.beta2 * v[i] + (1.0f - h.beta2) * g[i] * g[i];
          x[i] -= step * m[i] / (sqrtf(v[i]) / root_c2 + h.eps);
        }
      });
      break;
    }
  }
}

}  // namespace zofo::cpu
