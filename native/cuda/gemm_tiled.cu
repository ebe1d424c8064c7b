// A plain tiled GEMM (row-major, the Backend::matmul contract) in every compute mode:
// the independent reference for the cuBLAS wrapper in the GPU tests, and the matmul of
// builds without cuBLAS. 32×32 output tiles, one thread per output element, K walked in
// tiles of 32 through shared memory; operands converted by gemm::operand (bf16 → fp32,
// fp32 → TF32), products summed by fmaf in k order, exactly as gemm::element.
#include <string>

#include "check.cuh"
#include "gemm.cuh"
#include "lanes.cuh"

namespace zofo::cuda {

namespace {

constexpr int kTile = 32;

template <Compute kMode>
__global__ void gemm_tiled_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                                  int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  __shared__ float As[kTile][kTile + 1], Bs[kTile][kTile + 1];
  const int64_t row = (int64_t)blockIdx.y * kTile + threadIdx.y, col = (int64_t)blockIdx.x * kTile + threadIdx.x;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    const int64_t ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    As[threadIdx.y][threadIdx.x] = row < M && ka < K ? gemm::operand(kMode, A, lda, ta, row, ka) : 0.0f;
    Bs[threadIdx.y][threadIdx.x] = kb < K && col < N ? gemm::operand(kMode, B, ldb, tb, kb, col) : 0.0f;
    __syncthreads();
    for (int k = 0; k < kTile; ++k) acc = gemm::mac(As[threadIdx.y][k], Bs[k][threadIdx.x], acc);
    __syncthreads();
  }
  if (row < M && col < N) gemm::store(C, ldc, row, col, alpha, acc, beta);
}

// One thread per element of a (rows, cols) matrix, grid-stride.
__global__ void to_bf16_matrix_kernel(uint16_t* dst, const float* __restrict__ src, int64_t rows, int64_t cols,
                                      int64_t ld) {
  const int64_t n = rows * cols;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = f32_to_bf16(src[(i / cols) * ld + i % cols]);
}

}  // namespace

void check_gemm_args(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                     const void* B, int64_t ldb, const float* C, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0)
    throw invalid_arg("matmul: negative size (M " + std::to_string(M) + ", N " + std::to_string(N) + ", K " +
                      std::to_string(K) + ")");
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) || ldc < (N > 1 ? N : 1))
    throw invalid_arg("matmul: a leading dimension is smaller than its row (lda " + std::to_string(lda) + ", ldb " +
                      std::to_string(ldb) + ", ldc " + std::to_string(ldc) + ")");
  if (M > 0 && N > 0 && (!C || (K > 0 && (!A || !B)))) throw invalid_arg("matmul: null matrix pointer");
}

void gemm_tiled(Compute mode, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc, cudaStream_t s) {
  check_gemm_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  const dim3 block(kTile, kTile), grid((unsigned)((N + kTile - 1) / kTile), (unsigned)((M + kTile - 1) / kTile));
  if (grid.y > 65535) throw invalid_arg("matmul: M " + std::to_string(M) + " is too large for the tiled kernel");
  switch (mode) {
    case Compute::FP32:
      gemm_tiled_kernel<Compute::FP32>
          <<<grid, block, 0, s>>>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      break;
    case Compute::TF32:
      gemm_tiled_kernel<Compute::TF32>
          <<<grid, block, 0, s>>>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      break;
    case Compute::BF16:
      gemm_tiled_kernel<Compute::BF16>
          <<<grid, block, 0, s>>>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      break;
    default:
      throw invalid_arg("matmul: unknown compute mode " + std::to_string((int)mode));
  }
  check_launch("gemm_tiled_kernel");
}

void to_bf16_matrix(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld, cudaStream_t s) {
  if (rows < 0 || cols < 0 || ld < cols) throw invalid_arg("to_bf16_matrix: bad shape or leading dimension");
  if (rows == 0 || cols == 0) return;
  if (!dst || !src) throw invalid_arg("to_bf16_matrix: null pointer");
  const int64_t n = rows * cols, threads = 256;
  const int64_t cap = (int64_t)launch::sm_count() * 8;
  const int64_t want = (n + threads - 1) / threads;
  to_bf16_matrix_kernel<<<(unsigned)(want < cap ? want : cap), (unsigned)threads, 0, s>>>(dst, src, rows, cols, ld);
  check_launch("to_bf16_matrix_kernel");
}

}  // namespace zofo::cuda
