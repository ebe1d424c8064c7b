// CPU perturbation engine. The hot loops generate 64 Philox blocks (256 normals)
// into an L1-resident scratch, then stream the weights through once: each weight is
// read and written exactly once per pass. The pass is bound by Philox + Box–Muller
// arithmetic: Philox runs in SIMD (philox_chunk), Box–Muller is branch-free code that
// gcc vectorises, and the loops are compiled as AVX-512 / AVX2 / baseline clones
// picked at load time. Loops marked "vectorised" are checked by
// scripts/check-vectorized.sh in CI.
#include "perturb.h"

#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>

#include "../common/philox.h"
#include "parallel.h"
#include "philox_chunk.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define ZOFO_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ZOFO_CLONES
#endif

namespace zofo::cpu {

int default_threads() {
  if (const char* env = getenv("ZOFO_NUM_THREADS")) {
    const int n = atoi(env);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? (int)hw : 1;
}

namespace {

constexpr uint64_t kChunk = 4 * kChunkBlocks;  // normals per scratch fill
constexpr uint64_t kMinPerThread = 1 << 16;    // below this, threads cost more than they save

// z[0 .. kChunk) = normals of Philox blocks b0 .. b0+kChunkBlocks-1 of `stream`:
// Philox words as structure-of-arrays, Box–Muller over them in 32-bit lanes (gcc
// vectorises this loop fully), then the lanes interleaved into element order.
__attribute__((always_inline)) inline void gaussian_blocks(PhiloxChunkFn philox, const PhiloxKeys& k, uint64_t stream,
                                                           uint64_t b0, float* __restrict z) {
  alignas(64) uint32_t v[4][kChunkBlocks];
  alignas(64) float n[4][kChunkBlocks];
  philox(k, stream, b0, v);
  for (int j = 0; j < kChunkBlocks; ++j) {  // vectorised
    box_muller_pair(v[0][j], v[1][j], &n[0][j], &n[1][j]);
    box_muller_pair(v[2][j], v[3][j], &n[2][j], &n[3][j]);
  }
  for (int j = 0; j < kChunkBlocks; ++j)  // vectorised
    for (int lane = 0; lane < 4; ++lane) z[4 * j + lane] = n[lane][j];
}

// Walks elements first .. first+count-1 of one tensor in scratch-sized chunks and
// calls body(i, z_i) for each, i counting from 0.
template <class Body>
__attribute__((always_inline)) inline void for_each_normal(const PhiloxKeys& k, uint64_t stream, uint64_t first,
                                                           uint64_t count, Body body) {
  alignas(64) float z[kChunk];
  const PhiloxChunkFn philox = philox_chunk_best();
  uint64_t done = 0;
  while (done < count) {
    const uint64_t e = first + done;
    const uint64_t lane0 = e & 3;
    const uint64_t take = std::min<uint64_t>(count - done, kChunk - lane0);
    gaussian_blocks(philox, k, stream, e >> 2, z);
    body(done, take, z + lane0);
    done += take;
  }
}

struct F32 {
  using T = float;
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};
struct BF16 {
  using T = uint16_t;
  static float load(uint16_t v) { return bf16_to_f32(v); }
  static uint16_t store(float v) { return f32_to_bf16(v); }
};
struct F16 {
  using T = uint16_t;
  static float load(uint16_t v) { return f16_to_f32(v); }
  static uint16_t store(float v) { return f32_to_f16(v); }
};

// x ← d·x + a·z (d = 1 for a plain perturbation). Explicit fmaf: the CUDA kernel
// uses the same expression, so both backends round identically.
template <class S>
__attribute__((always_inline)) inline void axpby_range(typename S::T* x, const PhiloxKeys& k, uint64_t stream,
                                                       uint64_t first, uint64_t count, float a, float d) {
  for_each_normal(k, stream, first, count, [&](uint64_t at, uint64_t n, const float* z) {
    typename S::T* xs = x + at;
    for (uint64_t i = 0; i < n; ++i)  // vectorised
      xs[i] = S::store(fmaf(a, z[i], d * S::load(xs[i])));
  });
}

ZOFO_CLONES void gaussian_range(const PhiloxKeys& k, uint64_t stream, uint64_t first, uint64_t count, float* out) {
  for_each_normal(k, stream, first, count, [&](uint64_t at, uint64_t n, const float* z) {
    for (uint64_t i = 0; i < n; ++i) out[at + i] = z[i];
  });
}

ZOFO_CLONES void axpby_f32(float* x, const PhiloxKeys& k, uint64_t stream, uint64_t first, uint64_t count, float a,
                           float d) {
  axpby_range<F32>(x, k, stream, first, count, a, d);
}
ZOFO_CLONES void axpby_bf16(uint16_t* x, const PhiloxKeys& k, uint64_t stream, uint64_t first, uint64_t count, float a,
                            float d) {
  axpby_range<BF16>(x, k, stream, first, count, a, d);
}
ZOFO_CLONES void axpby_f16(uint16_t* x, const PhiloxKeys& k, uint64_t stream, uint64_t first, uint64_t count, float a,
                           float d) {
  axpby_range<F16>(x, k, stream, first, count, a, d);
}

// dst = load(src) + a·z: the same fmaf as axpby_range with d = 1, into fp32 scratch.
template <class S>
__attribute__((always_inline)) inline void perturbed_copy_range(const typename S::T* src, float* __restrict dst,
                                                                const PhiloxKeys& k, uint64_t stream, uint64_t first,
                                                                uint64_t count, float a) {
  for_each_normal(k, stream, first, count, [&](uint64_t at, uint64_t n, const float* z) {
    const typename S::T* xs = src + at;
    float* ds = dst + at;
    for (uint64_t i = 0; i < n; ++i)  // vectorised
      ds[i] = fmaf(a, z[i], S::load(xs[i]));
  });
}
template <class S>
__attribute__((always_inline)) inline void convert_range(const typename S::T* src, float* __restrict dst, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) dst[i] = S::load(src[i]);
}
ZOFO_CLONES void perturbed_copy_f32(const float* src, float* dst, const PhiloxKeys& k, uint64_t stream, uint64_t first,
                                    uint64_t count, float a) {
  perturbed_copy_range<F32>(src, dst, k, stream, first, count, a);
}
ZOFO_CLONES void perturbed_copy_bf16(const uint16_t* src, float* dst, const PhiloxKeys& k, uint64_t stream,
                                     uint64_t first, uint64_t count, float a) {
  perturbed_copy_range<BF16>(src, dst, k, stream, first, count, a);
}
ZOFO_CLONES void perturbed_copy_f16(const uint16_t* src, float* dst, const PhiloxKeys& k, uint64_t stream,
                                    uint64_t first, uint64_t count, float a) {
  perturbed_copy_range<F16>(src, dst, k, stream, first, count, a);
}
ZOFO_CLONES void convert_bf16(const uint16_t* src, float* dst, uint64_t n) { convert_range<BF16>(src, dst, n); }
ZOFO_CLONES void convert_f16(const uint16_t* src, float* dst, uint64_t n) { convert_range<F16>(src, dst, n); }

template <class S>
__attribute__((always_inline)) inline void axpy_dense_range(typename S::T* x, const float* z, uint64_t n, float a) {
  for (uint64_t i = 0; i < n; ++i) x[i] = S::store(fmaf(a, z[i], S::load(x[i])));
}
ZOFO_CLONES void axpy_dense_f32(float* x, const float* z, uint64_t n, float a) { axpy_dense_range<F32>(x, z, n, a); }
ZOFO_CLONES void axpy_dense_bf16(uint16_t* x, const float* z, uint64_t n, float a) {
  axpy_dense_range<BF16>(x, z, n, a);
}
ZOFO_CLONES void axpy_dense_f16(uint16_t* x, const float* z, uint64_t n, float a) { axpy_dense_range<F16>(x, z, n, a); }

// One threaded pass over the whole table: the concatenated entries are cut into
// equal ranges, one per thread; each range may span several tensors.
void axpby_table(DType dtype, void* data, uint64_t n_elems, const ParamEntry* table, size_t n_entries, uint64_t seed,
                 float a, float eta_lambda, int threads) {
  validate_param_table(table, n_entries, n_elems);
  uint64_t total = 0;
  for (size_t i = 0; i < n_entries; ++i) total += table[i].count;
  const PhiloxKeys keys = philox_keys(seed);
  parallel_ranges(total, threads, kMinPerThread, [&](uint64_t lo, uint64_t hi) {
    uint64_t base = 0;
    for (size_t i = 0; i < n_entries && base < hi; ++i) {
      const ParamEntry& e = table[i];
      const uint64_t s = std::max(lo, base), f = std::min(hi, base + e.count);
      base += e.count;
      if (s >= f) continue;
      const uint64_t within = s - (base - e.count);
      const uint64_t at = e.offset + within;
      const float d = fmaf(-eta_lambda, e.decay, 1.0f);
      switch (dtype) {
        case DType::F32:
          axpby_f32((float*)data + at, keys, e.stream, e.first + within, f - s, a, d);
          break;
        case DType::BF16:
          axpby_bf16((uint16_t*)data + at, keys, e.stream, e.first + within, f - s, a, d);
          break;
        case DType::F16:
          axpby_f16((uint16_t*)data + at, keys, e.stream, e.first + within, f - s, a, d);
          break;
      }
    }
  });
}

}  // namespace

void gaussian(uint64_t seed, uint64_t stream, uint64_t first, uint64_t count, float* out, int threads) {
  if (first > UINT64_MAX - count) throw invalid_arg("gaussian: offset + count overflows 64 bits");
  const PhiloxKeys keys = philox_keys(seed);
  parallel_ranges(count, threads, kMinPerThread,
                  [&](uint64_t lo, uint64_t hi) { gaussian_range(keys, stream, first + lo, hi - lo, out + lo); });
}

void perturb(DType dtype, void* data, uint64_t n_elems, const ParamEntry* table, size_t n_entries, uint64_t seed,
             float a, int threads) {
  axpby_table(dtype, data, n_elems, table, n_entries, seed, a, 0.0f, threads);
}

void restore_update(DType dtype, void* data, uint64_t n_elems, const ParamEntry* table, size_t n_entries, uint64_t seed,
                    float a, float eta_lambda, int threads) {
  axpby_table(dtype, data, n_elems, table, n_entries, seed, a, eta_lambda, threads);
}

void perturbed_copy(DType dtype, const void* src, float* dst, uint64_t count, uint64_t stream, uint64_t first,
                    uint64_t seed, float a, int threads) {
  if (first > UINT64_MAX - count) throw invalid_arg("perturbed_copy: first + count overflows 64 bits");
  const PhiloxKeys keys = philox_keys(seed);
  parallel_ranges(count, threads, kMinPerThread, [&](uint64_t lo, uint64_t hi) {
    const uint64_t n = hi - lo;
    if (a == 0.0f) {  // a plain conversion: no noise to generate
      switch (dtype) {
        case DType::F32:
          memcpy(dst + lo, (const float*)src + lo, n * sizeof(float));
          break;
        case DType::BF16:
          convert_bf16((const uint16_t*)src + lo, dst + lo, n);
          break;
        case DType::F16:
          convert_f16((const uint16_t*)src + lo, dst + lo, n);
          break;
      }
      return;
    }
    switch (dtype) {
      case DType::F32:
        perturbed_copy_f32((const float*)src + lo, dst + lo, keys, stream, first + lo, n, a);
        break;
      case DType::BF16:
        perturbed_copy_bf16((const uint16_t*)src + lo, dst + lo, keys, stream, first + lo, n, a);
        break;
      case DType::F16:
        perturbed_copy_f16((const uint16_t*)src + lo, dst + lo, keys, stream, first + lo, n, a);
        break;
    }
  });
}

void axpy_materialized(DType dtype, void* data, const float* z, uint64_t n, float a, int threads) {
  parallel_ranges(n, threads, kMinPerThread, [&](uint64_t lo, uint64_t hi) {
    switch (dtype) {
      case DType::F32:
        axpy_dense_f32((float*)data + lo, z + lo, hi - lo, a);
        break;
      case DType::BF16:
        axpy_dense_bf16((uint16_t*)data + lo, z + lo, hi - lo, a);
        break;
      case DType::F16:
        axpy_dense_f16((uint16_t*)data + lo, z + lo, hi - lo, a);
        break;
    }
  });
}

const char* simd_level() {
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "avx512 (x86-64-v4)";
  if (__builtin_cpu_supports("x86-64-v3")) return "avx2+fma (x86-64-v3)";
  return "baseline";
#else
  return "compiler default";
#endif
}

}  // namespace zofo::cpu
