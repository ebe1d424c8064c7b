// CUDA causal multi-head attention with a padding mask and grouped KV heads (GQA),
// forward beside backward: the device twin of native/cpu/attention.h, same shapes and
// semantics.
//   q, dq, out, dout (B, T, NH, HS); k, v, dk, dv (B, T, NKV, HS); mask (B, T) uint8,
//   1 = real token; att (B, NH, T, T) the softmax probabilities (row t is exactly 0 past
//   t and at masked keys; a query with no visible key has an all-zero row and outputs
//   zeros). Query head h reads KV head h / (NH / NKV). Scores are scale·q·k.
//
// Launchers (namespace zofo::cuda) are asynchronous on stream `s`, take device memory,
// return at once on empty sizes and throw zofo::Error ("ZOFO_INVALID_ARG" naming the
// kernel and argument, "ZOFO_CUDA" for launch failures); none exits. Deterministic:
// no atomics, every sum runs in a fixed order.
//
// The per-row and per-element math below (namespace zofo::cuda::attn) is
// __host__ __device__ so the tests run these exact bodies on the CPU
// (test/cuda/test_attention.cu --host-only). The kernels in attention.cu are thin
// wrappers: one block per score row for the softmax rows (the row body strides its
// columns over the block's threads and reduces through `R`), one thread per output
// element for the products (threads along HS: the att/dS reads are warp broadcasts,
// the q/k/v/dout reads are coalesced).
#pragma once

#include <math.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "../common/philox.h"  // ZOFO_HD

namespace zofo::cuda {

// out (B, T, NH, HS) = softmax(scale·q·kᵀ, causal, masked)·v; att (B, NH, T, T) = the
// probabilities (every entry written).
void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* mask,
                       int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale, cudaStream_t s);

// dq, dk, dv += the gradients of attention_forward's out given dout, from its att.
//   scratch: B·NH·T·T floats of device memory owned by the caller (dS; overwritten whole,
//   must not alias any argument).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                        const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                        float scale, float* scratch, cudaStream_t s);

namespace attn {

struct Shape {
  int64_t B, T, NH, NKV, HS;
  ZOFO_HD int64_t rep() const { return NH / NKV; }  // query heads per KV head
  ZOFO_HD int64_t qw() const { return NH * HS; }     // row stride of q, dq, out, dout
  ZOFO_HD int64_t kw() const { return NKV * HS; }    // row stride of k, v, dk, dv
  ZOFO_HD int64_t rows() const { return B * NH * T; }  // score rows (b, h, t) of att
};

// Score row r = (b·NH + h)·T + t of att.
struct Row {
  int64_t b, h, g, t;
};
ZOFO_HD Row row_of(const Shape& sh, int64_t r) {
  Row o;
  o.t = r % sh.T;
  const int64_t bh = r / sh.T;
  o.h = bh % sh.NH;
  o.b = bh / sh.NH;
  o.g = o.h / sh.rep();
  return o;
}

// Σ_d x[d]·y[d], d ascending.
ZOFO_HD float dot(const float* x, const float* y, int64_t n) {
  float acc = 0.0f;
  for (int64_t d = 0; d < n; ++d) acc += x[d] * y[d];
  return acc;
}

// ---- forward ----

// Scores and the masked causal softmax of row r of att, in place. This lane handles
// columns s = lane, lane + nlanes, …; red.max / red.sum combine the lanes (on the
// device a block reduction, every thread gets the result; on the host with one lane
// the identity). Every lane calls the reducer the same number of times.
#if defined(__CUDACC__)  // R may be a host-only reducer (the tests' emulation)
#pragma nv_exec_check_disable
#endif
template <class R>
ZOFO_HD void softmax_forward_row(float* att, const float* q, const float* k, const uint8_t* mask, const Shape& sh,
                                 float scale, int64_t r, int64_t lane, int64_t nlanes, const R& red) {
  const Row o = row_of(sh, r);
  const int64_t T = sh.T, HS = sh.HS;
  const float* qr = q + (o.b * T + o.t) * sh.qw() + o.h * HS;
  const float* kb = k + o.b * T * sh.kw() + o.g * HS;
  const uint8_t* mb = mask + o.b * T;
  float* p = att + r * T;
  // Visible keys: s ≤ t and real; the others are never computed (and never read below).
  float mx = -INFINITY;
  for (int64_t s = lane; s <= o.t; s += nlanes) {
    if (!mb[s]) continue;
    const float sc = scale * dot(qr, kb + s * sh.kw(), HS);
    p[s] = sc;
    mx = fmaxf(mx, sc);
  }
  mx = red.max(mx);
  if (mx == -INFINITY) {  // no visible key (a padding query): the row stays all zeros
    for (int64_t s = lane; s < T; s += nlanes) p[s] = 0.0f;
    return;
  }
  float sum = 0.0f;
  for (int64_t s = lane; s < T; s += nlanes) {
    const float e = (s <= o.t && mb[s]) ? expf(p[s] - mx) : 0.0f;
    p[s] = e;
    sum += e;
  }
  sum = red.sum(sum);
  const float inv = 1.0f / sum;  // sum ≥ 1: the max term is exp(0)
  for (int64_t s = lane; s <= o.t; s += nlanes) p[s] *= inv;
}

// out element i = ((b·T + t)·NH + h)·HS + d: Σ_{s ≤ t} att[b,h,t,s]·v[b,s,g,d] (att is
// zero past t, so the sum stops there).
ZOFO_HD void attention_out_one(float* out, const float* att, const float* v, const Shape& sh, int64_t i) {
  const int64_t d = i % sh.HS, bth = i / sh.HS;
  const int64_t h = bth % sh.NH, bt = bth / sh.NH;
  const int64_t t = bt % sh.T, b = bt / sh.T, g = h / sh.rep();
  const float* p = att + ((b * sh.NH + h) * sh.T + t) * sh.T;
  const float* vb = v + b * sh.T * sh.kw() + g * sh.HS + d;
  float acc = 0.0f;
  for (int64_t s = 0; s <= t; ++s) acc += p[s] * vb[s * sh.kw()];
  out[i] = acc;
}

// ---- backward ----

// Row r of dS (B, NH, T, T) = P ⊙ (dP − Σ_s P·dP) · scale with dP = dout·vᵀ (the CPU's
// softmax backward), every entry written; dP is only computed where P ≠ 0 (elsewhere
// the product is 0 anyway), so padded keys and padding queries cost nothing. Lanes and
// reducer as in softmax_forward_row.
#if defined(__CUDACC__)  // R may be a host-only reducer (the tests' emulation)
#pragma nv_exec_check_disable
#endif
template <class R>
ZOFO_HD void softmax_backward_row(float* dS, const float* att, const float* dout, const float* v, const Shape& sh,
                                  float scale, int64_t r, int64_t lane, int64_t nlanes, const R& red) {
  const Row o = row_of(sh, r);
  const int64_t T = sh.T, HS = sh.HS;
  const float* dor = dout + (o.b * T + o.t) * sh.qw() + o.h * HS;
  const float* vb = v + o.b * T * sh.kw() + o.g * HS;
  const float* p = att + r * T;
  float* ds = dS + r * T;
  float pdp = 0.0f;
  for (int64_t s = lane; s <= o.t; s += nlanes) {
    const float ps = p[s];
    const float dp = ps != 0.0f ? dot(dor, vb + s * sh.kw(), HS) : 0.0f;
    ds[s] = dp;
    pdp += ps * dp;
  }
  pdp = red.sum(pdp);
  for (int64_t s = lane; s < T; s += nlanes) ds[s] = s <= o.t ? p[s] * (ds[s] - pdp) * scale : 0.0f;
}

// dq element i (indexed as q): += Σ_{s ≤ t} dS[b,h,t,s]·k[b,s,g,d].
ZOFO_HD void attention_dq_one(float* dq, const float* dS, const float* k, const Shape& sh, int64_t i) {
  const int64_t d = i % sh.HS, bth = i / sh.HS;
  const int64_t h = bth % sh.NH, bt = bth / sh.NH;
  const int64_t t = bt % sh.T, b = bt / sh.T, g = h / sh.rep();
  const float* ds = dS + ((b * sh.NH + h) * sh.T + t) * sh.T;
  const float* kb = k + b * sh.T * sh.kw() + g * sh.HS + d;
  float acc = 0.0f;
  for (int64_t s = 0; s <= t; ++s) acc += ds[s] * kb[s * sh.kw()];
  dq[i] += acc;
}

// dk, dv element i = ((b·T + s)·NKV + g)·HS + d (indexed as k): over the group's query
// heads h, then t ≥ s (dS and P are zero above the diagonal):
//   dk += Σ_h Σ_t dS[b,h,t,s]·q[b,t,h,d],  dv += Σ_h Σ_t P[b,h,t,s]·dout[b,t,h,d].
ZOFO_HD void attention_dkdv_one(float* dk, float* dv, const float* dS, const float* att, const float* q,
                                const float* dout, const Shape& sh, int64_t i) {
  const int64_t d = i % sh.HS, bsg = i / sh.HS;
  const int64_t g = bsg % sh.NKV, bs = bsg / sh.NKV;
  const int64_t s = bs % sh.T, b = bs / sh.T;
  const int64_t T = sh.T, rep = sh.rep();
  float ak = 0.0f, av = 0.0f;
  for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
    const int64_t col = (b * sh.NH + h) * T * T + s;  // (b, h, t = 0, s) of att / dS
    const int64_t qi = b * T * sh.qw() + h * sh.HS + d;  // (b, t = 0, h, d) of q / dout
    for (int64_t t = s; t < T; ++t) {
      ak += dS[col + t * T] * q[qi + t * sh.qw()];
      av += att[col + t * T] * dout[qi + t * sh.qw()];
    }
  }
  dk[i] += ak;
  dv[i] += av;
}

}  // namespace attn
}  // namespace zofo::cuda
