// The model engine on the CUDA backend against the same engine on the CPU backend, then
// the GPU benchmarks of the engine (llm.c dev/cuda style: reference, validate, benchmark).
//
//   zofo_cuda_engine_test                  tests, then the benchmarks
//   zofo_cuda_engine_test --no-bench       tests only
//   zofo_cuda_engine_test --bench          benchmarks only
//   --large is accepted and ignored (the ~7B shape is always benchmarked)
//   zofo_cuda_engine_test --json FILE      write the benchmark numbers to FILE
//
// Tests (fresh random weights and batches per run; the seed is printed): for Llama (GQA),
// OPT-350m-shaped (project_in/out, post-norm, ReLU) and GPT-2 (packed qkv, GELU), in
// each compute precision of the CUDA backend (fp32, tf32, bf16) against the CPU engine
// in fp32: logits, loss and adapter gradients, full-parameter gradients, three hybrid
// steps (fp32: within atol + rtol·|cpu|; tf32/bf16: normwise, see Tolerance); with bf16
// storage the fused update is bit-identical to the CPU's and steps with lr_x = 0 leave
// the stored weights bit-identical, in every compute precision. Needs a CUDA device.
//
// Benchmark (bf16 storage, bf16 compute, the CUDA default): the ~1B and ~7B Llama shapes
// (forward, forward + adapter backward, hybrid and ZO steps, the forward's GEMMs alone on
// bf16 operands through the same matmul: the bf16 cuBLAS rate of this run), and, on a
// GPU with ≥ 120 GiB, the peak device memory of a llama-30b-shaped hybrid step.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "cuda/perturb.cuh"
#include "engine/hybrid.h"
#include "engine/transformer.h"
#include "harness.h"

using namespace zofo;
using namespace zofo::test;

namespace {

// ---- small models, batches, loss specs ----

ModelConfig tiny_config(ModelConfig::Family family) {
  ModelConfig c;
  c.family = family;
  c.vocab = 96;
  c.hidden = 48;
  c.layers = 2;
  c.heads = 6;
  c.kv_heads = family == ModelConfig::Llama ? 2 : 6;
  c.head_dim = 8;
  c.ffn = 80;
  c.max_positions = 64;
  c.embed_dim = c.hidden;
  if (family == ModelConfig::Llama) return c;
  c.rmsnorm = false;
  c.attention_bias = c.output_bias = c.mlp_bias = true;
  c.tie_embeddings = true;
  if (family == ModelConfig::OPT) {  // OPT-350m: project_in/out, post-norm, ReLU, no final norm
    c.embed_dim = 32;
    c.position_offset = 2;
    c.activation = 1;
    c.pre_norm = false;
    c.final_norm = false;
  } else {
    c.activation = 0;
  }
  return c;
}

const char* family_name(ModelConfig::Family f) {
  return f == ModelConfig::Llama ? "llama" : f == ModelConfig::OPT ? "opt-350m" : "gpt2";
}

// The same random weights into both models (norm weights near 1, the rest N(0, 0.2²)).
void random_weights(Transformer& a, Transformer& b, Rng& rng) {
  for (const TensorSpec& s : a.tensors()) {
    const bool norm = s.shape.size() == 1 && s.name.find("bias") == std::string::npos;
    std::vector<float> w = rng.normals((size_t)s.numel(), norm ? 0.1f : 0.2f);
    if (norm)
      for (float& v : w) v += 1.0f;
    a.set_tensor(s.name, w.data(), s.numel());
    b.set_tensor(s.name, w.data(), s.numel());
  }
}

void random_lora(Transformer& a, Transformer& b, Rng& rng) {
  const std::vector<std::string> targets = {"q_proj", "v_proj", "c_attn", "fc1", "mlp.c_fc"};
  a.add_lora(targets, 4, 8.0f);
  b.add_lora(targets, 4, 8.0f);
  for (const TensorSpec& s : a.lora_tensors()) {
    const std::vector<float> w = rng.normals((size_t)s.numel(), 0.1f);
    a.set_lora_tensor(s.name, w.data(), s.numel());
    b.set_lora_tensor(s.name, w.data(), s.numel());
  }
}

// B sequences of random lengths ≤ T, right-padded.
Batch random_batch(int64_t B, int64_t T, int64_t vocab, Rng& rng) {
  Batch b;
  b.B = B;
  b.T = T;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t len = T / 2 + (int64_t)(rng.next() % (uint32_t)(T - T / 2 + 1));
    for (int64_t t = 0; t < T; ++t) {
      b.ids.push_back(t < len ? (int32_t)(rng.next() % (uint32_t)vocab) : 0);
      b.positions.push_back((int32_t)std::min(t, len - 1));
      b.mask.push_back(t < len ? 1 : 0);
    }
  }
  return b;
}

int64_t length_of(const Batch& b, int64_t i) {
  int64_t n = 0;
  for (int64_t t = 0; t < b.T; ++t) n += b.mask[i * b.T + t];
  return n;
}

// Next-token loss over every real position but the last.
LossSpec lm_spec(const Batch& b) {
  LossSpec s;
  s.kind = 0;
  for (int64_t i = 0; i < b.B; ++i)
    for (int64_t t = 0; t + 1 < length_of(b, i); ++t) {
      s.rows.push_back((int32_t)(i * b.T + t));
      s.targets.push_back(b.ids[i * b.T + t + 1]);
    }
  return s;
}

// MeZO's classification: per example, K single-token candidates scored at the last
// real position; the label is candidate 0 or 1.
LossSpec classification_spec(const Batch& b, int K, Rng& rng) {
  LossSpec s;
  s.kind = 1;
  s.examples = b.B;
  for (int64_t i = 0; i < b.B; ++i) {
    const int label = (int)(rng.next() % (uint32_t)K);
    for (int k = 0; k < K; ++k) {
      s.rows.push_back((int32_t)(i * b.T + length_of(b, i) - 1));
      s.targets.push_back(5 + 2 * k);
      s.group.push_back((int32_t)s.candidate_example.size());
      s.candidate_example.push_back((int32_t)i);
      s.candidate_is_label.push_back(k == label ? 1 : 0);
    }
  }
  return s;
}

void check_scalar(const std::string& name, double got, double want, double atol, double rtol) {
  const bool ok = std::fabs(got - want) <= atol + rtol * std::fabs(want);
  char buf[160];
  snprintf(buf, sizeof buf, "cuda %.9g vs cpu %.9g (atol %.0e, rtol %.0e)", got, want, atol, rtol);
  report(ok, name, ok ? "" : buf);
}

std::vector<float> all_weights(const Transformer& m) {
  std::vector<float> out;
  for (const TensorSpec& s : m.tensors()) {
    std::vector<float> w((size_t)s.numel());
    m.get_tensor(s.name, w.data(), s.numel());
    out.insert(out.end(), w.begin(), w.end());
  }
  return out;
}

// ---- tests ----

// fp32 tolerances: the two backends sum in different orders (cuBLAS vs BLAS, tree vs
// serial reductions), so values agree to a few fp32 ulps of their magnitudes.
constexpr double kAtol = 1e-5, kRtol = 1e-4, kGradAtol = 1e-5, kGradRtol = 1e-3;

// Reduced precision against the fp32 CPU engine: every matmul operand is rounded once
// (relative error u = 2⁻⁹ for bf16, 2⁻¹¹ for tf32), so a product of two operands moves
// by ≤ 2u of its magnitude, a dot product by ≤ 2u·Σ|terms|; on these random tiny models
// (Σ|terms| within a few times |dot|, two layers, norms between) vectors move normwise
// by a few u, which ×8 margin gives these bounds on ‖cuda − cpu‖ / ‖cpu‖. Scalars (the
// loss): |Δ| ≤ bound·max(1, |cpu|).
struct Tolerance {
  double rel;
};
Tolerance tolerance_of(Compute c) {
  return Tolerance{c == Compute::BF16 ? 32 * std::ldexp(1.0, -9) : 32 * std::ldexp(1.0, -11)};  // 6.3e-2, 1.6e-2
}

void check_normwise(const std::string& name, const std::vector<float>& cpu, const std::vector<float>& gpu,
                    Tolerance t) {
  double d = 0, n = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    d += ((double)gpu[i] - cpu[i]) * ((double)gpu[i] - cpu[i]);
    n += (double)cpu[i] * cpu[i];
  }
  const double rel = std::sqrt(d) / std::max(std::sqrt(n), 1e-30);
  char buf[160];
  snprintf(buf, sizeof buf, "‖cuda − cpu‖/‖cpu‖ = %.3g (bound %.3g)", rel, t.rel);
  report(cpu.size() == gpu.size() && rel <= t.rel, name, rel <= t.rel ? "" : buf);
}

void check_scalar_reduced(const std::string& name, double got, double want, Tolerance t) {
  check_scalar(name, got, want, t.rel * std::max(1.0, std::fabs(want)), 0.0);
}

// The engine on CUDA in a reduced compute precision vs the CPU engine in fp32.
void test_family_reduced(ModelConfig::Family family, Compute mode, Rng& rng) {
  const std::string f = std::string(family_name(family)) + " (" + compute_name(mode) + ")";
  const Tolerance tol = tolerance_of(mode);
  const ModelConfig config = tiny_config(family);
  auto device = cuda::make_cuda_backend(0);
  device->set_compute(mode);
  Transformer cpu(config, cpu::cpu_backend()), gpu(config, *device);
  random_weights(cpu, gpu, rng);
  random_lora(cpu, gpu, rng);
  const Batch batch = random_batch(3, 11, config.vocab, rng);
  run_test(f + ": logits", [&] {
    std::vector<int32_t> rows = {0, 5, 12, 32};
    std::vector<float> a(rows.size() * config.vocab), b(a.size());
    gpu.logits(batch, rows, a.data());
    cpu.logits(batch, rows, b.data());
    check_normwise(f + ": logits", b, a, tol);
  });
  for (int kind = 0; kind < 2; ++kind) {
    const std::string what = f + (kind ? ": classification" : ": lm");
    run_test(what + " loss and adapter gradients", [&] {
      const LossSpec spec = kind ? classification_spec(batch, 3, rng) : lm_spec(batch);
      std::vector<float> ga((size_t)gpu.total_lora_parameters()), gb(ga.size());
      const LossResult ra = gpu.loss(batch, spec, ga.data()), rb = cpu.loss(batch, spec, gb.data());
      check_scalar_reduced(what + " loss", ra.loss, rb.loss, tol);
      check_normwise(what + " adapter gradients", gb, ga, tol);
    });
  }
  run_test(f + ": full-parameter gradients", [&] {
    const LossSpec spec = lm_spec(batch);
    std::vector<float> la((size_t)gpu.total_lora_parameters()), lb(la.size());
    std::vector<float> ba((size_t)gpu.total_parameters()), bb(ba.size());
    gpu.loss(batch, spec, la.data(), ba.data());
    cpu.loss(batch, spec, lb.data(), bb.data());
    check_normwise(f + ": full-parameter gradients", bb, ba, tol);
  });
  run_test(f + ": three hybrid steps", [&] {
    HybridConfig hc;
    hc.zo = true;
    hc.mu = 1e-2f;
    hc.fo_adapters = true;
    hc.seed = rng.next();
    HybridOptimizer oa(gpu, hc), ob(cpu, hc);
    const LossSpec spec = classification_spec(batch, 2, rng);
    for (int64_t k = 0; k < 3; ++k) {
      const StepArgs args{k, 1e-3f, 0.0f, 1e-2f, 0.0f};
      const StepOutcome a = oa.step(batch, spec, args, nullptr), b = ob.step(batch, spec, args, nullptr);
      report(a.status == StepOutcome::Applied && b.status == StepOutcome::Applied,
             f + ": step " + std::to_string(k) + " applied");
      check_scalar_reduced(f + ": step " + std::to_string(k) + " loss", a.loss, b.loss, tol);
      report(a.seeds == b.seeds, f + ": step " + std::to_string(k) + " seeds identical");
    }
  });
}

void test_family(ModelConfig::Family family, Rng& rng) {
  const std::string f = family_name(family);
  const ModelConfig config = tiny_config(family);
  auto device = cuda::make_cuda_backend(0);
  Transformer cpu(config, cpu::cpu_backend()), gpu(config, *device);
  random_weights(cpu, gpu, rng);
  random_lora(cpu, gpu, rng);
  const Batch batch = random_batch(3, 11, config.vocab, rng);

  run_test(f + ": logits", [&] {
    std::vector<int32_t> rows = {0, 5, 12, 32};
    std::vector<float> a(rows.size() * config.vocab), b(a.size());
    gpu.logits(batch, rows, a.data());
    cpu.logits(batch, rows, b.data());
    check_close(f + ": logits", std::vector<double>(b.begin(), b.end()), a, kAtol, kRtol);
  });
  for (int kind = 0; kind < 2; ++kind) {
    const std::string what = f + (kind ? ": classification" : ": lm");
    run_test(what + " loss and adapter gradients", [&] {
      const LossSpec spec = kind ? classification_spec(batch, 3, rng) : lm_spec(batch);
      std::vector<float> ga((size_t)gpu.total_lora_parameters()), gb(ga.size());
      const LossResult ra = gpu.loss(batch, spec, ga.data()), rb = cpu.loss(batch, spec, gb.data());
      check_scalar(what + " loss", ra.loss, rb.loss, kAtol, kRtol);
      for (size_t k = 0; k < rb.scores.size(); ++k)
        check_scalar(what + " score " + std::to_string(k), ra.scores[k], rb.scores[k], kAtol, kRtol);
      check_close(what + " adapter gradients", std::vector<double>(gb.begin(), gb.end()), ga, kGradAtol, kGradRtol);
    });
  }
  run_test(f + ": full-parameter gradients", [&] {
    const LossSpec spec = lm_spec(batch);
    std::vector<float> la((size_t)gpu.total_lora_parameters()), lb(la.size());
    std::vector<float> ba((size_t)gpu.total_parameters()), bb(ba.size());
    gpu.loss(batch, spec, la.data(), ba.data());
    cpu.loss(batch, spec, lb.data(), bb.data());
    check_close(f + ": full-parameter gradients", std::vector<double>(bb.begin(), bb.end()), ba, kGradAtol, kGradRtol);
  });
  run_test(f + ": three hybrid steps (q = 2, central, AdamW on the adapters)", [&] {
    HybridConfig hc;
    hc.zo = true;
    hc.central = true;
    hc.q = 2;
    hc.mu = 1e-2f;
    hc.fo_adapters = true;
    hc.fo.kind = FoKind::AdamW;
    hc.seed = rng.next();
    HybridOptimizer oa(gpu, hc), ob(cpu, hc);
    const LossSpec spec = classification_spec(batch, 2, rng);
    for (int64_t k = 0; k < 3; ++k) {
      const StepArgs args{k, 1e-3f, 0.1f, 1e-2f, 0.01f};
      const StepOutcome a = oa.step(batch, spec, args, nullptr), b = ob.step(batch, spec, args, nullptr);
      report(a.status == StepOutcome::Applied && b.status == StepOutcome::Applied,
             f + ": step " + std::to_string(k) + " applied");
      check_scalar(f + ": step " + std::to_string(k) + " loss", a.loss, b.loss, kAtol, kRtol);
      for (size_t j = 0; j < b.perturbed.size(); ++j)
        check_scalar(f + ": step " + std::to_string(k) + " perturbed loss " + std::to_string(j), a.perturbed[j],
                     b.perturbed[j], kAtol, kRtol);
      report(a.seeds == b.seeds, f + ": step " + std::to_string(k) + " seeds identical");
    }
    // c_j differ by rounding, so the updated weights agree to ~η·|Δc|·|z| ≪ the tolerance.
    const std::vector<float> wa = all_weights(gpu), wb = all_weights(cpu);
    check_close(f + ": base weights after three steps", std::vector<double>(wb.begin(), wb.end()), wa, 1e-5, 1e-4);
    std::vector<float> ya((size_t)gpu.total_lora_parameters()), yb(ya.size());
    for (const TensorSpec& s : gpu.lora_tensors()) {
      gpu.get_lora_tensor(s.name, ya.data() + s.offset, s.numel());
      cpu.get_lora_tensor(s.name, yb.data() + s.offset, s.numel());
    }
    check_close(f + ": adapters after three steps", std::vector<double>(yb.begin(), yb.end()), ya, 1e-5, 1e-3);
  });
}

// bf16 storage, CUDA in compute precision `mode`: exact restore holds by construction
// (the perturbed weights are views; only updates write the stored weights).
void test_bf16(Rng& rng, Compute mode) {
  const std::string tag = std::string("bf16 storage, ") + compute_name(mode) + " compute";
  const ModelConfig config = tiny_config(ModelConfig::Llama);
  auto device = cuda::make_cuda_backend(0);
  device->set_compute(mode);
  Transformer cpu(config, cpu::cpu_backend(), DType::BF16), gpu(config, *device, DType::BF16);
  random_weights(cpu, gpu, rng);
  random_lora(cpu, gpu, rng);
  const std::vector<uint8_t> all(cpu.tensors().size(), 1);
  const std::vector<float> decay(all.size(), 1.0f);
  run_test(tag + ": stored weights identical after upload", [&] {
    report(gpu.hash_parameters() == cpu.hash_parameters(), tag + ": stored weights identical after upload");
  });
  run_test(tag + ": the fused restore+update is bit-identical to the CPU's", [&] {
    const uint64_t seed = rng.next();
    gpu.zo_update(seed, 3e-3f, 1e-4f, all, decay);
    cpu.zo_update(seed, 3e-3f, 1e-4f, all, decay);
    report(gpu.hash_parameters() == cpu.hash_parameters(),
           tag + ": the fused restore+update is bit-identical to the CPU's");
  });
  run_test(tag + ": steps with lr_x = 0 leave the stored weights bit-identical", [&] {
    const uint64_t before = gpu.hash_parameters();
    HybridConfig hc;
    hc.zo = true;
    hc.mu = 1e-2f;
    hc.fo_adapters = true;
    hc.seed = rng.next();
    HybridOptimizer opt(gpu, hc);
    const Batch batch = random_batch(4, 9, config.vocab, rng);
    const LossSpec spec = classification_spec(batch, 2, rng);
    for (int64_t k = 0; k < 3; ++k) opt.step(batch, spec, StepArgs{k, 0.0f, 0.0f, 1e-2f, 0.0f}, nullptr);
    report(gpu.hash_parameters() == before, tag + ": steps with lr_x = 0 leave the stored weights bit-identical");
  });
  run_test(tag + ": a perturbed forward equals the CPU's", [&] {
    const Batch batch = random_batch(2, 7, config.vocab, rng);
    const LossSpec spec = lm_spec(batch);
    const uint64_t seed = rng.next();
    gpu.set_perturbation(seed, 1e-2f, all);
    cpu.set_perturbation(seed, 1e-2f, all);
    const double a = gpu.loss(batch, spec, nullptr).loss, b = cpu.loss(batch, spec, nullptr).loss;
    gpu.clear_perturbation();
    cpu.clear_perturbation();
    if (mode == Compute::FP32) check_scalar(tag + ": a perturbed forward equals the CPU's", a, b, kAtol, kRtol);
    else check_scalar_reduced(tag + ": a perturbed forward equals the CPU's", a, b, tolerance_of(mode));
  });
}

// ---- benchmark ----

double seconds_of(const std::function<void()>& fn, cuda::CudaBackendApi& be, int reps) {
  fn();  // warm-up: pool allocations, cuBLAS heuristics
  be.synchronize();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    be.synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

ModelConfig llama_shape(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, int64_t ffn) {
  ModelConfig c;
  c.vocab = 32000;
  c.hidden = hidden;
  c.layers = layers;
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.ffn = ffn;
  c.max_positions = 4096;
  c.embed_dim = hidden;
  return c;
}

struct BenchResult {
  std::string name;
  ModelConfig config;
  int64_t batch = 0, seq = 0;
  double params = 0, tokens = 0;
  Compute compute = Compute::BF16;
  double forward_s = 0, fwd_bwd_s = 0, hybrid_s = 0, zo_s = 0, gemm_floor_s = 0, gemm_flop = 0;
  double perturb_s = 0, copy_s = 0, generator_s = 0, perturb_bytes = 0;
  double model_bytes = 0, peak_forward = 0, peak_hybrid = 0;
};

// Random bf16 weights without a host round trip: x = 0 + 0.02·z, norms set to 1.
void random_device_weights(Transformer& m) {
  const std::vector<uint8_t> all(m.tensors().size(), 1);
  const std::vector<float> decay(all.size(), 1.0f);
  m.zo_update(0x1234, 0.02f, 0.0f, all, decay);
  for (const TensorSpec& s : m.tensors())
    if (s.shape.size() == 1) {
      const std::vector<float> ones((size_t)s.numel(), 1.0f);
      m.set_tensor(s.name, ones.data(), s.numel());
    }
}

BenchResult bench_model(const std::string& name, const ModelConfig& c, int64_t B, int64_t T, int reps,
                        Compute compute) {
  BenchResult r;
  r.name = name;
  r.config = c;
  r.batch = B;
  r.seq = T;
  r.compute = compute;
  auto be = cuda::make_cuda_backend(0);
  be->set_compute(compute);
  Transformer m(c, *be, DType::BF16);
  r.params = (double)m.total_parameters();
  r.tokens = (double)(B * T);
  const std::vector<uint8_t> all(m.tensors().size(), 1);
  const std::vector<float> decay(all.size(), 1.0f);
  random_device_weights(m);
  m.add_lora({"q_proj", "v_proj"}, 8, 16.0f);
  be->synchronize();
  r.model_bytes = (double)be->bytes_in_use();

  Rng rng(7);
  Batch batch;
  batch.B = B;
  batch.T = T;
  for (int64_t i = 0; i < B * T; ++i) {
    batch.ids.push_back((int32_t)(rng.next() % (uint32_t)c.vocab));
    batch.positions.push_back((int32_t)(i % T));
    batch.mask.push_back(1);
  }
  const LossSpec spec = classification_spec(batch, 2, rng);
  float* grad = be->alloc((size_t)m.total_lora_parameters());

  be->reset_peak();
  r.forward_s = seconds_of([&] { m.loss_device(batch, spec, nullptr, nullptr); }, *be, reps);
  r.peak_forward = (double)be->peak_bytes();
  r.fwd_bwd_s = seconds_of([&] { m.loss_device(batch, spec, grad, nullptr); }, *be, reps);

  HybridConfig hc;
  hc.zo = true;
  hc.mu = 1e-3f;
  hc.fo_adapters = true;
  hc.seed = 1;
  {
    HybridOptimizer opt(m, hc);
    int64_t k = 0;
    be->reset_peak();
    r.hybrid_s = seconds_of(
        [&] {
      opt.step(batch, spec, StepArgs{k++, 1e-7f, 0.0f, 1e-5f, 0.0f}, nullptr);
        },
        *be, reps);
    r.peak_hybrid = (double)be->peak_bytes();
  }
  {
    HybridConfig zc = hc;
    zc.fo_adapters = false;
    HybridOptimizer opt(m, zc);
    int64_t k = 0;
    r.zo_s = seconds_of([&] { opt.step(batch, spec, StepArgs{k++, 1e-7f, 0.0f, 0.0f, 0.0f}, nullptr); }, *be, reps);
  }
  be->free(grad);

  // The GEMM floor: the forward's linear layers (and the head's rows) as bare matmuls of
  // the same shapes through the same backend matmul, operands as the forward has them
  // (alloc_operand, written by weight_view: bf16 in bf16 compute). Its rate is this
  // run's cuBLAS rate at these shapes.
  {
    const int64_t N = B * T, C = c.hidden, Q = c.heads * c.head_dim, KV = c.kv_heads * c.head_dim, F = c.ffn;
    const int64_t M = (int64_t)spec.rows.size();
    const int64_t widest = std::max({C, Q, F});
    const size_t nu = (size_t)(N * widest), nw = (size_t)std::max(widest * widest, c.vocab * C),
                 ny = (size_t)std::max(N * widest, M * c.vocab);
    float* src = be->alloc_scratch(std::max(nu, nw));
    be->fill(src, 0.01f, std::max(nu, nw));
    float* u = be->alloc_operand(nu);
    float* w = be->alloc_operand(nw);
    float* y = be->alloc_scratch(ny);
    be->weight_view(u, src, DType::F32, nu, 0, 0, 0, 0.0f);
    be->weight_view(w, src, DType::F32, nw, 0, 0, 0, 0.0f);
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{C, Q}, {C, KV}, {C, KV}, {Q, C}, {C, F}, {C, F}, {F, C}};
    r.gemm_flop = 2.0 * (double)M * c.vocab * C;
    for (const auto& [in, out] : shapes) r.gemm_flop += 2.0 * (double)N * in * out * c.layers;
    r.gemm_floor_s = seconds_of(
        [&] {
      for (int64_t l = 0; l < c.layers; ++l)
        for (const auto& [in, out] : shapes) be->matmul(false, true, N, out, in, 1.0f, u, in, w, in, 0.0f, y, out);
      be->matmul(false, true, M, c.vocab, C, 1.0f, u, C, w, C, 0.0f, y, c.vocab);
        },
        *be, reps);
    be->free(src);
    be->free(u);
    be->free(w);
    be->free(y);
  }

  // The perturbation pass over the whole model (bf16: 2 bytes read + 2 written per
  // weight) vs a device-to-device copy of the same bytes and the generator alone.
  {
    r.perturb_bytes = 2.0 * 2.0 * r.params;
    r.perturb_s = seconds_of([&] { m.zo_update(99, 1e-3f, 0.0f, all, decay); }, *be, reps);
    const size_t bytes = (size_t)(2.0 * r.params);
    void* a = be->alloc_scratch(bytes / 4 + 1);
    void* b = be->alloc_scratch(bytes / 4 + 1);
    cudaStream_t s = (cudaStream_t)be->stream_handle();
    r.copy_s = seconds_of([&] { cuda::cuda_check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s), "copy"); },
                          *be, reps);
    be->free((float*)a);
    be->free((float*)b);
    // The generator alone: z for a quarter of the weights into fp32, scaled up ×4.
    const uint64_t n = (uint64_t)(r.params / 4);
    float* z = be->alloc_scratch((size_t)n);
    r.generator_s = 4.0 * seconds_of([&] { cuda::gaussian(5, 17, 0, n, z, s); }, *be, reps);
    be->free(z);
  }
  return r;
}

// The llama-30b shape (LLaMA-30B: 6656 hidden, 60 layers, 52 heads, 17920 FFN) in bf16
// storage and bf16 compute, one hybrid step at batch 1 × 512: peak device memory over the
// weights' bytes (target ≤ 1.1 × weights + activations on a 141 GB GPU).
struct MemoryResult {
  double params = 0, weight_bytes = 0, model_bytes = 0, peak_forward = 0, peak_hybrid = 0, hybrid_s = 0;
};
MemoryResult memory_30b() {
  MemoryResult r;
  const ModelConfig c = llama_shape(6656, 60, 52, 52, 17920);
  auto be = cuda::make_cuda_backend(0);
  be->set_compute(Compute::BF16);
  Transformer m(c, *be, DType::BF16);
  r.params = (double)m.total_parameters();
  r.weight_bytes = 2.0 * r.params;
  random_device_weights(m);
  m.add_lora({"q_proj", "v_proj"}, 8, 16.0f);
  be->synchronize();
  r.model_bytes = (double)be->bytes_in_use();
  Rng rng(11);
  Batch batch;
  batch.B = 1;
  batch.T = 512;
  for (int64_t i = 0; i < batch.T; ++i) {
    batch.ids.push_back((int32_t)(rng.next() % (uint32_t)c.vocab));
    batch.positions.push_back((int32_t)i);
    batch.mask.push_back(1);
  }
  const LossSpec spec = classification_spec(batch, 2, rng);
  be->reset_peak();
  m.loss_device(batch, spec, nullptr, nullptr);
  be->synchronize();
  r.peak_forward = (double)be->peak_bytes();
  HybridConfig hc;
  hc.zo = true;
  hc.mu = 1e-3f;
  hc.fo_adapters = true;
  hc.seed = 1;
  HybridOptimizer opt(m, hc);
  be->reset_peak();
  int64_t k = 0;
  r.hybrid_s = seconds_of([&] { opt.step(batch, spec, StepArgs{k++, 1e-7f, 0.0f, 1e-5f, 0.0f}, nullptr); }, *be, 1);
  r.peak_hybrid = (double)be->peak_bytes();
  return r;
}

std::string json_of(const MemoryResult& r) {
  char buf[512];
  snprintf(buf, sizeof buf,
           "{\"model\":\"llama-30b\",\"compute\":\"bf16\",\"batch\":1,\"seq\":512,\"parameters\":%.0f,"
           "\"weight_bytes\":%.0f,\"model_bytes\":%.0f,\"peak_forward_bytes\":%.0f,\"peak_hybrid_bytes\":%.0f,"
           "\"hybrid_step_s\":%.4f,\"peak_hybrid_over_weights\":%.4f,\"activation_bytes\":%.0f}",
           r.params, r.weight_bytes, r.model_bytes, r.peak_forward, r.peak_hybrid, r.hybrid_s,
           r.peak_hybrid / r.weight_bytes, r.peak_forward - r.model_bytes);
  return buf;
}

std::string json_of(const BenchResult& r) {
  char buf[3072];
  const double copy_gbs = r.perturb_bytes / r.copy_s / 1e9, pert_gbs = r.perturb_bytes / r.perturb_s / 1e9;
  const double lower = std::max(r.copy_s, r.generator_s);
  snprintf(
      buf, sizeof buf,
      "{\"model\":\"%s\",\"dim\":%lld,\"layers\":%lld,\"heads\":%lld,\"kv_heads\":%lld,\"ffn\":%lld,"
      "\"vocab\":%lld,\"compute\":\"%s\",\"batch\":%lld,\"seq\":%lld,\"parameters\":%.0f,\"tokens\":%.0f,"
      "\"forward_s\":%.6f,\"forward_adapter_backward_s\":%.6f,\"gemm_floor_tflops\":%.2f,\"forward_tflops\":%.2f,"
      "\"hybrid_step_s\":%.6f,\"zo_step_s\":%.6f,\"gemm_floor_s\":%.6f,\"forward_tokens_per_s\":%.1f,"
      "\"gemm_floor_tokens_per_s\":%.1f,\"forward_over_gemm_floor\":%.4f,\"hybrid_over_2fwd_1bwd\":%.4f,"
      "\"perturb_s\":%.6f,\"perturb_gbs\":%.1f,\"copy_gbs\":%.1f,\"generator_s\":%.6f,\"perturb_over_copy\":%.4f,"
      "\"perturb_over_lower_limit\":%.4f,\"model_bytes\":%.0f,\"peak_forward_bytes\":%.0f,\"peak_hybrid_bytes\":%.0f,"
      "\"peak_hybrid_over_forward\":%.4f,\"above_model_hybrid_over_forward\":%.4f}",
      r.name.c_str(), (long long)r.config.hidden, (long long)r.config.layers, (long long)r.config.heads,
      (long long)r.config.kv_heads, (long long)r.config.ffn, (long long)r.config.vocab, compute_name(r.compute),
      (long long)r.batch, (long long)r.seq, r.params, r.tokens, r.forward_s, r.fwd_bwd_s,
      r.gemm_flop / r.gemm_floor_s / 1e12, r.gemm_flop / r.forward_s / 1e12, r.hybrid_s, r.zo_s, r.gemm_floor_s,
      r.tokens / r.forward_s, r.tokens / r.gemm_floor_s, r.gemm_floor_s / r.forward_s,
      r.hybrid_s / (r.forward_s + r.fwd_bwd_s), r.perturb_s, pert_gbs, copy_gbs, r.generator_s, r.copy_s / r.perturb_s,
      lower / r.perturb_s, r.model_bytes, r.peak_forward, r.peak_hybrid, r.peak_hybrid / r.peak_forward,
      (r.peak_hybrid - r.model_bytes) / std::max(1.0, r.peak_forward - r.model_bytes));
  return buf;
}

void print_table(const std::vector<BenchResult>& results) {
  printf("\n%-14s %5s %8s %10s %9s %10s %9s %10s %9s %9s %9s %9s %9s\n", "model", "comp", "params", "fwd tok/s",
         "GEMM TF/s", "÷GEMM", "hyb s", "÷(2f+1b)", "zo s", "pert GB/s", "÷copy", "÷limit", "peak÷fwd");
  for (const BenchResult& r : results) {
    const double pert_gbs = r.perturb_bytes / r.perturb_s / 1e9;
    printf("%-14s %5s %7.2fB %10.0f %9.1f %10.3f %9.3f %10.3f %9.3f %9.0f %9.3f %9.3f %9.3f\n", r.name.c_str(),
           compute_name(r.compute), r.params / 1e9, r.tokens / r.forward_s, r.gemm_flop / r.gemm_floor_s / 1e12,
           r.gemm_floor_s / r.forward_s, r.hybrid_s, r.hybrid_s / (r.forward_s + r.fwd_bwd_s), r.zo_s, pert_gbs,
           r.copy_s / r.perturb_s, std::max(r.copy_s, r.generator_s) / r.perturb_s, r.peak_hybrid / r.peak_forward);
  }
  printf(
      "bf16 weights, compute as named, batch 16 × 128, MeZO's 2-candidate classification loss, LoRA r8 on q/v.\n"
      "÷GEMM: the forward's linear-layer GEMMs alone ÷ the forward (the forward's share of this run's cuBLAS rate\n"
      "at these shapes; target ≥ 0.6 in bf16). ÷(2f+1b): hybrid step ÷ (forward + forward with adapter backward;\n"
      "target ≤ 1.15). ÷copy: perturbation GB/s ÷ device copy GB/s; ÷limit: perturbation speed ÷ the lower of copy\n"
      "and generator-alone speed (target ≥ 0.8). peak÷fwd: peak device memory of a hybrid step ÷ a forward-only\n"
      "pass. Medians of the timed runs after one warm-up.\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool bench = true, tests = true;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-bench") bench = false;
    else if (a == "--bench") tests = false;
    else if (a == "--large") continue;
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--no-bench | --bench] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  if (!have_device()) {
    report(false, "a CUDA device is available", "no usable CUDA device: this program needs a GPU");
    return summary();
  }
  const cuda::DeviceInfo dev = cuda::device_info(0);
  printf("device: %s (sm_%d%d, %d SMs, %.0f GiB)\n", dev.name.c_str(), dev.major, dev.minor, dev.sms,
         dev.memory_bytes / 1073741824.0);
  if (tests) {
    Rng rng(test_seed());
    for (auto f : {ModelConfig::Llama, ModelConfig::OPT, ModelConfig::GPT2}) {
      try {
        test_family(f, rng);
      } catch (const std::exception& e) { report(false, std::string(family_name(f)) + ": setup", e.what()); }
      for (Compute mode : {Compute::TF32, Compute::BF16}) {
        try {
          test_family_reduced(f, mode, rng);
        } catch (const std::exception& e) {
          report(false, std::string(family_name(f)) + " (" + compute_name(mode) + "): setup", e.what());
        }
      }
    }
    for (Compute mode : {Compute::FP32, Compute::TF32, Compute::BF16}) {
      try {
        test_bf16(rng, mode);
      } catch (const std::exception& e) {
        report(false, std::string("bf16 storage, ") + compute_name(mode) + " compute: setup", e.what());
      }
    }
  }
  if (bench) {
    std::vector<BenchResult> results;
    std::string memory_json;
    run_test("benchmark ~1B Llama-shaped", [&] {
      results.push_back(bench_model("llama-1B", llama_shape(2048, 18, 16, 16, 5504), 16, 128, 5, Compute::BF16));
      results.push_back(bench_model("llama-1B", llama_shape(2048, 18, 16, 16, 5504), 16, 128, 3, Compute::FP32));
    });
    run_test("benchmark ~7B Llama-shaped", [&] {
      results.push_back(bench_model("llama-7B", llama_shape(4096, 32, 32, 32, 11008), 16, 128, 3, Compute::BF16));
    });
    // llama-30b: 65 GB of bf16 weights; needs the memory of a 141 GB GPU (H200) to run.
    if (dev.memory_bytes >= (size_t)120 << 30) {
      run_test("memory llama-30b-shaped", [&] {
        const MemoryResult r = memory_30b();
        memory_json = json_of(r);
        printf(
            "llama-30b bf16: weights %.1f GB, peak hybrid %.1f GB, peak ÷ weights %.3f (activations %.2f GB), step "
            "%.2f s\n",
            r.weight_bytes / 1e9, r.peak_hybrid / 1e9, r.peak_hybrid / r.weight_bytes,
            (r.peak_forward - r.model_bytes) / 1e9, r.hybrid_s);
        report(true, "memory llama-30b-shaped: measured");
      });
    } else {
      printf("memory llama-30b-shaped: not run (needs a GPU with ≥ 120 GiB; this one has %.0f GiB)\n",
             dev.memory_bytes / 1073741824.0);
    }
    if (!results.empty()) {
      print_table(results);
      if (!json_path.empty()) {
        FILE* f = fopen(json_path.c_str(), "w");
        if (!f) {
          report(false, "write " + json_path, strerror(errno));
        } else {
          fprintf(f, "{\"device\":\"%s\",\"results\":[", dev.name.c_str());
          for (size_t i = 0; i < results.size(); ++i) fprintf(f, "%s%s", i ? "," : "", json_of(results[i]).c_str());
          fprintf(f, "]%s%s}\n", memory_json.empty() ? "" : ",\"memory\":", memory_json.c_str());
          fclose(f);
          printf("wrote %s\n", json_path.c_str());
        }
      }
    }
  }
  return summary();
}
