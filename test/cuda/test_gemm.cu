// The matmul in every compute precision (native/cuda/gemm.cuh) against a float64
// reference whose operands are rounded independently (bf16: nearest even to 8
// significant bits; TF32: nearest, ties away from zero, to 11 significant bits).
//
//   test_gemm              host emulation of the bodies, then device tests when a GPU is usable
//   test_gemm --host-only  only the host emulation (no GPU needed)
//   --no-bench is accepted and ignored (ctest passes it)
//
// Host: gemm::element (the tiled kernel's per-element computation, k ascending, fmaf) for
// every element, all transposes, padded leading dimensions, beta 0 (C starts NaN) and
// beta ≠ 0; round_tf32 on ties and specials. Device: the tiled kernel and the backend's
// matmul (cuBLAS where linked) in each mode, and the fp32 → bf16 operand conversion.
// Tolerance per element: (K + 2)·2⁻²³·(|alpha|·Σ_k |a_k·b_k| + |beta·c|), twice the
// standard bound γ_{K+2} of an fp32 dot product (the reference is exact to ~1e-16);
// cuBLAS in TF32 may truncate operands instead of rounding them: 2⁻⁹·|alpha|·Σ|a·b| more.
// Inputs are fresh each run (Rng(test_seed())); the last line is "N passed, N failed".
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmath>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "cuda/gemm.cuh"
#include "harness.h"

using namespace zofo;
using namespace zofo::test;
using cuda::gemm::round_tf32;

namespace {

#define CK(call) zofo::cuda::cuda_check((call), #call)

// ---- independent operand rounding (float64 arithmetic, not the bit tricks under test) ----

double round_significant(double x, int bits, bool ties_away) {
  if (x == 0 || !std::isfinite(x)) return x;
  int e;
  const double m = std::frexp(x, &e);  // x = m·2^e, 0.5 ≤ |m| < 1
  const double scaled = std::ldexp(m, bits);
  return std::ldexp(ties_away ? std::round(scaled) : std::nearbyint(scaled), e - bits);
}
double ref_operand(Compute mode, float x) {
  if (mode == Compute::BF16) return round_significant(x, 8, false);
  if (mode == Compute::TF32) return round_significant(x, 11, true);
  return x;
}
const char* mode_name(Compute m) { return compute_name(m); }

struct Case {
  bool ta, tb;
  int64_t M, N, K, pad;  // pad: extra columns in every leading dimension
  float alpha, beta;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      c.push_back({ta, tb, 7, 5, 33, 0, 1.0f, 0.0f});
      c.push_back({ta, tb, 19, 40, 70, 3, 0.5f, 1.0f});
      c.push_back({ta, tb, 1, 1, 1, 0, -2.0f, 0.25f});
      c.push_back({ta, tb, 33, 17, 129, 1, 1.0f, 1.0f});
    }
  c.push_back({false, true, 64, 96, 0, 0, 1.0f, 0.5f});  // K = 0: C = beta·C
  return c;
}

struct Data {
  std::vector<float> A, B, C0;  // fp32 values (in BF16 mode: exactly representable in bf16)
  std::vector<uint16_t> A16, B16;
  int64_t lda, ldb, ldc;
};

// A (rows_a, lda), B (rows_b, ldb), C (M, ldc); in BF16 mode the operands are bf16 values.
Data make_data(const Case& c, Compute mode, Rng& rng) {
  Data d;
  const int64_t rows_a = c.ta ? c.K : c.M, cols_a = c.ta ? c.M : c.K;
  const int64_t rows_b = c.tb ? c.N : c.K, cols_b = c.tb ? c.K : c.N;
  d.lda = cols_a + c.pad;
  d.ldb = cols_b + c.pad;
  d.ldc = c.N + c.pad;
  d.A = rng.normals((size_t)(rows_a * d.lda));
  d.B = rng.normals((size_t)(rows_b * d.ldb));
  d.C0 = rng.normals((size_t)(c.M * d.ldc));
  if (c.beta == 0.0f)
    for (float& x : d.C0) x = NAN;  // beta = 0 must never read C
  d.A16.resize(d.A.size());
  d.B16.resize(d.B.size());
  for (size_t i = 0; i < d.A.size(); ++i) d.A16[i] = f32_to_bf16(d.A[i]);
  for (size_t i = 0; i < d.B.size(); ++i) d.B16[i] = f32_to_bf16(d.B[i]);
  (void)mode;
  return d;
}

float at(const std::vector<float>& X, int64_t ld, bool trans, int64_t r, int64_t c) {
  return trans ? X[c * ld + r] : X[r * ld + c];
}

// The float64 result with rounded operands, and the tolerance scale Σ|a·b| per element.
void reference(const Case& c, Compute mode, const Data& d, std::vector<double>& want, std::vector<double>& mag,
               bool rounded = true) {
  want.assign(d.C0.size(), 0.0);
  mag.assign(d.C0.size(), 0.0);
  // op(A) (M, K) and op(B)ᵀ (N, K) as rounded doubles, rows contiguous.
  std::vector<double> a((size_t)(c.M * c.K)), bt((size_t)(c.N * c.K));
  for (int64_t r = 0; r < c.M; ++r)
    for (int64_t k = 0; k < c.K; ++k) {
      const float x = at(d.A, d.lda, c.ta, r, k);
      a[(size_t)(r * c.K + k)] = rounded ? ref_operand(mode, x) : x;
    }
  for (int64_t col = 0; col < c.N; ++col)
    for (int64_t k = 0; k < c.K; ++k) {
      const float x = at(d.B, d.ldb, c.tb, k, col);
      bt[(size_t)(col * c.K + k)] = rounded ? ref_operand(mode, x) : x;
    }
  for (int64_t r = 0; r < c.M; ++r)
    for (int64_t col = 0; col < c.N; ++col) {
      double acc = 0, m = 0;
      const double* ar = a.data() + r * c.K;
      const double* br = bt.data() + col * c.K;
      for (int64_t k = 0; k < c.K; ++k) {
        acc += ar[k] * br[k];
        m += std::fabs(ar[k] * br[k]);
      }
      const size_t i = (size_t)(r * d.ldc + col);
      const double cin = c.beta == 0.0f ? 0.0 : d.C0[i];
      want[i] = (double)c.alpha * acc + (double)c.beta * cin;
      mag[i] = std::fabs((double)c.alpha) * m + std::fabs((double)c.beta * cin);
    }
}

// "" when every element of C's (M, N) block is within (K + 2)·2⁻²³·mag + extra·mag
// and every padding column is untouched.
std::string compare(const Case& c, const Data& d, const std::vector<float>& got, const std::vector<double>& want,
                    const std::vector<double>& mag, double extra) {
  size_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (int64_t r = 0; r < c.M; ++r)
    for (int64_t col = 0; col < d.ldc; ++col) {
      const size_t i = (size_t)(r * d.ldc + col);
      if (col >= c.N) {  // padding: the bits must be the input's
        if (memcmp(&got[i], &d.C0[i], 4) != 0) ++bad;
        continue;
      }
      const double tol = (double)(c.K + 2) * std::ldexp(1.0, -23) * mag[i] + extra * mag[i] + 1e-30;
      const double err = std::fabs((double)got[i] - want[i]);
      if (!(err <= tol)) {
        ++bad;
        const double ratio = std::isnan(err) ? 1e300 : err / tol;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
      }
    }
  if (!bad) return "";
  char buf[200];
  snprintf(buf, sizeof buf, "%zu elements off; worst [%zu] got %.9g want %.9g (%.3g × tolerance)", bad, worst,
           (double)got[worst], want[worst], worst_ratio);
  return buf;
}

std::string case_name(const Case& c, Compute mode) {
  char buf[160];
  snprintf(buf, sizeof buf, "%s %s%s M=%lld N=%lld K=%lld pad=%lld alpha=%g beta=%g", mode_name(mode), c.ta ? "T" : "N",
           c.tb ? "T" : "N", (long long)c.M, (long long)c.N, (long long)c.K, (long long)c.pad, c.alpha, c.beta);
  return buf;
}

// ---- host ----

void host_round_tf32() {
  const auto bits = [](float x) { return f32_bits(x); };
  const float one = 1.0f, tie = 1.0f + std::ldexp(1.0f, -11), above = tie + std::ldexp(1.0f, -23),
              below = 1.0f + std::ldexp(1.0f, -12), up = 1.0f + std::ldexp(1.0f, -10);
  bool ok = bits(round_tf32(tie)) == bits(up) && bits(round_tf32(-tie)) == bits(-up) &&
            bits(round_tf32(above)) == bits(up) && bits(round_tf32(below)) == bits(one) &&
            bits(round_tf32(one)) == bits(one) && std::isinf(round_tf32(INFINITY)) && round_tf32(-INFINITY) < 0 &&
            std::isnan(round_tf32(NAN)) && bits(round_tf32(-0.0f)) == bits(-0.0f);
  report(ok, "host: round_tf32 ties away from zero, keeps 10 mantissa bits, inf/NaN/−0 unchanged");
  Rng rng(test_seed() + 7);
  size_t bad = 0;
  for (int i = 0; i < 100000; ++i) {
    const float x = std::ldexp(rng.uniform(-1.0f, 1.0f), (int)(rng.next() % 60) - 30);
    if ((double)round_tf32(x) != ref_operand(Compute::TF32, x)) ++bad;
  }
  report(bad == 0, "host: round_tf32 = float64 rounding to 11 significant bits (100000 values)",
         bad ? std::to_string(bad) + " differ" : "");
}

void host_gemm_tests(Rng& rng) {
  for (Compute mode : {Compute::FP32, Compute::TF32, Compute::BF16})
    for (const Case& c : cases()) {
      const std::string name = "host: " + case_name(c, mode);
      const Data d = make_data(c, mode, rng);
      std::vector<double> want, mag;
      reference(c, mode, d, want, mag);
      std::vector<float> got = d.C0;
      const void* A = mode == Compute::BF16 ? (const void*)d.A16.data() : (const void*)d.A.data();
      const void* B = mode == Compute::BF16 ? (const void*)d.B16.data() : (const void*)d.B.data();
      for (int64_t r = 0; r < c.M; ++r)
        for (int64_t col = 0; col < c.N; ++col)
          cuda::gemm::element(mode, c.ta, c.tb, c.K, c.alpha, A, d.lda, B, d.ldb, c.beta, got.data(), d.ldc, r, col);
      const std::string why = compare(c, d, got, want, mag, 0.0);
      report(why.empty(), name, why);
      // The mode is really applied: against the unrounded fp32 operands, TF32 and BF16
      // results move by far more than fp32 summation error (operand rounding 2⁻¹¹, 2⁻⁸).
      if (mode != Compute::FP32 && c.K >= 33) {
        std::vector<double> exact, mag0;
        reference(c, mode, d, exact, mag0, false);
        double moved = 0;
        for (size_t i = 0; i < exact.size(); ++i)
          if (!std::isnan(exact[i]) && mag0[i] > 0) moved = std::max(moved, std::fabs(got[i] - exact[i]) / mag0[i]);
        const double floor = (c.K + 2) * std::ldexp(1.0, -23);
        report(moved > 4 * floor, name + ": operands rounded",
               "moved only " + std::to_string(moved) + " of Σ|a·b| from the unrounded product");
      }
    }
  // Argument checks (before any launch: testable without a GPU).
  const auto expect_invalid = [](const std::string& name, const std::function<void()>& f) {
    std::string why = "nothing thrown";
    try {
      f();
    } catch (const Error& e) {
      why = e.code == "ZOFO_INVALID_ARG" && std::string(e.what()).find("matmul") != std::string::npos
                ? ""
                : e.code + ": " + e.what();
    }
    report(why.empty(), name, why);
  };
  float f[4] = {0, 0, 0, 0};
  expect_invalid("host: matmul rejects lda < K",
                 [&] { cuda::gemm_tiled(Compute::FP32, false, false, 2, 2, 3, 1.0f, f, 2, f, 2, 0.0f, f, 2, 0); });
  expect_invalid("host: matmul rejects a negative size",
                 [&] { cuda::gemm_tiled(Compute::BF16, false, false, -1, 2, 3, 1.0f, f, 3, f, 2, 0.0f, f, 2, 0); });
  expect_invalid("host: matmul rejects a null operand", [&] {
    cuda::gemm_tiled(Compute::TF32, false, false, 2, 2, 2, 1.0f, nullptr, 2, f, 2, 0.0f, f, 2, 0);
  });
  expect_invalid("host: matmul rejects an unknown compute mode",
                 [&] { cuda::gemm_tiled((Compute)9, false, false, 2, 2, 2, 1.0f, f, 2, f, 2, 0.0f, f, 2, 0); });
}

// ---- device ----

void device_gemm_tests(Rng& rng, cudaStream_t st) {
  auto backend_gemm = cuda::make_gemm(st);
  for (Compute mode : {Compute::FP32, Compute::TF32, Compute::BF16}) {
    std::vector<Case> cs = cases();
    cs.push_back({false, true, 256, 512, 1024, 0, 1.0f, 0.0f});  // a model-sized product
    cs.push_back({true, false, 128, 384, 4096, 8, 1.0f, 1.0f});  // a weight-gradient shape (long K)
    for (const Case& c : cs) {
      const std::string name = case_name(c, mode);
      run_test("device: " + name, [&] {
        const Data d = make_data(c, mode, rng);
        std::vector<double> want, mag;
        reference(c, mode, d, want, mag);
        DeviceArray<float> A(d.A), B(d.B);
        DeviceArray<uint16_t> A16(d.A16), B16(d.B16);
        const void* a = mode == Compute::BF16 ? (const void*)A16.p : (const void*)A.p;
        const void* b = mode == Compute::BF16 ? (const void*)B16.p : (const void*)B.p;
        {
          DeviceArray<float> C(d.C0);
          cuda::gemm_tiled(mode, c.ta, c.tb, c.M, c.N, c.K, c.alpha, a, d.lda, b, d.ldb, c.beta, C.p, d.ldc, st);
          const std::string why = compare(c, d, C.download(), want, mag, 0.0);
          report(why.empty(), "device: tiled " + name, why);
        }
        {
          DeviceArray<float> C(d.C0);
          backend_gemm->run(mode, c.ta, c.tb, c.M, c.N, c.K, c.alpha, a, d.lda, b, d.ldb, c.beta, C.p, d.ldc);
          const double extra = mode == Compute::TF32 ? std::ldexp(1.0, -9) : 0.0;
          const std::string why = compare(c, d, C.download(), want, mag, extra);
          report(why.empty(), std::string("device: ") + backend_gemm->name() + " " + name, why);
        }
      });
    }
  }
  run_test("device: to_bf16_matrix", [&] {
    const int64_t rows = 37, cols = 1000, ld = 1003;
    std::vector<float> x = rng.normals((size_t)(rows * ld), 10.0f);
    x[5] = NAN;
    x[6] = -0.0f;
    x[7] = INFINITY;
    DeviceArray<float> src(x);
    DeviceArray<uint16_t> dst((size_t)(rows * cols));
    cuda::to_bf16_matrix(dst.p, src.p, rows, cols, ld, st);
    const std::vector<uint16_t> got = dst.download();
    size_t bad = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) bad += got[r * cols + c] != f32_to_bf16(x[r * ld + c]);
    report(bad == 0, "device: to_bf16_matrix = f32_to_bf16 of every element, packed",
           bad ? std::to_string(bad) + " differ" : "");
  });
}

}  // namespace

int main(int argc, char** argv) {
  bool host_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--host-only") host_only = true;
    else if (a == "--no-bench") continue;
    else {
      fprintf(stderr, "usage: %s [--host-only]\n", argv[0]);
      return 2;
    }
  }
  Rng rng(test_seed());
  printf("-- host emulation of the GEMM bodies\n");
  host_round_tf32();
  host_gemm_tests(rng);
  if (!host_only) {
    if (!have_device()) {
      report(false, "device: a CUDA device is available (use --host-only without one)");
    } else {
      printf("-- device tests\n");
      cudaStream_t st;
      CK(cudaStreamCreate(&st));
      device_gemm_tests(rng, st);
      CK(cudaStreamDestroy(st));
    }
  }
  return summary();
}
