// Compute precision of a model's matmuls, separate from the storage dtype (DType).
// fp32: fp32 operands, fp32 products and sums. tf32: operands rounded to TF32 (10-bit
// mantissa) by the tensor cores, fp32 accumulation. bf16: operands rounded to bf16
// (nearest even), products and sums in fp32. Norms, softmax, the loss, all reductions,
// LoRA masters and optimizer moments stay fp32 whatever the choice (docs/precision.md).
#pragma once

namespace zofo {

enum class Compute : int { FP32 = 0, TF32 = 1, BF16 = 2 };

inline const char* compute_name(Compute c) {
  switch (c) {
    case Compute::FP32:
      return "fp32";
    case Compute::TF32:
      return "tf32";
    case Compute::BF16:
      return "bf16";
  }
  return "?";
}

}  // namespace zofo
