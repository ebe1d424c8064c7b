// The CUDA backend: the engine interface (native/engine/backend.h) on device memory.
// One backend per model: its own stream, cuBLAS handle and stream-ordered memory pool,
// so nothing in a step synchronises the host except reading back loss scalars and the
// one finiteness flag. Kernels live in native/cuda/<family>.cu; matmuls go through
// native/cuda/gemm.cu (the only file that includes cuBLAS).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>

#include "../engine/backend.h"

namespace zofo::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0, sms = 0;
  size_t memory_bytes = 0;
};

// Device `index`'s properties; throws ZOFO_CUDA when there is no usable device.
DeviceInfo device_info(int index = 0);

class CudaBackendApi : public Backend {
 public:
  // Waits for everything queued on this backend's stream (errors surface here).
  virtual void synchronize() = 0;
  // Bytes of device memory this backend holds now, and the most it has held since the
  // last reset_peak(): the memory figures of the benchmarks.
  virtual size_t bytes_in_use() const = 0;
  virtual size_t peak_bytes() const = 0;
  virtual void reset_peak() = 0;
  virtual void* stream_handle() const = 0;  // the cudaStream_t, for benchmarks' events
};

// A backend on device `index` (throws ZOFO_CUDA when it cannot be created).
std::unique_ptr<CudaBackendApi> make_cuda_backend(int index = 0);

}  // namespace zofo::cuda
