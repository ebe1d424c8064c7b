// First-order updates of the adapters (and, for full fine-tuning, of the base
// weights): plain SGD (the analysed method), momentum SGD and AdamW, with PyTorch's
// formulas so that results carry over. fp32 in place.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../common/fo_hyper.h"

namespace zofo::cpu {

// SGD:      x ← x − lr·(g + λx)
// Momentum: m ← μ·m + (g + λx); x ← x − lr·m                       (torch.optim.SGD, dampening 0)
// AdamW:    x ← x·(1 − lr·λ); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
//           x ← x − lr·m̂ / (√v̂ + ε), m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ)   (torch.optim.AdamW)
// m and v are n floats each (unused by SGD; v unused by momentum).
void fo_update(const FoHyper& h, float* x, const float* g, float* m, float* v, size_t n, int threads);

}  // namespace zofo::cpu
