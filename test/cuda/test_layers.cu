// The layer kernels of the CUDA backend (norm, activation, rope, elementwise, optim,
// rows, loss) against the CPU backend and plain float64 references.
//
//   test_layers              host emulation, then the device tests when a GPU is present
//   test_layers --host-only  host emulation only (no GPU needed)
//
// Host emulation runs the kernels' own bodies (native/cuda/*.cuh) on the CPU over every
// index of the grid, with the row reductions split in lanes as on the device:
//   "host/1 lane"   one lane, the CPU's summation order: every result must be
//                   bit-identical to the CPU backend (same expressions, same libm);
//   "host/device lanes"  the lane counts the device launch uses (row sums reordered).
// "device" runs the launchers on device memory (larger sizes too). Every run draws fresh
// random inputs (the seed is printed; ZOFO_TEST_SEED reproduces a run).
//
// Tolerances, |got − want| ≤ atol + rtol·|want|:
//   vs the CPU backend: bit-identical where the arithmetic is the same IEEE operations
//     in the same order; else kReorder (double sums in another order: the fp32 results
//     differ by an ulp at most) or kLibm (CUDA's expf/tanhf/cos… vs the host's, ≤ 2 ulp);
//   vs float64 references: stated per test, from the fp32 roundings involved.
// The last line is "N passed, N failed"; the exit status is non-zero on any failure.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "common/error.h"
#include "common/fo_hyper.h"
#include "cpu/activation.h"
#include "cpu/norm.h"
#include "cpu/optim.h"
#include "cpu/rope.h"
#include "cuda/activation.cuh"
#include "cuda/check.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/loss.cuh"
#include "cuda/norm.cuh"
#include "cuda/optim.cuh"
#include "cuda/rope.cuh"
#include "cuda/rows.cuh"
#include "harness.h"

using namespace zofo;
using namespace zofo::test;
namespace body = zofo::cuda::body;

namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;
using IVec = std::vector<int32_t>;

struct Tol {
  double atol, rtol;
};
constexpr Tol kReorder{1e-6, 1e-6};  // vs CPU: double sums in another order
constexpr Tol kLibm{1e-6, 1e-5};     // vs CPU: CUDA's transcendentals (≤ 2 ulp) vs the host's
// ... in the activations' backwards, where an ulp of tanh/σ near 1 is multiplied by
// factors up to ~30 (1 − t², 1 − σ cancel) and added to an O(1) gradient.
constexpr Tol kLibmBackward{1e-5, 1e-5};

// ---------------------------------------------------------------------------------
// Checks

std::string str(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string str(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

// Bit-identical fp32 vectors.
void check_bits(const std::string& name, const Vec& want, const Vec& got) {
  if (want.size() != got.size()) {
    report(false, name, str("size %zu != %zu", got.size(), want.size()));
    return;
  }
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (memcmp(&want[i], &got[i], sizeof(float)) != 0 && bad++ == 0) first = i;
  report(bad == 0, name,
         bad ? str("%zu of %zu differ in bits; first [%zu] got %.9g want %.9g", bad, want.size(), first,
                   (double)got[first], (double)want[first])
             : "");
}

// Against the CPU backend: bit-identical when `exact`, else within tol.
void check_cpu(const std::string& name, const Vec& cpu, const Vec& got, bool exact, Tol tol) {
  if (exact) check_bits(name + " == cpu (bits)", cpu, got);
  else check_close(name + " ~ cpu", cpu, got, tol.atol, tol.rtol);
}

void check_ref(const std::string& name, const DVec& ref, const Vec& got, Tol tol) {
  check_close(name + " ~ float64", ref, got, tol.atol, tol.rtol);
}

// Doubles (the loss's logp): within tol, NaN only where want is NaN.
void check_close_d(const std::string& name, const DVec& want, const DVec& got, Tol tol) {
  size_t bad = 0, worst = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const bool ok = std::isnan(want[i]) ? std::isnan(got[i])
                                        : std::fabs(got[i] - want[i]) <= tol.atol + tol.rtol * std::fabs(want[i]);
    if (!ok && bad++ == 0) worst = i;
  }
  if (want.size() != got.size()) bad = std::max<size_t>(bad, 1);
  report(bad == 0, name,
         bad ? str("%zu of %zu outside atol %.1e + rtol %.1e; first [%zu] got %.17g want %.17g", bad, want.size(),
                   tol.atol, tol.rtol, worst, worst < got.size() ? got[worst] : 0.0,
                   worst < want.size() ? want[worst] : 0.0)
             : "");
}

// ---------------------------------------------------------------------------------
// Inputs

Rng rng_for(uint64_t salt) { return Rng(test_seed() * 0x9e3779b97f4a7c15ull + salt); }

Vec uniforms(Rng& r, size_t n, float lo, float hi) {
  Vec v(n);
  for (float& x : v) x = r.uniform(lo, hi);
  return v;
}

DVec widen(const Vec& v) { return DVec(v.begin(), v.end()); }

// ---------------------------------------------------------------------------------
// Executors: the same operations run as host emulation of the kernel bodies or through
// the launchers on the device. Vectors are host copies; outputs are written back.

struct Exec {
  virtual ~Exec() = default;
  virtual std::string name() const = 0;
  virtual bool serial_sums() const = 0;  // row / column sums in the CPU's order
  virtual bool host_libm() const = 0;    // transcendentals from the host's libm (the CPU's)

  virtual void rmsnorm_forward(Vec& out, Vec& rstd, const Vec& inp, const Vec& w, int64_t N, int64_t C, float eps) = 0;
  virtual void rmsnorm_backward(Vec& dinp, Vec* dweight, const Vec& dout, const Vec& inp, const Vec& w, const Vec& rstd,
                                int64_t N, int64_t C) = 0;
  virtual void layernorm_forward(Vec& out, Vec& mean, Vec& rstd, const Vec& inp, const Vec& w, const Vec* bias,
                                 int64_t N, int64_t C, float eps) = 0;
  virtual void layernorm_backward(Vec& dinp, Vec* dweight, Vec* dbias, const Vec& dout, const Vec& inp, const Vec& w,
                                  const Vec& mean, const Vec& rstd, int64_t N, int64_t C) = 0;
  virtual void activation_forward(int kind, Vec& out, const Vec& inp) = 0;
  virtual void activation_backward(int kind, Vec& dinp, const Vec& inp, const Vec& dout) = 0;
  virtual void swiglu_forward(Vec& out, const Vec& gate, const Vec& up) = 0;
  // The bf16-output variants (the producers of matmul operands in bf16 compute).
  using HVec = std::vector<uint16_t>;
  virtual void rmsnorm_forward_bf16(HVec& out, Vec& rstd, const Vec& inp, const Vec& w, int64_t N, int64_t C,
                                    float eps) = 0;
  virtual void swiglu_forward_bf16(HVec& out, const Vec& gate, const Vec& up) = 0;
  virtual void layernorm_forward_bf16(HVec& out, Vec& mean, Vec& rstd, const Vec& inp, const Vec& w, const Vec* bias,
                                      int64_t N, int64_t C, float eps) = 0;
  virtual void activation_forward_bf16(int kind, HVec& out, const Vec& inp) = 0;
  virtual void swiglu_backward(Vec& dgate, Vec& dup, const Vec& gate, const Vec& up, const Vec& dout) = 0;
  virtual void rope(Vec& x, const IVec& pos, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
                    bool backward) = 0;
  virtual void fill(Vec& dst, float value) = 0;
  virtual void add_bias(Vec& y, const Vec& bias, int64_t N, int64_t C) = 0;
  virtual void bias_backward(Vec& dbias, const Vec& dy, int64_t N, int64_t C) = 0;
  virtual void axpy(Vec& y, const Vec& x, float alpha) = 0;
  virtual bool all_finite(const Vec& p) = 0;
  virtual void fo_update(const FoHyper& h, Vec& x, const Vec& g, Vec& m, Vec& v) = 0;
  virtual void gather_rows(Vec& out, const Vec& x, const IVec& rows, int64_t M, int64_t C) = 0;
  virtual void scatter_add_rows(Vec& dx, const Vec& dout, const IVec& rows, int64_t M, int64_t C) = 0;
  virtual void log_softmax_at(Vec& logits, const IVec& targets, DVec& logp, int64_t M, int64_t V, bool probs) = 0;
  virtual void xent_backward(Vec& probs, const IVec& targets, const DVec& drow, int64_t M, int64_t V) = 0;
};

// The kernel bodies on the host: rows with SerialLanes (1 lane, or the device launch's
// lane count), columns with 1 or kColumnLanes lanes, element-wise bodies over every index.
struct HostExec final : Exec {
  bool one_lane;
  explicit HostExec(bool one_lane_) : one_lane(one_lane_) {}
  std::string name() const override { return one_lane ? "host/1 lane" : "host/device lanes"; }
  bool serial_sums() const override { return one_lane; }
  bool host_libm() const override { return true; }

  body::SerialLanes rows_of(int64_t cols, int max_lanes) const {
    return body::SerialLanes{one_lane ? 1 : body::lanes_for(cols, max_lanes)};
  }
  template <class Term>
  void column_sums(float* dst, const Term& term, int64_t N, int64_t C) const {
    const body::SerialLanes lanes{one_lane ? 1 : body::kColumnLanes};
    for (int64_t c = 0; c < C; ++c) body::column_sum_into(lanes, dst, term, N, C, c);
  }

  void rmsnorm_forward(Vec& out, Vec& rstd, const Vec& inp, const Vec& w, int64_t N, int64_t C, float eps) override {
    const auto lanes = rows_of(C, body::kNormMaxLanes);
    for (int64_t n = 0; n < N; ++n)
      body::rmsnorm_forward_row(lanes, out.data(), rstd.data(), inp.data(), w.data(), C, eps, n);
  }
  void rmsnorm_backward(Vec& dinp, Vec* dweight, const Vec& dout, const Vec& inp, const Vec& w, const Vec& rstd,
                        int64_t N, int64_t C) override {
    const auto lanes = rows_of(C, body::kNormMaxLanes);
    for (int64_t n = 0; n < N; ++n)
      body::rmsnorm_backward_row(lanes, dinp.data(), dout.data(), inp.data(), w.data(), rstd.data(), C, n);
    if (dweight) column_sums(dweight->data(), body::RmsnormDweightTerm{dout.data(), inp.data(), rstd.data(), C}, N, C);
  }
  void layernorm_forward(Vec& out, Vec& mean, Vec& rstd, const Vec& inp, const Vec& w, const Vec* bias, int64_t N,
                         int64_t C, float eps) override {
    const auto lanes = rows_of(C, body::kNormMaxLanes);
    for (int64_t n = 0; n < N; ++n)
      body::layernorm_forward_row(lanes, out.data(), mean.data(), rstd.data(), inp.data(), w.data(),
                                  bias ? bias->data() : nullptr, C, eps, n);
  }
  void layernorm_backward(Vec& dinp, Vec* dweight, Vec* dbias, const Vec& dout, const Vec& inp, const Vec& w,
                          const Vec& mean, const Vec& rstd, int64_t N, int64_t C) override {
    const auto lanes = rows_of(C, body::kNormMaxLanes);
    for (int64_t n = 0; n < N; ++n)
      body::layernorm_backward_row(lanes, dinp.data(), dout.data(), inp.data(), w.data(), mean.data(), rstd.data(), C,
                                   n);
    if (dweight)
      column_sums(dweight->data(), body::LayernormDweightTerm{dout.data(), inp.data(), mean.data(), rstd.data(), C}, N,
                  C);
    if (dbias) column_sums(dbias->data(), body::ColumnOf{dout.data(), C}, N, C);
  }
  void activation_forward(int kind, Vec& out, const Vec& inp) override {
    for (uint64_t i = 0; i < inp.size(); ++i)
      kind == 0 ? body::gelu_new_forward_one(out.data(), inp.data(), i)
                : body::relu_forward_one(out.data(), inp.data(), i);
  }
  void activation_backward(int kind, Vec& dinp, const Vec& inp, const Vec& dout) override {
    for (uint64_t i = 0; i < inp.size(); ++i)
      kind == 0 ? body::gelu_new_backward_one(dinp.data(), inp.data(), dout.data(), i)
                : body::relu_backward_one(dinp.data(), inp.data(), dout.data(), i);
  }
  void swiglu_forward(Vec& out, const Vec& gate, const Vec& up) override {
    for (uint64_t i = 0; i < gate.size(); ++i) body::swiglu_forward_one(out.data(), gate.data(), up.data(), i);
  }
  void rmsnorm_forward_bf16(HVec& out, Vec& rstd, const Vec& inp, const Vec& w, int64_t N, int64_t C,
                            float eps) override {
    const auto lanes = rows_of(C, body::kNormMaxLanes);
    for (int64_t n = 0; n < N; ++n)
      body::rmsnorm_forward_row(lanes, out.data(), rstd.data(), inp.data(), w.data(), C, eps, n);
  }
  void swiglu_forward_bf16(HVec& out, const Vec& gate, const Vec& up) override {
    for (uint64_t i = 0; i < gate.size(); ++i) body::swiglu_forward_one(out.data(), gate.data(), up.data(), i);
  }
  void layernorm_forward_bf16(HVec& out, Vec& mean, Vec& rstd, const Vec& inp, const Vec& w, const Vec* bias, int64_t N,
                              int64_t C, float eps) override {
    const auto lanes = rows_of(C, body::kNormMaxLanes);
    for (int64_t n = 0; n < N; ++n)
      body::layernorm_forward_row(lanes, out.data(), mean.data(), rstd.data(), inp.data(), w.data(),
                                  bias ? bias->data() : nullptr, C, eps, n);
  }
  void activation_forward_bf16(int kind, HVec& out, const Vec& inp) override {
    for (uint64_t i = 0; i < inp.size(); ++i)
      kind == 0 ? body::gelu_new_forward_one(out.data(), inp.data(), i)
                : body::relu_forward_one(out.data(), inp.data(), i);
  }
  void swiglu_backward(Vec& dgate, Vec& dup, const Vec& gate, const Vec& up, const Vec& dout) override {
    for (uint64_t i = 0; i < gate.size(); ++i)
      body::swiglu_backward_one(dgate.data(), dup.data(), gate.data(), up.data(), dout.data(), i);
  }
  void rope(Vec& x, const IVec& pos, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
            bool backward) override {
    for (int64_t bt = 0; bt < B * T; ++bt)
      for (int64_t i = 0; i < HS / 2; ++i)
        body::rope_pair(x.data(), pos.data(), NH, HS, theta, backward ? -1.0f : 1.0f, bt, i);
  }
  void fill(Vec& dst, float value) override {
    for (uint64_t i = 0; i < dst.size(); ++i) body::fill_one(dst.data(), value, i);
  }
  void add_bias(Vec& y, const Vec& bias, int64_t N, int64_t C) override {
    const auto lanes = rows_of(C, cuda::launch::kThreads);
    for (int64_t n = 0; n < N; ++n) body::add_bias_row(lanes, y.data(), bias.data(), C, n);
  }
  void bias_backward(Vec& dbias, const Vec& dy, int64_t N, int64_t C) override {
    column_sums(dbias.data(), body::ColumnOf{dy.data(), C}, N, C);
  }
  void axpy(Vec& y, const Vec& x, float alpha) override {
    for (uint64_t i = 0; i < y.size(); ++i) body::axpy_one(y.data(), x.data(), alpha, i);
  }
  bool all_finite(const Vec& p) override {
    bool bad = false;
    for (uint64_t i = 0; i < p.size(); ++i) bad |= body::is_nonfinite(p[i]);
    return !bad;
  }
  void fo_update(const FoHyper& h, Vec& x, const Vec& g, Vec& m, Vec& v) override {
    const body::FoScalars k = body::fo_scalars(h);
    for (uint64_t i = 0; i < x.size(); ++i) {
      if (h.kind == FoKind::SGD) body::sgd_one(k, x.data(), g.data(), i);
      if (h.kind == FoKind::Momentum) body::momentum_one(k, x.data(), g.data(), m.data(), i);
      if (h.kind == FoKind::AdamW) body::adamw_one(k, x.data(), g.data(), m.data(), v.data(), i);
    }
  }
  void gather_rows(Vec& out, const Vec& x, const IVec& rows, int64_t M, int64_t C) override {
    const auto lanes = rows_of(C, cuda::launch::kThreads);
    for (int64_t m = 0; m < M; ++m) body::gather_row(lanes, out.data(), x.data(), rows.data(), C, m);
  }
  void scatter_add_rows(Vec& dx, const Vec& dout, const IVec& rows, int64_t M, int64_t C) override {
    for (int64_t c = 0; c < C; ++c) body::scatter_add_column(dx.data(), dout.data(), rows.data(), M, C, c);
  }
  void log_softmax_at(Vec& logits, const IVec& targets, DVec& logp, int64_t M, int64_t V, bool probs) override {
    const auto lanes = rows_of(V, body::kSoftmaxMaxLanes);
    for (int64_t i = 0; i < M; ++i)
      body::log_softmax_row(lanes, logits.data(), targets.data(), logp.data(), V, probs, i);
  }
  void xent_backward(Vec& probs, const IVec& targets, const DVec& drow, int64_t M, int64_t V) override {
    const auto lanes = rows_of(V, cuda::launch::kThreads);
    for (int64_t i = 0; i < M; ++i) body::xent_backward_row(lanes, probs.data(), targets.data(), drow.data(), V, i);
  }
};

// The launchers on device memory, on a stream of their own.
struct DeviceExec final : Exec {
  cudaStream_t s = nullptr;
  DeviceExec() { cuda::cuda_check(cudaStreamCreate(&s), "cudaStreamCreate"); }
  ~DeviceExec() override { cudaStreamDestroy(s); }
  std::string name() const override { return "device"; }
  bool serial_sums() const override { return false; }
  bool host_libm() const override { return false; }

  template <class T>
  using D = DeviceArray<T>;
  // Optional buffers (null when the host vector is absent).
  struct Opt {
    std::unique_ptr<D<float>> a;
    explicit Opt(const Vec* v) {
      if (v) a = std::make_unique<D<float>>(*v);
    }
    float* p() const { return a ? a->p : nullptr; }
    void back(Vec* v) const {
      if (v) *v = a->download();
    }
  };

  void rmsnorm_forward(Vec& out, Vec& rstd, const Vec& inp, const Vec& w, int64_t N, int64_t C, float eps) override {
    D<float> d_out(out), d_rstd(rstd), d_inp(inp), d_w(w);
    cuda::rmsnorm_forward(d_out.p, d_rstd.p, d_inp.p, d_w.p, N, C, eps, s);
    out = d_out.download();
    rstd = d_rstd.download();
  }
  void rmsnorm_forward_bf16(HVec& out, Vec& rstd, const Vec& inp, const Vec& w, int64_t N, int64_t C,
                            float eps) override {
    D<uint16_t> d_out(out);
    D<float> d_rstd(rstd), d_inp(inp), d_w(w);
    cuda::rmsnorm_forward(d_out.p, d_rstd.p, d_inp.p, d_w.p, N, C, eps, s);
    out = d_out.download();
    rstd = d_rstd.download();
  }
  void swiglu_forward_bf16(HVec& out, const Vec& gate, const Vec& up) override {
    D<uint16_t> d_out(out);
    D<float> d_gate(gate), d_up(up);
    cuda::swiglu_forward(d_out.p, d_gate.p, d_up.p, (int64_t)gate.size(), s);
    out = d_out.download();
  }
  void layernorm_forward_bf16(HVec& out, Vec& mean, Vec& rstd, const Vec& inp, const Vec& w, const Vec* bias, int64_t N,
                              int64_t C, float eps) override {
    D<uint16_t> d_out(out);
    D<float> d_mean(mean), d_rstd(rstd), d_inp(inp), d_w(w);
    Opt d_b(bias);
    cuda::layernorm_forward(d_out.p, d_mean.p, d_rstd.p, d_inp.p, d_w.p, d_b.p(), N, C, eps, s);
    out = d_out.download();
    mean = d_mean.download();
    rstd = d_rstd.download();
  }
  void activation_forward_bf16(int kind, HVec& out, const Vec& inp) override {
    D<uint16_t> d_out(out);
    D<float> d_inp(inp);
    cuda::activation_forward(kind, d_out.p, d_inp.p, (int64_t)inp.size(), s);
    out = d_out.download();
  }
  void rmsnorm_backward(Vec& dinp, Vec* dweight, const Vec& dout, const Vec& inp, const Vec& w, const Vec& rstd,
                        int64_t N, int64_t C) override {
    D<float> d_dinp(dinp), d_dout(dout), d_inp(inp), d_w(w), d_rstd(rstd);
    Opt d_dw(dweight);
    cuda::rmsnorm_backward(d_dinp.p, d_dw.p(), d_dout.p, d_inp.p, d_w.p, d_rstd.p, N, C, s);
    dinp = d_dinp.download();
    d_dw.back(dweight);
  }
  void layernorm_forward(Vec& out, Vec& mean, Vec& rstd, const Vec& inp, const Vec& w, const Vec* bias, int64_t N,
                         int64_t C, float eps) override {
    D<float> d_out(out), d_mean(mean), d_rstd(rstd), d_inp(inp), d_w(w);
    Opt d_b(bias);
    cuda::layernorm_forward(d_out.p, d_mean.p, d_rstd.p, d_inp.p, d_w.p, d_b.p(), N, C, eps, s);
    out = d_out.download();
    mean = d_mean.download();
    rstd = d_rstd.download();
  }
  void layernorm_backward(Vec& dinp, Vec* dweight, Vec* dbias, const Vec& dout, const Vec& inp, const Vec& w,
                          const Vec& mean, const Vec& rstd, int64_t N, int64_t C) override {
    D<float> d_dinp(dinp), d_dout(dout), d_inp(inp), d_w(w), d_mean(mean), d_rstd(rstd);
    Opt d_dw(dweight), d_db(dbias);
    cuda::layernorm_backward(d_dinp.p, d_dw.p(), d_db.p(), d_dout.p, d_inp.p, d_w.p, d_mean.p, d_rstd.p, N, C, s);
    dinp = d_dinp.download();
    d_dw.back(dweight);
    d_db.back(dbias);
  }
  void activation_forward(int kind, Vec& out, const Vec& inp) override {
    D<float> d_out(out), d_inp(inp);
    cuda::activation_forward(kind, d_out.p, d_inp.p, (int64_t)inp.size(), s);
    out = d_out.download();
  }
  void activation_backward(int kind, Vec& dinp, const Vec& inp, const Vec& dout) override {
    D<float> d_dinp(dinp), d_inp(inp), d_dout(dout);
    cuda::activation_backward(kind, d_dinp.p, d_inp.p, d_dout.p, (int64_t)inp.size(), s);
    dinp = d_dinp.download();
  }
  void swiglu_forward(Vec& out, const Vec& gate, const Vec& up) override {
    D<float> d_out(out), d_gate(gate), d_up(up);
    cuda::swiglu_forward(d_out.p, d_gate.p, d_up.p, (int64_t)gate.size(), s);
    out = d_out.download();
  }
  void swiglu_backward(Vec& dgate, Vec& dup, const Vec& gate, const Vec& up, const Vec& dout) override {
    D<float> d_dgate(dgate), d_dup(dup), d_gate(gate), d_up(up), d_dout(dout);
    cuda::swiglu_backward(d_dgate.p, d_dup.p, d_gate.p, d_up.p, d_dout.p, (int64_t)gate.size(), s);
    dgate = d_dgate.download();
    dup = d_dup.download();
  }
  void rope(Vec& x, const IVec& pos, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
            bool backward) override {
    D<float> d_x(x);
    D<int32_t> d_pos(pos);
    cuda::rope(d_x.p, d_pos.p, B, T, NH, HS, theta, backward, s);
    x = d_x.download();
  }
  void fill(Vec& dst, float value) override {
    D<float> d(dst);
    cuda::fill(d.p, value, dst.size(), s);
    dst = d.download();
  }
  void add_bias(Vec& y, const Vec& bias, int64_t N, int64_t C) override {
    D<float> d_y(y), d_b(bias);
    cuda::add_bias(d_y.p, d_b.p, N, C, s);
    y = d_y.download();
  }
  void bias_backward(Vec& dbias, const Vec& dy, int64_t N, int64_t C) override {
    D<float> d_db(dbias), d_dy(dy);
    cuda::bias_backward(d_db.p, d_dy.p, N, C, s);
    dbias = d_db.download();
  }
  void axpy(Vec& y, const Vec& x, float alpha) override {
    D<float> d_y(y), d_x(x);
    cuda::axpy(d_y.p, d_x.p, alpha, y.size(), s);
    y = d_y.download();
  }
  bool all_finite(const Vec& p) override {
    D<float> d_p(p);
    D<int> flag(std::vector<int>{7});  // garbage: the launcher must zero it
    cuda::all_finite(d_p.p, p.size(), flag.p, s);
    return flag.download()[0] == 0;
  }
  void fo_update(const FoHyper& h, Vec& x, const Vec& g, Vec& m, Vec& v) override {
    D<float> d_x(x), d_g(g), d_m(m), d_v(v);
    cuda::fo_update(h, d_x.p, d_g.p, m.empty() ? nullptr : d_m.p, v.empty() ? nullptr : d_v.p, x.size(), s);
    x = d_x.download();
    if (!m.empty()) m = d_m.download();
    if (!v.empty()) v = d_v.download();
  }
  void gather_rows(Vec& out, const Vec& x, const IVec& rows, int64_t M, int64_t C) override {
    D<float> d_out(out), d_x(x);
    D<int32_t> d_rows(rows);
    cuda::gather_rows(d_out.p, d_x.p, d_rows.p, M, C, s);
    out = d_out.download();
  }
  void scatter_add_rows(Vec& dx, const Vec& dout, const IVec& rows, int64_t M, int64_t C) override {
    D<float> d_dx(dx), d_dout(dout);
    D<int32_t> d_rows(rows);
    cuda::scatter_add_rows(d_dx.p, d_dout.p, d_rows.p, M, C, s);
    dx = d_dx.download();
  }
  void log_softmax_at(Vec& logits, const IVec& targets, DVec& logp, int64_t M, int64_t V, bool probs) override {
    D<float> d_logits(logits);
    D<int32_t> d_t(targets);
    D<double> d_logp(logp);
    cuda::log_softmax_at(d_logits.p, d_t.p, d_logp.p, M, V, probs, s);
    logits = d_logits.download();
    logp = d_logp.download();
  }
  void xent_backward(Vec& probs, const IVec& targets, const DVec& drow, int64_t M, int64_t V) override {
    D<float> d_probs(probs);
    D<int32_t> d_t(targets);
    D<double> d_drow(drow);
    cuda::xent_backward(d_probs.p, d_t.p, d_drow.p, M, V, s);
    probs = d_probs.download();
  }
};

// ---------------------------------------------------------------------------------
// Norms

// float64 references. rstd/mean inputs of the backwards are the forward's fp32 values,
// as the kernels get them.
void rmsnorm_ref(DVec& out, DVec& rstd, const Vec& inp, const Vec& w, int64_t N, int64_t C, float eps) {
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += (double)inp[n * C + c] * inp[n * C + c];
    rstd[n] = 1.0 / std::sqrt(ss / C + eps);
    for (int64_t c = 0; c < C; ++c) out[n * C + c] = inp[n * C + c] * rstd[n] * w[c];
  }
}

void layernorm_ref(DVec& out, DVec& mean, DVec& rstd, const Vec& inp, const Vec& w, const Vec* bias, int64_t N,
                   int64_t C, float eps) {
  for (int64_t n = 0; n < N; ++n) {
    double s = 0, v = 0;
    for (int64_t c = 0; c < C; ++c) s += inp[n * C + c];
    mean[n] = s / C;
    for (int64_t c = 0; c < C; ++c) v += (inp[n * C + c] - mean[n]) * (inp[n * C + c] - mean[n]);
    rstd[n] = 1.0 / std::sqrt(v / C + eps);
    for (int64_t c = 0; c < C; ++c)
      out[n * C + c] = (inp[n * C + c] - mean[n]) * rstd[n] * w[c] + (bias ? (*bias)[c] : 0.0);
  }
}

// dinp += r(g − mean(g)·centered − x̂·mean(g·x̂)), x̂ = (x − mu)·r, g = dout·w; dweight += Σ dout·x̂;
// dbias += Σ dout. RMSNorm: mu = 0 and no mean(g) term.
void norm_backward_ref(DVec& dinp, DVec& dweight, DVec& dbias, const Vec& dout, const Vec& inp, const Vec& w,
                       const Vec* mean, const Vec& rstd, int64_t N, int64_t C) {
  for (int64_t n = 0; n < N; ++n) {
    const double mu = mean ? (*mean)[n] : 0.0, r = rstd[n];
    double g_sum = 0, gx_sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double g = (double)dout[n * C + c] * w[c], xh = (inp[n * C + c] - mu) * r;
      g_sum += g;
      gx_sum += g * xh;
      dweight[c] += dout[n * C + c] * xh;
      dbias[c] += dout[n * C + c];
    }
    for (int64_t c = 0; c < C; ++c) {
      const double g = (double)dout[n * C + c] * w[c], xh = (inp[n * C + c] - mu) * r;
      dinp[n * C + c] += r * (g - (mean ? g_sum / C : 0.0) - xh * gx_sum / C);
    }
  }
}

// float64 tolerances of the norms: fp32 products of O(1) values (a few ulp) and fp32
// x̂ terms summed over N rows for the weight gradients.
constexpr Tol kNormRef{1e-5, 1e-5};

void test_rmsnorm(Exec& ex, int64_t N, int64_t C, uint64_t salt) {
  const std::string tag = str("%s rmsnorm N=%lld C=%lld", ex.name().c_str(), (long long)N, (long long)C);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    const float eps = C % 2 ? 1e-5f : 1e-6f;
    const Vec inp = rng.normals(N * C), w = uniforms(rng, C, 0.5f, 1.5f);
    // forward
    Vec out(N * C, 0.0f), rstd(N, 0.0f), cpu_out(N * C), cpu_rstd(N);
    ex.rmsnorm_forward(out, rstd, inp, w, N, C, eps);
    cpu::rmsnorm_forward(cpu_out.data(), cpu_rstd.data(), inp.data(), w.data(), N, C, eps);
    DVec ref_out(N * C), ref_rstd(N);
    rmsnorm_ref(ref_out, ref_rstd, inp, w, N, C, eps);
    check_cpu(tag + " forward out", cpu_out, out, ex.serial_sums(), kReorder);
    check_cpu(tag + " forward rstd", cpu_rstd, rstd, ex.serial_sums(), kReorder);
    check_ref(tag + " forward out", ref_out, out, kNormRef);
    check_ref(tag + " forward rstd", ref_rstd, rstd, kNormRef);
    // backward: accumulates into nonzero gradients; with and without dweight
    const Vec dout = rng.normals(N * C), dinp0 = rng.normals(N * C), dw0 = rng.normals(C);
    for (const bool with_dw : {true, false}) {
      const std::string t = tag + (with_dw ? " backward" : " backward (no dweight)");
      Vec dinp = dinp0, dw = dw0, cpu_dinp = dinp0, cpu_dw = dw0;
      ex.rmsnorm_backward(dinp, with_dw ? &dw : nullptr, dout, inp, w, cpu_rstd, N, C);
      cpu::rmsnorm_backward(cpu_dinp.data(), with_dw ? cpu_dw.data() : nullptr, dout.data(), inp.data(), w.data(),
                            cpu_rstd.data(), N, C);
      DVec ref_dinp = widen(dinp0), ref_dw = widen(dw0), ref_db(C);
      norm_backward_ref(ref_dinp, ref_dw, ref_db, dout, inp, w, nullptr, cpu_rstd, N, C);
      check_cpu(t + " dinp", cpu_dinp, dinp, ex.serial_sums(), kReorder);
      check_ref(t + " dinp", ref_dinp, dinp, kNormRef);
      if (with_dw) {
        check_cpu(t + " dweight", cpu_dw, dw, ex.serial_sums(), kReorder);
        check_ref(t + " dweight", ref_dw, dw, kNormRef);
      } else {
        check_bits(t + " dweight untouched", dw0, dw);
      }
    }
  });
}

// The bf16 outputs (RMSNorm, LayerNorm, SwiGLU, gelu_new, relu): the same executor's
// fp32 output rounded to nearest even, bit for bit (the bodies compute the fp32 value,
// then store it rounded).
void test_bf16_outputs(Exec& ex, int64_t N, int64_t C, uint64_t salt) {
  const std::string tag = str("%s bf16 outputs N=%lld C=%lld", ex.name().c_str(), (long long)N, (long long)C);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    const Vec inp = rng.normals(N * C, 4.0f), w = uniforms(rng, C, 0.5f, 1.5f), up = rng.normals(N * C),
              bias = rng.normals(C);
    Vec out(N * C, 0.0f), rstd(N, 0.0f), rstd16(N, 0.0f);
    Exec::HVec out16(N * C, 0xffff);
    const auto same_bits = [](const Vec& f32, const Exec::HVec& b16) {
      size_t bad = 0;
      for (size_t i = 0; i < f32.size(); ++i) bad += b16[i] != f32_to_bf16(f32[i]);
      return bad ? std::to_string(bad) + " of " + std::to_string(f32.size()) + " differ" : std::string();
    };
    ex.rmsnorm_forward(out, rstd, inp, w, N, C, 1e-6f);
    ex.rmsnorm_forward_bf16(out16, rstd16, inp, w, N, C, 1e-6f);
    std::string why = same_bits(out, out16);
    report(why.empty(), tag + " rmsnorm out = fp32 out rounded", why);
    check_bits(tag + " rmsnorm rstd unchanged by the output type", rstd, rstd16);
    Vec sw(N * C, 0.0f);
    Exec::HVec sw16(N * C, 0xffff);
    ex.swiglu_forward(sw, inp, up);
    ex.swiglu_forward_bf16(sw16, inp, up);
    why = same_bits(sw, sw16);
    report(why.empty(), tag + " swiglu out = fp32 out rounded", why);
    Vec ln(N * C, 0.0f), mean(N, 0.0f), lrstd(N, 0.0f);
    Exec::HVec ln16(N * C, 0xffff);
    ex.layernorm_forward(ln, mean, lrstd, inp, w, &bias, N, C, 1e-5f);
    ex.layernorm_forward_bf16(ln16, mean, lrstd, inp, w, &bias, N, C, 1e-5f);
    why = same_bits(ln, ln16);
    report(why.empty(), tag + " layernorm out = fp32 out rounded", why);
    for (const int kind : {0, 1}) {
      Vec a(N * C, 0.0f);
      Exec::HVec a16(N * C, 0xffff);
      ex.activation_forward(kind, a, inp);
      ex.activation_forward_bf16(kind, a16, inp);
      why = same_bits(a, a16);
      report(why.empty(), tag + (kind ? " relu" : " gelu_new") + " out = fp32 out rounded", why);
    }
  });
}

void test_layernorm(Exec& ex, int64_t N, int64_t C, uint64_t salt) {
  const std::string tag = str("%s layernorm N=%lld C=%lld", ex.name().c_str(), (long long)N, (long long)C);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    const float eps = 1e-5f;
    Vec inp = rng.normals(N * C);
    for (float& x : inp) x += 0.5f;  // a nonzero mean
    const Vec w = uniforms(rng, C, 0.5f, 1.5f), bias = rng.normals(C);
    Vec cpu_mean(N), cpu_rstd(N);
    for (const bool with_bias : {true, false}) {
      const std::string t = tag + (with_bias ? " forward" : " forward (no bias)");
      const Vec* b = with_bias ? &bias : nullptr;
      Vec out(N * C, 0.0f), mean(N, 0.0f), rstd(N, 0.0f), cpu_out(N * C);
      ex.layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
      cpu::layernorm_forward(cpu_out.data(), cpu_mean.data(), cpu_rstd.data(), inp.data(), w.data(),
                             b ? b->data() : nullptr, N, C, eps);
      DVec ref_out(N * C), ref_mean(N), ref_rstd(N);
      layernorm_ref(ref_out, ref_mean, ref_rstd, inp, w, b, N, C, eps);
      check_cpu(t + " out", cpu_out, out, ex.serial_sums(), kReorder);
      check_cpu(t + " mean", cpu_mean, mean, ex.serial_sums(), kReorder);
      check_cpu(t + " rstd", cpu_rstd, rstd, ex.serial_sums(), kReorder);
      check_ref(t + " out", ref_out, out, kNormRef);
      check_ref(t + " mean", ref_mean, mean, kNormRef);
      check_ref(t + " rstd", ref_rstd, rstd, kNormRef);
    }
    const Vec dout = rng.normals(N * C), dinp0 = rng.normals(N * C), dw0 = rng.normals(C), db0 = rng.normals(C);
    for (const bool with_params : {true, false}) {
      const std::string t = tag + (with_params ? " backward" : " backward (frozen weight, bias)");
      Vec dinp = dinp0, dw = dw0, db = db0, cpu_dinp = dinp0, cpu_dw = dw0, cpu_db = db0;
      ex.layernorm_backward(dinp, with_params ? &dw : nullptr, with_params ? &db : nullptr, dout, inp, w, cpu_mean,
                            cpu_rstd, N, C);
      cpu::layernorm_backward(cpu_dinp.data(), with_params ? cpu_dw.data() : nullptr,
                              with_params ? cpu_db.data() : nullptr, dout.data(), inp.data(), w.data(), cpu_mean.data(),
                              cpu_rstd.data(), N, C);
      DVec ref_dinp = widen(dinp0), ref_dw = widen(dw0), ref_db = widen(db0);
      norm_backward_ref(ref_dinp, ref_dw, ref_db, dout, inp, w, &cpu_mean, cpu_rstd, N, C);
      check_cpu(t + " dinp", cpu_dinp, dinp, ex.serial_sums(), kReorder);
      check_ref(t + " dinp", ref_dinp, dinp, kNormRef);
      if (with_params) {
        check_cpu(t + " dweight", cpu_dw, dw, ex.serial_sums(), kReorder);
        check_cpu(t + " dbias", cpu_db, db, ex.serial_sums(), kReorder);
        check_ref(t + " dweight", ref_dw, dw, kNormRef);
        check_ref(t + " dbias", ref_db, db, kNormRef);
      } else {
        check_bits(t + " dweight untouched", dw0, dw);
        check_bits(t + " dbias untouched", db0, db);
      }
    }
  });
}

// ---------------------------------------------------------------------------------
// Activations

// float64 tolerances: fp32 evaluation with tanhf/expf, a few ulp (near gelu's and
// swiglu's zeros the absolute term covers 1 + tanh cancelling). The backwards add a
// product of O(1..10) factors (gelu's with 1 − t², which cancels for |x| ≳ 2) to an
// O(1) gradient: a few ulp of values up to ~30, absolute.
constexpr Tol kActRef{1e-6, 1e-5};
constexpr Tol kActBackwardRef{1e-5, 1e-5};

void test_activations(Exec& ex, int64_t N, uint64_t salt) {
  const std::string tag = str("%s activations N=%lld", ex.name().c_str(), (long long)N);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    Vec x = rng.normals(N, 3.0f);
    x[0] = 0.0f;  // relu's kink: forward 0, backward 0 (inp > 0 is false)
    if (N > 2) x[1] = -0.0f;
    const Vec dout = rng.normals(N), d0 = rng.normals(N);
    const double k = std::sqrt(2.0 / M_PI), a = 0.044715;
    for (const int kind : {0, 1}) {
      const std::string t = tag + (kind == 0 ? " gelu_new" : " relu");
      const bool exact = kind == 1 || ex.host_libm();  // relu: no libm at all
      Vec out(N, 0.0f), cpu_out(N), dinp = d0, cpu_dinp = d0;
      ex.activation_forward(kind, out, x);
      ex.activation_backward(kind, dinp, x, dout);
      if (kind == 0) {
        cpu::gelu_new_forward(cpu_out.data(), x.data(), N);
        cpu::gelu_new_backward(cpu_dinp.data(), x.data(), dout.data(), N);
      } else {
        cpu::relu_forward(cpu_out.data(), x.data(), N);
        cpu::relu_backward(cpu_dinp.data(), x.data(), dout.data(), N);
      }
      DVec ref_out(N), ref_dinp(N);
      for (int64_t i = 0; i < N; ++i) {
        const double v = x[i];
        if (kind == 0) {
          const double t = std::tanh(k * (v + a * v * v * v));
          ref_out[i] = 0.5 * v * (1 + t);
          ref_dinp[i] = d0[i] + dout[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * a * v * v));
        } else {
          ref_out[i] = v > 0 ? v : 0;
          ref_dinp[i] = d0[i] + (v > 0 ? dout[i] : 0.0);
        }
      }
      check_cpu(t + " forward", cpu_out, out, exact, kLibm);
      check_cpu(t + " backward", cpu_dinp, dinp, exact, kLibmBackward);
      check_ref(t + " forward", ref_out, out, kActRef);
      check_ref(t + " backward", ref_dinp, dinp, kActBackwardRef);
    }
    // swiglu
    const Vec gate = rng.normals(N, 3.0f), up = rng.normals(N), dg0 = rng.normals(N), du0 = rng.normals(N);
    Vec out(N, 0.0f), cpu_out(N), dgate = dg0, dup = du0, cpu_dgate = dg0, cpu_dup = du0;
    ex.swiglu_forward(out, gate, up);
    ex.swiglu_backward(dgate, dup, gate, up, dout);
    cpu::swiglu_forward(cpu_out.data(), gate.data(), up.data(), N);
    cpu::swiglu_backward(cpu_dgate.data(), cpu_dup.data(), gate.data(), up.data(), dout.data(), N);
    DVec ref_out(N), ref_dgate(N), ref_dup(N);
    for (int64_t i = 0; i < N; ++i) {
      const double g = gate[i], s = 1 / (1 + std::exp(-g));
      ref_out[i] = g * s * up[i];
      ref_dgate[i] = dg0[i] + (double)dout[i] * up[i] * s * (1 + g * (1 - s));
      ref_dup[i] = du0[i] + dout[i] * g * s;
    }
    check_cpu(tag + " swiglu forward", cpu_out, out, ex.host_libm(), kLibm);
    check_cpu(tag + " swiglu backward dgate", cpu_dgate, dgate, ex.host_libm(), kLibmBackward);
    check_cpu(tag + " swiglu backward dup", cpu_dup, dup, ex.host_libm(), kLibmBackward);
    check_ref(tag + " swiglu forward", ref_out, out, kActRef);
    check_ref(tag + " swiglu backward dgate", ref_dgate, dgate, kActBackwardRef);
    check_ref(tag + " swiglu backward dup", ref_dup, dup, kActBackwardRef);
  });
}

// ---------------------------------------------------------------------------------
// RoPE

// float64 tolerance: cos/sin rounded to fp32, two fp32 products and a sum per output.
constexpr Tol kRopeRef{2e-6, 1e-6};

void test_rope(Exec& ex, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta, uint64_t salt) {
  const std::string tag = str("%s rope B=%lld T=%lld NH=%lld HS=%lld theta=%g", ex.name().c_str(), (long long)B,
                              (long long)T, (long long)NH, (long long)HS, (double)theta);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    const int64_t n = B * T * NH * HS, half = HS / 2;
    const Vec x0 = rng.normals(n);
    IVec pos(B * T);
    for (auto& p : pos) p = (int32_t)(rng.next() % 8192);
    pos[0] = 0;  // the identity rotation
    for (const bool backward : {false, true}) {
      const std::string t = tag + (backward ? " backward" : " forward");
      Vec x = x0, cpu_x = x0;
      ex.rope(x, pos, B, T, NH, HS, theta, backward);
      if (backward) cpu::rope_backward(cpu_x.data(), pos.data(), B, T, NH, HS, theta);
      else cpu::rope_forward(cpu_x.data(), pos.data(), B, T, NH, HS, theta);
      DVec ref = widen(x0);
      const double sign = backward ? -1 : 1;
      for (int64_t bt = 0; bt < B * T; ++bt)
        for (int64_t h = 0; h < NH; ++h)
          for (int64_t i = 0; i < half; ++i) {
            const double angle = pos[bt] * std::pow((double)theta, -2.0 * i / HS);
            const double c = std::cos(angle), s = sign * std::sin(angle);
            const int64_t o = (bt * NH + h) * HS;
            ref[o + i] = x0[o + i] * c - x0[o + i + half] * s;
            ref[o + i + half] = x0[o + i + half] * c + x0[o + i] * s;
          }
      check_cpu(t, cpu_x, x, ex.host_libm(), kLibm);
      check_ref(t, ref, x, kRopeRef);
    }
    Vec x = x0;  // backward undoes forward
    ex.rope(x, pos, B, T, NH, HS, theta, false);
    ex.rope(x, pos, B, T, NH, HS, theta, true);
    check_close(tag + " backward(forward(x)) ~ x", x0, x, 1e-5, 1e-5);
  });
}

// ---------------------------------------------------------------------------------
// Element-wise

void test_fill(Exec& ex, size_t n) {
  for (const float value : {0.0f, -0.0f, 3.25f, -INFINITY}) {  // +0: memset path; -0 has a bit set: kernel path
    const std::string tag = str("%s fill n=%zu value=%g", ex.name().c_str(), n, (double)value);
    run_test(tag, [&] {
      Vec dst(n, 1.5f);
      ex.fill(dst, value);
      check_bits(tag, Vec(n, value), dst);
    });
  }
}

void test_bias(Exec& ex, int64_t N, int64_t C, uint64_t salt) {
  const std::string tag = str("%s bias N=%lld C=%lld", ex.name().c_str(), (long long)N, (long long)C);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    const Vec y0 = rng.normals(N * C), bias = rng.normals(C), db0 = rng.normals(C);
    Vec y = y0;
    ex.add_bias(y, bias, N, C);
    DVec ref_y(N * C), ref_db = widen(db0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        ref_y[n * C + c] = (double)y0[n * C + c] + bias[c];
        ref_db[c] += y0[n * C + c];
      }
    // One fp32 add: correctly rounded, within half an ulp.
    check_ref(tag + " add_bias", ref_y, y, {0.0, 6e-8});
    Vec db = db0;
    ex.bias_backward(db, y0, N, C);
    // A double column sum rounded to fp32 and one fp32 add.
    check_ref(tag + " bias_backward", ref_db, db, {1e-6, 1e-6});
  });
}

void test_axpy(Exec& ex, size_t n, uint64_t salt) {
  const std::string tag = str("%s axpy n=%zu", ex.name().c_str(), n);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    const Vec y0 = rng.normals(n), x = rng.normals(n);
    const float alpha = -0.37f;
    Vec y = y0;
    ex.axpy(y, x, alpha);
    DVec ref(n);
    for (size_t i = 0; i < n; ++i) ref[i] = y0[i] + (double)alpha * x[i];
    check_ref(tag, ref, y, {1e-6, 1e-6});  // fp32 product and sum
  });
}

void test_all_finite(Exec& ex, size_t n, uint64_t salt) {
  const std::string tag = str("%s all_finite n=%zu", ex.name().c_str(), n);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    Vec p = rng.normals(n);
    // Extremes that are still finite: the largest, a subnormal, minus zero.
    p[0] = FLT_MAX;
    if (n > 1) p[1] = -FLT_MAX;
    if (n > 2) p[2] = 1e-40f;
    if (n > 3) p[3] = -0.0f;
    report(ex.all_finite(p), tag + " finite values: true");
    const float bad_values[] = {NAN, -NAN, INFINITY, -INFINITY};
    const size_t where[] = {0, n / 2, n - 1};
    for (const float bad : bad_values)
      for (const size_t i : where) {
        Vec q = p;
        q[i] = bad;
        report(!ex.all_finite(q), str("%s %g at [%zu]: false", tag.c_str(), (double)bad, i));
      }
  });
}

// ---------------------------------------------------------------------------------
// Optimizers

void fo_ref(const FoHyper& h, DVec& x, const Vec& g, DVec& m, DVec& v) {
  const double lr = h.lr, wd = h.weight_decay;
  for (size_t i = 0; i < x.size(); ++i) {
    if (h.kind == FoKind::SGD) x[i] -= lr * (g[i] + wd * x[i]);
    if (h.kind == FoKind::Momentum) {
      m[i] = h.momentum * m[i] + (g[i] + wd * x[i]);
      x[i] -= lr * m[i];
    }
    if (h.kind == FoKind::AdamW) {
      x[i] *= 1 - lr * wd;
      m[i] = h.beta1 * m[i] + (1 - (double)h.beta1) * g[i];
      v[i] = h.beta2 * v[i] + (1 - (double)h.beta2) * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow((double)h.beta1, (double)h.t));
      const double vh = v[i] / (1 - std::pow((double)h.beta2, (double)h.t));
      x[i] -= lr * mh / (std::sqrt(vh) + h.eps);
    }
  }
}

void test_fo_update(Exec& ex, size_t n, uint64_t salt) {
  const char* names[] = {"sgd", "momentum", "adamw"};
  for (const FoKind kind : {FoKind::SGD, FoKind::Momentum, FoKind::AdamW})
    for (const int64_t t : {1, 50}) {
      if (kind != FoKind::AdamW && t != 1) continue;
      const std::string tag = str("%s fo_update %s n=%zu t=%lld", ex.name().c_str(), names[(int)kind], n, (long long)t);
      run_test(tag, [&] {
        Rng rng = rng_for(salt + 7 * (uint64_t)kind + (uint64_t)t);
        FoHyper h;
        h.kind = kind;
        h.lr = 1e-2f;
        h.weight_decay = 0.1f;
        h.momentum = 0.9f;
        h.t = t;
        const Vec x0 = rng.normals(n), g = rng.normals(n), m0 = rng.normals(n, 0.1f), v0 = uniforms(rng, n, 0, 0.01f);
        Vec x = x0, m = kind == FoKind::SGD ? Vec() : m0, v = kind == FoKind::AdamW ? v0 : Vec();
        Vec cpu_x = x0, cpu_m = m0, cpu_v = v0;
        ex.fo_update(h, x, g, m, v);
        cpu::fo_update(h, cpu_x.data(), g.data(), cpu_m.data(), cpu_v.data(), n, 1);
        DVec ref_x = widen(x0), ref_m = widen(m0), ref_v = widen(v0);
        fo_ref(h, ref_x, g, ref_m, ref_v);
        // Same IEEE operations in the same order everywhere: bit-identical to the CPU.
        check_cpu(tag + " x", cpu_x, x, true, {});
        // float64: fp32 rounding of the update's few operations (the AdamW step's
        // relative error is ~1e-6 of an lr-sized step).
        check_ref(tag + " x", ref_x, x, {1e-6, 1e-6});
        if (kind != FoKind::SGD) {
          check_cpu(tag + " m", cpu_m, m, true, {});
          check_ref(tag + " m", ref_m, m, {1e-7, 1e-6});
        }
        if (kind == FoKind::AdamW) {
          check_cpu(tag + " v", cpu_v, v, true, {});
          check_ref(tag + " v", ref_v, v, {1e-9, 1e-6});
        }
      });
    }
}

// ---------------------------------------------------------------------------------
// Rows

void test_rows(Exec& ex, int64_t M, int64_t N, int64_t C, uint64_t salt) {
  const std::string tag =
      str("%s rows M=%lld of N=%lld C=%lld", ex.name().c_str(), (long long)M, (long long)N, (long long)C);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    IVec rows(M);
    for (auto& r : rows) r = (int32_t)(rng.next() % N);  // N < M: rows repeat, within and across chunks
    if (M > 9) rows[0] = rows[8] = rows[9] = (int32_t)(N - 1);
    const Vec x = rng.normals(N * C);
    Vec out(M * C, 0.0f), want(M * C);
    ex.gather_rows(out, x, rows, M, C);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t c = 0; c < C; ++c) want[m * C + c] = x[rows[m] * C + c];
    check_bits(tag + " gather_rows", want, out);

    const Vec dx0 = rng.normals(N * C), dout = rng.normals(M * C);
    Vec dx = dx0;
    ex.scatter_add_rows(dx, dout, rows, M, C);
    DVec ref = widen(dx0), abs_sum(N * C), adds(N * C, 0.0);
    Vec in_order = dx0;  // fp32 adds in row order: the CPU backend's sequence
    for (size_t e = 0; e < dx0.size(); ++e) abs_sum[e] = std::fabs(dx0[e]);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t c = 0; c < C; ++c) {
        ref[rows[m] * C + c] += dout[m * C + c];
        abs_sum[rows[m] * C + c] += std::fabs(dout[m * C + c]);
        adds[rows[m] * C + c] += 1;
        in_order[rows[m] * C + c] += dout[m * C + c];
      }
    // k fp32 adds in sequence: |error| ≤ k·2⁻²⁴·Σ|terms| (the recursive-summation bound).
    double bound = 0;
    for (size_t e = 0; e < ref.size(); ++e) bound = std::max(bound, adds[e] * 0x1p-24 * abs_sum[e]);
    check_ref(tag + " scatter_add_rows", ref, dx, {bound, 0.0});
    check_bits(tag + " scatter_add_rows == fp32 sums in row order", in_order, dx);
  });
}

// ---------------------------------------------------------------------------------
// Loss

void test_loss(Exec& ex, int64_t M, int64_t V, uint64_t salt) {
  const std::string tag = str("%s loss M=%lld V=%lld", ex.name().c_str(), (long long)M, (long long)V);
  run_test(tag, [&] {
    Rng rng = rng_for(salt);
    Vec logits = rng.normals(M * V, 3.0f);
    IVec targets(M);
    for (auto& t : targets) t = (int32_t)(rng.next() % V);
    for (int64_t j = 0; j < V; ++j) logits[j] += 1000.0f;  // row 0: exp would overflow without the max shift
    if (M > 1 && V > 2)                                    // masked logits (not the target)
      for (int64_t j = 0; j < V; j += 2)
        if (j != targets[1]) logits[V + j] = -INFINITY;
    // float64 reference
    DVec ref_logp(M), ref_p(M * V);
    for (int64_t i = 0; i < M; ++i) {
      double mx = -INFINITY, z = 0;
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, (double)logits[i * V + j]);
      for (int64_t j = 0; j < V; ++j) z += std::exp(logits[i * V + j] - mx);
      ref_logp[i] = logits[i * V + targets[i]] - mx - std::log(z);
      for (int64_t j = 0; j < V; ++j) ref_p[i * V + j] = std::exp(logits[i * V + j] - mx) / z;
    }
    // logp: expf of each term (≤ 2 ulp), summed in double; probs: expf times an fp32 1/Σ.
    const Tol logp_tol{1e-6, 1e-6}, p_tol{1e-9, 1e-5};
    for (const bool probs : {false, true}) {
      const std::string t = tag + (probs ? " log_softmax_at (probs)" : " log_softmax_at");
      Vec lg = logits;
      DVec logp(M, 0.0);
      ex.log_softmax_at(lg, targets, logp, M, V, probs);
      check_close_d(t + " logp ~ float64", ref_logp, logp, logp_tol);
      if (probs) check_ref(t + " probs", ref_p, lg, p_tol);
      else check_bits(t + " logits untouched", logits, lg);
      if (!probs) continue;
      // xent_backward on these probabilities: row ← d·(onehot − p)
      DVec drow(M);
      for (auto& d : drow) d = rng.uniform(-1.0f, 1.0f) / (double)M;
      const Vec p = lg;
      ex.xent_backward(lg, targets, drow, M, V);
      // Off-target entries are one fp32 product −d·p (d rounded to fp32): relative error
      // ≤ 2 half-ulps. The target entry d·(1 − p) is computed as −d·p + d and may
      // cancel: its error is a few ulp of d, not of the result.
      DVec ref_off, ref_on;
      Vec got_off, got_on;
      double max_d = 0;
      for (int64_t i = 0; i < M; ++i) {
        max_d = std::max(max_d, std::fabs(drow[i]));
        for (int64_t j = 0; j < V; ++j) {
          const bool on = j == targets[i];
          (on ? ref_on : ref_off).push_back(drow[i] * ((on ? 1.0 : 0.0) - p[i * V + j]));
          (on ? got_on : got_off).push_back(lg[i * V + j]);
        }
      }
      check_ref(tag + " xent_backward (off target)", ref_off, got_off, {0.0, 1e-6});
      check_ref(tag + " xent_backward (target)", ref_on, got_on, {4e-7 * max_d, 1e-6});
    }
  });
}

// A target outside [0, V): logp NaN, the row's backward adds no one-hot (no out-of-bounds access).
void test_loss_bad_target(Exec& ex) {
  const std::string tag = ex.name() + " loss: targets outside [0, V)";
  run_test(tag, [&] {
    const int64_t M = 2, V = 5;
    Vec lg(M * V, 0.0f);
    const IVec targets{-1, (int32_t)V};
    DVec logp(M, 0.0);
    ex.log_softmax_at(lg, targets, logp, M, V, true);
    report(std::isnan(logp[0]) && std::isnan(logp[1]), tag + " logp NaN");
    ex.xent_backward(lg, targets, DVec{1.0, 1.0}, M, V);
    check_close(tag + " xent_backward: −d·p only", Vec(M * V, -0.2f), lg, 1e-7, 0);
  });
}

// ---------------------------------------------------------------------------------
// Launcher argument checks (host: they throw before any CUDA call)

// Throws ZOFO_INVALID_ARG with a message "<fn>: ...<what>...".
void expect_invalid(const std::string& fn, const std::string& what, const std::function<void()>& call) {
  const std::string name = "launcher checks: " + fn + " rejects: " + what;
  try {
    call();
    report(false, name, "did not throw");
  } catch (const Error& e) {
    const std::string msg = e.what();
    const bool ok = e.code == "ZOFO_INVALID_ARG" && msg.rfind(fn + ": ", 0) == 0 && msg.find(what) != std::string::npos;
    report(ok, name, ok ? "" : "threw " + e.code + ": " + msg);
  }
}

// Empty sizes: returns without touching its (null) pointers or CUDA.
void expect_no_op(const std::string& what, const std::function<void()>& call) {
  const std::string name = "launcher checks: " + what + " is a no-op";
  try {
    call();
    report(true, name);
  } catch (const Error& e) { report(false, name, "threw " + e.code + ": " + e.what()); }
}

void test_argument_checks() {
  using namespace zofo::cuda;
  float buf[8] = {};
  float* f = buf;  // a non-null pointer: never dereferenced, the checks throw first
  float* z = nullptr;
  const int32_t ids[1] = {0};
  double dbl[1] = {};
  int flag = 0;
  const cudaStream_t s = nullptr;

  expect_invalid("rmsnorm_forward", "N is negative", [&] { rmsnorm_forward(f, f, f, f, -1, 4, 1e-5f, s); });
  expect_invalid("rmsnorm_forward", "weight is null", [&] { rmsnorm_forward(f, f, f, z, 1, 4, 1e-5f, s); });
  expect_no_op("rmsnorm_forward C = 0", [&] { rmsnorm_forward(z, z, z, z, 3, 0, 1e-5f, s); });
  expect_invalid("rmsnorm_backward", "C is negative", [&] { rmsnorm_backward(f, f, f, f, f, f, 2, -3, s); });
  expect_invalid("rmsnorm_backward", "rstd is null", [&] { rmsnorm_backward(f, z, f, f, f, z, 2, 3, s); });
  expect_invalid("layernorm_forward", "mean is null", [&] { layernorm_forward(f, z, f, f, f, z, 1, 1, 1e-5f, s); });
  expect_invalid("layernorm_backward", "N is negative", [&] { layernorm_backward(f, f, f, f, f, f, f, f, -2, 1, s); });
  expect_invalid("layernorm_backward", "dinp is null", [&] { layernorm_backward(z, z, z, f, f, f, f, f, 1, 1, s); });
  expect_no_op("layernorm_backward N = 0", [&] { layernorm_backward(z, z, z, z, z, z, z, z, 0, 5, s); });
  expect_invalid("activation_forward", "unknown kind 2", [&] { activation_forward(2, f, f, 1, s); });
  expect_invalid("activation_backward", "N is negative", [&] { activation_backward(0, f, f, f, -1, s); });
  expect_invalid("activation_backward", "dout is null", [&] { activation_backward(1, f, f, z, 4, s); });
  expect_invalid("swiglu_forward", "up is null", [&] { swiglu_forward(f, f, z, 4, s); });
  expect_invalid("swiglu_backward", "N is negative", [&] { swiglu_backward(f, f, f, f, f, -4, s); });
  expect_no_op("swiglu_backward N = 0", [&] { swiglu_backward(z, z, z, z, z, 0, s); });
  expect_invalid("rope", "HS is negative", [&] { rope(f, ids, 1, 1, 1, -2, 1e4f, false, s); });
  expect_invalid("rope", "positions is null", [&] { rope(f, nullptr, 1, 1, 1, 2, 1e4f, false, s); });
  expect_no_op("rope HS = 1 (no pairs)", [&] { rope(z, nullptr, 2, 2, 2, 1, 1e4f, true, s); });
  expect_invalid("fill", "dst is null", [&] { fill(z, 1.0f, 4, s); });
  expect_no_op("fill n = 0", [&] { fill(z, 1.0f, 0, s); });
  expect_invalid("add_bias", "C is negative", [&] { add_bias(f, f, 1, -1, s); });
  expect_invalid("bias_backward", "dy is null", [&] { bias_backward(f, z, 1, 1, s); });
  expect_invalid("axpy", "x is null", [&] { axpy(f, z, 1.0f, 3, s); });
  expect_no_op("axpy n = 0", [&] { axpy(z, z, 1.0f, 0, s); });
  expect_invalid("all_finite", "flag_device is null", [&] { all_finite(f, 3, nullptr, s); });
  expect_invalid("all_finite", "p is null", [&] { all_finite(z, 3, &flag, s); });
  FoHyper h;
  h.kind = FoKind::AdamW;
  expect_invalid("fo_update", "v is null", [&] { fo_update(h, f, f, f, z, 4, s); });
  h.kind = FoKind::Momentum;
  expect_invalid("fo_update", "m is null", [&] { fo_update(h, f, f, z, z, 4, s); });
  h.kind = (FoKind)7;
  expect_invalid("fo_update", "unknown optimizer kind 7", [&] { fo_update(h, f, f, f, f, 4, s); });
  h.kind = FoKind::SGD;
  expect_no_op("fo_update n = 0", [&] { fo_update(h, z, z, z, z, 0, s); });
  expect_invalid("gather_rows", "M is negative", [&] { gather_rows(f, f, ids, -1, 2, s); });
  expect_invalid("gather_rows", "rows is null", [&] { gather_rows(f, f, nullptr, 1, 2, s); });
  expect_invalid("scatter_add_rows", "dx is null", [&] { scatter_add_rows(z, f, ids, 1, 2, s); });
  expect_no_op("scatter_add_rows M = 0", [&] { scatter_add_rows(z, z, nullptr, 0, 2, s); });
  expect_invalid("log_softmax_at", "V is negative", [&] { log_softmax_at(f, ids, dbl, 1, -5, true, s); });
  expect_invalid("log_softmax_at", "logp is null", [&] { log_softmax_at(f, ids, nullptr, 1, 5, false, s); });
  expect_invalid("xent_backward", "targets is null", [&] { xent_backward(f, nullptr, dbl, 1, 5, s); });
  expect_no_op("xent_backward M = 0", [&] { xent_backward(z, nullptr, nullptr, 0, 5, s); });
}

// ---------------------------------------------------------------------------------

// Sizes: N = 1, C = 1, columns not a multiple of 4 or 32, a partial column tile, rows
// wider than the largest lane count (several columns per lane).
void run_family_tests(Exec& ex, bool large) {
  uint64_t salt = 1;
  std::vector<std::pair<int64_t, int64_t>> norm_shapes{{1, 1}, {1, 7}, {3, 33}, {5, 768}, {4, 1000}, {2, 4096}};
  if (large) norm_shapes.push_back({2048, 4096});
  for (auto [N, C] : norm_shapes) {
    test_rmsnorm(ex, N, C, salt++);
    test_layernorm(ex, N, C, salt++);
  }
  for (auto [N, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 7}, {3, 768}, {2, 4096}})
    test_bf16_outputs(ex, N, C, salt++);
  for (int64_t N : {1, 1000, 4097}) test_activations(ex, N, salt++);
  if (large) test_activations(ex, 1 << 22, salt++);
  struct RopeShape {
    int64_t B, T, NH, HS;
    float theta;
  };
  std::vector<RopeShape> rope_shapes{
      {1, 1, 1, 2, 1e4f}, {2, 5, 3, 8, 1e4f}, {2, 3, 2, 7, 1e4f}, {1, 4, 4, 64, 5e5f}, {2, 8, 2, 128, 1e4f}};
  if (large) rope_shapes.push_back({4, 512, 32, 128, 5e5f});
  for (const auto& r : rope_shapes) test_rope(ex, r.B, r.T, r.NH, r.HS, r.theta, salt++);
  for (size_t n : {1, 1000, 4097}) {
    test_fill(ex, n);
    test_axpy(ex, n, salt++);
    test_all_finite(ex, n, salt++);
    test_fo_update(ex, n, salt++);
  }
  if (large) {
    test_axpy(ex, 10'000'019, salt++);
    test_all_finite(ex, 10'000'019, salt++);
    test_fo_update(ex, 10'000'019, salt++);
  }
  std::vector<std::pair<int64_t, int64_t>> bias_shapes{{1, 7}, {300, 33}, {17, 769}, {5, 1}};
  if (large) bias_shapes.push_back({2048, 4096});
  for (auto [N, C] : bias_shapes) test_bias(ex, N, C, salt++);
  struct RowsShape {
    int64_t M, N, C;
  };
  std::vector<RowsShape> rows_shapes{{1, 1, 1}, {9, 4, 7}, {17, 3, 33}, {100, 50, 300}, {40, 1, 5}};
  if (large) rows_shapes.push_back({2048, 512, 4096});
  for (const auto& r : rows_shapes) test_rows(ex, r.M, r.N, r.C, salt++);
  std::vector<std::pair<int64_t, int64_t>> loss_shapes{{1, 1}, {3, 7}, {4, 1000}, {2, 50257}};
  if (large) {
    loss_shapes.push_back({512, 32000});
    loss_shapes.push_back({64, 50257});
  }
  for (auto [M, V] : loss_shapes) test_loss(ex, M, V, salt++);
  test_loss_bad_target(ex);
}

}  // namespace

int main(int argc, char** argv) {
  bool host_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--host-only") {
      host_only = true;
    } else {
      fprintf(stderr, "usage: %s [--host-only]\n", argv[0]);
      return 2;
    }
  }
  test_seed();  // prints the seed first

  HostExec serial(true), lanes(false);
  run_family_tests(serial, false);
  run_family_tests(lanes, false);
  test_argument_checks();

  if (!host_only) {
    if (!have_device()) {
      printf("no CUDA device: device tests skipped (host emulation only)\n");
    } else {
      try {
        DeviceExec device;
        run_family_tests(device, true);
      } catch (const std::exception& e) { report(false, "device tests", e.what()); }
    }
  }
  return summary();
}
