// Storage dtypes and their fp32 conversions, shared by host and device code.
// Arithmetic is always fp32; stores round to nearest even. Written with integer
// bit operations (no F16C/CUDA intrinsics) so CPU and CUDA round identically.
#pragma once

#include "philox.h"  // ZOFO_HD, f32_bits, f32_from_bits

namespace zofo {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
  }
  return "?";
}

inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

ZOFO_HD float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

ZOFO_HD uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return (uint16_t)(nan ? ((u >> 16) | 0x40u) : rounded);  // keep NaN a (quiet) NaN
}

// IEEE half <-> float (after F. Giesen's public-domain half_to_float / float_to_half_rtne).
ZOFO_HD float f16_to_f32(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = ((uint32_t)h & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  const bool inf_nan = exp == shifted_exp;
  const bool subnormal = exp == 0;
  const uint32_t normal_bits = inf_nan ? o + ((128u - 16u) << 23) : o;
  // Subnormal: let the FPU normalise (exact), via a magic float subtraction.
  const float sub = f32_from_bits(o + (1u << 23)) - f32_from_bits(113u << 23);
  const uint32_t bits = subnormal ? f32_bits(sub) : normal_bits;
  return f32_from_bits(bits | (((uint32_t)h & 0x8000u) << 16));
}

ZOFO_HD uint16_t f32_to_f16(float x) {
  uint32_t f = f32_bits(x);
  const uint32_t sign = f & 0x80000000u;
  f ^= sign;
  const uint32_t f16max = (127u + 16u) << 23;  // 65536.0f: rounds to inf
  const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  // Overflow / inf / NaN.
  const uint32_t big = f > 0x7f800000u ? 0x7e00u : 0x7c00u;
  // Result is subnormal or zero: one float add does the rounding.
  const uint32_t small = f32_bits(f32_from_bits(f) + f32_from_bits(denorm_magic)) - denorm_magic;
  // Normal: rebias the exponent and round the mantissa to nearest even.
  const uint32_t mant_odd = (f >> 13) & 1u;
  const uint32_t normal = (f - (112u << 23) + 0xfffu + mant_odd) >> 13;
  const uint32_t o = f >= f16max ? big : (f < (113u << 23) ? small : normal);
  return (uint16_t)(o | (sign >> 16));
}

}  // namespace zofo
