// CUDA perturbation engine: validation against the CPU backend, then a benchmark
// (llm.c dev/cuda style: CPU reference, validate, benchmark, in one file).
//
//   zofo_cuda_test              host emulation + device tests, then the benchmark
//   zofo_cuda_test --no-bench   tests only
//   zofo_cuda_test --bench      benchmark only
//   zofo_cuda_test --host-only  only the host emulation of the kernel bodies (no GPU needed)
//
// Every comparison is bit-exact: the CUDA kernels must reproduce zofo::cpu::gaussian /
// perturb / restore_update to the last bit. Exit status is non-zero on any failure;
// the last line is "N passed, N failed".
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/param_table.h"
#include "common/philox.h"
#include "cpu/perturb.h"
#include "cuda/check.cuh"
#include "cuda/perturb.cuh"
#include "cuda/perturb_groups.cuh"
#include "harness.h"

using namespace zofo;

// ---------------------------------------------------------------------------------
// The shared harness (test/cuda/harness.h)

using zofo::test::report;
using zofo::test::run_test;

// Throws from test helpers: CUDA failures in the test itself.
#define CK(call) zofo::cuda::cuda_check((call), #call)

static float value_of(DType t, const void* p, uint64_t i) {
  switch (t) {
    case DType::F32:
      return ((const float*)p)[i];
    case DType::BF16:
      return bf16_to_f32(((const uint16_t*)p)[i]);
    case DType::F16:
      return f16_to_f32(((const uint16_t*)p)[i]);
  }
  return 0;
}

static uint32_t bits_of(DType t, const void* p, uint64_t i) {
  return t == DType::F32 ? ((const uint32_t*)p)[i] : ((const uint16_t*)p)[i];
}

// Bitwise comparison of n elements; the detail lists the first mismatches, by how much.
// Indices are printed relative to `base` (the data's start inside a guarded buffer, so
// guard elements show up as negative indices or indices >= the data's length).
static std::string compare_bits(DType t, const void* want, const void* got, uint64_t n, uint64_t base = 0) {
  uint64_t bad = 0;
  std::string detail;
  double worst = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t w = bits_of(t, want, i), g = bits_of(t, got, i);
    if (w == g) continue;
    const double dw = value_of(t, want, i), dg = value_of(t, got, i);
    worst = std::max(worst, std::fabs(dw - dg));
    if (++bad <= 5) {
      char line[200];
      snprintf(line, sizeof line, "\n    [%lld] want %.9g (0x%08x) got %.9g (0x%08x), |diff| %.3g, bits differ by %lld",
               (long long)i - (long long)base, dw, w, dg, g, std::fabs(dw - dg), (long long)g - (long long)w);
      detail += line;
    }
  }
  if (bad == 0) return "";
  char head[160];
  snprintf(head, sizeof head, "%llu of %llu elements differ (%s), max |diff| %.3g:", (unsigned long long)bad,
           (unsigned long long)n, dtype_name(t), worst);
  return head + detail;
}

static uint64_t g_lcg = 0x9e3779b97f4a7c15ull;
static uint32_t rnd() {
  g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(g_lcg >> 33);
}

// n weights of dtype t with magnitudes spread over many binades (and fp16
// subnormals), so every rounding case of the stores is exercised.
static std::vector<uint8_t> random_weights(DType t, uint64_t n) {
  std::vector<uint8_t> buf(n * dtype_size(t));
  for (uint64_t i = 0; i < n; ++i) {
    const float u = ((float)(rnd() >> 8) + 0.5f) * 0x1p-24f - 0.5f;  // (-0.5, 0.5)
    const int binade = (int)(rnd() % 24) - 20;                       // 2^-20 .. 2^3
    const float x = std::ldexp(u, binade);
    if (t == DType::F32) ((float*)buf.data())[i] = x;
    if (t == DType::BF16) ((uint16_t*)buf.data())[i] = f32_to_bf16(x);
    if (t == DType::F16) ((uint16_t*)buf.data())[i] = f32_to_f16(x);
  }
  return buf;
}

// Host memory aligned to 64 bytes, so tests can place buffers at chosen misalignments.
struct HostBuf {
  std::unique_ptr<uint8_t, decltype(&free)> p{nullptr, free};
  explicit HostBuf(size_t bytes) : p((uint8_t*)aligned_alloc(64, (bytes + 127) / 64 * 64), free) {}
  uint8_t* get() { return p.get(); }
};

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t bytes) { CK(cudaMalloc(&p, bytes > 0 ? bytes : 1)); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  uint8_t* get() const { return (uint8_t*)p; }
};

// ---------------------------------------------------------------------------------
// Test data: a parameter table with every awkward case

// Offsets/firsts chosen so that (offset - first) % 4 takes every value (groups
// spanning two Philox blocks), with holes, an empty entry, decay 0/1/0.5, first
// indices past 2^32 and up to the 64-bit limit. `large` appends a multi-million
// element entry so the device grid-stride loop runs several sweeps.
static std::vector<ParamEntry> test_table(bool large, uint64_t* n_elems) {
  const auto s = [](const char* name) { return fnv1a64(name, strlen(name)); };
  std::vector<ParamEntry> t = {
      {0, 1, s("a"), 0, 1.0f},
      {1, 4093, s("model.embed_tokens.weight"), 7, 1.0f},                   // odd offset, odd first
      {4094, 0, s("empty"), 5, 1.0f},                                       // empty entry
      {4094, 10, s("model.norm.weight"), 2, 0.0f},                          // decay-exempt
      {4110, 65536, s("model.layers.0.self_attn.q_proj.weight"), 0, 1.0f},  // after a 6-element hole
      {69646, 100001, s("model.layers.0.mlp.up_proj.weight"), (1ull << 32) + 3, 0.5f},
      {169647, 3, s("tail_of_u64"), UINT64_MAX - 3, 1.0f},  // last blocks of the counter
      {169650, 130000, s("model.layers.1.self_attn.k_proj.weight"), 12, 1.0f},
      {299652, 4, s("one_group"), 4, 1.0f},  // exactly one aligned group
      {299660, 340, s("model.layers.1.input_layernorm.weight"), 100, 0.0f},
  };
  *n_elems = 300003;  // 3-element hole at the end
  if (large) {
    t.push_back({300004, 2900001, s("model.layers.2.mlp.down_proj.weight"), 1, 1.0f});
    *n_elems = 3200010;
  }
  return t;
}

static uint64_t total_of(const std::vector<ParamEntry>& t) {
  uint64_t n = 0;
  for (const auto& e : t) n += e.count;
  return n;
}

// One step of the ZO loop as the engine runs it: +εz, −2εz, then restore+update.
struct Op {
  const char* name;
  float a;
  float eta_lambda;  // 0: perturb
};
static const Op kOps[] = {
    {"perturb(+eps)", 1e-3f, 0.0f},
    {"perturb(-2eps)", -2e-3f, 0.0f},
    {"restore_update", 1e-3f - 0.37f * 0.05f, 0.01f},  // a = ε - η·g, η·λ = 0.01
    {"perturb(large a)", 0.37f, 0.0f},
};

static void cpu_op(DType t, void* x, uint64_t n, const std::vector<ParamEntry>& table, uint64_t seed, const Op& op) {
  if (op.eta_lambda == 0.0f) cpu::perturb(t, x, n, table.data(), table.size(), seed, op.a, 0);
  else cpu::restore_update(t, x, n, table.data(), table.size(), seed, op.a, op.eta_lambda, 0);
}

static const DType kDTypes[] = {DType::F32, DType::BF16, DType::F16};
static const uint64_t kSeeds[] = {0, 0x0123456789abcdefull, UINT64_MAX};

struct GaussCase {
  uint64_t seed, stream, first, count;
};
static std::vector<GaussCase> gaussian_cases(bool large) {
  const char* q = "model.layers.3.self_attn.q_proj.weight";
  const uint64_t sq = fnv1a64(q, strlen(q));
  std::vector<GaussCase> c = {
      {0, 0, 0, 1},
      {0, 0, 0, 4},
      {1, sq, 1, 3},
      {1, sq, 2, 5},
      {7, sq, 3, 7},
      {kSeeds[1], sq, 5, 1000},
      {kSeeds[1], UINT64_MAX, (1ull << 32) - 3, 65537},  // crosses the c0 → c1 carry of the block counter
      {kSeeds[2], sq, (1ull << 32) + 1, 4099},
      {kSeeds[2], 12345, (1ull << 40) + 7, 10001},
      {42, sq, UINT64_MAX - 70000, 65537},
  };
  if (large) c.push_back({kSeeds[1], sq, 9, 5000003});
  return c;
}

// Guard elements: kGuard on each side of every buffer under test, which no kernel may touch.
static const uint64_t kGuard = 8;

static std::vector<float> guard_fill(uint64_t n) {
  return std::vector<float>(n, f32_from_bits(0x7fc0dead));  // a NaN no generator produces
}

// The CPU reference for a gaussian case, written at `shift` inside a guarded buffer of
// count + 2·kGuard floats.
static std::vector<float> gaussian_with_guards(const GaussCase& c, uint64_t shift) {
  std::vector<float> want = guard_fill(c.count + 2 * kGuard);
  cpu::gaussian(c.seed, c.stream, c.first, c.count, want.data() + shift, 0);
  return want;
}

// ---------------------------------------------------------------------------------
// Host emulation: the kernels' group bodies (perturb_groups.cuh) run on the CPU,
// grid-stride order included, against the CPU backend.

static const int kEmuThreads = 7;  // odd "grid": consecutive groups of one thread hop entries

static void host_tests() {
  printf("-- host emulation of the kernel bodies\n");
  // KAT on the host too: the header itself.
  run_test("host: philox4x32_10 KAT", [] {
    const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    std::string bad;
    for (const auto& v : kat) {
      const PhiloxKeys k = philox_keys((uint64_t)v[4] | ((uint64_t)v[5] << 32));
      uint32_t c[4] = {v[0], v[1], v[2], v[3]};
      philox4x32_10<uint32_t>(c[0], c[1], c[2], c[3], k);
      for (int j = 0; j < 4; ++j)
        if (c[j] != v[6 + j]) bad += " word " + std::to_string(j) + " of vector " + std::to_string(&v - kat);
    }
    report(bad.empty(), "host: philox4x32_10 KAT", bad);
  });

  for (const GaussCase& c : gaussian_cases(false)) {
    for (uint64_t shift = 0; shift < 4; ++shift) {
      const std::string name = "host: gaussian seed=" + std::to_string(c.seed) + " first=" + std::to_string(c.first) +
                               " count=" + std::to_string(c.count) + " shift=" + std::to_string(shift);
      run_test(name, [&] {
        // Guard elements around the output must stay untouched.
        const std::vector<float> want = gaussian_with_guards(c, shift);
        HostBuf buf(want.size() * 4);
        memcpy(buf.get(), guard_fill(want.size()).data(), want.size() * 4);
        float* out = (float*)buf.get() + shift;
        const uint64_t h = cuda::groups::head_of(out, 4);
        const PhiloxKeys k = philox_keys(c.seed);
        for (int t = 0; t < kEmuThreads; ++t)
          for (uint64_t g = t; g < cuda::groups::group_count(c.count, h); g += kEmuThreads)
            cuda::groups::gaussian_group(out, c.count, h, k, c.stream, c.first, g);
        const std::string d = compare_bits(DType::F32, want.data(), buf.get(), want.size(), shift);
        report(d.empty(), name, d);
      });
    }
  }

  uint64_t n = 0;
  const std::vector<ParamEntry> table = test_table(false, &n);
  for (DType t : kDTypes) {
    for (uint64_t shift = 0; shift < 4; ++shift) {
      const std::string name = std::string("host: axpby_table ") + dtype_name(t) + " shift=" + std::to_string(shift);
      run_test(name, [&] {
        // want/buf: (n + 2·kGuard,) weights; the table addresses n of them from `shift`;
        // the rest are guards that must come out unchanged.
        const size_t es = dtype_size(t);
        const uint64_t n_all = n + 2 * kGuard;
        std::vector<uint8_t> want_all = random_weights(t, n_all);
        HostBuf buf(n_all * es);
        memcpy(buf.get(), want_all.data(), n_all * es);
        uint8_t* want = want_all.data() + shift * es;
        uint8_t* got = buf.get() + shift * es;
        const uint64_t h = cuda::groups::head_of(got, es);
        const uint64_t seed = kSeeds[shift % 3];
        const PhiloxKeys k = philox_keys(seed);
        std::string d;
        for (const Op& op : kOps) {
          cpu_op(t, want, n, table, seed, op);
          for (int th = 0; th < kEmuThreads; ++th) {
            int64_t hint = -1;
            for (uint64_t g = th; g < cuda::groups::group_count(n, h); g += kEmuThreads) {
              switch (t) {
                case DType::F32:
                  cuda::groups::axpby_group<cuda::groups::F32>((float*)got, n, h, table.data(), table.size(), k, op.a,
                                                               op.eta_lambda, g, hint);
                  break;
                case DType::BF16:
                  cuda::groups::axpby_group<cuda::groups::BF16>((uint16_t*)got, n, h, table.data(), table.size(), k,
                                                                op.a, op.eta_lambda, g, hint);
                  break;
                case DType::F16:
                  cuda::groups::axpby_group<cuda::groups::F16>((uint16_t*)got, n, h, table.data(), table.size(), k,
                                                               op.a, op.eta_lambda, g, hint);
                  break;
              }
            }
          }
          d = compare_bits(t, want_all.data(), buf.get(), n_all, shift);
          if (!d.empty()) {
            d = std::string("after ") + op.name + ": " + d;
            break;
          }
        }
        report(d.empty(), name, d);
      });
    }
  }
}

// ---------------------------------------------------------------------------------
// Device tests

// in: (n, 6) counter c0..c3, key k0, k1; out: (n, 4) Philox words.
__global__ void philox_kat_kernel(const uint32_t* in, uint32_t* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint32_t* v = in + 6 * i;
  const PhiloxKeys k = philox_keys((uint64_t)v[4] | ((uint64_t)v[5] << 32));
  uint32_t c0 = v[0], c1 = v[1], c2 = v[2], c3 = v[3];
  philox4x32_10<uint32_t>(c0, c1, c2, c3, k);
  out[4 * i + 0] = c0;
  out[4 * i + 1] = c1;
  out[4 * i + 2] = c2;
  out[4 * i + 3] = c3;
}

static void device_tests() {
  printf("-- device tests\n");
  run_test("device: philox4x32_10 KAT", [] {
    // Random123 kat_vectors: philox4x32 10 rounds.
    const uint32_t in[3][6] = {{0, 0, 0, 0, 0, 0},
                               {~0u, ~0u, ~0u, ~0u, ~0u, ~0u},
                               {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0}};
    const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                 {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                 {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
    DevBuf din(sizeof in), dout(sizeof want);
    CK(cudaMemcpy(din.p, in, sizeof in, cudaMemcpyHostToDevice));
    philox_kat_kernel<<<1, 32>>>((const uint32_t*)din.p, (uint32_t*)dout.p, 3);
    CK(cudaGetLastError());
    uint32_t got[3][4];
    CK(cudaMemcpy(got, dout.p, sizeof got, cudaMemcpyDeviceToHost));
    std::string bad;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j)
        if (got[i][j] != want[i][j]) {
          char line[120];
          snprintf(line, sizeof line, "\n    vector %d word %d: want %08x got %08x", i, j, want[i][j], got[i][j]);
          bad += line;
        }
    report(bad.empty(), "device: philox4x32_10 KAT", bad);
  });

  cudaStream_t stream;
  CK(cudaStreamCreate(&stream));

  int shift_i = 0;
  for (const GaussCase& c : gaussian_cases(true)) {
    const uint64_t shift = (uint64_t)(shift_i++ % 4);  // output pointer misaligned by 0..3 floats
    const std::string name = "device: gaussian seed=" + std::to_string(c.seed) + " stream=" + std::to_string(c.stream) +
                             " first=" + std::to_string(c.first) + " count=" + std::to_string(c.count) +
                             " shift=" + std::to_string(shift);
    run_test(name, [&] {
      const std::vector<float> want = gaussian_with_guards(c, shift);  // guards around the output
      std::vector<float> got = guard_fill(want.size());
      DevBuf d(want.size() * 4);
      CK(cudaMemcpy(d.p, got.data(), got.size() * 4, cudaMemcpyHostToDevice));
      cuda::gaussian(c.seed, c.stream, c.first, c.count, (float*)d.get() + shift, stream);
      CK(cudaStreamSynchronize(stream));
      CK(cudaMemcpy(got.data(), d.p, got.size() * 4, cudaMemcpyDeviceToHost));
      const std::string diff = compare_bits(DType::F32, want.data(), got.data(), got.size(), shift);
      report(diff.empty(), name, diff);
    });
  }

  uint64_t n = 0;
  const std::vector<ParamEntry> table = test_table(true, &n);
  for (DType t : kDTypes) {
    for (uint64_t shift : {0ull, 1ull, 3ull}) {
      const std::string name = std::string("device: axpby_table ") + dtype_name(t) + " shift=" + std::to_string(shift) +
                               " (" + std::to_string(table.size()) + " entries, " + std::to_string(n) + " elements)";
      run_test(name, [&] {
        // (n + 2·kGuard,) weights; the table addresses n of them from `shift`.
        const size_t es = dtype_size(t);
        const uint64_t seed = kSeeds[shift % 3];
        const uint64_t n_all = n + 2 * kGuard;
        std::vector<uint8_t> want = random_weights(t, n_all), got(n_all * es);
        DevBuf d(n_all * es);
        CK(cudaMemcpy(d.p, want.data(), n_all * es, cudaMemcpyHostToDevice));
        uint8_t* x = d.get() + shift * es;
        const cuda::DeviceParamTable dt(table.data(), table.size(), n);
        std::string diff;
        for (const Op& op : kOps) {
          cpu_op(t, want.data() + shift * es, n, table, seed, op);
          if (op.eta_lambda == 0.0f) cuda::perturb(t, x, dt, seed, op.a, stream);
          else cuda::restore_update(t, x, dt, seed, op.a, op.eta_lambda, stream);
          CK(cudaStreamSynchronize(stream));
          CK(cudaMemcpy(got.data(), d.p, n_all * es, cudaMemcpyDeviceToHost));
          diff = compare_bits(t, want.data(), got.data(), n_all, shift);
          if (!diff.empty()) {
            diff = std::string("after ") + op.name + ": " + diff;
            break;
          }
        }
        report(diff.empty(), name, diff);
      });
    }
  }

  // The raw launcher on a caller-managed device table (what an addon holding its own
  // table would call), with a non-default eta_lambda and decay 0.5.
  run_test("device: axpby_table raw launcher", [&] {
    const DType t = DType::BF16;
    std::vector<uint8_t> want = random_weights(t, n), got(n * 2);
    validate_param_table(table.data(), table.size(), n);
    DevBuf dx(n * 2), dtab(table.size() * sizeof(ParamEntry));
    CK(cudaMemcpy(dx.p, want.data(), n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dtab.p, table.data(), table.size() * sizeof(ParamEntry), cudaMemcpyHostToDevice));
    cpu::restore_update(t, want.data(), n, table.data(), table.size(), 99, -0.25f, 0.125f, 0);
    cuda::axpby_table(t, dx.p, n, (const ParamEntry*)dtab.p, table.size(), total_of(table), 99, -0.25f, 0.125f, stream);
    CK(cudaStreamSynchronize(stream));
    CK(cudaMemcpy(got.data(), dx.p, n * 2, cudaMemcpyDeviceToHost));
    const std::string diff = compare_bits(t, want.data(), got.data(), n);
    report(diff.empty(), "device: axpby_table raw launcher", diff);
  });

  for (DType t : kDTypes) {
    const std::string name = std::string("device: materialize_then_axpy ") + dtype_name(t) + " == perturb";
    run_test(name, [&] {
      const size_t es = dtype_size(t);
      const uint64_t count = 100003, first = 5;
      const char* tn = "model.layers.7.mlp.gate_proj.weight";
      const ParamEntry one[1] = {{0, count, fnv1a64(tn, strlen(tn)), first, 1.0f}};
      std::vector<uint8_t> want = random_weights(t, count), got(count * es);
      DevBuf dx(count * es), dz(count * 4);
      CK(cudaMemcpy(dx.p, want.data(), count * es, cudaMemcpyHostToDevice));
      cpu::perturb(t, want.data(), count, one, 1, 1234, 0.37f, 0);
      cuda::materialize_then_axpy(t, dx.p, count, one[0].stream, first, 1234, 0.37f, (float*)dz.p, stream);
      CK(cudaStreamSynchronize(stream));
      CK(cudaMemcpy(got.data(), dx.p, count * es, cudaMemcpyDeviceToHost));
      const std::string diff = compare_bits(t, want.data(), got.data(), count);
      report(diff.empty(), name, diff);
    });
  }

  // Bad arguments must throw zofo::Error with a code, and leave CUDA usable.
  const auto expect_throw = [&](const std::string& name, const char* code, const std::function<void()>& f) {
    run_test(name, [&] {
      std::string got = "nothing thrown";
      try {
        f();
      } catch (const Error& e) {
        got = e.code == code ? "" : "threw " + e.code + " (" + e.what() + "), expected " + code;
      }
      const cudaError_t sticky = cudaGetLastError();
      if (got.empty() && sticky != cudaSuccess) got = std::string("left a CUDA error: ") + cudaGetErrorName(sticky);
      report(got.empty(), name, got);
    });
  };
  DevBuf small(64 * 4);
  expect_throw("device: overlapping table is rejected", "ZOFO_INVALID_ARG", [] {
    const ParamEntry bad[2] = {{0, 10, 1, 0, 1.0f}, {5, 10, 2, 0, 1.0f}};
    cuda::DeviceParamTable dt(bad, 2, 100);
  });
  expect_throw("device: table past the buffer is rejected", "ZOFO_INVALID_ARG", [] {
    const ParamEntry bad[1] = {{60, 10, 1, 0, 1.0f}};
    cuda::DeviceParamTable dt(bad, 1, 64);
  });
  expect_throw("device: gaussian first+count overflow is rejected", "ZOFO_INVALID_ARG",
               [&] { cuda::gaussian(1, 2, UINT64_MAX - 3, 8, (float*)small.p, stream); });
  expect_throw("device: misaligned f32 pointer is rejected", "ZOFO_INVALID_ARG",
               [&] { cuda::gaussian(1, 2, 0, 8, (float*)(small.get() + 2), stream); });
  expect_throw("device: total_elems > n_elems is rejected", "ZOFO_INVALID_ARG", [&] {
    cuda::axpby_table(DType::F32, small.p, 64, (const ParamEntry*)small.p, 1, 65, 1, 1.0f, 0.0f, stream);
  });
  expect_throw("device: unknown dtype is rejected", "ZOFO_INVALID_ARG", [&] {
    cuda::axpby_table((DType)7, small.p, 64, (const ParamEntry*)small.p, 1, 8, 1, 1.0f, 0.0f, stream);
  });

  CK(cudaStreamDestroy(stream));
}

// ---------------------------------------------------------------------------------
// Benchmark

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Median of `reps` timed runs (ms) after 2 warm-up runs.
  double median_ms(cudaStream_t s, const std::function<void()>& f, int reps = 7) {
    f();
    f();
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      CK(cudaEventRecord(a, s));
      f();
      CK(cudaEventRecord(b, s));
      CK(cudaEventSynchronize(b));
      float m = 0;
      CK(cudaEventElapsedTime(&m, a, b));
      ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
};

struct Row {
  std::string op, dtype;
  uint64_t elems;  // 0: not an element-wise operation (the copy)
  double bytes, ms;
  double baseline_ms;  // > 0 on fused rows: the baseline's time for the same work
};

// A Llama-7B-like layer repeated until n elements: 4 attention projections 4096², 3 MLP
// projections 4096×11008, 2 norms 4096. The MeZO baseline pays two launches per tensor.
static std::vector<ParamEntry> bench_table(uint64_t n) {
  const uint64_t sizes[] = {4096ull * 4096,
                            4096ull * 4096,
                            4096ull * 4096,
                            4096ull * 4096,
                            4096ull * 11008,
                            4096ull * 11008,
                            4096ull * 11008,
                            4096,
                            4096};
  std::vector<ParamEntry> t;
  uint64_t at = 0;
  for (int i = 0; at < n; ++i) {
    const uint64_t c = std::min(sizes[i % 9], n - at);
    const std::string name = "model.layers." + std::to_string(i / 9) + ".tensor" + std::to_string(i % 9);
    t.push_back({at, c, fnv1a64(name.data(), name.size()), 0, (i % 9) < 7 ? 1.0f : 0.0f});
    at += c;
  }
  return t;
}

static void bench() {
  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, dev));
  size_t free_b = 0, total_b = 0;
  CK(cudaMemGetInfo(&free_b, &total_b));
  printf("-- benchmark on %s (%d SMs, %.1f GiB)\n", prop.name, prop.multiProcessorCount, total_b / 1073741824.0);

  // 1 GiB of weights per dtype; needs ~4 GiB (weights, copy target, z scratch). Scale
  // down on small devices so the benchmark still runs.
  uint64_t gib = 1ull << 30;
  while (gib > (64ull << 20) && 4 * gib + (256ull << 20) > free_b) gib /= 2;

  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  Timer timer;
  std::vector<Row> rows;
  const uint64_t seed = 0x5eed;

  DevBuf x(gib), y(gib), z(gib);
  CK(cudaMemset(x.p, 0, gib));
  CK(cudaMemset(y.p, 0, gib));

  // The memory limit: device-to-device copy, bytes read + written.
  const double copy_ms = timer.median_ms(s, [&] { CK(cudaMemcpyAsync(y.p, x.p, gib, cudaMemcpyDeviceToDevice, s)); });
  rows.push_back({"cudaMemcpy D2D (memory limit)", "-", 0, 2.0 * gib, copy_ms, 0});

  // The arithmetic limit: the generator alone, writing z (4 bytes per element).
  const uint64_t n_gen = gib / 4;
  const double gen_ms = timer.median_ms(s, [&] { cuda::gaussian(seed, 77, 0, n_gen, (float*)z.p, s); });
  rows.push_back({"generator only (writes z)", "f32", n_gen, 4.0 * n_gen, gen_ms, 0});

  for (DType t : {DType::F32, DType::BF16}) {
    const size_t es = dtype_size(t);
    const uint64_t n = gib / es;
    const std::vector<ParamEntry> table = bench_table(n);
    const cuda::DeviceParamTable dt(table.data(), table.size(), n);
    uint64_t largest = 0;
    for (const auto& e : table) largest = std::max(largest, e.count);
    // The baseline's z scratch is the largest tensor (MeZO draws one tensor at a time).
    DevBuf zs(largest * 4);
    const double bytes = 2.0 * n * es;  // weights read + written
    const double base_ms = timer.median_ms(s, [&] {
      for (const auto& e : table)
        cuda::materialize_then_axpy(t, x.get() + e.offset * es, e.count, e.stream, e.first, seed, 1e-3f, (float*)zs.p,
                                    s);
    });
    const double pert_ms = timer.median_ms(s, [&] { cuda::perturb(t, x.p, dt, seed, 1e-3f, s); });
    const double upd_ms = timer.median_ms(s, [&] { cuda::restore_update(t, x.p, dt, seed, 1e-3f, 1e-6f, s); });
    const std::string dn = dtype_name(t);
    rows.push_back({"fused perturb (zofo)", dn, n, bytes, pert_ms, base_ms});
    rows.push_back({"fused restore+update (zofo)", dn, n, bytes, upd_ms, base_ms});
    rows.push_back({"materialize z + axpy (MeZO-style)", dn, n, bytes, base_ms, 0});
  }
  CK(cudaStreamDestroy(s));

  const double copy_gbs = 2.0 * gib / (copy_ms * 1e6);
  const double gen_geps = n_gen / (gen_ms * 1e6);
  printf("\n%-34s %-5s %11s %9s %9s %9s %8s %8s %9s\n", "operation", "dtype", "elements", "ms", "GB/s", "Gelem/s",
         "÷copy", "÷gen", "speedup");
  for (const Row& r : rows) {
    const double gbs = r.bytes / (r.ms * 1e6), geps = r.elems / (r.ms * 1e6);
    char elems[32] = "-", rate[32] = "-", vs_gen[32] = "-", speed[32] = "-";
    if (r.elems > 0) {
      snprintf(elems, sizeof elems, "%llu", (unsigned long long)r.elems);
      snprintf(rate, sizeof rate, "%.2f", geps);
      snprintf(vs_gen, sizeof vs_gen, "%.2f", geps / gen_geps);
    }
    if (r.baseline_ms > 0) snprintf(speed, sizeof speed, "%.2fx", r.baseline_ms / r.ms);
    printf("%-34s %-5s %11s %9.3f %9.1f %9s %8.2f %8s %9s\n", r.op.c_str(), r.dtype.c_str(), elems, r.ms, gbs, rate,
           gbs / copy_gbs, vs_gen, speed);
  }
  printf(
      "GB/s counts the weights' bytes read + written (copy: read + written; generator: z written);\n"
      "the baseline also writes and re-reads z (4 B/element) on top of that. ÷copy = GB/s over copy GB/s\n"
      "(memory limit), ÷gen = elements/s over the generator's (arithmetic limit), speedup = baseline time\n"
      "÷ zofo time. Median of 7 runs after 2 warm-ups, cudaEvent timing.\n");
}

// ---------------------------------------------------------------------------------

int main(int argc, char** argv) {
  bool host_only = false, bench_only = false, no_bench = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--host-only") host_only = true;
    else if (a == "--bench") bench_only = true;
    else if (a == "--no-bench") no_bench = true;
    else {
      fprintf(stderr, "usage: %s [--host-only | --bench | --no-bench]\n", argv[0]);
      return 2;
    }
  }

  if (!bench_only) host_tests();
  if (!host_only) {
    int n_dev = 0;
    const cudaError_t err = cudaGetDeviceCount(&n_dev);
    if (err != cudaSuccess || n_dev == 0) {
      report(false, "device: a CUDA device is available",
             err != cudaSuccess ? std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err) : "no devices");
    } else {
      if (!bench_only) device_tests();
      if (!no_bench) {
        try {
          bench();
        } catch (const std::exception& e) { report(false, "benchmark", e.what()); }
      }
    }
  }
  return zofo::test::summary();
}
