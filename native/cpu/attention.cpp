#include "attention.h"

#include <math.h>

#include <vector>

#include "parallel.h"

namespace zofo::cpu {

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* mask,
                       int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale, int threads) {
  const int64_t rep = NH / NKV;
  // One (b, h) pair per work item: each writes its own rows of out and att.
  parallel_ranges((uint64_t)(B * NH), threads, 1, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = (int64_t)bh / NH, h = (int64_t)bh % NH, g = h / rep;
      for (int64_t t = 0; t < T; ++t) {
        const float* qt = q + ((b * T + t) * NH + h) * HS;
        float* p = att + ((b * NH + h) * T + t) * T;
        float maxv = -INFINITY;
        for (int64_t s = 0; s < T; ++s) {
          if (s > t || !mask[b * T + s]) {
            p[s] = -INFINITY;
            continue;
          }
          const float* ks = k + ((b * T + s) * NKV + g) * HS;
          float dot = 0.0f;
          for (int64_t i = 0; i < HS; ++i) dot += qt[i] * ks[i];
          p[s] = dot * scale;
          if (p[s] > maxv) maxv = p[s];
        }
        float* ot = out + ((b * T + t) * NH + h) * HS;
        for (int64_t i = 0; i < HS; ++i) ot[i] = 0.0f;
        if (maxv == -INFINITY) {  // nothing visible: a padding query
          for (int64_t s = 0; s < T; ++s) p[s] = 0.0f;
          continue;
        }
        double sum = 0;
        for (int64_t s = 0; s < T; ++s) {
          p[s] = p[s] == -INFINITY ? 0.0f : expf(p[s] - maxv);
          sum += p[s];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t s = 0; s < T; ++s) {
          p[s] *= inv;
          if (p[s] == 0.0f) continue;
          const float* vs = v + ((b * T + s) * NKV + g) * HS;
          for (int64_t i = 0; i < HS; ++i) ot[i] += p[s] * vs[i];
        }
      }
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                        const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                        float scale, int threads) {
  const int64_t rep = NH / NKV;
  // One (b, kv head) pair per work item: the query heads sharing a KV head all add
  // into its dk/dv, so they must run on the same thread.
  parallel_ranges((uint64_t)(B * NKV), threads, 1, [&](uint64_t lo, uint64_t hi) {
    std::vector<float> dp(T);
    for (uint64_t bg = lo; bg < hi; ++bg) {
      const int64_t b = (int64_t)bg / NKV, g = (int64_t)bg % NKV;
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        for (int64_t t = 0; t < T; ++t) {
          const float* p = att + ((b * NH + h) * T + t) * T;
          const float* dot_ = dout + ((b * T + t) * NH + h) * HS;
          const float* qt = q + ((b * T + t) * NH + h) * HS;
          float* dqt = dq + ((b * T + t) * NH + h) * HS;
          // dp[s] = dout_t · v_s ; softmax backward: ds = p · (dp − Σ p·dp)
          double pdp = 0;
          for (int64_t s = 0; s <= t; ++s) {
            dp[s] = 0.0f;
            if (p[s] == 0.0f) continue;
            const float* vs = v + ((b * T + s) * NKV + g) * HS;
            float d = 0.0f;
            for (int64_t i = 0; i < HS; ++i) d += dot_[i] * vs[i];
            dp[s] = d;
            pdp += (double)p[s] * d;
            float* dvs = dv + ((b * T + s) * NKV + g) * HS;
            for (int64_t i = 0; i < HS; ++i) dvs[i] += p[s] * dot_[i];
          }
          for (int64_t s = 0; s <= t; ++s) {
            if (p[s] == 0.0f) continue;
            const float ds = p[s] * (dp[s] - (float)pdp) * scale;
            const float* ks = k + ((b * T + s) * NKV + g) * HS;
            float* dks = dk + ((b * T + s) * NKV + g) * HS;
            for (int64_t i = 0; i < HS; ++i) {
              dqt[i] += ds * ks[i];
              dks[i] += ds * qt[i];
            }
          }
        }
      }
    }
  });
}

}  // namespace zofo::cpu
