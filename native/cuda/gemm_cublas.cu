// The device matmul through cuBLAS: the only file that includes cuBLAS headers (CI
// compiles every other .cu without them). Row-major C = op(A)·op(B) is computed as the
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so no transposes are materialised. One handle per
// backend (its stream); cublasGemmEx has no descriptors to rebuild, and cuBLAS keeps
// its workspace with the handle, so a call allocates nothing.
//   FP32: fp32 operands, CUBLAS_COMPUTE_32F (no TF32: full fp32 products).
//   TF32: fp32 operands, CUBLAS_COMPUTE_32F_FAST_TF32 (tensor cores, TF32 operands).
//   BF16: bf16 operands (CUDA_R_16BF), CUBLAS_COMPUTE_32F (tensor cores, fp32 sums).
// The output is fp32 in every mode, so beta = 1 accumulation keeps fp32.
#include <cublas_v2.h>

#include <string>

#include "check.cuh"
#include "gemm.cuh"

namespace zofo::cuda {

namespace {

void cublas_check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error("ZOFO_CUDA",
                std::string(what) + ": " + cublasGetStatusName(status) + " (" + cublasGetStatusString(status) + ")");
}

class CublasGemm final : public Gemm {
 public:
  explicit CublasGemm(cudaStream_t s) {
    cublas_check(cublasCreate(&handle_), "cublasCreate");
    cublas_check(cublasSetStream(handle_, s), "cublasSetStream");
  }
  ~CublasGemm() override { cublasDestroy(handle_); }
  const char* name() const override { return "cublas"; }

  void run(Compute mode, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
           const void* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    check_gemm_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    if (M == 0 || N == 0) return;
    const int64_t limit = 0x7fffffff;
    if (M > limit || N > limit || K > limit || lda > limit || ldb > limit || ldc > limit)
      throw invalid_arg("matmul: a size or leading dimension exceeds cuBLAS's 32-bit range");
    cudaDataType_t operand = CUDA_R_32F;
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    switch (mode) {
      case Compute::FP32:
        break;
      case Compute::TF32:
        compute = CUBLAS_COMPUTE_32F_FAST_TF32;
        break;
      case Compute::BF16:
        operand = CUDA_R_16BF;
        break;
      default:
        throw invalid_arg("matmul: unknown compute mode " + std::to_string((int)mode));
    }
    cublas_check(cublasGemmEx(handle_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M,
                              (int)K, &alpha, B, operand, (int)ldb, A, operand, (int)lda, &beta, C, CUDA_R_32F,
                              (int)ldc, compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

 private:
  cublasHandle_t handle_ = nullptr;
};

}  // namespace

std::unique_ptr<Gemm> make_gemm(cudaStream_t s) { return std::make_unique<CublasGemm>(s); }

}  // namespace zofo::cuda
