// Row-major fp32 matmul on the device, the Backend::matmul contract:
// C (M, N) = alpha·op(A)·op(B) + beta·C. gemm_cublas.cu implements it with cuBLAS (the
// only file that includes cuBLAS); gemm_tiled.cu is a plain tiled kernel, the
// independent reference the GPU tests compare cuBLAS with.
#pragma once

#include <stdint.h>

#include <memory>

#include <cuda_runtime.h>

namespace zofo::cuda {

class Gemm {
 public:
  virtual ~Gemm() = default;
  virtual const char* name() const = 0;
  virtual void run(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;
};

// Checks a row-major GEMM's sizes and leading dimensions (throws ZOFO_INVALID_ARG naming them).
void check_gemm_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                     const float* B, int64_t ldb, const float* C, int64_t ldc);

// The matmul of a backend on stream s: cuBLAS, fp32 in and out. Compute in full fp32
// by default; ZOFO_CUDA_TF32=1 in the environment allows TF32 tensor cores (faster,
// about 1e-3 relative error: no longer comparable bit-for-bit-ish with the CPU).
std::unique_ptr<Gemm> make_gemm(cudaStream_t s);

// The same contract as a simple shared-memory tiled kernel (fp32 FMA, no tensor cores).
void gemm_tiled(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc, cudaStream_t s);

}  // namespace zofo::cuda
