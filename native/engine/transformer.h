// The model engine: one decoder-only transformer that covers the Llama (Mistral,
// Qwen2), OPT and GPT-2 families by configuration, written once against Backend.
// Forward, LoRA, the adapter-only backward and the losses of docs/algorithm.md §5.
//
// Base weights live in ONE fp32 buffer in checkpoint layout (GPT-2 Conv1D weights
// stay [in, out]), described by a table of checkpoint names: the perturbation engine
// runs over exactly that buffer. LoRA tensors live in a second buffer.
//
// Shapes: B batch, T time (padded length), N = B·T rows, C hidden, E embedding width
// (OPT word_embed_proj_dim, else C), NH/NKV heads, HS head size, F ffn, V vocab.
#pragma once

#include <stdint.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../common/dtype.h"
#include "backend.h"

namespace zofo {

struct ModelConfig {
  enum Family : int { Llama = 0, OPT = 1, GPT2 = 2 };
  Family family = Llama;
  int64_t vocab = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, max_positions = 0;
  int64_t embed_dim = 0;        // E: OPT word_embed_proj_dim (project_in/out when ≠ C), else C
  int64_t position_offset = 0;  // OPT: 2
  bool rmsnorm = true;
  float norm_eps = 1e-5f;
  int activation = 2;           // 0 gelu_new, 1 relu, 2 SwiGLU (silu-gated)
  float rope_theta = 10000.0f;  // Llama only
  bool tie_embeddings = false, attention_bias = false, output_bias = false, mlp_bias = false;
  bool pre_norm = true, final_norm = true;
};

// Limits on a model config, checked before anything is allocated: every size fits an
// int32 index (token ids are int32), the tensor table stays small, and the parameter
// count leaves room for byte counts in 64 bits.
constexpr int64_t kMaxModelDim = 2147483647;
constexpr int64_t kMaxModelLayers = 4096;
constexpr int64_t kMaxModelParameters = int64_t(1) << 44;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;     // in the parameter buffer
  int64_t numel() const;  // throws ZOFO_BAD_CONFIG when the product overflows
};

// A padded batch: ids/positions/mask (B, T), mask 1 = real token.
struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> ids, positions;
  std::vector<uint8_t> mask;
};

// What a loss reads: logits rows (indices into the N rows) and their target tokens.
// kind 0 (lm): loss = mean over all rows of −log p(target).
// kind 1 (classification): rows are grouped into candidates (group[i]); a candidate's
// score is the mean log p of its rows; candidates are grouped into examples
// (candidate_example[c]); loss = mean over examples of cross-entropy(softmax(scores), label).
struct LossSpec {
  int kind = 0;
  std::vector<int32_t> rows, targets, group;
  std::vector<int32_t> candidate_example;
  std::vector<uint8_t> candidate_is_label;
  int64_t examples = 0;
};

struct LossResult {
  double loss = 0;
  std::vector<double> scores;  // classification: one per candidate
};

class Transformer {
 public:
  Transformer(const ModelConfig& config, Backend& backend, DType storage = DType::F32);
  // allocate = false: only the tensor table (tensors()), no memory for weights: what a
  // loader compares with a checkpoint's shapes before committing to the allocation.
  Transformer(const ModelConfig& config, Backend& backend, DType storage, bool allocate);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return be_; }
  const std::vector<TensorSpec>& tensors() const { return specs_; }
  const TensorSpec& spec(const std::string& name) const;  // throws naming the tensor
  int64_t total_parameters() const { return n_params_; }
  DType dtype() const { return dtype_; }  // storage of the base weights; arithmetic is fp32
  void set_tensor(const std::string& name, const float* host, int64_t n);
  // Elements [first, first + n) of a tensor, so a loader can stream it in bounded chunks.
  void set_tensor_range(const std::string& name, int64_t first, const float* host, int64_t n);
  void get_tensor(const std::string& name, float* host, int64_t n) const;

  // LoRA on every linear whose module name ends with one of `targets` (e.g. "q_proj").
  // Returns the adapter tensors' PEFT-style module paths in order; A then B per module.
  std::vector<TensorSpec> add_lora(const std::vector<std::string>& targets, int64_t rank, float alpha);
  const std::vector<TensorSpec>& lora_tensors() const { return lora_specs_; }
  float* lora_parameters() { return lora_; }
  int64_t total_lora_parameters() const { return n_lora_; }
  void set_lora_tensor(const std::string& name, const float* host, int64_t n);
  void get_lora_tensor(const std::string& name, float* host, int64_t n) const;

  // ---- the optimizer's view of the base weights (docs/algorithm.md §2–§3) ----
  // While a perturbation is set, every read of a trainable tensor sees x + scale·z(seed),
  // computed into scratch: the stored weights are never perturbed in place.
  void set_perturbation(uint64_t seed, float scale, const std::vector<uint8_t>& trainable);
  void clear_perturbation();
  // Philox stream ids from the names as stored in the checkpoint (default: engine names).
  void set_stream_names(const std::vector<std::string>& names);
  const std::vector<uint64_t>& streams() const { return streams_; }
  // x ← (1 − eta_lambda·decay)·x + a·z(seed) over the trainable tensors: the one pass
  // that writes base weights, shared by the optimizer step and trajectory replay.
  void zo_update(uint64_t seed, float a, float eta_lambda, const std::vector<uint8_t>& trainable,
                 const std::vector<float>& decay);
  // First-order update of every base weight (full fine-tuning; fp32 storage).
  float* base_fp32();
  uint64_t hash_parameters() const;

  // Logits (M, V) at `rows` of the batch, into host memory.
  void logits(const Batch& batch, const std::vector<int32_t>& rows, float* host_out);
  // Loss; with lora_grad_host, also d loss / d every LoRA tensor (total_lora_parameters()
  // floats); with base_grad_host, d loss / d every base tensor (total_parameters() floats,
  // parameter-buffer layout: full fine-tuning of small models).
  LossResult loss(const Batch& batch, const LossSpec& spec, float* lora_grad_host, float* base_grad_host = nullptr);
  // The same with gradients accumulated (+=) into backend memory.
  LossResult loss_device(const Batch& batch, const LossSpec& spec, float* lora_grad, float* base_grad);

 private:
  struct Linear;
  struct Layer;
  struct Activations;
  struct Scratch {  // backend scratch, freed when the last Weight holding it goes
    Scratch(Backend& be, int64_t n, bool operand);
    ~Scratch();
    Backend& be;
    float* p;
  };
  struct Weight {
    const float* ptr = nullptr;
    std::shared_ptr<Scratch> scratch;
    const float* get() const { return ptr; }
  };
  struct Perturbation {
    uint64_t seed = 0;
    float scale = 0;
    const std::vector<uint8_t>* trainable = nullptr;
  };
  // operand: the view is read only by matmul (Backend::alloc_operand).
  Weight weight(int64_t offset, bool operand = false) const;
  size_t tensor_at(int64_t offset) const;
  float perturbation_of(size_t tensor) const;
  void embedding_rows(float* out, int64_t offset, const int32_t* ids, int64_t N, int64_t C) const;

  void build(bool allocate);
  // keep = false: activations are freed layer by layer (no backward follows).
  void forward(const Batch& batch, Activations& act, bool keep);
  std::pair<int64_t, int64_t> final_norm() const;
  void linear_forward(const Linear& lin, const float* u, float* y, int64_t N, float* lora_mid);
  void linear_backward(const Linear& lin, const float* u, const float* dy, float* du, int64_t N, const float* lora_mid,
                       float* lora_grad);
  void backward(const Batch& batch, Activations& act, const float* dfinal, float* lora_grad, float* base_grad);
  void embedding_backward(const Batch& batch, Activations& act, const float* dx, float* base_grad);
  Weight p(const std::string& name) const;

  ModelConfig config_;
  Backend& be_;
  std::vector<TensorSpec> specs_;
  std::map<std::string, size_t> index_;
  DType dtype_ = DType::F32;
  void* store_ = nullptr;  // n_params_ values in dtype_
  int64_t n_params_ = 0;
  std::vector<uint64_t> streams_;        // per tensor: fnv1a64(stored name)
  std::map<int64_t, size_t> by_offset_;  // tensor index by parameter offset
  Perturbation perturb_;
  bool perturbing_ = false;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<TensorSpec> lora_specs_;
  float* lora_ = nullptr;
  int64_t n_lora_ = 0;
  float* base_grad_ = nullptr;  // set during a full-parameter backward
};

}  // namespace zofo
