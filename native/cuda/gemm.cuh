// Row-major matmul on the device, the Backend::matmul contract in three compute
// precisions (native/common/compute.h): C (M, N) = alpha·op(A)·op(B) + beta·C, C fp32.
//   FP32: fp32 operands, fp32 products and sums.
//   TF32: fp32 operands rounded to TF32 (10-bit mantissa) by the tensor cores, fp32 sums.
//   BF16: bf16 operands (uint16 bit patterns), fp32 products and sums.
// gemm_cublas.cu implements it with cuBLAS (the only file that includes cuBLAS);
// gemm_tiled.cu is a plain tiled kernel over the bodies below, the independent
// reference the GPU tests compare cuBLAS with and the matmul of builds without cuBLAS.
#pragma once

#include <stdint.h>

#include <memory>

#include <cuda_runtime.h>

#include "../common/compute.h"
#include "../common/dtype.h"

namespace zofo::cuda {

class Gemm {
 public:
  virtual ~Gemm() = default;
  virtual const char* name() const = 0;
  // A and B: const float* for FP32/TF32, const uint16_t* (bf16) for BF16.
  virtual void run(Compute mode, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const void* A, int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;
};

// Checks a row-major GEMM's sizes and leading dimensions (throws ZOFO_INVALID_ARG naming them).
void check_gemm_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                     const void* B, int64_t ldb, const float* C, int64_t ldc);

// The matmul of a backend on stream s (cuBLAS; a build without cuBLAS links the tiled kernel instead).
std::unique_ptr<Gemm> make_gemm(cudaStream_t s);

// The same contract as a simple shared-memory tiled kernel (fp32 FMA, no tensor cores).
void gemm_tiled(Compute mode, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc, cudaStream_t s);

// dst (rows, cols) bf16, packed (leading dimension cols) = round-to-nearest-even of src
// (rows, cols) fp32 with leading dimension ld: an fp32 operand converted for a BF16 matmul.
void to_bf16_matrix(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld, cudaStream_t s);

namespace gemm {

// fp32 → TF32 as the tensor cores' operand conversion (cvt.rna.tf32.f32): keep 10
// mantissa bits, round to nearest with ties away from zero; inf and NaN unchanged.
ZOFO_HD float round_tf32(float x) {
  const uint32_t u = f32_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;
  return f32_from_bits((u + 0x1000u) & 0xffffe000u);
}

// op(X)[r, c] of a row-major X with leading dimension ld, as the mode's operand value.
ZOFO_HD float operand(Compute mode, const void* X, int64_t ld, bool trans, int64_t r, int64_t c) {
  const int64_t i = trans ? c * ld + r : r * ld + c;
  if (mode == Compute::BF16) return bf16_to_f32(static_cast<const uint16_t*>(X)[i]);
  const float v = static_cast<const float*>(X)[i];
  return mode == Compute::TF32 ? round_tf32(v) : v;
}

// One step of the k loop: acc + a·b, one rounding (fmaf, as the kernel's inner loop).
ZOFO_HD float mac(float a, float b, float acc) { return fmaf(a, b, acc); }

// C[r, c] from the dot product acc: beta = 0 never reads C (it may hold NaN).
ZOFO_HD void store(float* C, int64_t ldc, int64_t r, int64_t c, float alpha, float acc, float beta) {
  float* p = C + r * ldc + c;
  *p = beta == 0.0f ? alpha * acc : alpha * acc + beta * *p;
}

// The whole of C[r, c], k ascending: what the tiled kernel computes for that element
// (its zero-padded tail adds fmaf(0, 0, acc) = acc). The tests run it on the host.
ZOFO_HD void element(Compute mode, bool ta, bool tb, int64_t K, float alpha, const void* A, int64_t lda, const void* B,
                     int64_t ldb, float beta, float* C, int64_t ldc, int64_t r, int64_t c) {
  float acc = 0.0f;
  for (int64_t k = 0; k < K; ++k) acc = mac(operand(mode, A, lda, ta, r, k), operand(mode, B, ldb, tb, k, c), acc);
  store(C, ldc, r, c, alpha, acc, beta);
}

}  // namespace gemm

}  // namespace zofo::cuda
