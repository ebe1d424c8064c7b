#include "attention.h"

#include <math.h>

#include <vector>

#include "matmul.h"
#include "parallel.h"

namespace zofo::cpu {

// Per (batch, head) the products are small GEMMs on strided views (a head's rows are
// NH·HS apart in q and out, NKV·HS apart in k and v), done by sgemm on this thread:
// the (b, h) items themselves are spread over the threads.
namespace {
// Masked, causal softmax of one score row in place; invisible keys get 0. Returns
// false when no key is visible (a padding query: the row stays all zeros).
bool softmax_row(float* p, int64_t t, int64_t T, const uint8_t* mask_b) {
  float maxv = -INFINITY;
  for (int64_t s = 0; s <= t; ++s)
    if (mask_b[s] && p[s] > maxv) maxv = p[s];
  if (maxv == -INFINITY) {
    for (int64_t s = 0; s < T; ++s) p[s] = 0.0f;
    return false;
  }
  double sum = 0;
  for (int64_t s = 0; s < T; ++s) {
    p[s] = (s <= t && mask_b[s]) ? expf(p[s] - maxv) : 0.0f;
    sum += p[s];
  }
  const float inv = (float)(1.0 / sum);
  for (int64_t s = 0; s <= t; ++s) p[s] *= inv;
  return true;
}
}  // namespace

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* mask,
                       int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale, int threads) {
  const int64_t rep = NH / NKV, QW = NH * HS, KW = NKV * HS;
  parallel_ranges((uint64_t)(B * NH), threads, 1, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = (int64_t)bh / NH, h = (int64_t)bh % NH, g = h / rep;
      const float* qb = q + b * T * QW + h * HS;  // (T, HS), row stride QW
      const float* kb = k + b * T * KW + g * HS;  // (T, HS), row stride KW
      const float* vb = v + b * T * KW + g * HS;
      float* P = att + bh * T * T;  // (T, T)
      sgemm(false, true, T, T, HS, scale, qb, QW, kb, KW, 0.0f, P, T, MatmulImpl::Auto, 1);
      for (int64_t t = 0; t < T; ++t) softmax_row(P + t * T, t, T, mask + b * T);
      sgemm(false, false, T, HS, T, 1.0f, P, T, vb, KW, 0.0f, out + b * T * QW + h * HS, QW, MatmulImpl::Auto, 1);
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                        const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                        float scale, int threads) {
  const int64_t rep = NH / NKV, QW = NH * HS, KW = NKV * HS;
  // One (b, kv head) pair per work item: the query heads sharing a KV head all add
  // into its dk/dv, so they must run on the same thread.
  parallel_ranges((uint64_t)(B * NKV), threads, 1, [&](uint64_t lo, uint64_t hi) {
    std::vector<float> dS((size_t)(T * T));
    for (uint64_t bg = lo; bg < hi; ++bg) {
      const int64_t b = (int64_t)bg / NKV, g = (int64_t)bg % NKV;
      const float* kb = k + b * T * KW + g * HS;
      const float* vb = v + b * T * KW + g * HS;
      float* dkb = dk + b * T * KW + g * HS;
      float* dvb = dv + b * T * KW + g * HS;
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        const float* P = att + (b * NH + h) * T * T;
        const float* dob = dout + b * T * QW + h * HS;
        const float* qb = q + b * T * QW + h * HS;
        float* dqb = dq + b * T * QW + h * HS;
        // dP = dO·Vᵀ ; dV += Pᵀ·dO
        sgemm(false, true, T, T, HS, 1.0f, dob, QW, vb, KW, 0.0f, dS.data(), T, MatmulImpl::Auto, 1);
        sgemm(true, false, T, HS, T, 1.0f, P, T, dob, QW, 1.0f, dvb, KW, MatmulImpl::Auto, 1);
        // softmax backward: dS = P ⊙ (dP − Σ_s P·dP) · scale
        for (int64_t t = 0; t < T; ++t) {
          const float* p = P + t * T;
          float* ds = dS.data() + t * T;
          double pdp = 0;
          for (int64_t s = 0; s <= t; ++s) pdp += (double)p[s] * ds[s];
          for (int64_t s = 0; s < T; ++s) ds[s] = p[s] * (ds[s] - (float)pdp) * scale;
        }
        // dQ += dS·K ; dK += dSᵀ·Q
        sgemm(false, false, T, HS, T, 1.0f, dS.data(), T, kb, KW, 1.0f, dqb, QW, MatmulImpl::Auto, 1);
        sgemm(true, false, T, HS, T, 1.0f, dS.data(), T, qb, QW, 1.0f, dkb, KW, MatmulImpl::Auto, 1);
      }
    }
  });
}

}  // namespace zofo::cpu
