// A plain tiled fp32 GEMM (row-major, the Backend::matmul contract): the independent
// reference for the cuBLAS wrapper in the GPU tests. 32×32 output tiles, one thread per
// output element, K walked in tiles of 32 through shared memory.
#include <string>

#include "check.cuh"
#include "gemm.cuh"

namespace zofo::cuda {

namespace {

constexpr int kTile = 32;

// op(X)[r, c] of a row-major X with leading dimension ld.
__device__ __forceinline__ float at(const float* X, int64_t ld, bool trans, int64_t r, int64_t c) {
  return trans ? X[c * ld + r] : X[r * ld + c];
}

__global__ void gemm_tiled_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  __shared__ float As[kTile][kTile + 1], Bs[kTile][kTile + 1];
  const int64_t row = (int64_t)blockIdx.y * kTile + threadIdx.y, col = (int64_t)blockIdx.x * kTile + threadIdx.x;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = row < M && ka < K ? at(A, lda, ta, row, ka) : 0.0f;
    Bs[threadIdx.y][threadIdx.x] = kb < K && col < N ? at(B, ldb, tb, kb, col) : 0.0f;
    __syncthreads();
    for (int k = 0; k < kTile; ++k) acc = fmaf(As[threadIdx.y][k], Bs[k][threadIdx.x], acc);
    __syncthreads();
  }
  if (row < M && col < N) {
    float* c = C + row * ldc + col;
    *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;  // beta 0 never reads C (it may hold NaN)
  }
}

}  // namespace

void check_gemm_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                     const float* B, int64_t ldb, const float* C, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0)
    throw invalid_arg("matmul: negative size (M " + std::to_string(M) + ", N " + std::to_string(N) + ", K " +
                      std::to_string(K) + ")");
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) || ldc < (N > 1 ? N : 1))
    throw invalid_arg("matmul: a leading dimension is smaller than its row (lda " + std::to_string(lda) + ", ldb " +
                      std::to_string(ldb) + ", ldc " + std::to_string(ldc) + ")");
  if (M > 0 && N > 0 && (!C || (K > 0 && (!A || !B)))) throw invalid_arg("matmul: null matrix pointer");
}

void gemm_tiled(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc, cudaStream_t s) {
  check_gemm_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  const dim3 block(kTile, kTile), grid((unsigned)((N + kTile - 1) / kTile), (unsigned)((M + kTile - 1) / kTile));
  if (grid.y > 65535) throw invalid_arg("matmul: M " + std::to_string(M) + " is too large for the tiled kernel");
  gemm_tiled_kernel<<<grid, block, 0, s>>>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  check_launch("gemm_tiled_kernel");
}

}  // namespace zofo::cuda
