// CUDA causal multi-head attention with a padding mask and grouped KV heads (GQA),
// fused (flash-style): no (T, T) matrix is ever stored. Forward beside backward; same
// semantics as native/cpu/attention.h.
//   q, dq, out, dout (B, T, NH, HS); k, v, dk, dv (B, T, NKV, HS); mask (B, T) uint8,
//   1 = real token. Query t sees keys s ≤ t with mask 1; a query with no visible key
//   outputs zeros. Query head h reads KV head h / (NH / NKV). Scores are scale·q·k.
//
// Forward: one warp per query row (b, h, t) walks its visible keys once with a running
// max and sum (online softmax, fp32), keeps its share of the output row in registers,
// and saves only the row's log-sum-exp. The saved state (`saved`, saved_size floats):
//   lse (B, NH, T): log Σ_s exp(score) of the row, +inf for a row with no visible key;
//   maskf (B, T): the mask as floats (so the backward needs no mask argument).
// Backward (recompute from lse, nothing else saved): per query row, D = Σ_s P·dP
// (= dout·out) then dq += Σ_s dS·k; per key row (b, s, g), over the group's query heads
// and t ≥ s: dk += Σ dS·q, dv += Σ P·dout; with P = exp(score − lse), dP = dout·v,
// dS = P·(dP − D)·scale. No atomics: every sum runs in a fixed order (deterministic).
// The output may be written as bf16 (the operand of the next matmul in BF16 compute).
//
// The row bodies below (namespace zofo::cuda::attn) are __host__ __device__ templates on
// a reducer R (sum across the lanes of one row; on the device a warp's xor shuffle,
// which gives every lane the same bits) so the tests run these exact bodies on the CPU
// (test/cuda/test_attention.cu --host-only) with one lane or several std::threads.
// A lane owns the head dimensions d = lane, lane + nlanes, …: kPerLane ≥ ⌈HS / nlanes⌉.
#pragma once

#include <math.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "../common/dtype.h"
#include "../common/philox.h"  // ZOFO_HD
#include "store.cuh"

namespace zofo::cuda {

// Floats of attention_forward's saved state for these sizes.
inline int64_t attention_saved_size(int64_t B, int64_t T, int64_t NH) { return B * NH * T + B * T; }

// out (B, T, NH, HS) = softmax(scale·q·kᵀ, causal, masked)·v, written as fp32 or, with
// out_bf16, as bf16 (uint16 bit patterns, nearest even); saved: attention_saved_size floats.
void attention_forward(void* out, bool out_bf16, float* saved, const float* q, const float* k, const float* v,
                       const uint8_t* mask, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale,
                       cudaStream_t s);

// dq, dk, dv += the gradients of attention_forward's out given dout, from its saved state.
//   scratch: B·NH·T floats of device memory owned by the caller (D; overwritten whole).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* saved, const float* q,
                        const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                        float scale, float* scratch, cudaStream_t s);

namespace attn {

constexpr int kLanes = 32;   // lanes per row on the device (one warp)
constexpr int kMaxHS = 256;  // largest head size the kernels take
constexpr int kDevicePerLane = kMaxHS / kLanes;

struct Shape {
  int64_t B, T, NH, NKV, HS;
  ZOFO_HD int64_t rep() const { return NH / NKV; }          // query heads per KV head
  ZOFO_HD int64_t qw() const { return NH * HS; }            // row stride of q, dq, out, dout
  ZOFO_HD int64_t kw() const { return NKV * HS; }           // row stride of k, v, dk, dv
  ZOFO_HD int64_t rows() const { return B * NH * T; }       // query rows (b, h, t)
  ZOFO_HD int64_t key_rows() const { return B * T * NKV; }  // key rows (b, s, g)
};

// Query row r = (b·NH + h)·T + t (the index of lse).
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

// This lane's share of x·y over the head dimensions, with x already in registers.
template <int kPerLane>
ZOFO_HD float partial_dot(const float (&x)[kPerLane], const float* y, int64_t HS, int lane, int nlanes) {
  float part = 0.0f;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 0; j < kPerLane; ++j) {
    const int64_t d = lane + (int64_t)j * nlanes;
    if (d < HS) part += x[j] * y[d];
  }
  return part;
}

// x[j] = row[lane + j·nlanes] (0 past HS).
template <int kPerLane>
ZOFO_HD void load_lane(float (&x)[kPerLane], const float* row, int64_t HS, int lane, int nlanes) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 0; j < kPerLane; ++j) {
    const int64_t d = lane + (int64_t)j * nlanes;
    x[j] = d < HS ? row[d] : 0.0f;
  }
}

// ---- forward ----

// Query row r: its output row (this lane's dimensions) and, from lane 0, lse[r]; for
// rows with h = 0, lane 0 also writes maskf[b, t]. Keys are visited in ascending order;
// the running max m only grows, and when it does the sum and the output are rescaled.
#if defined(__CUDACC__)  // R may be a host-only reducer (the tests' emulation)
#pragma nv_exec_check_disable
#endif
template <int kPerLane, class OutT, class R>
ZOFO_HD void forward_row(OutT* out, float* saved, const float* q, const float* k, const float* v, const uint8_t* mask,
                         const Shape& sh, float scale, int64_t r, int lane, int nlanes, const R& red) {
  const Row o = row_of(sh, r);
  const int64_t T = sh.T, HS = sh.HS;
  const float* kb = k + o.b * T * sh.kw() + o.g * HS;
  const float* vb = v + o.b * T * sh.kw() + o.g * HS;
  const uint8_t* mb = mask + o.b * T;
  float qv[kPerLane], acc[kPerLane];
  load_lane(qv, q + (o.b * T + o.t) * sh.qw() + o.h * HS, HS, lane, nlanes);
  for (int j = 0; j < kPerLane; ++j) acc[j] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int64_t s = 0; s <= o.t; ++s) {
    if (!mb[s]) continue;  // the same for every lane of the row
    const float sc = scale * red.sum(partial_dot(qv, kb + s * sh.kw(), HS, lane, nlanes));
    if (sc > m) {                       // every lane holds the same sc and m: the branch is uniform
      const float corr = expf(m - sc);  // m = −inf: 0 (nothing to rescale yet)
      l *= corr;
      for (int j = 0; j < kPerLane; ++j) acc[j] *= corr;
      m = sc;
    }
    const float p = expf(sc - m);
    l += p;
    const float* vr = vb + s * sh.kw();
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 0; j < kPerLane; ++j) {
      const int64_t d = lane + (int64_t)j * nlanes;
      if (d < HS) acc[j] += p * vr[d];
    }
  }
  // l ≥ 1 when any key was visible (the max term is exp(0)); none: zeros and lse = +inf.
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  OutT* orow = out + (o.b * T + o.t) * sh.qw() + o.h * HS;
  for (int j = 0; j < kPerLane; ++j) {
    const int64_t d = lane + (int64_t)j * nlanes;
    if (d < HS) store_as(orow + d, acc[j] * inv);
  }
  if (lane == 0) {
    saved[r] = l > 0.0f ? m + logf(l) : INFINITY;
    if (o.h == 0) saved[sh.rows() + o.b * T + o.t] = mb[o.t] ? 1.0f : 0.0f;
  }
}

// ---- backward ----

// P and dP of (query row r, key s) from the saved lse: P = exp(scale·q·k − lse).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <int kPerLane, class R>
ZOFO_HD void prob_and_dprob(float& p, float& dp, const float (&qv)[kPerLane], const float (&dov)[kPerLane],
                            const float* krow, const float* vrow, float lse, float scale, int64_t HS, int lane,
                            int nlanes, const R& red) {
  p = expf(scale * red.sum(partial_dot(qv, krow, HS, lane, nlanes)) - lse);
  dp = red.sum(partial_dot(dov, vrow, HS, lane, nlanes));
}

// Query row r: D[r] = Σ_s P·dP (lane 0 writes it) and dq (this lane's dimensions) +=
// Σ_s dS·k, dS = P·(dP − D)·scale. A row with no visible key: D = 0, dq unchanged.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <int kPerLane, class R>
ZOFO_HD void backward_dq_row(float* dq, float* D, const float* dout, const float* saved, const float* q, const float* k,
                             const float* v, const Shape& sh, float scale, int64_t r, int lane, int nlanes,
                             const R& red) {
  const Row o = row_of(sh, r);
  const int64_t T = sh.T, HS = sh.HS;
  const float lse = saved[r];
  if (lse == INFINITY) {
    if (lane == 0) D[r] = 0.0f;
    return;
  }
  const float* maskf = saved + sh.rows() + o.b * T;
  const float* kb = k + o.b * T * sh.kw() + o.g * HS;
  const float* vb = v + o.b * T * sh.kw() + o.g * HS;
  const int64_t qi = (o.b * T + o.t) * sh.qw() + o.h * HS;
  float qv[kPerLane], dov[kPerLane], acc[kPerLane];
  load_lane(qv, q + qi, HS, lane, nlanes);
  load_lane(dov, dout + qi, HS, lane, nlanes);
  float Dsum = 0.0f;
  for (int64_t s = 0; s <= o.t; ++s) {
    if (maskf[s] == 0.0f) continue;
    float p, dp;
    prob_and_dprob(p, dp, qv, dov, kb + s * sh.kw(), vb + s * sh.kw(), lse, scale, HS, lane, nlanes, red);
    Dsum += p * dp;
  }
  for (int j = 0; j < kPerLane; ++j) acc[j] = 0.0f;
  for (int64_t s = 0; s <= o.t; ++s) {
    if (maskf[s] == 0.0f) continue;
    float p, dp;
    const float* kr = kb + s * sh.kw();
    prob_and_dprob(p, dp, qv, dov, kr, vb + s * sh.kw(), lse, scale, HS, lane, nlanes, red);
    const float ds = p * (dp - Dsum) * scale;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 0; j < kPerLane; ++j) {
      const int64_t d = lane + (int64_t)j * nlanes;
      if (d < HS) acc[j] += ds * kr[d];
    }
  }
  for (int j = 0; j < kPerLane; ++j) {
    const int64_t d = lane + (int64_t)j * nlanes;
    if (d < HS) dq[qi + d] += acc[j];
  }
  if (lane == 0) D[r] = Dsum;
}

// Key row kr = (b·T + s)·NKV + g (indexed as k): over the group's query heads h (in
// order), then t = s … T−1: dk += Σ dS·q_t, dv += Σ P·dout_t. Needs D from backward_dq_row.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <int kPerLane, class R>
ZOFO_HD void backward_dkdv_row(float* dk, float* dv, const float* D, const float* dout, const float* saved,
                               const float* q, const float* k, const float* v, const Shape& sh, float scale, int64_t kr,
                               int lane, int nlanes, const R& red) {
  const int64_t g = kr % sh.NKV, bs = kr / sh.NKV;
  const int64_t s = bs % sh.T, b = bs / sh.T;
  const int64_t T = sh.T, HS = sh.HS, rep = sh.rep();
  if (saved[sh.rows() + b * T + s] == 0.0f) return;  // a padded key: no query sees it
  float kv[kPerLane], vv[kPerLane], ak[kPerLane], av[kPerLane];
  load_lane(kv, k + kr * HS, HS, lane, nlanes);
  load_lane(vv, v + kr * HS, HS, lane, nlanes);
  for (int j = 0; j < kPerLane; ++j) ak[j] = av[j] = 0.0f;
  for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
    for (int64_t t = s; t < T; ++t) {
      const int64_t r = (b * sh.NH + h) * T + t;
      const float lse = saved[r];
      if (lse == INFINITY) continue;
      const int64_t qi = (b * T + t) * sh.qw() + h * HS;
      const float* qr = q + qi;
      const float* dor = dout + qi;
      const float p = expf(scale * red.sum(partial_dot(kv, qr, HS, lane, nlanes)) - lse);
      const float dp = red.sum(partial_dot(vv, dor, HS, lane, nlanes));
      const float ds = p * (dp - D[r]) * scale;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int j = 0; j < kPerLane; ++j) {
        const int64_t d = lane + (int64_t)j * nlanes;
        if (d < HS) {
          ak[j] += ds * qr[d];
          av[j] += p * dor[d];
        }
      }
    }
  }
  for (int j = 0; j < kPerLane; ++j) {
    const int64_t d = lane + (int64_t)j * nlanes;
    if (d < HS) {
      dk[kr * HS + d] += ak[j];
      dv[kr * HS + d] += av[j];
    }
  }
}

}  // namespace attn
}  // namespace zofo::cuda
