// The small interface the model engine is written against. The CPU backend
// (native/cpu/backend_cpu.cpp) implements it; the CUDA backend implements the same
// calls on device memory. All pointers are the backend's own memory, index arrays
// (ids, positions, mask, rows, targets) and the per-row doubles of the loss included:
// the engine uploads a batch once per forward. Shapes use the letters of
// native/cpu/*.h (N rows, C columns, B batch, T time, NH/NKV heads, HS head size).
// Backwards accumulate (+=) into their input gradients.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../common/compute.h"
#include "../common/dtype.h"
#include "../common/fo_hyper.h"
#include "../common/param_table.h"

namespace zofo {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // Compute precision of matmul operands (native/common/compute.h). Set once, before the
  // first forward; a backend that cannot honour a mode throws ZOFO_INVALID_ARG.
  virtual void set_compute(Compute c) { compute_ = c; }
  Compute compute() const { return compute_; }

  // Device memory the backend holds now, and the most it has held since reset_peak():
  // the memory figures of the benchmarks. 0 on the CPU, whose memory is the process's
  // (measure its resident set instead).
  virtual size_t bytes_in_use() const { return 0; }
  virtual size_t peak_bytes() const { return 0; }
  virtual void reset_peak() {}

  // Memory (zero-initialised) and host transfers.
  virtual float* alloc(size_t n) = 0;
  virtual void free(float* p) = 0;
  virtual void upload(float* dst, const float* host, size_t n) = 0;
  virtual void download(float* host, const float* src, size_t n) = 0;
  virtual void fill(float* dst, float value, size_t n) = 0;
  // Scratch that the caller overwrites whole: not zeroed.
  virtual float* alloc_scratch(size_t n) = 0;
  // Memory for a matmul operand: n values that one producer writes whole (weight_view,
  // rmsnorm_forward, layernorm_forward, activation_forward, swiglu_forward or
  // attention_forward) and that afterwards only matmul reads, as A or B. A backend whose
  // compute precision is narrower than fp32 may keep it narrower (CUDA in bf16 compute:
  // n bf16 values, half the bytes to write and to read). Not zeroed; released by free().
  virtual float* alloc_operand(size_t n) { return alloc_scratch(n); }
  // A matmul operand reading n stored weights of `dtype` in place (no copy), or null when
  // the backend needs a weight_view instead (the default). CUDA in bf16 compute reads
  // bf16 storage directly. The stored weights must outlive every use of the pointer.
  virtual const float* operand_view(const void* stored, DType dtype, size_t n) {
    (void)stored, (void)dtype, (void)n;
    return nullptr;
  }
  // Raw bytes (low-precision parameter storage).
  virtual void upload_raw(void* dst, const void* host, size_t bytes) = 0;
  virtual void download_raw(void* host, const void* src, size_t bytes) = 0;

  // ---- the optimizer's passes over the weights (docs/algorithm.md §2–§3) ----
  // dst (n) = fp32(src[0 .. n)) + a·z(seed, stream, first .. first+n): one tensor's
  // perturbed weights in scratch (a = 0: the plain fp32 view of low-precision storage).
  virtual void weight_view(float* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first,
                           uint64_t seed, float a) = 0;
  // x ← (1 − eta_lambda·decay)·x + a·z over every entry of the table, one fused pass.
  virtual void zo_update(void* data, DType dtype, uint64_t n_elems, const ParamEntry* table, size_t n_entries,
                         uint64_t seed, float a, float eta_lambda) = 0;
  // First-order update of n fp32 values with gradient g and moments m, v (native/cpu/optim.h).
  virtual void fo_update(const FoHyper& h, float* x, const float* g, float* m, float* v, size_t n) = 0;
  // Whether all n values are finite (the one scalar a step reads back besides its losses).
  virtual bool all_finite(const float* p, size_t n) = 0;

  // C (M, N) = alpha·op(A)·op(B) + beta·C, row-major.
  virtual void matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;
  // y (N, C) += bias (C) on every row; dbias (C) += Σ_rows dy.
  virtual void add_bias(float* y, const float* bias, int64_t N, int64_t C) = 0;
  virtual void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C) = 0;
  // y (n) += x (n) · alpha
  virtual void axpy(float* y, const float* x, float alpha, size_t n) = 0;

  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                               float eps) = 0;
  virtual void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                                const float* rstd, int64_t N, int64_t C) = 0;
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                 const float* bias, int64_t N, int64_t C, float eps) = 0;
  virtual void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                  const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) = 0;
  virtual void rope(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
                    bool backward) = 0;
  // What attention_forward saves in `att` for attention_backward, in floats: here the
  // probabilities (B, NH, T, T); a fused kernel saves less (CUDA: the row log-sum-exp).
  virtual size_t attention_saved_size(int64_t B, int64_t T, int64_t NH) const { return (size_t)(B * NH * T * T); }
  virtual void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                                 const uint8_t* mask, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                                 float scale) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                                  const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                                  int64_t HS, float scale) = 0;
  // kind: 0 gelu_new, 1 relu
  virtual void activation_forward(int kind, float* out, const float* inp, int64_t N) = 0;
  virtual void activation_backward(int kind, float* dinp, const float* inp, const float* dout, int64_t N) = 0;
  virtual void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                               int64_t N) = 0;
  // dst[r·dst_ld + c] = src[r·src_ld + c] for r < rows, c < cols (column blocks of
  // row-major matrices: splitting GPT-2's packed q,k,v and joining their gradients).
  virtual void copy2d(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) = 0;
  // Cross-entropy pieces over logits (M, V): logp[i] = log softmax(logits_i)[targets[i]];
  // with probs, logits is overwritten by softmax(logits). Then the backward in place:
  // logits_i ← drow[i] · (onehot(targets[i]) − softmax_i).
  virtual void log_softmax_at(float* logits, const int32_t* targets, double* logp, int64_t M, int64_t V,
                              bool probs) = 0;
  virtual void xent_backward(float* probs, const int32_t* targets, const double* drow, int64_t M, int64_t V) = 0;
  // out (N, C) = rows ids of a (V, C) table stored in dtype, as weight_view sees them:
  // out[n, c] = fp32(table[ids[n], c]) + a·z(seed, stream, ids[n]·C + c). Only the N
  // rows looked up are converted and perturbed. ids are checked by the caller.
  virtual void embedding_view(float* out, const void* table, DType dtype, const int32_t* ids, int64_t N, int64_t C,
                              uint64_t stream, uint64_t seed, float a) = 0;
  // Rows `rows` (M) of x (N, C) into out (M, C), and the scatter-add back.
  virtual void gather_rows(float* out, const float* x, const int32_t* rows, int64_t M, int64_t C) = 0;
  virtual void scatter_add_rows(float* dx, const float* dout, const int32_t* rows, int64_t M, int64_t C) = 0;

 protected:
  Compute compute_ = Compute::FP32;
};

}  // namespace zofo
