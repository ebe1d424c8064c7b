// CPU matmul: a real BLAS when the build found one (OpenBLAS, Accelerate), else the
// portable built-in kernel below. Both are always callable so tests can compare them.
#pragma once

#include <stdint.h>

namespace zofo::cpu {

enum class MatmulImpl { Auto, Blas, Builtin };

// C (M, N) = alpha · op(A) · op(B) + beta · C, all row-major.
// op(A) is (M, K): A is (M, K) with lda >= K, or (K, M) transposed with lda >= M.
// op(B) is (K, N): B is (K, N) with ldb >= N, or (N, K) transposed with ldb >= K.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           MatmulImpl impl = MatmulImpl::Auto, int threads = 0);

bool have_blas();
const char* blas_name();  // "openblas", "accelerate", "cblas" or "none"

}  // namespace zofo::cpu
