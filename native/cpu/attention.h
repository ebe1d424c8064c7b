// Causal multi-head attention with a padding mask and grouped KV heads (GQA),
// forward beside backward (llm.c's attention_forward/backward, plus GQA and masks).
// Shapes: q, dq (B, T, NH, HS); k, v, dk, dv (B, T, NKV, HS); out, dout (B, T, NH, HS);
// mask (B, T), 1 = real token, 0 = padding; att (B, NH, T, T) the softmax
// probabilities saved by the forward (row t is zero past t and at masked keys).
// Query head h reads KV head h / (NH / NKV). Scores are scale·q·k.
// A query with no visible key (a left-pad position) outputs zeros.
#pragma once

#include <stdint.h>

namespace zofo::cpu {

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* mask,
                       int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale, int threads = 0);

// Accumulates into dq, dk, dv (+=).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                        const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                        float scale, int threads = 0);

}  // namespace zofo::cpu
