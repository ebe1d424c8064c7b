// The model engine on the CUDA backend against the same engine on the CPU backend, then
// the GPU benchmarks of the engine (llm.c dev/cuda style: reference, validate, benchmark).
//
//   zofo_cuda_engine_test                  tests, then the ~1B benchmark
//   zofo_cuda_engine_test --no-bench       tests only
//   zofo_cuda_engine_test --bench          benchmark only
//   zofo_cuda_engine_test --large          also the ~7B-shaped benchmark
//   zofo_cuda_engine_test --json FILE      write the benchmark numbers to FILE
//
// Tests (fresh random weights and batches per run; the seed is printed): for Llama (GQA),
// OPT-350m-shaped (project_in/out, post-norm, ReLU) and GPT-2 (packed qkv, GELU):
// logits, loss and adapter gradients, full-parameter gradients, three hybrid steps, all
// within atol + rtol·|cpu|; in bf16 the fused update is bit-identical to the CPU's and
// steps with lr_x = 0 leave the stored weights bit-identical. Needs a CUDA device.
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
      report(a.status == StepOutcome::Applied && b.status == StepOutcome::Applied, f + ": step " + std::to_string(k) + " applied");
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

void test_bf16(Rng& rng) {
  const ModelConfig config = tiny_config(ModelConfig::Llama);
  auto device = cuda::make_cuda_backend(0);
  Transformer cpu(config, cpu::cpu_backend(), DType::BF16), gpu(config, *device, DType::BF16);
  random_weights(cpu, gpu, rng);
  random_lora(cpu, gpu, rng);
  const std::vector<uint8_t> all(cpu.tensors().size(), 1);
  const std::vector<float> decay(all.size(), 1.0f);
  run_test("bf16: stored weights identical after upload", [&] {
    report(gpu.hash_parameters() == cpu.hash_parameters(), "bf16: stored weights identical after upload");
  });
  run_test("bf16: the fused restore+update is bit-identical to the CPU's", [&] {
    const uint64_t seed = rng.next();
    gpu.zo_update(seed, 3e-3f, 1e-4f, all, decay);
    cpu.zo_update(seed, 3e-3f, 1e-4f, all, decay);
    report(gpu.hash_parameters() == cpu.hash_parameters(), "bf16: the fused restore+update is bit-identical to the CPU's");
  });
  run_test("bf16: steps with lr_x = 0 leave the stored weights bit-identical", [&] {
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
    report(gpu.hash_parameters() == before, "bf16: steps with lr_x = 0 leave the stored weights bit-identical");
  });
  run_test("bf16: a perturbed forward equals the CPU's", [&] {
    const Batch batch = random_batch(2, 7, config.vocab, rng);
    const LossSpec spec = lm_spec(batch);
    const uint64_t seed = rng.next();
    gpu.set_perturbation(seed, 1e-2f, all);
    cpu.set_perturbation(seed, 1e-2f, all);
    const double a = gpu.loss(batch, spec, nullptr).loss, b = cpu.loss(batch, spec, nullptr).loss;
    gpu.clear_perturbation();
    cpu.clear_perturbation();
    check_scalar("bf16: a perturbed forward equals the CPU's", a, b, kAtol, kRtol);
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
  double forward_s = 0, fwd_bwd_s = 0, hybrid_s = 0, zo_s = 0, gemm_floor_s = 0;
  double perturb_s = 0, copy_s = 0, generator_s = 0, perturb_bytes = 0;
  double model_bytes = 0, peak_forward = 0, peak_hybrid = 0;
};

BenchResult bench_model(const std::string& name, const ModelConfig& c, int64_t B, int64_t T, int reps) {
  BenchResult r;
  r.name = name;
  r.config = c;
  r.batch = B;
  r.seq = T;
  auto be = cuda::make_cuda_backend(0);
  Transformer m(c, *be, DType::BF16);
  r.params = (double)m.total_parameters();
  r.tokens = (double)(B * T);
  // Random weights without a host round trip: x = 0 + 0.02·z, norms set to 1.
  const std::vector<uint8_t> all(m.tensors().size(), 1);
  const std::vector<float> decay(all.size(), 1.0f);
  m.zo_update(0x1234, 0.02f, 0.0f, all, decay);
  for (const TensorSpec& s : m.tensors())
    if (s.shape.size() == 1) {
      const std::vector<float> ones((size_t)s.numel(), 1.0f);
      m.set_tensor(s.name, ones.data(), s.numel());
    }
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
    r.hybrid_s = seconds_of([&] { opt.step(batch, spec, StepArgs{k++, 1e-7f, 0.0f, 1e-5f, 0.0f}, nullptr); }, *be, reps);
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

  // The GEMM floor: the forward's linear layers (and the head's rows) as bare matmuls
  // on fp32 operands of the same shapes, through the same cuBLAS call.
  {
    const int64_t N = B * T, C = c.hidden, Q = c.heads * c.head_dim, KV = c.kv_heads * c.head_dim, F = c.ffn;
    const int64_t M = (int64_t)spec.rows.size();
    const int64_t widest = std::max({C, Q, F});
    const size_t nu = (size_t)(N * widest), nw = (size_t)std::max(widest * widest, c.vocab * C),
                 ny = (size_t)std::max(N * widest, M * c.vocab);
    float* u = be->alloc_scratch(nu);
    float* w = be->alloc_scratch(nw);
    float* y = be->alloc_scratch(ny);
    be->fill(u, 0.01f, nu);
    be->fill(w, 0.01f, nw);
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{C, Q}, {C, KV}, {C, KV}, {Q, C}, {C, F}, {C, F}, {F, C}};
    r.gemm_floor_s = seconds_of([&] {
      for (int64_t l = 0; l < c.layers; ++l)
        for (const auto& [in, out] : shapes) be->matmul(false, true, N, out, in, 1.0f, u, in, w, in, 0.0f, y, out);
      be->matmul(false, true, M, c.vocab, C, 1.0f, u, C, w, C, 0.0f, y, c.vocab);
    }, *be, reps);
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
    r.copy_s = seconds_of([&] {
      cuda::cuda_check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s), "copy");
    }, *be, reps);
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

std::string json_of(const BenchResult& r) {
  char buf[3072];
  const double copy_gbs = r.perturb_bytes / r.copy_s / 1e9, pert_gbs = r.perturb_bytes / r.perturb_s / 1e9;
  const double lower = std::max(r.copy_s, r.generator_s);
  snprintf(buf, sizeof buf,
           "{\"model\":\"%s\",\"dim\":%lld,\"layers\":%lld,\"heads\":%lld,\"kv_heads\":%lld,\"ffn\":%lld,"
           "\"vocab\":%lld,\"batch\":%lld,\"seq\":%lld,\"parameters\":%.0f,\"tokens\":%.0f,\"forward_s\":%.6f,\"forward_adapter_backward_s\":%.6f,"
           "\"hybrid_step_s\":%.6f,\"zo_step_s\":%.6f,\"gemm_floor_s\":%.6f,\"forward_tokens_per_s\":%.1f,"
           "\"gemm_floor_tokens_per_s\":%.1f,\"forward_over_gemm_floor\":%.4f,\"hybrid_over_2fwd_1bwd\":%.4f,"
           "\"perturb_s\":%.6f,\"perturb_gbs\":%.1f,\"copy_gbs\":%.1f,\"generator_s\":%.6f,\"perturb_over_copy\":%.4f,"
           "\"perturb_over_lower_limit\":%.4f,\"model_bytes\":%.0f,\"peak_forward_bytes\":%.0f,\"peak_hybrid_bytes\":%.0f,"
           "\"peak_hybrid_over_forward\":%.4f,\"above_model_hybrid_over_forward\":%.4f}",
           r.name.c_str(), (long long)r.config.hidden, (long long)r.config.layers, (long long)r.config.heads,
           (long long)r.config.kv_heads, (long long)r.config.ffn, (long long)r.config.vocab, (long long)r.batch,
           (long long)r.seq, r.params, r.tokens, r.forward_s, r.fwd_bwd_s, r.hybrid_s, r.zo_s, r.gemm_floor_s,
           r.tokens / r.forward_s, r.tokens / r.gemm_floor_s, r.gemm_floor_s / r.forward_s,
           r.hybrid_s / (r.forward_s + r.fwd_bwd_s), r.perturb_s, pert_gbs, copy_gbs, r.generator_s,
           r.copy_s / r.perturb_s, lower / r.perturb_s, r.model_bytes, r.peak_forward, r.peak_hybrid,
           r.peak_hybrid / r.peak_forward,
           (r.peak_hybrid - r.model_bytes) / std::max(1.0, r.peak_forward - r.model_bytes));
  return buf;
}

void print_table(const std::vector<BenchResult>& results) {
  printf("\n%-14s %8s %10s %10s %9s %10s %9s %9s %9s %9s %9s\n", "model", "params", "fwd tok/s", "÷GEMM", "hyb s",
         "÷(2f+1b)", "zo s", "pert GB/s", "÷copy", "÷limit", "peak÷fwd");
  for (const BenchResult& r : results) {
    const double pert_gbs = r.perturb_bytes / r.perturb_s / 1e9;
    printf("%-14s %7.2fB %10.0f %10.3f %9.3f %10.3f %9.3f %9.0f %9.3f %9.3f %9.3f\n", r.name.c_str(), r.params / 1e9,
           r.tokens / r.forward_s, r.gemm_floor_s / r.forward_s, r.hybrid_s, r.hybrid_s / (r.forward_s + r.fwd_bwd_s),
           r.zo_s, pert_gbs, r.copy_s / r.perturb_s, std::max(r.copy_s, r.generator_s) / r.perturb_s,
           r.peak_hybrid / r.peak_forward);
  }
  printf("bf16 weights, fp32 compute (cuBLAS %s), batch 16 × 128, MeZO's 2-candidate classification loss, LoRA r8 on\n"
         "q/v. ÷GEMM: the forward's linear-layer GEMMs alone ÷ the forward (1 = at the GEMM floor). ÷(2f+1b): hybrid\n"
         "step ÷ (forward + forward with adapter backward). ÷copy: perturbation GB/s ÷ device copy GB/s; ÷limit:\n"
         "perturbation speed ÷ the lower of copy and generator-alone speed (target ≥ 0.8). peak÷fwd: peak device\n"
         "memory of a hybrid step ÷ a forward-only pass. Medians of the timed runs after one warm-up.\n",
         getenv("ZOFO_CUDA_TF32") && strcmp(getenv("ZOFO_CUDA_TF32"), "1") == 0 ? "TF32" : "FP32");
}

}  // namespace

int main(int argc, char** argv) {
  bool bench = true, tests = true, large = false;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-bench") bench = false;
    else if (a == "--bench") tests = false;
    else if (a == "--large") large = true;
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--no-bench | --bench] [--large] [--json FILE]\n", argv[0]);
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
      } catch (const std::exception& e) {
        report(false, std::string(family_name(f)) + ": setup", e.what());
      }
    }
    try {
      test_bf16(rng);
    } catch (const std::exception& e) {
      report(false, "bf16: setup", e.what());
    }
  }
  if (bench) {
    std::vector<BenchResult> results;
    run_test("benchmark ~1B Llama-shaped", [&] {
      results.push_back(bench_model("llama-1B", llama_shape(2048, 18, 16, 16, 5504), 16, 128, 5));
    });
    if (large)
      run_test("benchmark ~7B Llama-shaped", [&] {
        results.push_back(bench_model("llama-7B", llama_shape(4096, 32, 32, 32, 11008), 16, 128, 3));
      });
    if (!results.empty()) {
      print_table(results);
      if (!json_path.empty()) {
        FILE* f = fopen(json_path.c_str(), "w");
        if (!f) {
          report(false, "write " + json_path, strerror(errno));
        } else {
          fprintf(f, "{\"device\":\"%s\",\"results\":[", dev.name.c_str());
          for (size_t i = 0; i < results.size(); ++i) fprintf(f, "%s%s", i ? "," : "", json_of(results[i]).c_str());
          fprintf(f, "]}\n");
          fclose(f);
          printf("wrote %s\n", json_path.c_str());
        }
      }
    }
  }
  return summary();
}
