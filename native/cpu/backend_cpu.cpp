#include "backend_cpu.h"

#include <math.h>
#include <string.h>

#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#include "activation.h"
#include "attention.h"
#include "matmul.h"
#include "norm.h"
#include "optim.h"
#include "perturb.h"
#include "parallel.h"
#include "rope.h"

namespace zofo::cpu {

namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  // Freed buffers are kept by size and handed out again (zeroed): a forward allocates
  // the same shapes every step, and fresh pages cost a fault plus the kernel's zeroing
  // each time (a third of a small model's forward). At most kCacheBytes are kept.
  float* alloc(size_t n) override { return take(n, true); }
  void free(float* p) override {
    if (!p) return;
    std::lock_guard<std::mutex> guard(lock_);
    auto it = sizes_.find(p);
    const size_t n = it->second;
    sizes_.erase(it);
    if (n * sizeof(float) > kCacheBytes) {
      delete[] p;
      return;
    }
    while (cached_bytes_ + n * sizeof(float) > kCacheBytes && !cache_.empty()) {  // evict the largest
      auto last = std::prev(cache_.end());
      cached_bytes_ -= last->first * sizeof(float);
      delete[] last->second;
      cache_.erase(last);
    }
    cache_.emplace(n, p);
    cached_bytes_ += n * sizeof(float);
  }
  void upload(float* dst, const float* host, size_t n) override { memcpy(dst, host, n * sizeof(float)); }
  void download(float* host, const float* src, size_t n) override { memcpy(host, src, n * sizeof(float)); }
  void fill(float* dst, float value, size_t n) override {
    for (size_t i = 0; i < n; ++i) dst[i] = value;
  }
  float* alloc_scratch(size_t n) override { return take(n, false); }
  void upload_raw(void* dst, const void* host, size_t bytes) override { memcpy(dst, host, bytes); }
  void download_raw(void* host, const void* src, size_t bytes) override { memcpy(host, src, bytes); }

  void weight_view(float* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first, uint64_t seed,
                   float a) override {
    perturbed_copy(dtype, src, dst, n, stream, first, seed, a, 0);
  }
  void zo_update(void* data, DType dtype, uint64_t n_elems, const ParamEntry* table, size_t n_entries, uint64_t seed,
                 float a, float eta_lambda) override {
    restore_update(dtype, data, n_elems, table, n_entries, seed, a, eta_lambda, 0);
  }
  void fo_update(const FoHyper& h, float* x, const float* g, float* m, float* v, size_t n) override {
    cpu::fo_update(h, x, g, m, v, n, 0);
  }
  bool all_finite(const float* p, size_t n) override {
    bool finite = true;
    for (size_t i = 0; i < n; ++i) finite &= isfinite(p[i]) != 0;
    return finite;
  }

  void matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    sgemm_compute(compute_, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void add_bias(float* y, const float* bias, int64_t N, int64_t C) override {
    parallel_ranges((uint64_t)N, 0, 64, [&](uint64_t lo, uint64_t hi) {
      for (uint64_t n = lo; n < hi; ++n)
        for (int64_t c = 0; c < C; ++c) y[n * C + c] += bias[c];
    });
  }
  void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C) override {
    parallel_ranges((uint64_t)C, 0, 64, [&](uint64_t lo, uint64_t hi) {
      for (uint64_t c = lo; c < hi; ++c) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) s += dy[n * C + c];
        dbias[c] += (float)s;
      }
    });
  }
  void axpy(float* y, const float* x, float alpha, size_t n) override {
    parallel_ranges(n, 0, 1 << 15, [&](uint64_t lo, uint64_t hi) {
      for (uint64_t i = lo; i < hi; ++i) y[i] += alpha * x[i];
    });
  }

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                       float eps) override {
    cpu::rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                        const float* rstd, int64_t N, int64_t C) override {
    cpu::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                         int64_t N, int64_t C, float eps) override {
    cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
  }
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) override {
    cpu::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
  }
  void rope(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
            bool backward) override {
    if (backward) cpu::rope_backward(x, positions, B, T, NH, HS, theta);
    else cpu::rope_forward(x, positions, B, T, NH, HS, theta);
  }
  void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* mask,
                         int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale) override {
    cpu::attention_forward(out, att, q, k, v, mask, B, T, NH, NKV, HS, scale);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                          const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                          float scale) override {
    cpu::attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, HS, scale);
  }
  void activation_forward(int kind, float* out, const float* inp, int64_t N) override {
    if (kind == 0) gelu_new_forward(out, inp, N);
    else relu_forward(out, inp, N);
  }
  void activation_backward(int kind, float* dinp, const float* inp, const float* dout, int64_t N) override {
    if (kind == 0) gelu_new_backward(dinp, inp, dout, N);
    else relu_backward(dinp, inp, dout, N);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) override {
    cpu::swiglu_forward(out, gate, up, N);
  }
  void swiglu_backward(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                       int64_t N) override {
    cpu::swiglu_backward(dgate, dup, gate, up, dout, N);
  }
  void log_softmax_at(float* logits, const int32_t* targets, double* logp, int64_t M, int64_t V, bool probs) override {
    parallel_ranges((uint64_t)M, 0, 1, [&](uint64_t lo, uint64_t hi) {
      for (uint64_t i = lo; i < hi; ++i) {
        float* row = logits + i * V;
        float mx = -INFINITY;
        for (int64_t j = 0; j < V; ++j) mx = row[j] > mx ? row[j] : mx;
        double z = 0;
        for (int64_t j = 0; j < V; ++j) z += expf(row[j] - mx);
        logp[i] = (double)row[targets[i]] - mx - log(z);
        if (probs) {
          const float inv = (float)(1.0 / z);
          for (int64_t j = 0; j < V; ++j) row[j] = expf(row[j] - mx) * inv;
        }
      }
    });
  }
  void xent_backward(float* probs, const int32_t* targets, const double* drow, int64_t M, int64_t V) override {
    parallel_ranges((uint64_t)M, 0, 1, [&](uint64_t lo, uint64_t hi) {
      for (uint64_t i = lo; i < hi; ++i) {
        float* row = probs + i * V;
        const float d = (float)drow[i];
        for (int64_t j = 0; j < V; ++j) row[j] *= -d;
        row[targets[i]] += d;
      }
    });
  }
  void copy2d(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) override {
    for (int64_t r = 0; r < rows; ++r) memcpy(dst + r * dst_ld, src + r * src_ld, cols * sizeof(float));
  }
  void embedding_view(float* out, const void* table, DType dtype, const int32_t* ids, int64_t N, int64_t C,
                      uint64_t stream, uint64_t seed, float a) override {
    const size_t width = dtype_size(dtype);
    for (int64_t n = 0; n < N; ++n) {
      const uint64_t first = (uint64_t)ids[n] * (uint64_t)C;
      perturbed_copy(dtype, (const char*)table + first * width, out + n * C, (uint64_t)C, stream, first, seed, a, 1);
    }
  }
  void gather_rows(float* out, const float* x, const int32_t* rows, int64_t M, int64_t C) override {
    for (int64_t m = 0; m < M; ++m) memcpy(out + m * C, x + (int64_t)rows[m] * C, C * sizeof(float));
  }
  void scatter_add_rows(float* dx, const float* dout, const int32_t* rows, int64_t M, int64_t C) override {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t c = 0; c < C; ++c) dx[(int64_t)rows[m] * C + c] += dout[m * C + c];
  }

 private:
  // A buffer of n floats, from the cache when one of that size is free (zeroed on request).
  float* take(size_t n, bool zero) {
    n = n ? n : 1;
    {
      std::lock_guard<std::mutex> guard(lock_);
      auto it = cache_.find(n);
      if (it != cache_.end()) {
        float* p = it->second;
        cache_.erase(it);
        cached_bytes_ -= n * sizeof(float);
        sizes_[p] = n;
        if (zero) memset(p, 0, n * sizeof(float));
        return p;
      }
    }
    float* p = zero ? new (std::nothrow) float[n]() : new (std::nothrow) float[n];
    if (!p) throw std::bad_alloc();
    std::lock_guard<std::mutex> guard(lock_);
    sizes_[p] = n;
    return p;
  }

  static constexpr size_t kCacheBytes = size_t(1) << 30;
  std::mutex lock_;
  std::multimap<size_t, float*> cache_;       // free buffers by size
  std::unordered_map<float*, size_t> sizes_;  // live buffers
  size_t cached_bytes_ = 0;
};

}  // namespace

Backend& cpu_backend(Compute compute) {
  // One shared backend per compute precision: its buffer cache serves every model of it.
  static CpuBackend backends[3];
  static std::once_flag once;
  std::call_once(once, [] {
    for (const Compute c : {Compute::FP32, Compute::TF32, Compute::BF16}) backends[(int)c].set_compute(c);
  });
  return backends[(int)compute];
}

}  // namespace zofo::cpu
