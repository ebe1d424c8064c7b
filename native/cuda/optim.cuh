// First-order updates on the device, as native/cpu/optim.h (PyTorch's formulas), fp32
// in place. Same fp32 expressions as the CPU and no transcendental functions (CUDA's
// sqrtf and division are IEEE without fast math), so results match the CPU bit for bit.
//   SGD:      x ← x − lr·(g + λx)
//   Momentum: m ← μ·m + (g + λx); x ← x − lr·m
//   AdamW:    x ← x·(1 − lr·λ); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
//             x ← x − lr·m̂ / (√v̂ + ε)
#pragma once

#include <math.h>

#include "../common/fo_hyper.h"
#include "lanes.cuh"

namespace zofo::cuda {

// x, g (n); m (n) for Momentum and AdamW; v (n) for AdamW (unused ones may be null).
void fo_update(const FoHyper& h, float* x, const float* g, float* m, float* v, size_t n, cudaStream_t s);

namespace body {

// The update's scalars, with AdamW's bias corrections computed on the host in double
// exactly as native/cpu/optim.cpp: step = lr / (1 − β1ᵗ), root_c2 = √(1 − β2ᵗ).
struct FoScalars {
  float lr, wd, momentum, beta1, beta2, eps;
  float step, root_c2;  // AdamW only
};

inline FoScalars fo_scalars(const FoHyper& h) {
  FoScalars k{h.lr, h.weight_decay, h.momentum, h.beta1, h.beta2, h.eps, 0.0f, 1.0f};
  if (h.kind == FoKind::AdamW) {
    const float c1 = (float)(1.0 - pow((double)h.beta1, (double)h.t));
    const float c2 = (float)(1.0 - pow((double)h.beta2, (double)h.t));
    k.step = h.lr / c1;
    k.root_c2 = sqrtf(c2);
  }
  return k;
}

ZOFO_HD void sgd_one(const FoScalars& k, float* x, const float* g, uint64_t i) { x[i] -= k.lr * (g[i] + k.wd * x[i]); }

ZOFO_HD void momentum_one(const FoScalars& k, float* x, const float* g, float* m, uint64_t i) {
  m[i] = k.momentum * m[i] + (g[i] + k.wd * x[i]);
  x[i] -= k.lr * m[i];
}

ZOFO_HD void adamw_one(const FoScalars& k, float* x, const float* g, float* m, float* v, uint64_t i) {
  x[i] *= 1.0f - k.lr * k.wd;
  m[i] = k.beta1 * m[i] + (1.0f - k.beta1) * g[i];
  v[i] = k.beta2 * v[i] + (1.0f - k.beta2) * g[i] * g[i];
  x[i] -= k.step * m[i] / (sqrtf(v[i]) / k.root_c2 + k.eps);
}

}  // namespace body

}  // namespace zofo::cuda
