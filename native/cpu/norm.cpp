#include "norm.h"

#include <math.h>

#include "parallel.h"

namespace zofo::cpu {

namespace {
constexpr uint64_t kRowsPerThread = 16;

// Column sums for dweight / dbias, one column per thread range and rows in order, so
// the result never depends on the thread count.
template <class Term>
void accumulate_columns(float* dst, int64_t N, int64_t C, int threads, Term term) {
  parallel_ranges((uint64_t)C, threads, 64, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t c = lo; c < hi; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < N; ++n) sum += term(n, (int64_t)c);
      dst[c] += (float)sum;
    }
  });
}
}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps,
                     int threads) {
  parallel_ranges((uint64_t)N, threads, kRowsPerThread, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t n = lo; n < hi; ++n) {
      const float* x = inp + n * C;
      float* y = out + n * C;
      double ss = 0;
      for (int64_t c = 0; c < C; ++c) ss += (double)x[c] * x[c];
      const float r = (float)(1.0 / sqrt(ss / C + eps));
      rstd[n] = r;
      for (int64_t c = 0; c < C; ++c) y[c] = (x[c] * r) * weight[c];
    }
  });
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C, int threads) {
  parallel_ranges((uint64_t)N, threads, kRowsPerThread, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t n = lo; n < hi; ++n) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      const float r = rstd[n];
      double dot = 0;  // Σ g·x̂
      for (int64_t c = 0; c < C; ++c) dot += (double)dy[c] * weight[c] * (x[c] * r);
      const float m = (float)(dot / C);
      float* dx = dinp + n * C;
      for (int64_t c = 0; c < C; ++c) dx[c] += r * (dy[c] * weight[c] - (x[c] * r) * m);
    }
  });
  if (dweight)
    accumulate_columns(dweight, N, C, threads,
                       [&](int64_t n, int64_t c) { return (double)dout[n * C + c] * (inp[n * C + c] * rstd[n]); });
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps, int threads) {
  parallel_ranges((uint64_t)N, threads, kRowsPerThread, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t n = lo; n < hi; ++n) {
      const float* x = inp + n * C;
      float* y = out + n * C;
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += x[c];
      const double mu = s / C;
      double v = 0;
      for (int64_t c = 0; c < C; ++c) v += (x[c] - mu) * (x[c] - mu);
      const float m = (float)mu, r = (float)(1.0 / sqrt(v / C + eps));
      mean[n] = m;
      rstd[n] = r;
      for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * r * weight[c] + (bias ? bias[c] : 0.0f);
    }
  });
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C, int threads) {
  parallel_ranges((uint64_t)N, threads, kRowsPerThread, [&](uint64_t lo, uint64_t hi) {
    for (uint64_t n = lo; n < hi; ++n) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      const float m = mean[n], r = rstd[n];
      double g_sum = 0, gx_sum = 0;
      for (int64_t c = 0; c < C; ++c) {
        const double g = (double)dy[c] * weight[c];
        g_sum += g;
        gx_sum += g * ((x[c] - m) * r);
      }
      const float g_mean = (float)(g_sum / C), gx_mean = (float)(gx_sum / C);
      float* dx = dinp + n * C;
      for (int64_t c = 0; c < C; ++c) dx[c] += r * (dy[c] * weight[c] - g_mean - ((x[c] - m) * r) * gx_mean);
    }
  });
  if (dweight)
    accumulate_columns(dweight, N, C, threads, [&](int64_t n, int64_t c) {
      return (double)dout[n * C + c] * ((inp[n * C + c] - mean[n]) * rstd[n]);
    });
  if (dbias) accumulate_columns(dbias, N, C, threads, [&](int64_t n, int64_t c) { return (double)dout[n * C + c]; });
}

}  // namespace zofo::cpu
