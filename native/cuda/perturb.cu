// CUDA perturbation engine: launchers and kernels. The per-group work lives in
// perturb_groups.cuh (shared with the host emulation in the tests); the kernels here
// are grid-stride loops over groups of 4 elements.
#include "perturb.cuh"

#include <string>
#include <utility>

#include "../common/philox.h"
#include "check.cuh"
#include "perturb_groups.cuh"

namespace zofo::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 8;             // 8 × 256 = 2048 threads: a full H100/H200/A100 SM
constexpr uint64_t kMaxElems = 1ull << 62;  // keeps 4·group and p + 3 far from 64-bit overflow

// Blocks for `items` threads' worth of work, at most enough to fill the device once:
// the grid-stride loops do the rest.
unsigned grid_for(uint64_t items) {
  int dev = 0, sms = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  const uint64_t want = (items + kThreads - 1) / kThreads;
  const uint64_t cap = (uint64_t)(sms > 0 ? sms : 1) * kBlocksPerSm;
  return (unsigned)(want < cap ? (want > 0 ? want : 1) : cap);
}

// Rejects pointers the device cannot dereference (plain host memory on a system
// without pageable-memory access): a kernel fault would poison the whole context.
void require_device_accessible(const void* p, const char* what) {
  cudaPointerAttributes attr{};
  cuda_check(cudaPointerGetAttributes(&attr, p), "cudaPointerGetAttributes");
  if (attr.devicePointer != nullptr) return;
  int dev = 0, pageable = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, dev), "cudaDeviceGetAttribute");
  if (!pageable) throw invalid_arg(std::string(what) + " is not device memory");
}

void require_element_aligned(const void* p, size_t elem_size, const char* what) {
  if ((uintptr_t)p % elem_size != 0)
    throw invalid_arg(std::string(what) + " is not aligned to its element size (" + std::to_string(elem_size) +
                      " bytes)");
}

// ---- kernels ----

// out: (count,) fp32; one thread per group of 4 outputs.
__global__ void __launch_bounds__(kThreads)
    gaussian_kernel(float* out, uint64_t count, uint64_t h, PhiloxKeys keys, uint64_t stream, uint64_t first) {
  const uint64_t groups = groups::group_count(count, h);
  const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t g = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step)
    groups::gaussian_group(out, count, h, keys, stream, first, g);
}

// data: (n_elems,) S::T; table: (n_entries,) ParamEntry; one thread per group of 4.
template <class S>
__global__ void __launch_bounds__(kThreads)
    axpby_table_kernel(typename S::T* data, uint64_t n_elems, uint64_t h, const ParamEntry* __restrict__ table,
                       size_t n_entries, PhiloxKeys keys, float a, float eta_lambda) {
  const uint64_t groups = groups::group_count(n_elems, h);
  const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
  int64_t hint = -1;
  for (uint64_t g = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step)
    groups::axpby_group<S>(data, n_elems, h, table, n_entries, keys, a, eta_lambda, g, hint);
}

// x: (count,) S::T; z: (count,) fp32; one thread per element (the baseline's plain axpy).
template <class S>
__global__ void __launch_bounds__(kThreads)
    axpy_materialized_kernel(typename S::T* x, const float* __restrict__ z, uint64_t count, float a) {
  const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += step)
    groups::axpy_materialized_one<S>(x, z, a, 1.0f, i);
}

// dst: (n,) fp32; src: (n,) S::T; one thread per Philox block of the view.
template <class S, class D>
__global__ void __launch_bounds__(kThreads)
    weight_view_kernel(typename D::T* dst, const typename S::T* __restrict__ src, uint64_t n, uint64_t first,
                       PhiloxKeys keys, uint64_t stream, float a) {
  const uint64_t groups = groups::view_group_count(n, first);
  const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t g = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += step)
    groups::weight_view_group<S, D>(dst, src, n, first, keys, stream, a, g);
}

// out: (N, C) fp32; table: (V, C) S::T; ids: (N,). Rows on y, a row's groups on x: no
// 64-bit division per thread (with a = 0 the body is only a load and a store).
template <class S>
__global__ void __launch_bounds__(kThreads)
    embedding_view_kernel(float* out, const typename S::T* __restrict__ table, const int32_t* __restrict__ ids,
                          uint64_t N, uint64_t C, PhiloxKeys keys, uint64_t stream, float a) {
  const uint64_t per_row = groups::embedding_groups_per_row(C);
  const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t r = blockIdx.y; r < N; r += gridDim.y)
    for (uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; j < per_row; j += step)
      groups::embedding_view_group<S>(out, table, ids, C, keys, stream, a, r, j);
}

template <class S, class D>
void launch_weight_view(typename D::T* dst, const void* src, uint64_t n, uint64_t first, const PhiloxKeys& keys,
                        uint64_t stream, float a, cudaStream_t s) {
  const unsigned grid = grid_for(groups::view_group_count(n, first));
  weight_view_kernel<S, D><<<grid, kThreads, 0, s>>>(dst, (const typename S::T*)src, n, first, keys, stream, a);
  check_launch("weight_view_kernel");
}

template <class S>
void launch_embedding_view(float* out, const void* table, const int32_t* ids, uint64_t N, uint64_t C,
                           const PhiloxKeys& keys, uint64_t stream, float a, cudaStream_t s) {
  const uint64_t per_row = groups::embedding_groups_per_row(C);
  const dim3 grid(grid_for(per_row), (unsigned)(N < 65535 ? N : 65535));
  embedding_view_kernel<S><<<grid, kThreads, 0, s>>>(out, (const typename S::T*)table, ids, N, C, keys, stream, a);
  check_launch("embedding_view_kernel");
}

template <class S>
void launch_axpby_table(void* data, uint64_t n_elems, const ParamEntry* table, size_t n_entries, const PhiloxKeys& keys,
                        float a, float eta_lambda, cudaStream_t s) {
  using T = typename S::T;
  const uint64_t h = groups::head_of(data, sizeof(T));
  const unsigned grid = grid_for(groups::group_count(n_elems, h));
  axpby_table_kernel<S><<<grid, kThreads, 0, s>>>((T*)data, n_elems, h, table, n_entries, keys, a, eta_lambda);
  check_launch("axpby_table_kernel");
}

// out: (count,) fp32, arguments already checked.
void launch_gaussian(float* out, uint64_t count, const PhiloxKeys& keys, uint64_t stream, uint64_t first,
                     cudaStream_t s) {
  const uint64_t h = groups::head_of(out, sizeof(float));
  const unsigned grid = grid_for(groups::group_count(count, h));
  gaussian_kernel<<<grid, kThreads, 0, s>>>(out, count, h, keys, stream, first);
  check_launch("gaussian_kernel");
}

template <class S>
void launch_axpy_materialized(void* x, const float* z, uint64_t count, float a, cudaStream_t s) {
  const unsigned grid = grid_for(count);  // one element per thread here
  axpy_materialized_kernel<S><<<grid, kThreads, 0, s>>>((typename S::T*)x, z, count, a);
  check_launch("axpy_materialized_kernel");
}

}  // namespace

// ---- launchers ----

void gaussian(uint64_t seed, uint64_t stream, uint64_t first, uint64_t count, float* out_device, cudaStream_t s) {
  if (count == 0) return;
  if (first > UINT64_MAX - count) throw invalid_arg("gaussian: offset + count overflows 64 bits");
  if (count > kMaxElems) throw invalid_arg("gaussian: count " + std::to_string(count) + " is too large");
  if (out_device == nullptr) throw invalid_arg("gaussian: output pointer is null");
  require_element_aligned(out_device, sizeof(float), "gaussian: output");
  require_device_accessible(out_device, "gaussian: output");
  launch_gaussian(out_device, count, philox_keys(seed), stream, first, s);
}

void axpby_table(DType dtype, void* data_device, uint64_t n_elems, const ParamEntry* table_device, size_t n_entries,
                 uint64_t total_elems, uint64_t seed, float a, float eta_lambda, cudaStream_t s) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw invalid_arg("axpby_table: unknown dtype " + std::to_string((int)dtype));
  if (total_elems > n_elems)
    throw invalid_arg("axpby_table: the table covers " + std::to_string(total_elems) +
                      " elements but the buffer has only " + std::to_string(n_elems));
  if (n_elems > kMaxElems)
    throw invalid_arg("axpby_table: buffer of " + std::to_string(n_elems) + " elements is too large");
  if (n_entries == 0 || total_elems == 0) return;
  if (data_device == nullptr) throw invalid_arg("axpby_table: data pointer is null");
  if (table_device == nullptr) throw invalid_arg("axpby_table: table pointer is null");
  require_element_aligned(data_device, dtype_size(dtype), "axpby_table: data");
  require_device_accessible(data_device, "axpby_table: data");
  require_device_accessible(table_device, "axpby_table: table");
  const PhiloxKeys keys = philox_keys(seed);  // on the host, passed by value as a kernel parameter
  switch (dtype) {
    case DType::F32:
      launch_axpby_table<groups::F32>(data_device, n_elems, table_device, n_entries, keys, a, eta_lambda, s);
      break;
    case DType::BF16:
      launch_axpby_table<groups::BF16>(data_device, n_elems, table_device, n_entries, keys, a, eta_lambda, s);
      break;
    case DType::F16:
      launch_axpby_table<groups::F16>(data_device, n_elems, table_device, n_entries, keys, a, eta_lambda, s);
      break;
  }
}

// ---- DeviceParamTable ----

DeviceParamTable::DeviceParamTable(const ParamEntry* host_entries, size_t n_entries, uint64_t buffer_elems)
    : n_entries_(n_entries), buffer_elems_(buffer_elems) {
  if (n_entries > 0 && host_entries == nullptr) throw invalid_arg("parameter table pointer is null");
  validate_param_table(host_entries, n_entries, buffer_elems);
  for (size_t i = 0; i < n_entries; ++i) total_elems_ += host_entries[i].count;  // disjoint: ≤ buffer_elems
  if (n_entries == 0) return;
  const size_t bytes = n_entries * sizeof(ParamEntry);
  cuda_check(cudaMalloc((void**)&entries_, bytes), "cudaMalloc (parameter table)");
  const cudaError_t err = cudaMemcpy(entries_, host_entries, bytes, cudaMemcpyHostToDevice);
  if (err != cudaSuccess) {
    cudaFree(entries_);
    entries_ = nullptr;
    cuda_check(err, "cudaMemcpy (parameter table)");
  }
}

DeviceParamTable::~DeviceParamTable() {
  if (entries_) cudaFree(entries_);  // errors ignored: destructors must not throw
}

DeviceParamTable::DeviceParamTable(DeviceParamTable&& o) noexcept
    : entries_(std::exchange(o.entries_, nullptr)),
      n_entries_(std::exchange(o.n_entries_, 0)),
      buffer_elems_(std::exchange(o.buffer_elems_, 0)),
      total_elems_(std::exchange(o.total_elems_, 0)) {}

DeviceParamTable& DeviceParamTable::operator=(DeviceParamTable&& o) noexcept {
  if (this != &o) {
    if (entries_) cudaFree(entries_);
    entries_ = std::exchange(o.entries_, nullptr);
    n_entries_ = std::exchange(o.n_entries_, 0);
    buffer_elems_ = std::exchange(o.buffer_elems_, 0);
    total_elems_ = std::exchange(o.total_elems_, 0);
  }
  return *this;
}

void perturb(DType dtype, void* data_device, const DeviceParamTable& table, uint64_t seed, float a, cudaStream_t s) {
  axpby_table(dtype, data_device, table.buffer_elems(), table.entries(), table.size(), table.total_elems(), seed, a,
              0.0f, s);
}

void restore_update(DType dtype, void* data_device, const DeviceParamTable& table, uint64_t seed, float a,
                    float eta_lambda, cudaStream_t s) {
  axpby_table(dtype, data_device, table.buffer_elems(), table.entries(), table.size(), table.total_elems(), seed, a,
              eta_lambda, s);
}

// ---- benchmark baseline ----

void materialize_then_axpy(DType dtype, void* x_device, uint64_t count, uint64_t stream, uint64_t first, uint64_t seed,
                           float a, float* z_scratch_device, cudaStream_t s) {
  // Cheap checks only (no pointer-attribute queries): this runs once per tensor, and
  // the baseline should pay what MeZO pays, two launches per tensor, and no more.
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw invalid_arg("materialize_then_axpy: unknown dtype " + std::to_string((int)dtype));
  if (count == 0) return;
  if (first > UINT64_MAX - count) throw invalid_arg("materialize_then_axpy: offset + count overflows 64 bits");
  if (count > kMaxElems) throw invalid_arg("materialize_then_axpy: count is too large");
  if (x_device == nullptr || z_scratch_device == nullptr) throw invalid_arg("materialize_then_axpy: null pointer");
  require_element_aligned(x_device, dtype_size(dtype), "materialize_then_axpy: data");
  require_element_aligned(z_scratch_device, sizeof(float), "materialize_then_axpy: scratch");
  launch_gaussian(z_scratch_device, count, philox_keys(seed), stream, first, s);
  switch (dtype) {
    case DType::F32:
      launch_axpy_materialized<groups::F32>(x_device, z_scratch_device, count, a, s);
      break;
    case DType::BF16:
      launch_axpy_materialized<groups::BF16>(x_device, z_scratch_device, count, a, s);
      break;
    case DType::F16:
      launch_axpy_materialized<groups::F16>(x_device, z_scratch_device, count, a, s);
      break;
  }
}

// ---- weight views ----

namespace {
// weight_view into fp32 (D = F32) or bf16 (D = BF16) destinations.
template <class D>
void weight_view_to(typename D::T* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first,
                    uint64_t seed, float a, cudaStream_t s) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw invalid_arg("weight_view: unknown dtype " + std::to_string((int)dtype));
  if (n == 0) return;
  if (first > UINT64_MAX - n) throw invalid_arg("weight_view: first + n overflows 64 bits");
  if (n > kMaxElems) throw invalid_arg("weight_view: n " + std::to_string(n) + " is too large");
  if (dst == nullptr) throw invalid_arg("weight_view: dst is null");
  if (src == nullptr) throw invalid_arg("weight_view: src is null");
  require_element_aligned(dst, sizeof(typename D::T), "weight_view: dst");
  require_element_aligned(src, dtype_size(dtype), "weight_view: src");
  const PhiloxKeys keys = philox_keys(seed);
  switch (dtype) {
    case DType::F32:
      launch_weight_view<groups::F32, D>(dst, src, n, first, keys, stream, a, s);
      break;
    case DType::BF16:
      launch_weight_view<groups::BF16, D>(dst, src, n, first, keys, stream, a, s);
      break;
    case DType::F16:
      launch_weight_view<groups::F16, D>(dst, src, n, first, keys, stream, a, s);
      break;
  }
}
}  // namespace

void weight_view(float* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first, uint64_t seed,
                 float a, cudaStream_t s) {
  weight_view_to<groups::F32>(dst, src, dtype, n, stream, first, seed, a, s);
}

void weight_view_bf16(uint16_t* dst, const void* src, DType dtype, uint64_t n, uint64_t stream, uint64_t first,
                      uint64_t seed, float a, cudaStream_t s) {
  weight_view_to<groups::BF16>(dst, src, dtype, n, stream, first, seed, a, s);
}

void embedding_view(float* out, const void* table, DType dtype, const int32_t* ids, int64_t N, int64_t C,
                    uint64_t stream, uint64_t seed, float a, cudaStream_t s) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw invalid_arg("embedding_view: unknown dtype " + std::to_string((int)dtype));
  if (N < 0 || C < 0)
    throw invalid_arg("embedding_view: negative size N=" + std::to_string(N) + " C=" + std::to_string(C));
  if (N == 0 || C == 0) return;
  if ((uint64_t)N > kMaxElems / (uint64_t)C) throw invalid_arg("embedding_view: N·C is too large");
  if (out == nullptr) throw invalid_arg("embedding_view: out is null");
  if (table == nullptr) throw invalid_arg("embedding_view: table is null");
  if (ids == nullptr) throw invalid_arg("embedding_view: ids is null");
  require_element_aligned(out, sizeof(float), "embedding_view: out");
  require_element_aligned(table, dtype_size(dtype), "embedding_view: table");
  require_element_aligned(ids, sizeof(int32_t), "embedding_view: ids");
  const PhiloxKeys keys = philox_keys(seed);
  const uint64_t n = (uint64_t)N, c = (uint64_t)C;
  switch (dtype) {
    case DType::F32:
      launch_embedding_view<groups::F32>(out, table, ids, n, c, keys, stream, a, s);
      break;
    case DType::BF16:
      launch_embedding_view<groups::BF16>(out, table, ids, n, c, keys, stream, a, s);
      break;
    case DType::F16:
      launch_embedding_view<groups::F16>(out, table, ids, n, c, keys, stream, a, s);
      break;
  }
}

}  // namespace zofo::cuda
