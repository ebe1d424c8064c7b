// CUDA attention (native/cuda/attention.cuh) and weight views (native/cuda/perturb.cuh:
// weight_view, embedding_view) against a float64 reference and the CPU backend.
//
//   test_attention              host emulation, then device tests when a GPU is usable
//   test_attention --host-only  only the host emulation (no GPU needed)
//   test_attention --host-large  also emulate the large device case on the host (~15 s)
//   --no-bench is accepted and ignored (there is no benchmark here; ctest passes it)
//
// Host emulation runs the kernels' own bodies on the CPU over every index: the row
// bodies with one lane and the identity reducer, and also with several lanes on
// std::threads meeting at a barrier in each reduction (the lane striding and the
// block-reduction contract of the device). Weight and embedding views must match
// zofo::cpu::perturbed_copy bit for bit; attention is compared with tolerances stated
// where they are used. Inputs are fresh each run (Rng(test_seed())). The last line is
// "N passed, N failed"; the exit status is non-zero on any failure.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime.h>

#include "common/dtype.h"
#include "common/philox.h"
#include "cpu/attention.h"
#include "cpu/perturb.h"
#include "cuda/attention.cuh"
#include "cuda/perturb.cuh"
#include "cuda/perturb_groups.cuh"
#include "harness.h"

using namespace zofo;
using namespace zofo::test;
using cuda::attn::Shape;

#define CK(call) zofo::cuda::cuda_check((call), #call)

// Attention in fp32 against float64: scores, exp and sums in fp32 leave ~1e-6 relative
// error on these sizes; products over up to rep·T terms add a few 1e-7 of Σ|terms|.
static const double kAttAtol = 1e-5, kAttRtol = 1e-4;

// ---------------------------------------------------------------------------------
// Host reducers for the row bodies

// One lane: the lane's partial is the row's value.
struct IdentityReduce {
  float sum(float v) const { return v; }
  float max(float v) const { return v; }
};

// nlanes std::threads emulating one block: every lane posts its partial, waits for the
// others, and all read the same fold (lane order, as fixed as the device's tree).
struct LaneGroup {
  int n;
  std::vector<float> slot;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  explicit LaneGroup(int lanes) : n(lanes), slot(lanes) {}
  void barrier() {
    std::unique_lock<std::mutex> lock(m);
    const uint64_t gen = generation;
    if (++arrived == n) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != gen; });
    }
  }
  float reduce(int lane, float v, bool is_max) {
    slot[lane] = v;
    barrier();
    float r = slot[0];
    for (int i = 1; i < n; ++i) r = is_max ? fmaxf(r, slot[i]) : r + slot[i];
    barrier();  // nobody overwrites a slot before all have read
    return r;
  }
};
struct LaneReduce {
  LaneGroup* group;
  int lane;
  float sum(float v) const { return group->reduce(lane, v, false); }
  float max(float v) const { return group->reduce(lane, v, true); }
};

// Runs row_body(r, lane, nlanes, reducer) for every row r < rows, as one block would.
template <class Body>
static void run_rows(int64_t rows, int nlanes, const Body& row_body) {
  if (nlanes == 1) {
    const IdentityReduce red;
    for (int64_t r = 0; r < rows; ++r) row_body(r, 0, 1, red);
    return;
  }
  LaneGroup group(nlanes);
  std::vector<std::thread> lanes;
  for (int lane = 0; lane < nlanes; ++lane)
    lanes.emplace_back([&, lane] {
      const LaneReduce red{&group, lane};
      for (int64_t r = 0; r < rows; ++r) row_body(r, lane, nlanes, red);
    });
  for (auto& th : lanes) th.join();
}

// ---------------------------------------------------------------------------------
// Attention: host emulation of the kernels, float64 reference

static constexpr int kHostPerLane = cuda::attn::kMaxHS;  // enough registers for any lane count

static std::vector<float> dirty_saved(const Shape& sh) {
  return std::vector<float>(cuda::attention_saved_size(sh.B, sh.T, sh.NH), NAN);  // every entry must be written
}

template <class OutT>
static void emu_attention_forward(std::vector<OutT>& out, std::vector<float>& saved, const std::vector<float>& q,
                                  const std::vector<float>& k, const std::vector<float>& v,
                                  const std::vector<uint8_t>& mask, const Shape& sh, float scale, int nlanes) {
  run_rows(sh.rows(), nlanes, [&](int64_t r, int64_t lane, int64_t nl, const auto& red) {
    cuda::attn::forward_row<kHostPerLane>(out.data(), saved.data(), q.data(), k.data(), v.data(), mask.data(), sh,
                                          scale, r, (int)lane, (int)nl, red);
  });
}

static void emu_attention_backward(std::vector<float>& dq, std::vector<float>& dk, std::vector<float>& dv,
                                   const std::vector<float>& dout, const std::vector<float>& saved,
                                   const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const Shape& sh, float scale, int nlanes) {
  std::vector<float> D(sh.rows(), NAN);  // scratch arrives dirty: every entry must be written
  run_rows(sh.rows(), nlanes, [&](int64_t r, int64_t lane, int64_t nl, const auto& red) {
    cuda::attn::backward_dq_row<kHostPerLane>(dq.data(), D.data(), dout.data(), saved.data(), q.data(), k.data(),
                                              v.data(), sh, scale, r, (int)lane, (int)nl, red);
  });
  run_rows(sh.key_rows(), nlanes, [&](int64_t r, int64_t lane, int64_t nl, const auto& red) {
    cuda::attn::backward_dkdv_row<kHostPerLane>(dk.data(), dv.data(), D.data(), dout.data(), saved.data(), q.data(),
                                                k.data(), v.data(), sh, scale, r, (int)lane, (int)nl, red);
  });
}

static std::vector<double> to_f64(const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); }

// The float64 forward written plainly: P = masked causal softmax(scale·q·kᵀ), out = P·v.
static void ref_forward(std::vector<double>& out, std::vector<double>& att, const std::vector<double>& q,
                        const std::vector<double>& k, const std::vector<double>& v, const std::vector<uint8_t>& mask,
                        const Shape& sh, double scale, std::vector<double>* lse = nullptr) {
  const int64_t B = sh.B, T = sh.T, NH = sh.NH, NKV = sh.NKV, HS = sh.HS, rep = NH / NKV;
  out.assign(B * T * NH * HS, 0.0);
  att.assign(B * NH * T * T, 0.0);
  if (lse) lse->assign(B * NH * T, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t g = h / rep;
        double* p = &att[((b * NH + h) * T + t) * T];
        double mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          if (!mask[b * T + s]) continue;
          double dot = 0;
          for (int64_t d = 0; d < HS; ++d)
            dot += q[((b * T + t) * NH + h) * HS + d] * k[((b * T + s) * NKV + g) * HS + d];
          p[s] = scale * dot;
          mx = std::max(mx, p[s]);
        }
        if (mx == -INFINITY) {
          for (int64_t s = 0; s < T; ++s) p[s] = 0;
          if (lse) (*lse)[(b * NH + h) * T + t] = INFINITY;
          continue;
        }
        double sum = 0;
        for (int64_t s = 0; s < T; ++s) {
          p[s] = (s <= t && mask[b * T + s]) ? std::exp(p[s] - mx) : 0.0;
          sum += p[s];
        }
        if (lse) (*lse)[(b * NH + h) * T + t] = mx + std::log(sum);
        for (int64_t s = 0; s < T; ++s) p[s] /= sum;
        for (int64_t d = 0; d < HS; ++d) {
          double acc = 0;
          for (int64_t s = 0; s <= t; ++s) acc += p[s] * v[((b * T + s) * NKV + g) * HS + d];
          out[((b * T + t) * NH + h) * HS + d] = acc;
        }
      }
}

// The float64 backward from the float64 P: dq, dk, dv += the gradients.
static void ref_backward(std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv,
                         const std::vector<double>& dout, const std::vector<double>& att, const std::vector<double>& q,
                         const std::vector<double>& k, const std::vector<double>& v, const Shape& sh, double scale) {
  const int64_t B = sh.B, T = sh.T, NH = sh.NH, NKV = sh.NKV, HS = sh.HS, rep = NH / NKV;
  std::vector<double> dS(T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const int64_t g = h / rep, qi = ((b * T + t) * NH + h) * HS;
        const double* p = &att[((b * NH + h) * T + t) * T];
        double pdp = 0;
        for (int64_t s = 0; s < T; ++s) {
          double dp = 0;
          for (int64_t d = 0; d < HS; ++d) dp += dout[qi + d] * v[((b * T + s) * NKV + g) * HS + d];
          dS[s] = dp;
          pdp += p[s] * dp;
        }
        for (int64_t s = 0; s < T; ++s) dS[s] = p[s] * (dS[s] - pdp) * scale;
        for (int64_t s = 0; s < T; ++s) {
          const int64_t ki = ((b * T + s) * NKV + g) * HS;
          for (int64_t d = 0; d < HS; ++d) {
            dq[qi + d] += dS[s] * k[ki + d];
            dk[ki + d] += dS[s] * q[qi + d];
            dv[ki + d] += p[s] * dout[qi + d];
          }
        }
      }
}

// ---------------------------------------------------------------------------------
// Attention cases

struct AttnCase {
  std::string name;
  Shape sh;
  std::vector<uint8_t> mask;  // (B, T)
};

// Masks: left padding (queries with no visible key), right padding, random holes, and
// a fully padded sequence (every query of it sees nothing).
static std::vector<uint8_t> make_mask(const Shape& sh, Rng& rng) {
  std::vector<uint8_t> m(sh.B * sh.T, 1);
  for (int64_t b = 0; b < sh.B; ++b) {
    uint8_t* mb = &m[b * sh.T];
    switch (b % 5) {
      case 0:
        for (int64_t t = 0; t < std::min<int64_t>(sh.T, 1 + rng.next() % 4); ++t) mb[t] = 0;
        break;  // left pad
      case 1:
        break;  // none
      case 2:
        for (int64_t t = 0; t < sh.T; ++t) mb[t] = 0;
        break;  // all padding
      case 3:
        for (int64_t t = sh.T - std::min<int64_t>(sh.T, 1 + rng.next() % 5); t < sh.T; ++t) mb[t] = 0;
        break;  // right pad
      case 4:
        for (int64_t t = 0; t < sh.T; ++t) mb[t] = (rng.next() % 4) != 0;
        break;  // holes
    }
  }
  return m;
}

static std::vector<AttnCase> attention_cases(Rng& rng, bool large) {
  std::vector<AttnCase> c;
  const auto add = [&](const std::string& name, Shape sh) { c.push_back({name, sh, make_mask(sh, rng)}); };
  add("GQA B=5 T=9 NH=8 NKV=2 HS=20", {5, 9, 8, 2, 20});
  add("MHA B=5 T=16 NH=4 NKV=4 HS=32", {5, 16, 4, 4, 32});
  add("T=1 B=3 NH=2 NKV=1 HS=5", {3, 1, 2, 1, 5});
  add("MQA B=2 T=33 NH=6 NKV=1 HS=7", {2, 33, 6, 1, 7});
  add("GQA B=5 T=64 NH=4 NKV=2 HS=40", {5, 64, 4, 2, 40});
  add("GQA long B=2 T=160 NH=4 NKV=2 HS=128", {2, 160, 4, 2, 128});  // many rescales of the running max
  if (large) add("GQA large B=16 T=128 NH=32 NKV=8 HS=64", {16, 128, 32, 8, 64});
  return c;
}

// Inputs of one case: q, k, v ~ N(0, 1) (scores of a few units after scale = 1/√HS),
// dout ~ N(0, 1), and non-zero starting gradients (the backward accumulates).
struct AttnData {
  std::vector<float> q, k, v, dout, dq0, dk0, dv0;
  float scale;
};
static AttnData make_data(const Shape& sh, Rng& rng) {
  const size_t nq = sh.B * sh.T * sh.NH * sh.HS, nk = sh.B * sh.T * sh.NKV * sh.HS;
  return {rng.normals(nq),       rng.normals(nk),       rng.normals(nk),       rng.normals(nq),
          rng.normals(nq, 0.5f), rng.normals(nk, 0.5f), rng.normals(nk, 0.5f), 1.0f / std::sqrt((float)sh.HS)};
}

struct AttnRef {
  std::vector<double> out, att, lse, dq, dk, dv;
};
static AttnRef reference(const AttnCase& c, const AttnData& x) {
  AttnRef r;
  const std::vector<double> q = to_f64(x.q), k = to_f64(x.k), v = to_f64(x.v);
  ref_forward(r.out, r.att, q, k, v, c.mask, c.sh, x.scale, &r.lse);
  r.dq = to_f64(x.dq0), r.dk = to_f64(x.dk0), r.dv = to_f64(x.dv0);
  ref_backward(r.dq, r.dk, r.dv, to_f64(x.dout), r.att, q, k, v, c.sh, x.scale);
  return r;
}

// The saved state and outputs that are exact: a query with no visible key has lse = +inf
// and an all-zero output row; maskf is the mask; every lse is compared with float64.
static std::string check_saved(const AttnCase& c, const AttnRef& ref, const std::vector<float>& saved,
                               const std::vector<float>& out) {
  const Shape& sh = c.sh;
  int64_t bad = 0;
  for (int64_t b = 0; b < sh.B; ++b)
    for (int64_t t = 0; t < sh.T; ++t) {
      if (saved[sh.rows() + b * sh.T + t] != (c.mask[b * sh.T + t] ? 1.0f : 0.0f)) ++bad;
      bool any = false;
      for (int64_t s = 0; s <= t; ++s) any = any || c.mask[b * sh.T + s];
      for (int64_t h = 0; h < sh.NH; ++h) {
        const int64_t r = (b * sh.NH + h) * sh.T + t;
        if (!any) {
          if (saved[r] != INFINITY) ++bad;
          for (int64_t d = 0; d < sh.HS; ++d)
            if (out[((b * sh.T + t) * sh.NH + h) * sh.HS + d] != 0.0f) ++bad;
        } else if (!(std::fabs(saved[r] - ref.lse[r]) <= kAttAtol + kAttRtol * std::fabs(ref.lse[r]))) {
          ++bad;
        }
      }
    }
  return bad ? std::to_string(bad) + " saved entries (lse, maskf) or padding outputs are wrong" : "";
}

// ---------------------------------------------------------------------------------
// Weight views: inputs and the CPU reference

// n values of dtype t over many binades, with −0 (and, when nan_ok, NaNs: only the
// a = 0 copy keeps their bits; the device's fmaf returns its canonical NaN).
static std::vector<uint8_t> random_weights(DType t, uint64_t n, Rng& rng, bool nan_ok) {
  std::vector<uint8_t> buf(n * dtype_size(t));
  for (uint64_t i = 0; i < n; ++i) {
    float x = std::ldexp(rng.uniform(-0.5f, 0.5f), (int)(rng.next() % 24) - 20);
    const uint32_t pick = rng.next() % 16;
    if (pick == 0) x = -0.0f;
    if (pick == 1 && nan_ok) x = f32_from_bits(0x7fa00001u | (rng.next() & 0x80000000u));  // signalling NaN
    if (t == DType::F32) memcpy(&buf[4 * i], &x, 4);
    if (t == DType::BF16) ((uint16_t*)buf.data())[i] = (pick == 1 && nan_ok) ? 0x7f81 : f32_to_bf16(x);
    if (t == DType::F16) ((uint16_t*)buf.data())[i] = (pick == 1 && nan_ok) ? 0x7d01 : f32_to_f16(x);
  }
  return buf;
}

// First bitwise difference of n floats, "" when none; indices relative to `base`.
static std::string diff_bits(const float* want, const float* got, size_t n, int64_t base = 0) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i)
    if (f32_bits(want[i]) != f32_bits(got[i]) && bad++ == 0) first = i;
  if (!bad) return "";
  char buf[200];
  snprintf(buf, sizeof buf, "%zu of %zu differ; first [%lld] want %.9g (0x%08x) got %.9g (0x%08x)", bad, n,
           (long long)first - (long long)base, want[first], f32_bits(want[first]), got[first], f32_bits(got[first]));
  return buf;
}

static const DType kDTypes[] = {DType::F32, DType::BF16, DType::F16};
static const float kAs[] = {0.0f, 0.37f, -1e-3f};
static const uint64_t kGuard = 8;  // untouchable floats on each side of an output
static const float kGuardValue = f32_from_bits(0x7fc0dead);

struct ViewCase {
  uint64_t n, first;
};
static std::vector<ViewCase> view_cases(bool large) {
  std::vector<ViewCase> c;
  for (uint64_t n : {1, 2, 3, 4, 5, 7, 8, 13, 1000, 4099})
    for (uint64_t first : {0ull, 1ull, 2ull, 3ull, 5ull, (1ull << 32) - 1}) c.push_back({n, first});
  c.push_back({4099, UINT64_MAX - 4099});  // up to the last element of the counter
  c.push_back({7, UINT64_MAX - 7});
  if (large) c.push_back({3000003, 6});
  return c;
}

// The CPU reference of a view, written at kGuard inside guards.
static std::vector<float> cpu_view(DType t, const void* src, const ViewCase& v, uint64_t stream, uint64_t seed,
                                   float a) {
  std::vector<float> want(v.n + 2 * kGuard, kGuardValue);
  cpu::perturbed_copy(t, src, want.data() + kGuard, v.n, stream, v.first, seed, a, 0);
  return want;
}

// Host emulation of weight_view_kernel: every group, in a strided "grid" order.
static void emu_weight_view(DType t, float* dst, const void* src, uint64_t n, uint64_t first, uint64_t stream,
                            uint64_t seed, float a) {
  const PhiloxKeys k = philox_keys(seed);
  const uint64_t groups = cuda::groups::view_group_count(n, first);
  for (uint64_t th = 0; th < 5; ++th)
    for (uint64_t g = th; g < groups; g += 5) switch (t) {
        case DType::F32:
          cuda::groups::weight_view_group<cuda::groups::F32>(dst, (const float*)src, n, first, k, stream, a, g);
          break;
        case DType::BF16:
          cuda::groups::weight_view_group<cuda::groups::BF16>(dst, (const uint16_t*)src, n, first, k, stream, a, g);
          break;
        case DType::F16:
          cuda::groups::weight_view_group<cuda::groups::F16>(dst, (const uint16_t*)src, n, first, k, stream, a, g);
          break;
      }
}

// The same with bf16 destinations (weight_view_bf16: the operand of a bf16 matmul).
static void emu_weight_view_bf16(DType t, uint16_t* dst, const void* src, uint64_t n, uint64_t first, uint64_t stream,
                                 uint64_t seed, float a) {
  using cuda::groups::BF16;
  const PhiloxKeys k = philox_keys(seed);
  const uint64_t groups = cuda::groups::view_group_count(n, first);
  for (uint64_t g = 0; g < groups; ++g) switch (t) {
      case DType::F32:
        cuda::groups::weight_view_group<cuda::groups::F32, BF16>(dst, (const float*)src, n, first, k, stream, a, g);
        break;
      case DType::BF16:
        cuda::groups::weight_view_group<cuda::groups::BF16, BF16>(dst, (const uint16_t*)src, n, first, k, stream, a, g);
        break;
      case DType::F16:
        cuda::groups::weight_view_group<cuda::groups::F16, BF16>(dst, (const uint16_t*)src, n, first, k, stream, a, g);
        break;
    }
}

// First difference between bf16 values and the fp32 reference rounded to nearest even.
static std::string diff_bf16(const float* want_f32, const uint16_t* got, size_t n) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i)
    if (got[i] != f32_to_bf16(want_f32[i]) && bad++ == 0) first = i;
  if (!bad) return "";
  char buf[160];
  snprintf(buf, sizeof buf, "%zu of %zu differ; first [%zu] want 0x%04x got 0x%04x", bad, n, first,
           f32_to_bf16(want_f32[first]), got[first]);
  return buf;
}

static void emu_embedding_view(DType t, float* out, const void* table, const int32_t* ids, uint64_t N, uint64_t C,
                               uint64_t stream, uint64_t seed, float a) {
  const PhiloxKeys k = philox_keys(seed);
  for (uint64_t r = 0; r < N; ++r)
    for (uint64_t j = 0; j < cuda::groups::embedding_groups_per_row(C); ++j) switch (t) {
        case DType::F32:
          cuda::groups::embedding_view_group<cuda::groups::F32>(out, (const float*)table, ids, C, k, stream, a, r, j);
          break;
        case DType::BF16:
          cuda::groups::embedding_view_group<cuda::groups::BF16>(out, (const uint16_t*)table, ids, C, k, stream, a, r,
                                                                 j);
          break;
        case DType::F16:
          cuda::groups::embedding_view_group<cuda::groups::F16>(out, (const uint16_t*)table, ids, C, k, stream, a, r,
                                                                j);
          break;
      }
}

// The CPU reference of an embedding view: perturbed_copy of each looked-up row.
static std::vector<float> cpu_embedding_view(DType t, const std::vector<uint8_t>& table,
                                             const std::vector<int32_t>& ids, uint64_t C, uint64_t stream,
                                             uint64_t seed, float a) {
  std::vector<float> want(ids.size() * C + 2 * kGuard, kGuardValue);
  for (size_t r = 0; r < ids.size(); ++r)
    cpu::perturbed_copy(t, table.data() + (uint64_t)ids[r] * C * dtype_size(t), want.data() + kGuard + r * C, C, stream,
                        (uint64_t)ids[r] * C, seed, a, 1);
  return want;
}

// N ids in [0, V): both ends and repeats included.
static std::vector<int32_t> make_ids(int64_t N, int64_t V, Rng& rng) {
  std::vector<int32_t> ids(N);
  for (int64_t i = 0; i < N; ++i) ids[i] = (int32_t)(rng.next() % V);
  ids[0] = 0;
  if (N > 1) ids[1] = (int32_t)(V - 1);
  if (N > 3) ids[3] = ids[2];
  return ids;
}

static std::string dtype_str(DType t) { return dtype_name(t); }
static std::string a_str(float a) {
  char b[32];
  snprintf(b, sizeof b, "%g", a);
  return b;
}

// Expects zofo::Error ZOFO_INVALID_ARG whose message contains every `words` entry.
static void expect_invalid(const std::string& name, const std::vector<std::string>& words,
                           const std::function<void()>& f) {
  std::string why = "nothing thrown";
  try {
    f();
  } catch (const Error& e) {
    why = e.code != "ZOFO_INVALID_ARG" ? "threw " + e.code + ": " + e.what() : "";
    for (const std::string& w : words)
      if (why.empty() && std::string(e.what()).find(w) == std::string::npos)
        why = std::string("message \"") + e.what() + "\" does not name " + w;
  }
  report(why.empty(), name, why);
}

// ---------------------------------------------------------------------------------
// Host tests

static void host_attention_tests(Rng& rng, bool large_too) {
  for (const AttnCase& c : attention_cases(rng, large_too)) {
    const Shape& sh = c.sh;
    // Threaded lanes meet at a barrier per key: only the small cases run with several.
    const bool large = sh.rows() * sh.T > 4000;
    const AttnData x = make_data(sh, rng);
    const AttnRef ref = reference(c, x);
    // The CPU backend on the same inputs.
    std::vector<float> cpu_out(x.q.size()), cpu_att(sh.B * sh.NH * sh.T * sh.T);
    cpu::attention_forward(cpu_out.data(), cpu_att.data(), x.q.data(), x.k.data(), x.v.data(), c.mask.data(), sh.B,
                           sh.T, sh.NH, sh.NKV, sh.HS, x.scale);
    std::vector<float> cpu_dq = x.dq0, cpu_dk = x.dk0, cpu_dv = x.dv0;
    cpu::attention_backward(cpu_dq.data(), cpu_dk.data(), cpu_dv.data(), x.dout.data(), cpu_att.data(), x.q.data(),
                            x.k.data(), x.v.data(), sh.B, sh.T, sh.NH, sh.NKV, sh.HS, x.scale);
    // One lane (the identity reducer), then 3 and 32 lanes on threads (small cases).
    for (int nlanes : {1, 3, 32}) {
      if (large && nlanes > 1) continue;
      const std::string tag = "host: " + c.name + " lanes=" + std::to_string(nlanes);
      std::vector<float> out(x.q.size(), NAN), saved = dirty_saved(sh);  // dirty: all must be written
      emu_attention_forward(out, saved, x.q, x.k, x.v, c.mask, sh, x.scale, nlanes);
      std::vector<float> dq = x.dq0, dk = x.dk0, dv = x.dv0;
      emu_attention_backward(dq, dk, dv, x.dout, saved, x.q, x.k, x.v, sh, x.scale, nlanes);
      // (a) float64 reference, kAttAtol + kAttRtol·|ref|
      check_close(tag + " forward out vs f64", ref.out, out, kAttAtol, kAttRtol);
      const std::string why = check_saved(c, ref, saved, out);
      report(why.empty(), tag + " saved lse vs f64, maskf, padding rows exactly 0", why);
      check_close(tag + " backward dq vs f64", ref.dq, dq, kAttAtol, kAttRtol);
      check_close(tag + " backward dk vs f64", ref.dk, dk, kAttAtol, kAttRtol);
      check_close(tag + " backward dv vs f64", ref.dv, dv, kAttAtol, kAttRtol);
      // (b) the CPU backend, same tolerance (both fp32, different summation orders)
      check_close(tag + " forward out vs CPU", cpu_out, out, kAttAtol, kAttRtol);
      check_close(tag + " backward dq vs CPU", cpu_dq, dq, kAttAtol, kAttRtol);
      check_close(tag + " backward dk vs CPU", cpu_dk, dk, kAttAtol, kAttRtol);
      check_close(tag + " backward dv vs CPU", cpu_dv, dv, kAttAtol, kAttRtol);
      // (c) the bf16 output (the next matmul's operand): the fp32 output rounded to nearest even, bit for bit.
      if (nlanes != 3) {
        std::vector<uint16_t> out16(x.q.size(), 0xffff);
        std::vector<float> saved16 = dirty_saved(sh);
        emu_attention_forward(out16, saved16, x.q, x.k, x.v, c.mask, sh, x.scale, nlanes);
        size_t bad = 0;
        for (size_t i = 0; i < out.size(); ++i) bad += out16[i] != f32_to_bf16(out[i]);
        report(bad == 0, tag + " bf16 output = fp32 output rounded to nearest even",
               bad ? std::to_string(bad) + " of " + std::to_string(out.size()) + " differ" : "");
      }
    }
  }
}

// attention_backward against central differences of the float64 forward on
// L = Σ w ⊙ out (so dout = w): a check of the gradient formulas themselves, not only
// of agreement with another implementation.
static void host_gradient_check(Rng& rng) {
  const Shape sh{2, 5, 4, 2, 3};
  std::vector<uint8_t> mask = {0, 1, 1, 0, 1,  // a padding query (t = 0) and a hole
                               1, 1, 1, 1, 1};
  const AttnData x = make_data(sh, rng);
  const std::vector<double> w = to_f64(x.dout);
  const auto loss = [&](const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v) {
    std::vector<double> out, att;
    ref_forward(out, att, q, k, v, mask, sh, x.scale);
    double L = 0;
    for (size_t i = 0; i < out.size(); ++i) L += w[i] * out[i];
    return L;
  };
  std::vector<double> q = to_f64(x.q), k = to_f64(x.k), v = to_f64(x.v);
  // Central differences, step 1e-5: truncation ~1e-10, rounding ~1e-11.
  const auto fd = [&](std::vector<double>& p) {
    std::vector<double> g(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      const double keep = p[i], hstep = 1e-5;
      p[i] = keep + hstep;
      const double up = loss(q, k, v);
      p[i] = keep - hstep;
      const double down = loss(q, k, v);
      p[i] = keep;
      g[i] = (up - down) / (2 * hstep);
    }
    return g;
  };
  const std::vector<double> gq = fd(q), gk = fd(k), gv = fd(v);
  std::vector<float> out(x.q.size()), saved = dirty_saved(sh);
  emu_attention_forward(out, saved, x.q, x.k, x.v, mask, sh, x.scale, 1);
  std::vector<float> dq(x.q.size(), 0.0f), dk(x.k.size(), 0.0f), dv(x.v.size(), 0.0f);
  emu_attention_backward(dq, dk, dv, x.dout, saved, x.q, x.k, x.v, sh, x.scale, 1);
  // fp32 analytic gradient vs float64 differences: 1e-5 + 1e-4·|fd|.
  check_close("host: gradient check dq vs finite differences", gq, dq, 1e-5, 1e-4);
  check_close("host: gradient check dk vs finite differences", gk, dk, 1e-5, 1e-4);
  check_close("host: gradient check dv vs finite differences", gv, dv, 1e-5, 1e-4);
}

static void host_view_tests(Rng& rng) {
  const uint64_t stream = ((uint64_t)rng.next() << 32) | rng.next(), seed = ((uint64_t)rng.next() << 32) | rng.next();
  // weight_view: every (n, first) case at every src/dst misalignment, one line per dtype and a.
  for (DType t : kDTypes)
    for (float a : kAs) {
      const std::string name = "host: weight_view " + dtype_str(t) + " a=" + a_str(a) + " (all n, first, shifts)";
      std::string why;
      for (const ViewCase& vc : view_cases(false)) {
        const size_t es = dtype_size(t);
        const std::vector<uint8_t> src_all = random_weights(t, vc.n + 4, rng, a == 0.0f);
        for (uint64_t src_shift : {0, 1, 3})
          for (uint64_t dst_shift : {0, 1, 2}) {
            const void* src = src_all.data() + src_shift * es;
            const std::vector<float> want = cpu_view(t, src, vc, stream, seed, a);
            // dst starts dst_shift floats past a 16-byte boundary (vector path vs scalar path)
            std::vector<float> got(want.size() + 4, kGuardValue);
            float* base = got.data();
            while ((uintptr_t)base % 16) ++base;
            float* dst = base + kGuard + dst_shift;
            emu_weight_view(t, dst, src, vc.n, vc.first, stream, seed, a);
            const std::string d = diff_bits(want.data(), dst - kGuard, want.size(), kGuard);
            if (!d.empty() && why.empty())
              why = "n=" + std::to_string(vc.n) + " first=" + std::to_string(vc.first) +
                    " src_shift=" + std::to_string(src_shift) + " dst_shift=" + std::to_string(dst_shift) + ": " + d;
          }
      }
      report(why.empty(), name, why);
    }
  // weight_view_bf16: the fp32 view rounded to nearest even, bit for bit; dst at 2-byte
  // shifts from an 8-byte boundary (vector path and element path).
  for (DType t : kDTypes)
    for (float a : kAs) {
      const std::string name = "host: weight_view_bf16 " + dtype_str(t) + " a=" + a_str(a) + " (all n, first, shifts)";
      std::string why;
      for (const ViewCase& vc : view_cases(false)) {
        const std::vector<uint8_t> src = random_weights(t, vc.n, rng, a == 0.0f);
        const std::vector<float> want = cpu_view(t, src.data(), vc, stream, seed, a);
        for (uint64_t dst_shift : {0, 1, 3}) {
          std::vector<uint16_t> got(vc.n + 8, 0xdead);
          uint16_t* base = got.data();
          while ((uintptr_t)base % 8) ++base;
          emu_weight_view_bf16(t, base + dst_shift, src.data(), vc.n, vc.first, stream, seed, a);
          const std::string d = diff_bf16(want.data() + kGuard, base + dst_shift, vc.n);
          if (!d.empty() && why.empty())
            why = "n=" + std::to_string(vc.n) + " first=" + std::to_string(vc.first) +
                  " dst_shift=" + std::to_string(dst_shift) + ": " + d;
        }
      }
      report(why.empty(), name, why);
    }
  // embedding_view: rows of a (V, C) table, repeated ids, C not a multiple of 4.
  for (DType t : kDTypes)
    for (float a : kAs) {
      const std::string name =
          "host: embedding_view " + dtype_str(t) + " a=" + a_str(a) + " (C = 1, 3, 4, 13, 64, 130)";
      std::string why;
      for (uint64_t C : {1, 3, 4, 13, 64, 130}) {
        const int64_t V = 37, N = 25;
        const std::vector<uint8_t> table = random_weights(t, V * C, rng, a == 0.0f);
        const std::vector<int32_t> ids = make_ids(N, V, rng);
        const std::vector<float> want = cpu_embedding_view(t, table, ids, C, stream, seed, a);
        std::vector<float> got(want.size(), kGuardValue);
        emu_embedding_view(t, got.data() + kGuard, table.data(), ids.data(), N, C, stream, seed, a);
        const std::string d = diff_bits(want.data(), got.data(), want.size(), kGuard);
        if (!d.empty() && why.empty()) why = "C=" + std::to_string(C) + ": " + d;
      }
      report(why.empty(), name, why);
    }
}

// The launchers' argument checks run before any CUDA call, so they are testable here.
static void host_argument_tests() {
  float f[4] = {0, 0, 0, 0};
  const uint8_t m[1] = {1};
  const int32_t ids[1] = {0};
  expect_invalid("host: attention_forward rejects NH % NKV != 0", {"attention_forward", "NKV"},
                 [&] { cuda::attention_forward(f, false, f, f, f, f, m, 1, 1, 8, 3, 1, 1.0f, 0); });
  expect_invalid("host: attention_forward rejects a negative size", {"attention_forward", "negative"},
                 [&] { cuda::attention_forward(f, false, f, f, f, f, m, 1, -1, 1, 1, 1, 1.0f, 0); });
  expect_invalid("host: attention_forward rejects a null mask", {"attention_forward", "mask"},
                 [&] { cuda::attention_forward(f, false, f, f, f, f, nullptr, 1, 1, 1, 1, 1, 1.0f, 0); });
  expect_invalid("host: attention_backward rejects NKV = 0", {"attention_backward", "NKV"},
                 [&] { cuda::attention_backward(f, f, f, f, f, f, f, f, 1, 1, 2, 0, 1, 1.0f, f, 0); });
  expect_invalid("host: attention_backward rejects a null scratch", {"attention_backward", "scratch"},
                 [&] { cuda::attention_backward(f, f, f, f, f, f, f, f, 1, 1, 2, 1, 1, 1.0f, nullptr, 0); });
  expect_invalid("host: attention_backward rejects overflowing sizes", {"attention_backward", "too large"}, [&] {
    cuda::attention_backward(f, f, f, f, f, f, f, f, 1 << 22, 1 << 22, 1 << 20, 1, 1, 1.0f, f, 0);
  });
  expect_invalid("host: attention_forward rejects a head size above the kernel's", {"attention_forward", "HS=257"},
                 [&] { cuda::attention_forward(f, true, f, f, f, f, m, 1, 1, 1, 1, 257, 1.0f, 0); });
  expect_invalid("host: weight_view rejects a null src", {"weight_view", "src"},
                 [&] { cuda::weight_view(f, nullptr, DType::F32, 4, 1, 0, 1, 0.5f, 0); });
  expect_invalid("host: weight_view rejects first + n overflow", {"weight_view", "overflows"},
                 [&] { cuda::weight_view(f, f, DType::F32, 4, 1, UINT64_MAX - 2, 1, 0.5f, 0); });
  expect_invalid("host: weight_view rejects a misaligned dst", {"weight_view", "dst"},
                 [&] { cuda::weight_view((float*)((char*)f + 2), f, DType::F32, 1, 1, 0, 1, 0.5f, 0); });
  expect_invalid("host: weight_view rejects an unknown dtype", {"weight_view", "dtype"},
                 [&] { cuda::weight_view(f, f, (DType)7, 1, 1, 0, 1, 0.5f, 0); });
  expect_invalid("host: embedding_view rejects null ids", {"embedding_view", "ids"},
                 [&] { cuda::embedding_view(f, f, DType::BF16, nullptr, 1, 1, 1, 1, 0.5f, 0); });
  expect_invalid("host: embedding_view rejects a negative N", {"embedding_view", "negative"},
                 [&] { cuda::embedding_view(f, f, DType::F32, ids, -1, 1, 1, 1, 0.5f, 0); });
  run_test("host: empty sizes return without touching anything", [&] {
    cuda::attention_forward(nullptr, false, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4, 2, 1, 8, 1.0f, 0);
    cuda::attention_forward(nullptr, true, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 0, 2, 1, 8, 1.0f, 0);
    cuda::attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 4, 2, 1, 0,
                             1.0f, nullptr, 0);
    cuda::weight_view(nullptr, nullptr, DType::F16, 0, 1, 0, 1, 0.5f, 0);
    cuda::embedding_view(nullptr, nullptr, DType::F16, nullptr, 0, 8, 1, 1, 0.5f, 0);
    cuda::embedding_view(nullptr, nullptr, DType::F16, nullptr, 8, 0, 1, 1, 0.5f, 0);
    report(true, "host: empty sizes return without touching anything");
  });
}

// ---------------------------------------------------------------------------------
// Device tests: the launchers on device memory, same references

template <class T>
static std::vector<T> download_n(const T* p, size_t n) {
  std::vector<T> h(n);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

static void device_attention_tests(Rng& rng, cudaStream_t st) {
  for (const AttnCase& c : attention_cases(rng, true)) {
    const std::string tag = "device: " + c.name;
    run_test(tag, [&] {
      const Shape& sh = c.sh;
      const AttnData x = make_data(sh, rng);
      const AttnRef ref = reference(c, x);
      std::vector<float> cpu_out(x.q.size()), cpu_att((size_t)(sh.B * sh.NH * sh.T * sh.T));
      cpu::attention_forward(cpu_out.data(), cpu_att.data(), x.q.data(), x.k.data(), x.v.data(), c.mask.data(), sh.B,
                             sh.T, sh.NH, sh.NKV, sh.HS, x.scale);
      std::vector<float> cpu_dq = x.dq0, cpu_dk = x.dk0, cpu_dv = x.dv0;
      cpu::attention_backward(cpu_dq.data(), cpu_dk.data(), cpu_dv.data(), x.dout.data(), cpu_att.data(), x.q.data(),
                              x.k.data(), x.v.data(), sh.B, sh.T, sh.NH, sh.NKV, sh.HS, x.scale);

      DeviceArray<float> q(x.q), k(x.k), v(x.v), dout(x.dout), out(std::vector<float>(x.q.size(), NAN)),
          saved(dirty_saved(sh)), scratch(std::vector<float>(sh.rows(), NAN));
      DeviceArray<uint16_t> out16(std::vector<uint16_t>(x.q.size(), 0xffff));
      DeviceArray<uint8_t> mask(c.mask);
      cuda::attention_forward(out.p, false, saved.p, q.p, k.p, v.p, mask.p, sh.B, sh.T, sh.NH, sh.NKV, sh.HS, x.scale,
                              st);
      const std::vector<float> got_out = out.download(), got_saved = saved.download();
      check_close(tag + " forward out vs f64", ref.out, got_out, kAttAtol, kAttRtol);
      check_close(tag + " forward out vs CPU", cpu_out, got_out, kAttAtol, kAttRtol);
      const std::string z = check_saved(c, ref, got_saved, got_out);
      report(z.empty(), tag + " saved lse vs f64, maskf, padding rows exactly 0", z);
      cuda::attention_forward(out16.p, true, saved.p, q.p, k.p, v.p, mask.p, sh.B, sh.T, sh.NH, sh.NKV, sh.HS, x.scale,
                              st);
      const std::vector<uint16_t> got16 = out16.download();
      size_t bad16 = 0;
      for (size_t i = 0; i < got_out.size(); ++i) bad16 += got16[i] != f32_to_bf16(got_out[i]);
      report(bad16 == 0, tag + " bf16 output = fp32 output rounded to nearest even",
             bad16 ? std::to_string(bad16) + " differ" : "");

      // Twice from the same start: the sums run in a fixed order, so the bits repeat.
      std::vector<float> first[3];
      for (int run = 0; run < 2; ++run) {
        DeviceArray<float> dq(x.dq0), dk(x.dk0), dv(x.dv0);
        cuda::attention_backward(dq.p, dk.p, dv.p, dout.p, saved.p, q.p, k.p, v.p, sh.B, sh.T, sh.NH, sh.NKV, sh.HS,
                                 x.scale, scratch.p, st);
        const std::vector<float> g[3] = {dq.download(), dk.download(), dv.download()};
        if (run == 0) {
          const char* nm[3] = {"dq", "dk", "dv"};
          const std::vector<double>* rf[3] = {&ref.dq, &ref.dk, &ref.dv};
          const std::vector<float>* cf[3] = {&cpu_dq, &cpu_dk, &cpu_dv};
          for (int j = 0; j < 3; ++j) {
            check_close(tag + " backward " + nm[j] + " vs f64", *rf[j], g[j], kAttAtol, kAttRtol);
            check_close(tag + " backward " + nm[j] + " vs CPU", *cf[j], g[j], kAttAtol, kAttRtol);
            first[j] = g[j];
          }
        } else {
          std::string d;
          for (int j = 0; j < 3 && d.empty(); ++j) d = diff_bits(first[j].data(), g[j].data(), g[j].size());
          report(d.empty(), tag + " backward is deterministic", d);
        }
      }
    });
  }
}

static void device_view_tests(Rng& rng, cudaStream_t st) {
  const uint64_t stream = ((uint64_t)rng.next() << 32) | rng.next(), seed = ((uint64_t)rng.next() << 32) | rng.next();
  for (DType t : kDTypes)
    for (float a : kAs) {
      const std::string name = "device: weight_view " + dtype_str(t) + " a=" + a_str(a) + " (all n, first, shifts)";
      run_test(name, [&] {
        std::string why;
        const size_t es = dtype_size(t);
        for (const ViewCase& vc : view_cases(true)) {
          const std::vector<uint8_t> src_all = random_weights(t, vc.n + 4, rng, a == 0.0f);
          DeviceArray<uint8_t> dsrc(src_all);
          for (uint64_t src_shift : {0, 1, 3})
            for (uint64_t dst_shift : {0, 1}) {
              const std::vector<float> want = cpu_view(t, src_all.data() + src_shift * es, vc, stream, seed, a);
              DeviceArray<float> ddst(std::vector<float>(want.size() + dst_shift, kGuardValue));
              cuda::weight_view(ddst.p + dst_shift + kGuard, dsrc.p + src_shift * es, t, vc.n, stream, vc.first, seed,
                                a, st);
              const std::vector<float> got = ddst.download();
              const std::string d = diff_bits(want.data(), got.data() + dst_shift, want.size(), kGuard);
              if (!d.empty() && why.empty())
                why = "n=" + std::to_string(vc.n) + " first=" + std::to_string(vc.first) +
                      " src_shift=" + std::to_string(src_shift) + " dst_shift=" + std::to_string(dst_shift) + ": " + d;
            }
        }
        report(why.empty(), name, why);
      });
    }
  for (DType t : kDTypes)
    for (float a : kAs) {
      const std::string name = "device: embedding_view " + dtype_str(t) + " a=" + a_str(a);
      run_test(name, [&] {
        std::string why;
        for (uint64_t C : {1, 3, 13, 130, 4096}) {
          const int64_t V = 301, N = C == 4096 ? 1024 : 77;
          const std::vector<uint8_t> table = random_weights(t, V * C, rng, a == 0.0f);
          const std::vector<int32_t> ids = make_ids(N, V, rng);
          const std::vector<float> want = cpu_embedding_view(t, table, ids, C, stream, seed, a);
          DeviceArray<uint8_t> dtable(table);
          DeviceArray<int32_t> dids(ids);
          DeviceArray<float> dout(std::vector<float>(want.size(), kGuardValue));
          cuda::embedding_view(dout.p + kGuard, dtable.p, t, dids.p, N, C, stream, seed, a, st);
          const std::string d = diff_bits(want.data(), dout.download().data(), want.size(), kGuard);
          if (!d.empty() && why.empty()) why = "C=" + std::to_string(C) + ": " + d;
        }
        report(why.empty(), name, why);
      });
    }
  for (DType t : kDTypes)
    for (float a : kAs) {
      const std::string name = "device: weight_view_bf16 " + dtype_str(t) + " a=" + a_str(a);
      run_test(name, [&] {
        std::string why;
        for (const ViewCase& vc : view_cases(true)) {
          const std::vector<uint8_t> src = random_weights(t, vc.n, rng, a == 0.0f);
          const std::vector<float> want = cpu_view(t, src.data(), vc, stream, seed, a);
          DeviceArray<uint8_t> dsrc(src);
          for (uint64_t dst_shift : {0, 1}) {
            DeviceArray<uint16_t> ddst(std::vector<uint16_t>(vc.n + dst_shift, 0xdead));
            cuda::weight_view_bf16(ddst.p + dst_shift, dsrc.p, t, vc.n, stream, vc.first, seed, a, st);
            const std::vector<uint16_t> got = ddst.download();
            const std::string d = diff_bf16(want.data() + kGuard, got.data() + dst_shift, vc.n);
            if (!d.empty() && why.empty())
              why = "n=" + std::to_string(vc.n) + " first=" + std::to_string(vc.first) + ": " + d;
          }
        }
        report(why.empty(), name, why);
      });
    }
  run_test("device: argument errors leave CUDA usable", [&] {
    try {
      cuda::attention_forward(nullptr, false, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, 3, 2, 1, 1.0f, st);
    } catch (const Error&) {}
    const cudaError_t sticky = cudaGetLastError();
    report(sticky == cudaSuccess, "device: argument errors leave CUDA usable",
           sticky == cudaSuccess ? "" : cudaGetErrorName(sticky));
  });
}

// ---------------------------------------------------------------------------------

int main(int argc, char** argv) {
  bool host_only = false, host_large = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--host-only") host_only = true;
    else if (a == "--host-large") host_large = true;
    else if (a == "--no-bench") continue;  // no benchmark here; accepted like the other test programs
    else {
      fprintf(stderr, "usage: %s [--host-only] [--host-large]\n", argv[0]);
      return 2;
    }
  }
  Rng rng(test_seed());
  printf("-- host emulation of the kernel bodies\n");
  host_argument_tests();
  host_view_tests(rng);
  host_gradient_check(rng);
  host_attention_tests(rng, host_large);
  if (!host_only) {
    if (!have_device()) {
      report(false, "device: a CUDA device is available (use --host-only without one)");
    } else {
      printf("-- device tests\n");
      cudaStream_t st;
      CK(cudaStreamCreate(&st));
      device_view_tests(rng, st);
      device_attention_tests(rng, st);
      CK(cudaStreamDestroy(st));
    }
  }
  return summary();
}
