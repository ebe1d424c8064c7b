// RMSNorm and LayerNorm on the device, forward beside backward: the twins of
// native/cpu/norm.h, with the same expressions (row statistics summed in double, the
// rest in fp32) so results differ from the CPU only by the order of the double sums.
// Shapes: inp, out, dinp, dout (N, C) row-major; weight, bias, dweight, dbias (C);
// mean, rstd (N). Null dweight / dbias: frozen parameters, gradients not computed.
// Row bodies run one block per row (lanes_for(C, kNormMaxLanes) threads); dweight /
// dbias are deterministic column sums (elementwise.cuh: no atomics, fixed lane shape).
#pragma once

#include "elementwise.cuh"
#include "store.cuh"

namespace zofo::cuda {

// out = inp · rstd · weight, rstd = 1/√(mean(inp²) + eps); rstd (N) saved.
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps,
                     cudaStream_t s);
// The same with out (N, C) in bf16 (nearest even): the operand of the next matmul.
void rmsnorm_forward(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C, float eps,
                     cudaStream_t s);
// dinp += rstd · (g − x̂ · mean(g · x̂)), g = dout · weight, x̂ = inp · rstd; dweight += Σ_n dout · x̂
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C, cudaStream_t s);
// out = (inp − mean) · rstd · weight + bias (biased variance); mean, rstd (N) saved; bias nullable.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps, cudaStream_t s);
// The same with out (N, C) in bf16 (nearest even): the operand of the next matmul.
void layernorm_forward(uint16_t* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps, cudaStream_t s);
// dinp += rstd · (g − mean(g) − x̂ · mean(g · x̂)); dweight += Σ dout · x̂; dbias += Σ dout
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C,
                        cudaStream_t s);

namespace body {

constexpr int kNormMaxLanes = 256;

// 1/√(sum/C + eps) in double, rounded once to fp32 (native/cpu/norm.cpp).
ZOFO_HD float norm_rstd(double sum, int64_t C, float eps) { return (float)(1.0 / sqrt(sum / C + eps)); }

// OutT: float, or uint16_t for a bf16 output (the next matmul's operand).
template <class Lanes, class OutT>
ZOFO_HD void rmsnorm_forward_row(const Lanes& lanes, OutT* out, float* rstd, const float* inp, const float* weight,
                                 int64_t C, float eps, int64_t n) {
  const float* x = inp + n * C;
  OutT* y = out + n * C;
  const double sum_sq = lanes.sum([&](int lane, int nlanes) {
    double part = 0;
    for (int64_t c = lane; c < C; c += nlanes) part += (double)x[c] * x[c];
    return part;
  });
  const float r = norm_rstd(sum_sq, C, eps);
  lanes.each([&](int lane, int nlanes) {
    if (lane == 0) rstd[n] = r;
    for (int64_t c = lane; c < C; c += nlanes) store_as(y + c, (x[c] * r) * weight[c]);
  });
}

// dinp only; dweight is a column sum (RmsnormDweightTerm).
template <class Lanes>
ZOFO_HD void rmsnorm_backward_row(const Lanes& lanes, float* dinp, const float* dout, const float* inp,
                                  const float* weight, const float* rstd, int64_t C, int64_t n) {
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  float* dx = dinp + n * C;
  const float r = rstd[n];
  const double dot = lanes.sum([&](int lane, int nlanes) {  // Σ g·x̂
    double part = 0;
    for (int64_t c = lane; c < C; c += nlanes) part += (double)dy[c] * weight[c] * (x[c] * r);
    return part;
  });
  const float m = (float)(dot / C);
  lanes.each([&](int lane, int nlanes) {
    for (int64_t c = lane; c < C; c += nlanes) dx[c] += r * (dy[c] * weight[c] - (x[c] * r) * m);
  });
}

struct RmsnormDweightTerm {  // dout[n, c] · x̂[n, c]
  const float* dout;
  const float* inp;
  const float* rstd;
  int64_t C;
  ZOFO_HD double operator()(int64_t n, int64_t c) const { return (double)dout[n * C + c] * (inp[n * C + c] * rstd[n]); }
};

template <class Lanes, class OutT>
ZOFO_HD void layernorm_forward_row(const Lanes& lanes, OutT* out, float* mean, float* rstd, const float* inp,
                                   const float* weight, const float* bias, int64_t C, float eps, int64_t n) {
  const float* x = inp + n * C;
  OutT* y = out + n * C;
  const double sum = lanes.sum([&](int lane, int nlanes) {
    double part = 0;
    for (int64_t c = lane; c < C; c += nlanes) part += x[c];
    return part;
  });
  const double mu = sum / C;
  const double sum_dev = lanes.sum([&](int lane, int nlanes) {  // two-pass variance: no cancellation
    double part = 0;
    for (int64_t c = lane; c < C; c += nlanes) part += (x[c] - mu) * (x[c] - mu);
    return part;
  });
  const float m = (float)mu, r = norm_rstd(sum_dev, C, eps);
  lanes.each([&](int lane, int nlanes) {
    if (lane == 0) {
      mean[n] = m;
      rstd[n] = r;
    }
    for (int64_t c = lane; c < C; c += nlanes) store_as(y + c, (x[c] - m) * r * weight[c] + (bias ? bias[c] : 0.0f));
  });
}

// dinp only; dweight / dbias are column sums (LayernormDweightTerm, ColumnOf).
template <class Lanes>
ZOFO_HD void layernorm_backward_row(const Lanes& lanes, float* dinp, const float* dout, const float* inp,
                                    const float* weight, const float* mean, const float* rstd, int64_t C, int64_t n) {
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  float* dx = dinp + n * C;
  const float m = mean[n], r = rstd[n];
  const double g_sum = lanes.sum([&](int lane, int nlanes) {
    double part = 0;
    for (int64_t c = lane; c < C; c += nlanes) part += (double)dy[c] * weight[c];
    return part;
  });
  const double gx_sum = lanes.sum([&](int lane, int nlanes) {
    double part = 0;
    for (int64_t c = lane; c < C; c += nlanes) part += ((double)dy[c] * weight[c]) * ((x[c] - m) * r);
    return part;
  });
  const float g_mean = (float)(g_sum / C), gx_mean = (float)(gx_sum / C);
  lanes.each([&](int lane, int nlanes) {
    for (int64_t c = lane; c < C; c += nlanes) dx[c] += r * (dy[c] * weight[c] - g_mean - ((x[c] - m) * r) * gx_mean);
  });
}

struct LayernormDweightTerm {  // dout[n, c] · x̂[n, c]
  const float* dout;
  const float* inp;
  const float* mean;
  const float* rstd;
  int64_t C;
  ZOFO_HD double operator()(int64_t n, int64_t c) const {
    return (double)dout[n * C + c] * ((inp[n * C + c] - mean[n]) * rstd[n]);
  }
};

}  // namespace body

}  // namespace zofo::cuda
