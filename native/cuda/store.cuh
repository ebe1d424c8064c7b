// Storing an fp32 result as fp32 or as bf16 (uint16 bit pattern, nearest even): the
// producers of matmul operands write either, by the type of their output pointer.
#pragma once

#include <stdint.h>

#include "../common/dtype.h"

namespace zofo::cuda {

ZOFO_HD void store_as(float* p, float v) { *p = v; }
ZOFO_HD void store_as(uint16_t* p, float v) { *p = f32_to_bf16(v); }

}  // namespace zofo::cuda
