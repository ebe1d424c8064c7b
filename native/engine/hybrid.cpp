#include "hybrid.h"

#include <math.h>

#include "../common/error.h"
#include "../common/philox.h"

namespace zofo {

HybridOptimizer::HybridOptimizer(Transformer& model, HybridConfig config) : m_(model), c_(std::move(config)) {
  const size_t tensors = m_.tensors().size();
  if (c_.trainable.empty()) c_.trainable.assign(tensors, 1);
  if (c_.decay.empty()) c_.decay.assign(tensors, 1.0f);
  if (c_.trainable.size() != tensors || c_.decay.size() != tensors)
    throw invalid_arg("optimizer: one trainable flag and one decay mask per base tensor (" + std::to_string(tensors) +
                      ")");
  if (c_.q < 1) throw invalid_arg("optimizer: perturbations must be at least 1");
  if (c_.zo && !(c_.mu > 0.0f && isfinite(c_.mu))) throw invalid_arg("optimizer: mu must be a positive finite number");
  if (c_.fo_at_plus && !(c_.zo && c_.central)) throw invalid_arg("optimizer: foAt 'plus' needs the central estimator");
  if (c_.parallel != HybridConfig::Parallel::None && !c_.comm)
    throw invalid_arg("optimizer: parallel needs a communicator");
  if (c_.parallel == HybridConfig::Parallel::Perturbation && !c_.zo)
    throw invalid_arg("optimizer: perturbation-parallel splits the ZO directions; it needs the zo part");
  if (c_.parallel == HybridConfig::Parallel::Perturbation && c_.fo_at_plus)
    throw invalid_arg(
        "optimizer: perturbation-parallel needs foAt 'center' (every rank takes the FO gradient at the centre)");
  if (c_.fo_base && c_.zo) throw invalid_arg("optimizer: full fine-tuning (fo on all weights) replaces the ZO part");
  if (!c_.zo && !c_.fo_adapters && !c_.fo_base) throw invalid_arg("optimizer: neither a ZO nor an FO part is enabled");
  if (c_.fo_adapters && m_.total_lora_parameters() == 0)
    throw Error("ZOFO_INVALID_STATE",
                "optimizer: the FO part updates LoRA adapters but the model has none; call addLoRA() first");
  Backend& be = m_.backend();
  const bool moments = c_.fo.kind != FoKind::SGD, second = c_.fo.kind == FoKind::AdamW;
  if (c_.fo_adapters) {
    const size_t n = (size_t)m_.total_lora_parameters();
    grad_y_ = be.alloc(n);
    if (moments) m_y_ = be.alloc(n);
    if (second) v_y_ = be.alloc(n);
  }
  if (c_.fo_base) {
    m_.base_fp32();  // throws for low-precision storage
    const size_t n = (size_t)m_.total_parameters();
    grad_x_ = be.alloc(n);
    if (moments) m_x_ = be.alloc(n);
    if (second) v_x_ = be.alloc(n);
  }
}

HybridOptimizer::~HybridOptimizer() {
  Backend& be = m_.backend();
  for (float* p : {grad_y_, grad_x_, m_y_, v_y_, m_x_, v_x_})
    if (p) be.free(p);
}

Backend& HybridOptimizer::backend() { return m_.backend(); }

uint64_t HybridOptimizer::step_seed(uint64_t run_seed, int64_t k, int j) {
  const uint64_t uk = (uint64_t)k;
  uint32_t c0 = (uint32_t)uk, c1 = (uint32_t)(uk >> 32), c2 = (uint32_t)j, c3 = 0x5eed5eedu;
  philox4x32_10<uint32_t>(c0, c1, c2, c3, philox_keys(run_seed));
  return (uint64_t)c0 | ((uint64_t)c1 << 32);
}

std::vector<HybridOptimizer::Moment> HybridOptimizer::moments() {
  std::vector<Moment> out;
  const int64_t ny = m_.total_lora_parameters(), nx = m_.total_parameters();
  if (m_y_) out.push_back({"adapters.m", m_y_, ny});
  if (v_y_) out.push_back({"adapters.v", v_y_, ny});
  if (m_x_) out.push_back({"base.m", m_x_, nx});
  if (v_x_) out.push_back({"base.v", v_x_, nx});
  return out;
}

void HybridOptimizer::reduce_gradient(float* g, size_t n, double w, double total) {
  Backend& be = m_.backend();
  std::vector<float> host(n);
  be.download(host.data(), g, n);
  const float fw = (float)w, ft = (float)total;
  for (float& v : host) v *= fw;
  c_.comm->allreduce_sum(host.data(), n, "the gradient sums");
  for (float& v : host) v /= ft;
  be.upload(g, host.data(), n);
}

namespace {

// Resets the engine's perturbation however the forward that used it ends.
struct PerturbationScope {
  Transformer& m;
  PerturbationScope(Transformer& model, uint64_t seed, float scale, const std::vector<uint8_t>& trainable) : m(model) {
    m.set_perturbation(seed, scale, trainable);
  }
  ~PerturbationScope() { m.clear_perturbation(); }
};

}  // namespace

StepOutcome HybridOptimizer::step(const Batch& batch, const LossSpec& spec, const StepArgs& a,
                                  const std::atomic<bool>* cancel) {
  Backend& be = m_.backend();
  StepOutcome out;
  Communicator* comm = c_.parallel == HybridConfig::Parallel::None ? nullptr : c_.comm;
  const bool data_par = comm && c_.parallel == HybridConfig::Parallel::Data;
  const bool pert_par = comm && c_.parallel == HybridConfig::Parallel::Perturbation;
  // Alone, a cancel returns at once. With a communicator every rank must make the same
  // collectives, so a cancel only stops the local work and is put to a vote in the
  // step's one scalar exchange: every rank cancels the same step.
  bool stop = false;
  auto cancelled = [&] { return stop = stop || (cancel && cancel->load(std::memory_order_relaxed)); };
  auto cancelled_out = [&] {
    out.status = StepOutcome::Cancelled;
    return out;
  };
  if (cancelled() && !comm) return cancelled_out();
  const bool idle = data_par && a.idle;  // no local rows: exchange zeros
  const int64_t ny = m_.total_lora_parameters(), nx = m_.total_parameters();
  if (grad_y_) be.fill(grad_y_, 0.0f, (size_t)ny);
  if (grad_x_) be.fill(grad_x_, 0.0f, (size_t)nx);

  // 1. The FO point (x_k, y_k): loss and gradients (skipped when foAt = plus).
  double l0 = 0;
  if (!c_.fo_at_plus && !stop && !idle) {
    LossResult r = m_.loss_device(batch, spec, grad_y_, grad_x_);
    l0 = out.loss = r.loss;
    out.scores = std::move(r.scores);
  }

  // 2. The ZO part: q perturbed forwards (2q for central) at x_k ± μ z_j, z_j from s_{k,j}.
  if (c_.zo) {
    for (int j = 0; j < c_.q; ++j) out.seeds.push_back(step_seed(c_.seed, a.step, j));
    out.perturbed.assign((size_t)c_.q * (c_.central ? 2 : 1), 0.0);
    for (int j = 0; j < c_.q; ++j) {
      if (cancelled()) {
        if (!comm) return cancelled_out();
        break;
      }
      if (idle || (pert_par && j % comm->size() != comm->rank())) continue;  // another rank's direction
      const uint64_t seed = out.seeds[j];
      const bool grad_here = c_.fo_at_plus && j == 0;
      {
        PerturbationScope scope(m_, seed, c_.mu, c_.trainable);
        LossResult r = m_.loss_device(batch, spec, grad_here ? grad_y_ : nullptr, nullptr);
        out.perturbed[c_.central ? 2 * j : j] = r.loss;
        if (grad_here) {
          out.loss = r.loss;
          out.scores = std::move(r.scores);
        }
      }
      if (c_.central) {
        PerturbationScope scope(m_, seed, -c_.mu, c_.trainable);
        out.perturbed[2 * j + 1] = m_.loss_device(batch, spec, nullptr, nullptr).loss;
      }
    }
  }

  // The exchange: one allreduce of scalars (the cancel vote included), then, for data
  // parallelism, the gradient sums. Afterwards every rank holds the same values.
  if (comm) {
    const size_t np = out.perturbed.size();
    std::vector<double> s;
    double w = 0;
    if (data_par) {
      // This rank's share of the global mean: lm averages over target rows,
      // classification over examples.
      w = idle || stop ? 0.0 : (double)(spec.kind == 0 ? (int64_t)spec.rows.size() : spec.examples);
      s.push_back(w * out.loss);
      for (double p : out.perturbed) s.push_back(w * p);
      s.push_back(w);
    } else {
      s.assign(out.perturbed.begin(), out.perturbed.end());  // zeros where another rank's direction
    }
    s.push_back(stop ? 1.0 : 0.0);
    comm->allreduce_sum(s.data(), s.size(), "the step's losses");
    if (s.back() > 0) return cancelled_out();
    if (data_par) {
      const double total = s[np + 1];
      out.loss = s[0] / total;
      for (size_t i = 0; i < np; ++i) out.perturbed[i] = s[1 + i] / total;
      l0 = out.loss;
      if (grad_y_) reduce_gradient(grad_y_, (size_t)ny, w, total);
      if (grad_x_) reduce_gradient(grad_x_, (size_t)nx, w, total);
    } else {
      for (size_t i = 0; i < np; ++i) out.perturbed[i] = s[i];
    }
  }
  for (int j = 0; c_.zo && j < c_.q; ++j)
    out.projected.push_back(c_.central ? (out.perturbed[2 * j] - out.perturbed[2 * j + 1]) / (2.0 * (double)c_.mu)
                                       : (out.perturbed[j] - l0) / (double)c_.mu);

  // Reject the step before anything is written if a loss, c_j or gradient is not finite.
  auto reject = [&](const std::string& what) {
    out.status = StepOutcome::NonFinite;
    out.reason = what;
    return out;
  };
  if (!isfinite(out.loss)) return reject("the loss at the first-order point is " + std::to_string(out.loss));
  for (size_t i = 0; i < out.perturbed.size(); ++i)
    if (!isfinite(out.perturbed[i]))
      return reject("perturbed loss " + std::to_string(i) + " is " + std::to_string(out.perturbed[i]));
  for (size_t j = 0; j < out.projected.size(); ++j)
    if (!isfinite(out.projected[j])) return reject("projected gradient " + std::to_string(j) + " is not finite");
  if (grad_y_ && !be.all_finite(grad_y_, (size_t)ny)) return reject("the adapter gradient has non-finite values");
  if (grad_x_ && !be.all_finite(grad_x_, (size_t)nx)) return reject("the base-weight gradient has non-finite values");
  if (!comm && cancelled()) return cancelled_out();

  // 3. The update, from the same iterate: y (FO) and x (ZO fused restore+update, or FO).
  FoHyper h = c_.fo;
  h.t = fo_updates_ + 1;
  if (grad_y_) {
    h.lr = a.lr_y;
    h.weight_decay = a.wd_y;
    be.fo_update(h, m_.lora_parameters(), grad_y_, m_y_, v_y_, (size_t)ny);
  }
  if (grad_x_) {
    h.lr = a.lr_x;
    h.weight_decay = a.wd_x;
    be.fo_update(h, m_.base_fp32(), grad_x_, m_x_, v_x_, (size_t)nx);
  }
  if (grad_y_ || grad_x_) ++fo_updates_;
  if (c_.zo) {
    out.eta_lambda = (float)((double)a.lr_x * (double)a.wd_x);
    for (int j = 0; j < c_.q; ++j) {
      const float scale = (float)(-(double)a.lr_x * out.projected[j] / (double)c_.q);
      out.scales.push_back(scale);
      m_.zo_update(out.seeds[j], scale, j == 0 ? out.eta_lambda : 0.0f, c_.trainable, c_.decay);
    }
  }
  return out;
}

}  // namespace zofo
