// The device matmul through cuBLAS: the only file that includes cuBLAS headers (CI
// compiles every other .cu without them). Row-major C = op(A)·op(B) is computed as the
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, so no transposes are materialised.
#include <cublas_v2.h>

#include <stdlib.h>
#include <string.h>

#include <string>

#include "check.cuh"
#include "gemm.cuh"

namespace zofo::cuda {

namespace {

void cublas_check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error("ZOFO_CUDA", std::string(what) + ": " + cublasGetStatusName(status) + " (" +
                                 cublasGetStatusString(status) + ")");
}

class CublasGemm final : public Gemm {
 public:
  explicit CublasGemm(cudaStream_t s) {
    cublas_check(cublasCreate(&handle_), "cublasCreate");
    cublas_check(cublasSetStream(handle_, s), "cublasSetStream");
    const char* tf32 = getenv("ZOFO_CUDA_TF32");
    tf32_ = tf32 && strcmp(tf32, "1") == 0;
  }
  ~CublasGemm() override { cublasDestroy(handle_); }
  const char* name() const override { return tf32_ ? "cublas-tf32" : "cublas-fp32"; }

  void run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    check_gemm_args(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    if (M == 0 || N == 0) return;
    const int64_t limit = 0x7fffffff;
    if (M > limit || N > limit || K > limit || lda > limit || ldb > limit || ldc > limit)
      throw invalid_arg("matmul: a size or leading dimension exceeds cuBLAS's 32-bit range");
    cublas_check(cublasGemmEx(handle_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M,
                              (int)K, &alpha, B, CUDA_R_32F, (int)ldb, A, CUDA_R_32F, (int)lda, &beta, C, CUDA_R_32F,
                              (int)ldc, tf32_ ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

 private:
  cublasHandle_t handle_ = nullptr;
  bool tf32_ = false;
};

}  // namespace

std::unique_ptr<Gemm> make_gemm(cudaStream_t s) { return std::make_unique<CublasGemm>(s); }

}  // namespace zofo::cuda
