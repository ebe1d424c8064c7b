#include "matmul.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "../common/error.h"
#include "parallel.h"

#if defined(ZOFO_HAVE_ACCELERATE)
#include <Accelerate/Accelerate.h>
#elif defined(ZOFO_HAVE_CBLAS)
#include <cblas.h>
#endif

#if defined(ZOFO_BLAS_OPENBLAS)
extern "C" void openblas_set_num_threads(int);
#endif

namespace zofo::cpu {

namespace {
// Once per process: BLAS runs single-threaded inside zofo's own threads.
void blas_single_threaded() {
#if defined(ZOFO_BLAS_OPENBLAS)
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
#endif
}
}  // namespace

bool have_blas() {
#if defined(ZOFO_HAVE_ACCELERATE) || defined(ZOFO_HAVE_CBLAS)
  return true;
#else
  return false;
#endif
}

const char* blas_name() {
#if defined(ZOFO_HAVE_ACCELERATE)
  return "accelerate";
#elif defined(ZOFO_HAVE_CBLAS) && defined(ZOFO_BLAS_OPENBLAS)
  return "openblas";
#elif defined(ZOFO_HAVE_CBLAS)
  return "cblas";
#else
  return "none";
#endif
}

namespace {

// Built-in fallback. op(B) is first packed into a (K, N) row-major panel so the inner
// loop is a contiguous axpy over a row of C that gcc vectorises; rows of C are split
// across threads (each row is computed by one thread: results do not depend on the
// thread count).
void sgemm_builtin(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int threads) {
  std::vector<float> packed;
  const float* Bk = B;  // (K, N) with row stride ldbk
  int64_t ldbk = ldb;
  if (trans_b) {
    packed.resize((size_t)(K * N));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) packed[(size_t)(k * N + n)] = B[n * ldb + k];
    Bk = packed.data();
    ldbk = N;
  }
  const uint64_t work_per_row = (uint64_t)std::max<int64_t>(1, N * K);
  parallel_ranges((uint64_t)M, threads, std::max<uint64_t>(1, (1u << 16) / work_per_row),
                  [&](uint64_t lo, uint64_t hi) {
    for (int64_t i = (int64_t)lo; i < (int64_t)hi; ++i) {
      float* c = C + i * ldc;
      if (beta == 0.0f) std::fill(c, c + N, 0.0f);
      else if (beta != 1.0f)
        for (int64_t j = 0; j < N; ++j) c[j] *= beta;
      for (int64_t k = 0; k < K; ++k) {
        const float a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
        const float* b = Bk + k * ldbk;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
    }
  });
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, MatmulImpl impl, int threads) {
  if (M < 0 || N < 0 || K < 0)
    throw invalid_arg("sgemm: negative size (M " + std::to_string(M) + ", N " + std::to_string(N) + ", K " +
                      std::to_string(K) + ")");
  if (lda < std::max<int64_t>(1, trans_a ? M : K) || ldb < std::max<int64_t>(1, trans_b ? K : N) ||
      ldc < std::max<int64_t>(1, N))
    throw invalid_arg("sgemm: a leading dimension is smaller than its matrix's row length");
  if (M == 0 || N == 0) return;
  if (impl == MatmulImpl::Blas && !have_blas())
    throw Error("ZOFO_NO_BLAS", "sgemm: this build of zofo has no BLAS (it was built without one)");
#if defined(ZOFO_HAVE_ACCELERATE) || defined(ZOFO_HAVE_CBLAS)
  if (impl != MatmulImpl::Builtin) {
    blas_single_threaded();
    // zofo's threads split the product; each calls a single-threaded BLAS. One pool of
    // threads for GEMMs and for zofo's own kernels: OpenBLAS's own threads would spin
    // (sched_yield) against them, which on a 2-core machine stalls both.
    const auto call = [&](int64_t m, int64_t n, const float* a, const float* b, float* c) {
      cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                  (int)n, (int)K, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    };
    const uint64_t work = (uint64_t)M * (uint64_t)N * (uint64_t)K;
    const int t = work < (1u << 21) ? 1 : threads;  // small products: threads cost more than they save
    if (M >= 64 || M >= N) {                        // split the rows of C (and of op(A))
      parallel_ranges((uint64_t)M, t, 16, [&](uint64_t lo, uint64_t hi) {
        call((int64_t)(hi - lo), N, trans_a ? A + lo : A + lo * lda, B, C + lo * ldc);
      });
    } else {  // few rows: split the columns of C (and of op(B))
      parallel_ranges((uint64_t)N, t, 64, [&](uint64_t lo, uint64_t hi) {
        call(M, (int64_t)(hi - lo), A, trans_b ? B + lo * ldb : B + lo, C + lo);
      });
    }
    return;
  }
#endif
  sgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
}

namespace {
// A (rows, cols) block with row stride ld, rounded into a new contiguous (rows, cols).
std::unique_ptr<float[]> rounded_copy(Compute compute, const float* src, int64_t rows, int64_t cols, int64_t ld,
                                      int threads) {
  std::unique_ptr<float[]> dst(new float[(size_t)(rows * cols)]);
  parallel_ranges((uint64_t)rows, threads, std::max<uint64_t>(1, (1u << 15) / (uint64_t)std::max<int64_t>(1, cols)),
                  [&](uint64_t lo, uint64_t hi) {
    for (uint64_t r = lo; r < hi; ++r)
      for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = round_operand(compute, src[r * ld + c]);
  });
  return dst;
}
}  // namespace

void sgemm_compute(Compute compute, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                   MatmulImpl impl, int threads) {
  if (compute == Compute::FP32 || M <= 0 || N <= 0 || K <= 0)
    return sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, impl, threads);
  if (lda < (trans_a ? M : K) || ldb < (trans_b ? K : N))  // sgemm's own message, before reading out of bounds
    return sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, impl, threads);
  // Stored as A is: (M, K), or (K, M) when transposed; likewise B. The copies are packed.
  const int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
  const int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  const auto a = rounded_copy(compute, A, a_rows, a_cols, lda, threads);
  const auto b = rounded_copy(compute, B, b_rows, b_cols, ldb, threads);
  sgemm(trans_a, trans_b, M, N, K, alpha, a.get(), a_cols, b.get(), b_cols, beta, C, ldc, impl, threads);
}

}  // namespace zofo::cpu
