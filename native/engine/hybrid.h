// The hybrid ZO/FO step of docs/algorithm.md §2, whole, on one Transformer:
//   1. FO: forward + adapter-only backward at (x_k, y_k)  → L0, g_y
//   2. ZO: for j < q, forward(s) at x_k ± μ·z_j            → c_j
//   3. y ← FO update (SGD / momentum / AdamW);  x ← x − η_x·(Σ_j c_j z_j / q + λ_x x)
// The perturbed weights are computed into per-tensor scratch (Transformer::weight), so
// steps 1–2 never write x or y: a cancelled or failed step, or one whose losses are not
// finite, leaves every weight bit-identical. Step 3 is the only writer, and its x part
// goes through Transformer::zo_update, the same call trajectory replay makes.
// The same code runs the baselines: ZO-only (no FO part: MeZO), FO-only on the
// adapters (LoRA), and FO on every base weight (full fine-tuning).
#pragma once

#include <stdint.h>

#include <atomic>
#include <string>
#include <vector>

#include "../comm/communicator.h"
#include "../common/fo_hyper.h"
#include "transformer.h"

namespace zofo {

struct HybridConfig {
  // Zeroth-order part on the base weights.
  bool zo = false;
  bool central = false;     // estimator: false forward (L⁺ − L0)/μ, true central (L⁺ − L⁻)/2μ
  bool fo_at_plus = false;  // central only: the FO gradient at x + μz_1 (saves the centre forward)
  int q = 1;                // perturbations per step
  float mu = 1e-3f;
  std::vector<uint8_t> trainable;  // per base tensor; frozen tensors are neither perturbed nor updated
  std::vector<float> decay;        // per base tensor weight-decay mask
  // First-order part.
  bool fo_adapters = false;  // backprop updates of the LoRA tensors
  bool fo_base = false;      // backprop updates of every base weight (full fine-tuning; excludes zo)
  FoHyper fo;                // kind and its constants (lr/weight decay come per step)
  uint64_t seed = 0;         // run seed
  // Several processes (docs/distributed.md). Data: each rank steps on its slice of the
  // global batch; the loss sums (weighted by rows), the row counts and the gradient sums
  // are allreduced. Perturbation: each rank evaluates directions j ≡ rank (mod size) on
  // the whole batch and the perturbed losses are allreduced. Every rank then applies the
  // identical update. `comm` is borrowed: it outlives the optimizer.
  enum class Parallel { None = 0, Data = 1, Perturbation = 2 };
  Parallel parallel = Parallel::None;
  Communicator* comm = nullptr;
};

struct StepArgs {
  int64_t step = 0;  // k
  float lr_x = 0, wd_x = 0, lr_y = 0, wd_y = 0;
  bool idle = false;  // data-parallel: this rank has no rows of the global batch (it only exchanges)
};

struct StepOutcome {
  enum Status { Applied = 0, NonFinite = 1, Cancelled = 2 };
  Status status = Applied;
  double loss = 0;                // at the FO point
  std::vector<double> scores;     // classification scores at the FO point
  std::vector<double> perturbed;  // L⁺_j (forward) or L⁺_j, L⁻_j interleaved (central)
  std::vector<double> projected;  // c_j
  std::vector<uint64_t> seeds;    // s_{k,j}
  std::vector<float> scales;      // the update passes' a_j = −η_x c_j / q (fp32, as applied)
  float eta_lambda = 0;           // η_x λ_x, applied with j = 0
  std::string reason;             // NonFinite: which value
};

class HybridOptimizer {
 public:
  HybridOptimizer(Transformer& model, HybridConfig config);
  ~HybridOptimizer();
  HybridOptimizer(const HybridOptimizer&) = delete;
  HybridOptimizer& operator=(const HybridOptimizer&) = delete;

  // One step. `cancel` is polled between passes; once the update phase starts it runs to the end.
  StepOutcome step(const Batch& batch, const LossSpec& loss, const StepArgs& args, const std::atomic<bool>* cancel);

  // s_{k,j}: Philox4x32-10 keyed by the run seed, counter (k lo, k hi, j, 0x5eed5eed); the
  // first two output words. A pure function, so the log can be checked against the seed.
  static uint64_t step_seed(uint64_t run_seed, int64_t k, int j);

  // Optimizer state for checkpoints: named fp32 moment buffers (host copies) and the
  // number of FO updates applied (AdamW's t).
  struct Moment {
    std::string name;
    float* data;
    int64_t n;
  };
  std::vector<Moment> moments();
  int64_t fo_updates() const { return fo_updates_; }
  void set_fo_updates(int64_t t) { fo_updates_ = t; }
  Backend& backend();

 private:
  // Data-parallel: g ← (Σ_ranks w_r g_r) / W, staged through host memory.
  void reduce_gradient(float* g, size_t n, double w, double total);

  Transformer& m_;
  HybridConfig c_;
  float* grad_y_ = nullptr;  // (n_lora)
  float* grad_x_ = nullptr;  // (n_params) full fine-tuning only
  float *m_y_ = nullptr, *v_y_ = nullptr, *m_x_ = nullptr, *v_x_ = nullptr;
  int64_t fo_updates_ = 0;
};

}  // namespace zofo
