// The CUDA backend: every Backend call as a launch on this backend's stream. Memory
// comes from the device's stream-ordered pool (cudaMallocAsync), which keeps freed
// blocks for reuse, so the per-weight scratch of the engine costs no allocation after
// the first step. Downloads synchronise the stream (the engine reads back only the loss
// rows and one finiteness flag per step); small uploads go through pinned staging and
// do not.
//
// Compute precision (Backend::set_compute). FP32 and TF32 run fp32 operands through the
// matmul in that mode. BF16: the matmul takes bf16 operands and sums in fp32. Buffers
// the engine allocates with alloc_operand (weight views, pre-norm outputs, the MLP
// activation, the attention output) are then held as bf16, written so by their
// producer (weight_view rounds W + a·z once, the norms, activations and attention
// store rounded values): half the bytes written and read. Any other fp32 operand (an fp32
// weight read unperturbed, a gradient in the backward) is rounded into a workspace that
// grows to the largest operand seen and is then reused. With bf16 storage, a weight read
// unperturbed is its stored bf16 values themselves (operand_view: no copy). Outputs
// stay fp32, and so does everything the norms, softmax, loss, reductions and
// optimizers touch. The precision is set once, before the first forward.
#include "backend_cuda.h"

#include <string.h>

#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "activation.cuh"
#include "attention.cuh"
#include "check.cuh"
#include "elementwise.cuh"
#include "gemm.cuh"
#include "loss.cuh"
#include "norm.cuh"
#include "optim.cuh"
#include "perturb.cuh"
#include "rope.cuh"
#include "rows.cuh"

namespace zofo::cuda {

DeviceInfo device_info(int index) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess)
    throw Error("ZOFO_CUDA", std::string("no usable CUDA device: ") + cudaGetErrorName(status) + " (" +
                                 cudaGetErrorString(status) + ")");
  if (index < 0 || index >= count)
    throw Error("ZOFO_CUDA", "CUDA device " + std::to_string(index) + " does not exist (" + std::to_string(count) +
                                 " device" + (count == 1 ? "" : "s") + " found)");
  cudaDeviceProp prop;
  cuda_check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.sms = prop.multiProcessorCount;
  info.memory_bytes = prop.totalGlobalMem;
  return info;
}

namespace {

class CudaBackend final : public CudaBackendApi {
 public:
  explicit CudaBackend(int index) : device_(device_info(index).index) {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    // Keep freed pool memory instead of returning it at every synchronisation.
    cudaMemPool_t pool;
    cuda_check(cudaDeviceGetDefaultMemPool(&pool, device_), "cudaDeviceGetDefaultMemPool");
    uint64_t keep = UINT64_MAX;
    cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
    gemm_ = make_gemm(stream_);
    cuda_check(cudaMalloc((void**)&flag_, sizeof(int)), "cudaMalloc (flag)");
    cuda_check(cudaMallocHost((void**)&flag_host_, sizeof(int)), "cudaMallocHost (flag)");
    for (Stage& slot : stages_) {
      cuda_check(cudaMallocHost(&slot.host, kStageBytes), "cudaMallocHost (upload staging)");
      cuda_check(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming), "cudaEventCreate");
    }
  }
  ~CudaBackend() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);  // errors ignored: destructors must not throw
    if (table_device_) cudaFree(table_device_);
    for (Workspace& w : workspace_)
      if (w.p) cudaFreeAsync(w.p, stream_);
    cudaFree(flag_);
    cudaFreeHost(flag_host_);
    for (Stage& slot : stages_) {
      if (slot.host) cudaFreeHost(slot.host);
      if (slot.done) cudaEventDestroy(slot.done);
    }
    gemm_.reset();
    cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }

  void set_compute(Compute c) override {
    if (c != Compute::FP32 && c != Compute::TF32 && c != Compute::BF16)
      throw invalid_arg("compute: unknown precision " + std::to_string((int)c));
    std::lock_guard<std::mutex> guard(lock_);
    if (!bf16_operands_.empty() && c != compute_)
      throw Error("ZOFO_INVALID_STATE", std::string("compute: cannot change from ") + compute_name(compute_) + " to " +
                                            compute_name(c) + " while operand buffers are alive");
    compute_ = c;
  }

  // ---- memory ----
  float* alloc(size_t n) override {
    float* p = alloc_scratch(n);
    cuda_check(cudaMemsetAsync(p, 0, bytes_of(n), stream_), "cudaMemsetAsync");
    return p;
  }
  float* alloc_scratch(size_t n) override {
    on_device();
    void* p = nullptr;
    const size_t bytes = bytes_of(n);
    const cudaError_t err = cudaMallocAsync(&p, bytes, stream_);
    if (err != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it so no later check reports it again
      throw Error("ZOFO_OUT_OF_MEMORY", "out of CUDA device memory allocating " + std::to_string(bytes >> 20) +
                                            " MiB (" + std::to_string(bytes_in_use() >> 20) +
                                            " MiB held by this model): " + cudaGetErrorString(err));
    }
    std::lock_guard<std::mutex> guard(lock_);
    sizes_[p] = bytes;
    in_use_ += bytes;
    if (in_use_ > peak_) peak_ = in_use_;
    return static_cast<float*>(p);
  }
  // BF16 compute: n bf16 values (half the floats), remembered as a bf16 operand.
  float* alloc_operand(size_t n) override {
    if (compute() != Compute::BF16) return alloc_scratch(n);
    float* p = alloc_scratch((n + 1) / 2);
    std::lock_guard<std::mutex> guard(lock_);
    bf16_operands_[p] = n;
    return p;
  }
  // BF16 compute, bf16 storage: the stored weights are the operand (no copy); the range
  // is remembered as a bf16 operand until the buffer holding it is freed.
  const float* operand_view(const void* stored, DType dtype, size_t n) override {
    if (compute() != Compute::BF16 || dtype != DType::BF16 || n == 0 || !stored) return nullptr;
    std::lock_guard<std::mutex> guard(lock_);
    auto [it, inserted] = bf16_operands_.emplace(stored, n);
    if (!inserted && it->second != n)
      throw Error("ZOFO_INTERNAL", "operand_view: stored weights seen with " + std::to_string(it->second) + " and " +
                                       std::to_string(n) + " values");
    return static_cast<const float*>(stored);
  }
  void free(float* p) override {  // called from destructors: never throws
    if (!p) return;
    cudaSetDevice(device_);
    {
      std::lock_guard<std::mutex> guard(lock_);
      auto it = sizes_.find(p);
      size_t freed = 1;
      if (it != sizes_.end()) {
        freed = it->second;
        in_use_ -= it->second;
        sizes_.erase(it);
      }
      // p's own entry, and any stored-weight ranges inside it (operand_view).
      bf16_operands_.erase(bf16_operands_.lower_bound(p), bf16_operands_.lower_bound((const char*)p + freed));
    }
    cudaFreeAsync(p, stream_);
  }
  void upload(float* dst, const float* host, size_t n) override { upload_raw(dst, host, n * sizeof(float)); }
  void download(float* host, const float* src, size_t n) override { download_raw(host, src, n * sizeof(float)); }
  // The host buffer may be freed as soon as this returns. Small uploads (a batch's index
  // arrays) go through a ring of pinned staging slots and stay asynchronous; a slot is
  // reused only after its previous copy has run (its event). Large ones (weights, at
  // load time) are copied synchronously.
  void upload_raw(void* dst, const void* host, size_t bytes) override {
    if (!bytes) return;
    on_device();
    if (bytes > kStageBytes) {
      cuda_check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_), "upload (cudaMemcpyAsync)");
      cuda_check(cudaStreamSynchronize(stream_), "upload (synchronize)");
      return;
    }
    Stage& slot = stages_[next_stage_];
    next_stage_ = (next_stage_ + 1) % kStages;
    cuda_check(cudaEventSynchronize(slot.done), "upload (staging slot)");
    memcpy(slot.host, host, bytes);
    cuda_check(cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, stream_), "upload (cudaMemcpyAsync)");
    cuda_check(cudaEventRecord(slot.done, stream_), "upload (cudaEventRecord)");
  }
  void download_raw(void* host, const void* src, size_t bytes) override {
    if (!bytes) return;
    on_device();
    cuda_check(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream_), "download (cudaMemcpyAsync)");
    cuda_check(cudaStreamSynchronize(stream_), "download (synchronize)");
  }
  void fill(float* dst, float value, size_t n) override {
    on_device();
    cuda::fill(dst, value, n, stream_);
  }

  // ---- the optimizer's passes ----
  void weight_view(float* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first, uint64_t seed,
                   float a) override {
    on_device();
    if (uint16_t* dst16 = bf16_operand(dst, n, "weight_view"))
      cuda::weight_view_bf16(dst16, src, dtype, n, stream, first, seed, a, stream_);
    else cuda::weight_view(dst, src, dtype, n, stream, first, seed, a, stream_);
  }
  void zo_update(void* data, DType dtype, uint64_t n_elems, const ParamEntry* table, size_t n_entries, uint64_t seed,
                 float a, float eta_lambda) override {
    on_device();
    const ParamEntry* device_table = upload_table(table, n_entries, n_elems);
    uint64_t total = 0;
    for (size_t i = 0; i < n_entries; ++i) total += table[i].count;
    axpby_table(dtype, data, n_elems, device_table, n_entries, total, seed, a, eta_lambda, stream_);
  }
  void fo_update(const FoHyper& h, float* x, const float* g, float* m, float* v, size_t n) override {
    on_device();
    cuda::fo_update(h, x, g, m, v, n, stream_);
  }
  bool all_finite(const float* p, size_t n) override {
    on_device();
    cuda::all_finite(p, n, flag_, stream_);
    cuda_check(cudaMemcpyAsync(flag_host_, flag_, sizeof(int), cudaMemcpyDeviceToHost, stream_), "all_finite (copy)");
    cuda_check(cudaStreamSynchronize(stream_), "all_finite (synchronize)");
    return *flag_host_ == 0;
  }

  // ---- layers ----
  void matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    on_device();
    const Compute mode = compute();
    if (bf16_operand(C, 0, "matmul (output)"))
      throw Error("ZOFO_INTERNAL", "matmul: the output C is a bf16 operand buffer");
    if (mode != Compute::BF16) {
      gemm_->run(mode, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    check_gemm_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    if (M == 0 || N == 0) return;
    // op(A) is (M, K): stored (K, M) when transposed; op(B) is (K, N).
    const void* a16 = bf16_matrix(A, trans_a ? K : M, trans_a ? M : K, lda, 0);
    const void* b16 = bf16_matrix(B, trans_b ? N : K, trans_b ? K : N, ldb, 1);
    if (a16 != A) lda = trans_a ? M : K;  // rounded into the workspace, packed
    if (b16 != B) ldb = trans_b ? K : N;
    gemm_->run(Compute::BF16, trans_a, trans_b, M, N, K, alpha, a16, lda, b16, ldb, beta, C, ldc);
  }
  void add_bias(float* y, const float* bias, int64_t N, int64_t C) override {
    on_device();
    cuda::add_bias(y, bias, N, C, stream_);
  }
  void bias_backward(float* dbias, const float* dy, int64_t N, int64_t C) override {
    on_device();
    cuda::bias_backward(dbias, dy, N, C, stream_);
  }
  void axpy(float* y, const float* x, float alpha, size_t n) override {
    on_device();
    cuda::axpy(y, x, alpha, n, stream_);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                       float eps) override {
    on_device();
    if (uint16_t* out16 = bf16_operand(out, (size_t)(N * C), "rmsnorm_forward"))
      cuda::rmsnorm_forward(out16, rstd, inp, weight, N, C, eps, stream_);
    else cuda::rmsnorm_forward(out, rstd, inp, weight, N, C, eps, stream_);
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                        const float* rstd, int64_t N, int64_t C) override {
    on_device();
    cuda::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C, stream_);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                         int64_t N, int64_t C, float eps) override {
    on_device();
    if (uint16_t* out16 = bf16_operand(out, (size_t)(N * C), "layernorm_forward"))
      cuda::layernorm_forward(out16, mean, rstd, inp, weight, bias, N, C, eps, stream_);
    else cuda::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps, stream_);
  }
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) override {
    on_device();
    cuda::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, stream_);
  }
  void rope(float* x, const int32_t* positions, int64_t B, int64_t T, int64_t NH, int64_t HS, float theta,
            bool backward) override {
    on_device();
    cuda::rope(x, positions, B, T, NH, HS, theta, backward, stream_);
  }
  // The fused kernels save the row log-sum-exp and the mask, not the (T, T) probabilities.
  size_t attention_saved_size(int64_t B, int64_t T, int64_t NH) const override {
    return (size_t)cuda::attention_saved_size(B, T, NH);
  }
  void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* mask,
                         int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, float scale) override {
    on_device();
    uint16_t* out16 = bf16_operand(out, (size_t)(B * T * NH * HS), "attention_forward");
    cuda::attention_forward(out16 ? (void*)out16 : (void*)out, out16 != nullptr, att, q, k, v, mask, B, T, NH, NKV, HS,
                            scale, stream_);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* att, const float* q,
                          const float* k, const float* v, int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS,
                          float scale) override {
    on_device();
    float* scratch = alloc_scratch((size_t)(B * NH * T));
    struct Release {
      CudaBackend* be;
      float* p;
      ~Release() { be->free(p); }  // stream-ordered: freed after the kernels that use it
    } release{this, scratch};
    cuda::attention_backward(dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, HS, scale, scratch, stream_);
  }
  void activation_forward(int kind, float* out, const float* inp, int64_t N) override {
    on_device();
    if (uint16_t* out16 = bf16_operand(out, (size_t)N, "activation_forward"))
      cuda::activation_forward(kind, out16, inp, N, stream_);
    else cuda::activation_forward(kind, out, inp, N, stream_);
  }
  void activation_backward(int kind, float* dinp, const float* inp, const float* dout, int64_t N) override {
    on_device();
    cuda::activation_backward(kind, dinp, inp, dout, N, stream_);
  }
  void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) override {
    on_device();
    if (uint16_t* out16 = bf16_operand(out, (size_t)N, "swiglu_forward"))
      cuda::swiglu_forward(out16, gate, up, N, stream_);
    else cuda::swiglu_forward(out, gate, up, N, stream_);
  }
  void swiglu_backward(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                       int64_t N) override {
    on_device();
    cuda::swiglu_backward(dgate, dup, gate, up, dout, N, stream_);
  }
  void copy2d(float* dst, int64_t dst_ld, const float* src, int64_t src_ld, int64_t rows, int64_t cols) override {
    if (rows <= 0 || cols <= 0) return;
    on_device();
    cuda_check(cudaMemcpy2DAsync(dst, (size_t)dst_ld * sizeof(float), src, (size_t)src_ld * sizeof(float),
                                 (size_t)cols * sizeof(float), (size_t)rows, cudaMemcpyDeviceToDevice, stream_),
               "copy2d (cudaMemcpy2DAsync)");
  }
  void log_softmax_at(float* logits, const int32_t* targets, double* logp, int64_t M, int64_t V, bool probs) override {
    on_device();
    cuda::log_softmax_at(logits, targets, logp, M, V, probs, stream_);
  }
  void xent_backward(float* probs, const int32_t* targets, const double* drow, int64_t M, int64_t V) override {
    on_device();
    cuda::xent_backward(probs, targets, drow, M, V, stream_);
  }
  void embedding_view(float* out, const void* table, DType dtype, const int32_t* ids, int64_t N, int64_t C,
                      uint64_t stream, uint64_t seed, float a) override {
    on_device();
    cuda::embedding_view(out, table, dtype, ids, N, C, stream, seed, a, stream_);
  }
  void gather_rows(float* out, const float* x, const int32_t* rows, int64_t M, int64_t C) override {
    on_device();
    cuda::gather_rows(out, x, rows, M, C, stream_);
  }
  void scatter_add_rows(float* dx, const float* dout, const int32_t* rows, int64_t M, int64_t C) override {
    on_device();
    cuda::scatter_add_rows(dx, dout, rows, M, C, stream_);
  }

  // ---- CudaBackendApi ----
  void synchronize() override {
    on_device();
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  size_t bytes_in_use() const override {
    std::lock_guard<std::mutex> guard(lock_);
    return in_use_;
  }
  size_t peak_bytes() const override {
    std::lock_guard<std::mutex> guard(lock_);
    return peak_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> guard(lock_);
    peak_ = in_use_;
  }
  void* stream_handle() const override { return stream_; }

 private:
  // Calls arrive from the JS thread and from worker threads: each names the device.
  void on_device() const { cuda_check(cudaSetDevice(device_), "cudaSetDevice"); }
  static size_t bytes_of(size_t n) { return (n ? n : 1) * sizeof(float); }

  // p as a bf16 operand buffer, or null when p is fp32 memory. A pointer inside a bf16
  // buffer (not at its start), or n values past its end, is an engine error: bf16 data
  // must never be read or written as fp32.
  uint16_t* bf16_operand(const void* p, size_t n, const char* what) const {
    std::lock_guard<std::mutex> guard(lock_);
    if (bf16_operands_.empty() || !p) return nullptr;
    auto it = bf16_operands_.upper_bound(p);
    if (it == bf16_operands_.begin()) return nullptr;
    --it;
    const char* base = static_cast<const char*>(it->first);
    const size_t count = it->second;
    if (static_cast<const char*>(p) >= base + count * sizeof(uint16_t)) return nullptr;
    if (p != it->first || n > count)
      throw Error("ZOFO_INTERNAL", std::string(what) + ": a bf16 operand buffer is used at an offset or past its " +
                                       std::to_string(count) + " values");
    return static_cast<uint16_t*>(const_cast<void*>(p));
  }

  // op-shaped (rows, cols, leading dimension ld) operand X as bf16: X itself when it is
  // a bf16 operand buffer, otherwise X rounded into workspace slot `slot`, packed.
  const void* bf16_matrix(const float* X, int64_t rows, int64_t cols, int64_t ld, int slot) {
    if (rows == 0 || cols == 0) return X;
    const size_t extent = (size_t)((rows - 1) * ld + cols);
    if (bf16_operand(X, extent, "matmul")) return X;
    const size_t n = (size_t)(rows * cols);
    Workspace& w = workspace_[slot];
    if (n > w.capacity) {  // grows to the largest operand, then is reused: no per-call allocation
      if (w.p) free(w.p);
      w.p = nullptr;
      w.p = alloc_scratch((n + 1) / 2);
      w.capacity = n;
    }
    to_bf16_matrix(reinterpret_cast<uint16_t*>(w.p), X, rows, cols, ld, stream_);
    return w.p;
  }

  // The update's parameter table is the same every step: upload it only when it changes.
  const ParamEntry* upload_table(const ParamEntry* table, size_t n, uint64_t n_elems) {
    validate_param_table(table, n, n_elems);
    const size_t bytes = n * sizeof(ParamEntry);
    if (same_table(table, n)) return table_device_;
    if (n > table_capacity_) {
      if (table_device_) cuda_check(cudaFree(table_device_), "cudaFree (parameter table)");
      table_device_ = nullptr;
      cuda_check(cudaMalloc((void**)&table_device_, bytes), "cudaMalloc (parameter table)");
      table_capacity_ = n;
    }
    table_host_.clear();  // stays empty if the copy fails
    cuda_check(cudaMemcpyAsync(table_device_, table, bytes, cudaMemcpyHostToDevice, stream_), "parameter table upload");
    cuda_check(cudaStreamSynchronize(stream_), "parameter table upload");
    table_host_.assign(table, table + n);
    return table_device_;
  }

  bool same_table(const ParamEntry* table, size_t n) const {
    if (table_host_.size() != n) return false;
    for (size_t i = 0; i < n; ++i) {
      const ParamEntry &a = table_host_[i], &b = table[i];
      if (a.offset != b.offset || a.count != b.count || a.stream != b.stream || a.first != b.first ||
          memcmp(&a.decay, &b.decay, sizeof a.decay) != 0)
        return false;
    }
    return true;
  }

  struct Stage {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
  };
  static constexpr int kStages = 16;
  static constexpr size_t kStageBytes = size_t(1) << 20;

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  Stage stages_[kStages];
  int next_stage_ = 0;
  std::unique_ptr<Gemm> gemm_;
  int* flag_ = nullptr;       // all_finite's result on the device
  int* flag_host_ = nullptr;  // and its pinned read-back slot
  std::vector<ParamEntry> table_host_;
  ParamEntry* table_device_ = nullptr;
  size_t table_capacity_ = 0;
  struct Workspace {
    float* p = nullptr;
    size_t capacity = 0;  // bf16 values
  };
  Workspace workspace_[2];  // the rounded A and B of a BF16 matmul
  mutable std::mutex lock_;
  std::unordered_map<void*, size_t> sizes_;
  std::map<const void*, size_t> bf16_operands_;  // start → bf16 values
  size_t in_use_ = 0, peak_ = 0;
};

}  // namespace

std::unique_ptr<CudaBackendApi> make_cuda_backend(int index) { return std::make_unique<CudaBackend>(index); }

}  // namespace zofo::cuda
