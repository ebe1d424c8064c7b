// RMSNorm (Llama) and LayerNorm (OPT, GPT-2), forward beside backward.
// Shapes: inp, out, dinp, dout (N, C) row-major; weight, bias, dweight, dbias (C);
// rstd, mean (N) saved by the forward for the backward. A null dweight / dbias means
// the norm's parameters are frozen: their gradients are not computed.
#pragma once

#include <stdint.h>

namespace zofo::cpu {

// out = inp · rsqrt(mean(inp²) + eps) · weight   (HF LlamaRMSNorm, fp32 throughout)
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps,
                     int threads = 0);
// dinp += rstd · (g − x̂ · mean(g · x̂)), g = dout · weight, x̂ = inp · rstd; dweight += Σ_n dout · x̂
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C, int threads = 0);

// out = (inp − mean) · rsqrt(var + eps) · weight + bias   (biased variance, as torch)
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps, int threads = 0);
// dinp += rstd · (g − mean(g) − x̂ · mean(g · x̂)); dweight += Σ dout · x̂; dbias += Σ dout
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                        int threads = 0);

}  // namespace zofo::cpu
