// The CPU implementation of the engine's Backend: host memory, BLAS (or the built-in
// GEMM) for matmul, the threaded kernels of native/cpu for the rest.
#pragma once

#include "../engine/backend.h"

namespace zofo::cpu {

// The CPU backend whose matmuls have the operand precision `compute` (sgemm_compute).
Backend& cpu_backend(Compute compute = Compute::FP32);

}  // namespace zofo::cpu
