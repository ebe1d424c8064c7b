// CPU matmul: a real BLAS when the build found one (OpenBLAS, Accelerate), else the
// portable built-in kernel below. Both are always callable so tests can compare them.
#pragma once

#include <stdint.h>

#include "../common/compute.h"
#include "../common/dtype.h"

namespace zofo::cpu {

enum class MatmulImpl { Auto, Blas, Builtin };

// C (M, N) = alpha · op(A) · op(B) + beta · C, all row-major.
// op(A) is (M, K): A is (M, K) with lda >= K, or (K, M) transposed with lda >= M.
// op(B) is (K, N): B is (K, N) with ldb >= N, or (N, K) transposed with ldb >= K.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, MatmulImpl impl = MatmulImpl::Auto,
           int threads = 0);

// An fp32 value as a tensor core of precision `compute` reads it, rounded to nearest
// even: bf16 keeps 8 significand bits (unit roundoff 2^-8), tf32 11 (2^-11), fp32 all.
// Inf stays inf, NaN stays NaN, a value past the format's largest finite becomes inf.
inline float round_operand_tf32(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return f;  // NaN
  return f32_from_bits((u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u);
}
inline float round_operand(Compute compute, float f) {
  switch (compute) {
    case Compute::BF16:
      return bf16_to_f32(f32_to_bf16(f));
    case Compute::TF32:
      return round_operand_tf32(f);
    case Compute::FP32:
      return f;
  }
  return f;
}

// sgemm with the tensor-core semantics of `compute` (native/common/compute.h): op(A) and
// op(B) are rounded once into scratch (round_operand), then multiplied by the fp32 GEMM
// above. Products of two bf16 or tf32 values are exact in fp32, so this is exactly "low-
// precision operands, fp32 products and sums". C and its accumulation (beta) stay fp32.
void sgemm_compute(Compute compute, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                   MatmulImpl impl = MatmulImpl::Auto, int threads = 0);

bool have_blas();
const char* blas_name();  // "openblas", "accelerate", "cblas" or "none"

}  // namespace zofo::cpu
