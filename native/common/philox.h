// The Gaussian generator of docs/algorithm.md §3: Philox4x32-10 + Box–Muller, with its own
// log and sin/cos. This header is the single source of truth for the CPU and CUDA
// backends: every function is branch-free, every multiply-add is an explicit fmaf,
// and nothing calls libm or a CUDA intrinsic whose rounding could differ, so both
// produce bit-identical z. Builds must not contract a*b+c on their own
// (-ffp-contract=off for C++, --fmad=false for nvcc).
#pragma once

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__CUDACC__)
#define ZOFO_HD __host__ __device__ __forceinline__
#else
#define ZOFO_HD inline
#endif

namespace zofo {

// ---- Philox4x32-10 (Salmon et al., SC'11; constants as in Random123) ----

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kPhiloxRounds = 10;

// The ten round keys of one 64-bit seed, computed once per call, not per block.
struct PhiloxKeys {
  uint32_t k0[kPhiloxRounds];
  uint32_t k1[kPhiloxRounds];
};

ZOFO_HD PhiloxKeys philox_keys(uint64_t seed) {
  PhiloxKeys k;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < kPhiloxRounds; ++r) {
    k.k0[r] = k0;
    k.k1[r] = k1;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return k;
}

// hi/lo 32 bits of m·c. W is uint32_t (CUDA, scalar host code) or uint64_t holding
// a 32-bit value: in 64-bit lanes gcc maps this to one vpmuludq with no repacking,
// which vectorises Philox ~2x better than 32-bit lanes.
ZOFO_HD void mulhilo32(uint32_t m, uint32_t c, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = (uint64_t)m * c;
  hi = (uint32_t)(p >> 32);
  lo = (uint32_t)p;
}
ZOFO_HD void mulhilo32(uint32_t m, uint64_t c, uint64_t& hi, uint64_t& lo) {
  const uint64_t p = (uint64_t)m * (c & 0xffffffffull);  // the mask tells gcc: one vpmuludq
  hi = p >> 32;
  lo = p & 0xffffffffull;
}

// One Philox4x32-10 block, in place: (c0, c1, c2, c3) ← philox(counter, key).
template <class W>
ZOFO_HD void philox4x32_10(W& c0, W& c1, W& c2, W& c3, const PhiloxKeys& k) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < kPhiloxRounds; ++r) {
    W hi0, lo0, hi1, lo1;
    mulhilo32(kPhiloxM0, c0, hi0, lo0);
    mulhilo32(kPhiloxM1, c2, hi1, lo1);
    const W n0 = hi1 ^ c1 ^ (W)k.k0[r];
    const W n2 = hi0 ^ c3 ^ (W)k.k1[r];
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
}

// ---- bit casts ----

ZOFO_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}

ZOFO_HD float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

ZOFO_HD float sqrt_rn(float x) {  // IEEE correctly rounded on both sides
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return sqrtf(x);
#endif
}

// ---- elementary functions, fp32, explicit fma ----

// Natural log of a positive normal float (Cephes logf's reduction and polynomial):
// x = m·2^e with m in [sqrt(1/2), sqrt(2)), log x = e·ln2 + log1p(m - 1).
ZOFO_HD float log_f32(float x) {
  const uint32_t bits = f32_bits(x);
  int32_t e = (int32_t)(bits >> 23) - 126;  // x = m·2^e, m in [0.5, 1)
  const float m = f32_from_bits((bits & 0x007fffffu) | 0x3f000000u);
  // Selects pick constants, never the results of float ops: gcc will not if-convert
  // (and so not vectorise) branches holding float arithmetic under -ftrapping-math.
  const bool small = m < 0.707106781f;
  e -= small ? 1 : 0;
  const float f = fmaf(m, small ? 2.0f : 1.0f, -1.0f);  // exact (Sterbenz)
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = fmaf(p, f, -1.1514610310e-1f);
  p = fmaf(p, f, 1.1676998740e-1f);
  p = fmaf(p, f, -1.2420140846e-1f);
  p = fmaf(p, f, 1.4249322787e-1f);
  p = fmaf(p, f, -1.6668057665e-1f);
  p = fmaf(p, f, 2.0000714765e-1f);
  p = fmaf(p, f, -2.4999993993e-1f);
  p = fmaf(p, f, 3.3333331174e-1f);
  const float ef = (float)e;
  float y = (p * f) * z;
  y = fmaf(ef, -2.12194440e-4f, y);  // ln2 = 0.693359375 - 2.12194440e-4
  y = fmaf(z, -0.5f, y);
  return fmaf(ef, 0.693359375f, f + y);
}

// sin(2πt) and cos(2πt) for t = j·2^-24 given by the integer j in [1, 2^24).
// Reduction is exact integer arithmetic: t = k/4 + r with k = round(4t) and
// |r| <= 1/8, so the polynomials only see |2πr| <= π/4.
ZOFO_HD void sincos_2pi_f32(int32_t j, float* s_out, float* c_out) {
  const int32_t k = (j + (1 << 21)) >> 22;            // 0..4
  const float r = (float)(j - (k << 22)) * 0x1p-24f;  // exact
  const float t = r * r;
  // Taylor coefficients of sin(2πr)/r and cos(2πr) in powers of r² (truncation < 3e-9).
  float s = 42.0586939f;
  s = fmaf(s, t, -76.7058598f);
  s = fmaf(s, t, 81.6052493f);
  s = fmaf(s, t, -41.3417022f);
  s = fmaf(s, t, 6.28318531f);
  s = s * r;
  float c = -26.4262568f;
  c = fmaf(c, t, 60.2446414f);
  c = fmaf(c, t, -85.4568172f);
  c = fmaf(c, t, 64.9393940f);
  c = fmaf(c, t, -19.7392088f);
  c = fmaf(c, t, 1.0f);
  // Rotate by k quarter turns.
  const bool swap = (k & 1) != 0;
  const float sq = swap ? c : s;
  const float cq = swap ? s : c;
  *s_out = sq * ((k & 2) != 0 ? -1.0f : 1.0f);
  *c_out = cq * (((k + 1) & 2) != 0 ? -1.0f : 1.0f);
}

// Uniform in (0, 1) from one Philox output word: ((v >> 9) + 0.5)·2^-23, exact in fp32.
ZOFO_HD float uniform_from_word(uint32_t v) { return ((float)(int32_t)(v >> 9) + 0.5f) * 0x1p-23f; }

// Box–Muller on one pair of words (va, vb): r = sqrt(-2 ln ua),
// na = r·cos(2π ub), nb = r·sin(2π ub).
ZOFO_HD void box_muller_pair(uint32_t va, uint32_t vb, float* na, float* nb) {
  const float r = sqrt_rn(-2.0f * log_f32(uniform_from_word(va)));
  float s, c;
  sincos_2pi_f32((int32_t)((vb >> 9) * 2u + 1u), &s, &c);  // ub = (2(vb >> 9) + 1)·2^-24
  *na = r * c;
  *nb = r * s;
}

// The four normals of Philox block `block` (= element index / 4) of stream `stream`;
// lanes 0..3 are n0..n3.
ZOFO_HD void gaussian_block(const PhiloxKeys& k, uint64_t stream, uint64_t block, float* n) {
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32);
  uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
  philox4x32_10<uint32_t>(c0, c1, c2, c3, k);
  box_muller_pair(c0, c1, &n[0], &n[1]);
  box_muller_pair(c2, c3, &n[2], &n[3]);
}

// Stream id of a tensor: FNV-1a-64 of its checkpoint name's UTF-8 bytes.
ZOFO_HD uint64_t fnv1a64(const char* bytes, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; ++i) {
    h ^= (uint8_t)bytes[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace zofo
