// N-API binding of the CUDA backend: zofo_cuda.node, a separate binary from the CPU
// addon so that a missing driver, GPU or cuBLAS only ever fails this one to load.
// Module init throws (and the loader falls back to the CPU addon, recording why) when
// no CUDA device is usable. It exports the model engine and the hybrid optimizer
// (the same wraps as the CPU addon, model.cpp and optimizer.cpp) with models on the
// device, and the perturbation kernels on host typed arrays (run on the device and
// copied back: the conformance path the tests use to check CUDA against the CPU).
#include <cuda_runtime.h>
#include <napi.h>

#include <cstring>
#include <string>
#include <vector>

#include "../cpu/backend_cpu.h"
#include "../cuda/backend_cuda.h"
#include "../cuda/perturb.cuh"
#include "model_wrap.h"
#include "napi_util.h"

// "cuda" or "cuda:N" (device N); "cpu" still works here.
zofo::Backend& zofo::addon::choose_backend(const std::string& device, zofo::Compute compute,
                                           std::unique_ptr<zofo::Backend>& owned) {
  if (device == "cpu") return zofo::cpu::cpu_backend(compute);
  int index = 0;
  if (device.rfind("cuda:", 0) == 0) {
    const std::string digits = device.substr(5);
    if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos)
      throw zofo::addon::arg_error("device '" + device + "': expected 'cuda' or 'cuda:N'");
    index = std::stoi(digits);
  } else if (device != "cuda") {
    throw zofo::addon::arg_error("unknown device '" + device + "' (expected 'cpu', 'cuda' or 'cuda:N')");
  }
  owned = zofo::cuda::make_cuda_backend(index);
  owned->set_compute(compute);
  return *owned;
}

namespace {

using namespace zofo::addon;

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw zofo::Error("ZOFO_CUDA", std::string(what) + ": " + cudaGetErrorString(status));
}

// Device memory owned for the duration of one call.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { cuda_check(cudaMalloc(&ptr, bytes ? bytes : 1), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// gaussian(seed, stream, offset, out: Float32Array)
Napi::Value Gaussian(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const GaussianArgs g = get_gaussian_args(info);
    DeviceBuffer z(g.count * sizeof(float));
    zofo::cuda::gaussian(g.seed, g.stream, g.first, g.count, static_cast<float*>(z.ptr), 0);
    cuda_check(cudaMemcpy(g.out, z.ptr, g.count * sizeof(float), cudaMemcpyDeviceToHost), "gaussian: copy back");
    return info.Env().Undefined();
  });
}

// axpby(weights, dtype, table, decay, seed, a, etaLambda): x ← (1 − ηλ·mask)x + a·z on the device.
Napi::Value Axpby(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const View x = get_view(info[0], "weights");
    const zofo::DType dtype = get_dtype(info[1], x);
    const std::vector<zofo::ParamEntry> table = get_table(info[2], info[3]);
    const uint64_t seed = get_u64(info[4], "seed");
    const float a = (float)get_number(info[5], "scale");
    const float eta_lambda = (float)get_number(info[6], "lr·weightDecay");
    const zofo::cuda::DeviceParamTable device_table(table.data(), table.size(), x.length);  // validates
    const size_t bytes = x.length * zofo::dtype_size(dtype);
    DeviceBuffer weights(bytes);
    cuda_check(cudaMemcpy(weights.ptr, x.data, bytes, cudaMemcpyHostToDevice), "axpby: upload");
    zofo::cuda::restore_update(dtype, weights.ptr, device_table, seed, a, eta_lambda, 0);
    cuda_check(cudaDeviceSynchronize(), "axpby");
    cuda_check(cudaMemcpy(x.data, weights.ptr, bytes, cudaMemcpyDeviceToHost), "axpby: copy back");
    return info.Env().Undefined();
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  register_env(env);
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    const std::string why = status != cudaSuccess ? cudaGetErrorString(status) : "no CUDA device";
    throw coded_error(env, "ZOFO_CUDA", "zofo CUDA backend unavailable: " + why);
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess)
    throw coded_error(env, "ZOFO_CUDA", "zofo CUDA backend unavailable: cannot read device 0's properties");
  exports.Set("backend", Napi::String::New(env, "cuda"));
  exports.Set("device", Napi::String::New(env, prop.name));
  exports.Set("computeCapability",
              Napi::String::New(env, std::to_string(prop.major) + "." + std::to_string(prop.minor)));
  exports.Set("memoryBytes", Napi::Number::New(env, (double)prop.totalGlobalMem));
  exports.Set("gaussian", Napi::Function::New(env, Gaussian, "gaussian"));
  exports.Set("axpby", Napi::Function::New(env, Axpby, "axpby"));
  exports.Set("NativeModel", model_class(env));
  exports.Set("NativeOptimizer", optimizer_class(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(zofo_cuda, Init)
