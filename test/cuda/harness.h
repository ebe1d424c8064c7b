// A tiny test harness for the CUDA test programs (test/cuda/*.cu), llm.c dev/cuda
// style: a CPU reference, a comparison with a stated tolerance, one PASS/FAIL line per
// check and a closing "N passed, N failed" line. Header-only; include it once per program.
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "common/error.h"
#include "cuda/check.cuh"

namespace zofo::test {

inline int g_passed = 0, g_failed = 0;

inline void report(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok) {
    ++g_passed;
    printf("PASS %s\n", name.c_str());
  } else {
    ++g_failed;
    printf("FAIL %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  }
  fflush(stdout);
}

// Runs one test body; an exception is a failure that names its code and message.
inline void run_test(const std::string& name, const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    report(false, name, "threw " + e.code + ": " + e.what());
  } catch (const std::exception& e) { report(false, name, std::string("threw: ") + e.what()); }
}

// Closing line and exit status.
inline int summary() {
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}

// Fresh random inputs: a 64-bit LCG seeded per program run from the clock, so every run
// draws new inputs; the seed is printed so a failure can be reproduced (ZOFO_TEST_SEED).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  uint32_t next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(s >> 33);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * (float)((next() & 0xffffff) / 16777216.0); }
  float normal() {
    const double u1 = (next() + 1.0) / 4294967297.0, u2 = next() / 4294967296.0;
    return (float)(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  std::vector<float> normals(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = scale * normal();
    return v;
  }
};

inline uint64_t test_seed() {
  static uint64_t seed = [] {
    const char* env = getenv("ZOFO_TEST_SEED");
    const uint64_t s = env ? strtoull(env, nullptr, 0) : (uint64_t)time(nullptr);
    printf("test seed %llu (ZOFO_TEST_SEED=%llu reproduces this run)\n", (unsigned long long)s, (unsigned long long)s);
    return s;
  }();
  return seed;
}

// |got − want| ≤ atol + rtol·|want| for every element; "" when all pass, otherwise the
// worst element and how many failed.
template <class W>
std::string compare_close(const std::vector<W>& want, const float* got, size_t n, double atol, double rtol) {
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < n; ++i) {
    const double w = (double)want[i], g = (double)got[i];
    const double tol = atol + rtol * std::fabs(w);
    const double err = std::fabs(g - w);
    if (!(err <= tol)) {  // NaN fails
      ++bad;
      const double excess = std::isnan(err) ? 1e300 : err - tol;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
    }
  }
  if (!bad) return "";
  char buf[256];
  snprintf(buf, sizeof buf, "%zu of %zu outside atol %.1e + rtol %.1e; worst [%zu] got %.9g want %.9g", bad, n, atol,
           rtol, worst, (double)got[worst], (double)want[worst]);
  return buf;
}

template <class W>
void check_close(const std::string& name, const std::vector<W>& want, const std::vector<float>& got, double atol,
                 double rtol) {
  if (want.size() != got.size()) {
    report(false, name, "size " + std::to_string(got.size()) + " != " + std::to_string(want.size()));
    return;
  }
  const std::string why = compare_close(want, got.data(), got.size(), atol, rtol);
  report(why.empty(), name, why);
}

// Device buffers for the device-mode tests.
template <class T>
struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) {
    zofo::cuda::cuda_check(cudaMalloc((void**)&p, (count ? count : 1) * sizeof(T)), "cudaMalloc");
    zofo::cuda::cuda_check(cudaMemset(p, 0, (count ? count : 1) * sizeof(T)), "cudaMemset");
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  void upload(const std::vector<T>& host) {
    zofo::cuda::cuda_check(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> host(n);
    zofo::cuda::cuda_check(cudaDeviceSynchronize(), "synchronize");
    zofo::cuda::cuda_check(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return host;
  }
};

// True when a CUDA device is usable (device-mode tests run only then).
inline bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

}  // namespace zofo::test
