// make_gemm for builds without cuBLAS (CI's link-and-load check of the CUDA addon,
// scripts/cuda-host-check.sh): the backend's matmul through the tiled kernel, every mode.
#include "cuda/gemm.cuh"

namespace zofo::cuda {

namespace {
class TiledGemm final : public Gemm {
 public:
  explicit TiledGemm(cudaStream_t s) : s_(s) {}
  const char* name() const override { return "tiled"; }
  void run(Compute mode, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
           const void* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    gemm_tiled(mode, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s_);
  }

 private:
  cudaStream_t s_;
};
}  // namespace

std::unique_ptr<Gemm> make_gemm(cudaStream_t s) { return std::make_unique<TiledGemm>(s); }

}  // namespace zofo::cuda
