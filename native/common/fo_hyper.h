// Hyper-parameters of one first-order update (native/cpu/optim.h has the formulas).
#pragma once

#include <stdint.h>

namespace zofo {

enum class FoKind : int { SGD = 0, Momentum = 1, AdamW = 2 };

struct FoHyper {
  FoKind kind = FoKind::SGD;
  float lr = 0, weight_decay = 0;
  float momentum = 0.9f;                            // Momentum
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // AdamW
  int64_t t = 1;                                    // AdamW: 1-based count of updates, for bias correction
};

}  // namespace zofo
