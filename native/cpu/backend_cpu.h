// The CPU implementation of the engine's Backend: host memory, BLAS (or the built-in
// GEMM) for matmul, the threaded kernels of native/cpu for the rest.
#pragma once

#include "../engine/backend.h"

namespace zofo::cpu {

Backend& cpu_backend();

}  // namespace zofo::cpu
