// CUDA error checks for library code: turn a cudaError_t into a zofo::Error with code
// "ZOFO_CUDA" (never exit()/abort(); the N-API boundary turns it into a JS Error).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../common/error.h"

namespace zofo::cuda {

inline Error cuda_error(const std::string& what, const std::string& detail) {
  return Error("ZOFO_CUDA", what + ": " + detail);
}

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw cuda_error(what, std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")");
}

// After a <<<...>>> launch: a bad configuration shows up here, not at the launch.
inline void check_launch(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

}  // namespace zofo::cuda
