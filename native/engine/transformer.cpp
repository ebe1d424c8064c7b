#include "transformer.h"

#include <math.h>

#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <utility>

#include "../common/error.h"
#include "../common/philox.h"

namespace zofo {

namespace {

// a·b and a + b of non-negative sizes, or a ZOFO_BAD_CONFIG naming `what`: signed
// overflow is undefined behaviour, and a wrapped size would under-allocate.
int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  if (a < 0 || b < 0 || (a != 0 && b > INT64_MAX / a))
    throw Error("ZOFO_BAD_CONFIG",
                what + ": size " + std::to_string(a) + " × " + std::to_string(b) + " overflows 64 bits");
  return a * b;
}

int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  if (a < 0 || b < 0 || a > INT64_MAX - b)
    throw Error("ZOFO_BAD_CONFIG",
                what + ": size " + std::to_string(a) + " + " + std::to_string(b) + " overflows 64 bits");
  return a + b;
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n = checked_mul(n, d, "tensor " + name);
  return n;
}

namespace {

// Backend memory owned for one forward/backward.
class Buf {
 public:
  enum Kind { Zeroed, Operand };  // Operand: Backend::alloc_operand (written whole, read by matmul only)
  Buf() = default;
  Buf(Backend& be, int64_t n, Kind kind = Zeroed)
      : be_(&be), p_(kind == Operand ? be.alloc_operand((size_t)n) : be.alloc((size_t)n)), n_(n) {}
  ~Buf() {
    if (p_) be_->free(p_);
  }
  Buf(Buf&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  Buf& operator=(Buf&& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  float* get() const { return p_; }
  int64_t size() const { return n_; }

 private:
  Backend* be_ = nullptr;
  float* p_ = nullptr;
  int64_t n_ = 0;
};

// Host bytes copied into a fresh backend buffer (index arrays, per-row doubles).
Buf upload_bytes(Backend& be, const void* host, size_t bytes) {
  Buf b(be, (int64_t)((bytes + 3) / 4));
  if (bytes) be.upload_raw(b.get(), host, bytes);
  return b;
}
template <class T>
Buf upload_vector(Backend& be, const std::vector<T>& v) {
  return upload_bytes(be, v.data(), v.size() * sizeof(T));
}
template <class T>
const T* as(const Buf& b) {
  return reinterpret_cast<const T*>(b.get());
}

std::string join_shape(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         (s.size() == suffix.size() || s[s.size() - suffix.size() - 1] == '.');
}

}  // namespace

// y (N, out) = u (N, in)·Wᵀ (+ b) (+ s·(u·Aᵀ)·Bᵀ). W is [out, in] (nn.Linear) or, for
// GPT-2's Conv1D, [in, out]. Offsets index the parameter / LoRA buffers; −1 = absent.
struct Transformer::Linear {
  std::string module;
  int64_t w = -1, b = -1, in = 0, out = 0;
  bool conv1d = false;
  int64_t lora_a = -1, lora_b = -1, rank = 0;
  float scaling = 0;
  int lora_slot = -1;  // index of its saved u·Aᵀ in the activations
};

struct Transformer::Layer {
  int64_t ln1_w = -1, ln1_b = -1, ln2_w = -1, ln2_b = -1;
  bool packed_qkv = false;  // GPT-2 c_attn
  Linear qkv, q, k, v, o;
  Linear gate, up, down;  // Llama MLP
  Linear fc1, fc2;        // OPT fc1/fc2, GPT-2 c_fc/c_proj
};

// Everything the backward needs from one forward. Per layer l:
struct Transformer::Activations {
  struct PerLayer {
    Buf x;                     // (N, C) layer input
    Buf n1, n1_mean, n1_rstd;  // norm 1 output (pre-norm) and its stats
    Buf q, k, v, att, y;       // (N, NH·HS), (N, NKV·HS) ×2, (B, NH, T, T), (N, NH·HS)
    Buf s1;                    // (N, C) x + attention (post-norm: norm 1's input)
    Buf h;                     // (N, C) MLP block input residual (post-norm: norm1(s1))
    Buf n2, n2_mean, n2_rstd;  // norm 2 output (pre-norm) or stats of norm2(s2) (post-norm)
    Buf a, b, act;             // (N, F): gate/up/silu·up (Llama) or fc1 / – / activation
    Buf s2;                    // (N, C) h + MLP (post-norm: norm 2's input)
  };
  std::vector<PerLayer> layer;
  Buf embed;                                 // (N, E) token embeddings (OPT project_in input)
  Buf fin_in, fin_norm, fin_mean, fin_rstd;  // final norm input and output
  Buf z_buf;                                 // project_out's output, when there is one
  const float* z = nullptr;                  // (N, E) what the head reads: fin_norm, fin_in or z_buf
  std::vector<Buf> lora_mid;                 // (N, rank) u·Aᵀ per LoRA linear
  // The batch's index arrays in backend memory, uploaded once per forward: ids, positions
  // (int32, N), mask (uint8, N) and OPT's position-table rows (int32, N).
  Buf ids, positions, mask, embed_rows;
};

Transformer::Transformer(const ModelConfig& config, Backend& backend, DType storage)
    : Transformer(config, backend, storage, true) {}

Transformer::Transformer(const ModelConfig& config, Backend& backend, DType storage, bool allocate)
    : config_(config), be_(backend), dtype_(storage) {
  const ModelConfig& c = config_;
  if (c.vocab <= 0 || c.hidden <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 || c.head_dim <= 0 ||
      c.ffn <= 0 || c.embed_dim <= 0 || c.max_positions <= 0 || c.position_offset < 0 || c.heads % c.kv_heads != 0)
    throw invalid_arg("model config: sizes must be positive and heads a multiple of kv_heads");
  // Sane limits, checked before anything is built or allocated: token ids are int32,
  // and the tensor table grows with the layer count.
  const std::pair<const char*, int64_t> limited[] = {{"vocab", c.vocab},
                                                     {"hidden", c.hidden},
                                                     {"heads", c.heads},
                                                     {"kv_heads", c.kv_heads},
                                                     {"head_dim", c.head_dim},
                                                     {"ffn", c.ffn},
                                                     {"max_positions", c.max_positions},
                                                     {"embed_dim", c.embed_dim}};
  for (const auto& [field, value] : limited)
    if (value > kMaxModelDim)
      throw Error("ZOFO_BAD_CONFIG", std::string("model config: ") + field + " = " + std::to_string(value) +
                                         " exceeds the limit of " + std::to_string(kMaxModelDim));
  if (c.layers > kMaxModelLayers)
    throw Error("ZOFO_BAD_CONFIG", "model config: layers = " + std::to_string(c.layers) + " exceeds the limit of " +
                                       std::to_string(kMaxModelLayers));
  if (c.position_offset > 1024) throw invalid_arg("model config: position_offset must be at most 1024");
  if (c.family == ModelConfig::Llama && c.head_dim % 2) throw invalid_arg("model config: RoPE needs an even head_dim");
  build(allocate);
}

Transformer::~Transformer() {
  if (store_) be_.free(static_cast<float*>(store_));
  if (lora_) be_.free(lora_);
}

// The tensor table, in checkpoint names and layouts, and the linears that read it.
void Transformer::build(bool allocate) {
  const ModelConfig& c = config_;
  const int64_t C = c.hidden, E = c.embed_dim, F = c.ffn, V = c.vocab,
                Q = checked_mul(c.heads, c.head_dim, "model config heads × head_dim"),
                KV = checked_mul(c.kv_heads, c.head_dim, "model config kv_heads × head_dim");
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    TensorSpec s{name, std::move(shape), n_params_};
    n_params_ = checked_add(n_params_, s.numel(), "model parameter count");
    index_[name] = specs_.size();
    specs_.push_back(std::move(s));
    return specs_.back().offset;
  };
  auto linear = [&](const std::string& module, int64_t in, int64_t out, bool bias, bool conv1d = false) {
    Linear l;
    l.module = module;
    l.in = in;
    l.out = out;
    l.conv1d = conv1d;
    l.w = add(module + ".weight", conv1d ? std::vector<int64_t>{in, out} : std::vector<int64_t>{out, in});
    if (bias) l.b = add(module + ".bias", {out});
    return l;
  };
  std::string pre;
  if (c.family == ModelConfig::Llama) {
    pre = "model.";
    add(pre + "embed_tokens.weight", {V, C});
  } else if (c.family == ModelConfig::OPT) {
    pre = "model.decoder.";
    add(pre + "embed_tokens.weight", {V, E});
    add(pre + "embed_positions.weight", {c.max_positions + c.position_offset, C});
    if (E != C) add(pre + "project_in.weight", {C, E});
  } else {
    pre = "transformer.";
    add(pre + "wte.weight", {V, C});
    add(pre + "wpe.weight", {c.max_positions, C});
  }
  for (int64_t i = 0; i < c.layers; ++i) {
    auto L = std::make_unique<Layer>();
    const std::string lp = pre + (c.family == ModelConfig::GPT2 ? "h." : "layers.") + std::to_string(i) + ".";
    if (c.family == ModelConfig::Llama) {
      L->ln1_w = add(lp + "input_layernorm.weight", {C});
      L->q = linear(lp + "self_attn.q_proj", C, Q, c.attention_bias);
      L->k = linear(lp + "self_attn.k_proj", C, KV, c.attention_bias);
      L->v = linear(lp + "self_attn.v_proj", C, KV, c.attention_bias);
      L->o = linear(lp + "self_attn.o_proj", Q, C, c.output_bias);
      L->ln2_w = add(lp + "post_attention_layernorm.weight", {C});
      L->gate = linear(lp + "mlp.gate_proj", C, F, c.mlp_bias);
      L->up = linear(lp + "mlp.up_proj", C, F, c.mlp_bias);
      L->down = linear(lp + "mlp.down_proj", F, C, c.mlp_bias);
    } else if (c.family == ModelConfig::OPT) {
      L->q = linear(lp + "self_attn.q_proj", C, Q, true);
      L->k = linear(lp + "self_attn.k_proj", C, KV, true);
      L->v = linear(lp + "self_attn.v_proj", C, KV, true);
      L->o = linear(lp + "self_attn.out_proj", Q, C, true);
      L->ln1_w = add(lp + "self_attn_layer_norm.weight", {C});
      L->ln1_b = add(lp + "self_attn_layer_norm.bias", {C});
      L->fc1 = linear(lp + "fc1", C, F, true);
      L->fc2 = linear(lp + "fc2", F, C, true);
      L->ln2_w = add(lp + "final_layer_norm.weight", {C});
      L->ln2_b = add(lp + "final_layer_norm.bias", {C});
    } else {
      L->ln1_w = add(lp + "ln_1.weight", {C});
      L->ln1_b = add(lp + "ln_1.bias", {C});
      L->packed_qkv = true;
      L->qkv = linear(lp + "attn.c_attn", C, checked_mul(3, C, "model config 3 × hidden"), true, true);
      L->o = linear(lp + "attn.c_proj", C, C, true, true);
      L->ln2_w = add(lp + "ln_2.weight", {C});
      L->ln2_b = add(lp + "ln_2.bias", {C});
      L->fc1 = linear(lp + "mlp.c_fc", C, F, true, true);
      L->fc2 = linear(lp + "mlp.c_proj", F, C, true, true);
    }
    layers_.push_back(std::move(L));
  }
  if (c.final_norm) {
    if (c.family == ModelConfig::Llama) add(pre + "norm.weight", {C});
    else if (c.family == ModelConfig::OPT) {
      add(pre + "final_layer_norm.weight", {C});
      add(pre + "final_layer_norm.bias", {C});
    } else {
      add(pre + "ln_f.weight", {C});
      add(pre + "ln_f.bias", {C});
    }
  }
  if (c.family == ModelConfig::OPT && E != C) add(pre + "project_out.weight", {E, C});
  if (!c.tie_embeddings) add("lm_head.weight", {V, E});
  // One buffer in the storage dtype (allocated in fp32 units).
  if (n_params_ > kMaxModelParameters)
    throw Error("ZOFO_BAD_CONFIG", "model config: " + std::to_string(n_params_) + " parameters exceed the limit of " +
                                       std::to_string(kMaxModelParameters));
  if (allocate) store_ = be_.alloc(((size_t)n_params_ * dtype_size(dtype_) + 3) / 4);
  streams_.resize(specs_.size());
  for (size_t i = 0; i < specs_.size(); ++i) {
    streams_[i] = fnv1a64(specs_[i].name.data(), specs_[i].name.size());
    by_offset_[specs_[i].offset] = i;
  }
}

const TensorSpec& Transformer::spec(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw invalid_arg("the model has no tensor named " + name);
  return specs_[it->second];
}

// Named weights are the embeddings tied to the head and OPT's projections: matmul operands.
Transformer::Weight Transformer::p(const std::string& name) const { return weight(spec(name).offset, true); }

// The values the forward and backward read for the tensor at `offset`: the stored
// weights themselves (fp32, unperturbed), or scratch holding their fp32 conversion plus
// the active perturbation. Perturbing into scratch instead of in place means the stored
// x is only ever written by an update: exact restore in every storage dtype. With
// `operand` (read by matmul only) the backend may hold the view in its compute precision
// (alloc_operand) or, unperturbed, read the stored weights in place (operand_view).
Transformer::Weight Transformer::weight(int64_t offset, bool operand) const {
  const size_t i = tensor_at(offset);
  const float a = perturbation_of(i);
  if (a == 0.0f && dtype_ == DType::F32) return Weight{(const float*)store_ + offset, nullptr};
  const int64_t n = specs_[i].numel();
  const void* stored = (const char*)store_ + offset * dtype_size(dtype_);
  if (a == 0.0f && operand)  // the backend's matmul may read the stored weights as they are
    if (const float* direct = be_.operand_view(stored, dtype_, (size_t)n)) return Weight{direct, nullptr};
  Weight w{nullptr, std::make_shared<Scratch>(be_, n, operand)};
  be_.weight_view(w.scratch->p, stored, dtype_, (uint64_t)n, streams_[i], 0, perturb_.seed, a);
  w.ptr = w.scratch->p;
  return w;
}

size_t Transformer::tensor_at(int64_t offset) const {
  auto it = by_offset_.find(offset);
  if (it == by_offset_.end())
    throw Error("ZOFO_INTERNAL", "no tensor starts at parameter offset " + std::to_string(offset));
  return it->second;
}

// The scale a of the active perturbation for tensor i (0: read it unperturbed).
float Transformer::perturbation_of(size_t i) const {
  return perturbing_ && (*perturb_.trainable)[i] ? perturb_.scale : 0.0f;
}

// out (N, C) = rows ids (backend memory) of the (·, C) table at `offset`, as weight()
// would see them: a lookup reads N rows, so only those rows are converted and perturbed
// (element index id·C + c of the table's stream), never the whole vocabulary.
void Transformer::embedding_rows(float* out, int64_t offset, const int32_t* ids, int64_t N, int64_t C) const {
  const size_t i = tensor_at(offset);
  be_.embedding_view(out, (const char*)store_ + offset * dtype_size(dtype_), dtype_, ids, N, C, streams_[i],
                     perturb_.seed, perturbation_of(i));
}

Transformer::Scratch::Scratch(Backend& be, int64_t n, bool operand)
    : be(be), p(operand ? be.alloc_operand((size_t)n) : be.alloc_scratch((size_t)n)) {}
Transformer::Scratch::~Scratch() { be.free(p); }

void Transformer::set_perturbation(uint64_t seed, float scale, const std::vector<uint8_t>& trainable) {
  if (trainable.size() != specs_.size()) throw invalid_arg("perturbation: one trainable flag per base tensor");
  perturb_ = Perturbation{seed, scale, &trainable};
  perturbing_ = true;
}

void Transformer::clear_perturbation() { perturbing_ = false; }

void Transformer::set_stream_names(const std::vector<std::string>& names) {
  if (names.size() != specs_.size())
    throw invalid_arg("stream names: got " + std::to_string(names.size()) + ", the model has " +
                      std::to_string(specs_.size()) + " tensors");
  for (size_t i = 0; i < names.size(); ++i) streams_[i] = fnv1a64(names[i].data(), names[i].size());
}

void Transformer::zo_update(uint64_t seed, float a, float eta_lambda, const std::vector<uint8_t>& trainable,
                            const std::vector<float>& decay) {
  if (trainable.size() != specs_.size() || decay.size() != specs_.size())
    throw invalid_arg("zo_update: one trainable flag and one decay mask per base tensor");
  // Nothing to add: skip, so x stays bit-identical (even −0, which x + 0 would turn into +0).
  if (a == 0.0f && eta_lambda == 0.0f) return;
  std::vector<ParamEntry> table;
  for (size_t i = 0; i < specs_.size(); ++i)
    if (trainable[i])
      table.push_back({(uint64_t)specs_[i].offset, (uint64_t)specs_[i].numel(), streams_[i], 0, decay[i]});
  if (table.empty()) return;
  be_.zo_update(store_, dtype_, (uint64_t)n_params_, table.data(), table.size(), seed, a, eta_lambda);
}

// 64-bit identity of the stored base weights (not cryptographic): FNV-1a over 64-bit
// words of each tensor's stored bytes, folded with its name's stream id.
uint64_t Transformer::hash_parameters() const {
  uint64_t h = 0xcbf29ce484222325ull;
  const size_t width = dtype_size(dtype_);
  std::vector<unsigned char> chunk;
  for (size_t i = 0; i < specs_.size(); ++i) {
    h = (h ^ streams_[i]) * 0x100000001b3ull;
    const size_t bytes = (size_t)specs_[i].numel() * width;
    const char* src = (const char*)store_ + (size_t)specs_[i].offset * width;
    for (size_t at = 0; at < bytes; at += (size_t)1 << 24) {
      const size_t n = std::min(bytes - at, (size_t)1 << 24);
      chunk.assign(n + 8, 0);
      be_.download_raw(chunk.data(), src + at, n);
      for (size_t k = 0; k < n; k += 8) {
        uint64_t w;
        memcpy(&w, chunk.data() + k, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
      }
    }
  }
  return h;
}

void Transformer::set_tensor(const std::string& name, const float* host, int64_t n) {
  const TensorSpec& s = spec(name);
  if (n != s.numel())
    throw invalid_arg("tensor " + name + ": got " + std::to_string(n) + " values, its shape " + join_shape(s.shape) +
                      " holds " + std::to_string(s.numel()));
  set_tensor_range(name, 0, host, n);
}

void Transformer::set_tensor_range(const std::string& name, int64_t first, const float* host, int64_t n) {
  const TensorSpec& s = spec(name);
  if (first < 0 || n < 0 || first > s.numel() || n > s.numel() - first)
    throw invalid_arg("tensor " + name + ": elements [" + std::to_string(first) + ", " + std::to_string(first) + " + " +
                      std::to_string(n) + ") are outside its " + std::to_string(s.numel()));
  const int64_t at = s.offset + first;
  if (dtype_ == DType::F32) {
    be_.upload((float*)store_ + at, host, (size_t)n);
    return;
  }
  std::vector<uint16_t> low((size_t)n);  // round to nearest even, as every update does
  for (int64_t i = 0; i < n; ++i) low[i] = dtype_ == DType::BF16 ? f32_to_bf16(host[i]) : f32_to_f16(host[i]);
  be_.upload_raw((uint16_t*)store_ + at, low.data(), (size_t)n * 2);
}

void Transformer::get_tensor(const std::string& name, float* host, int64_t n) const {
  const TensorSpec& s = spec(name);
  if (n != s.numel())
    throw invalid_arg("tensor " + name + ": output holds " + std::to_string(n) + " values, needs " +
                      std::to_string(s.numel()));
  if (dtype_ == DType::F32) {
    be_.download(host, (const float*)store_ + s.offset, (size_t)n);
    return;
  }
  std::vector<uint16_t> low((size_t)n);
  be_.download_raw(low.data(), (const uint16_t*)store_ + s.offset, (size_t)n * 2);
  for (int64_t i = 0; i < n; ++i) host[i] = dtype_ == DType::BF16 ? bf16_to_f32(low[i]) : f16_to_f32(low[i]);
}

std::vector<TensorSpec> Transformer::add_lora(const std::vector<std::string>& targets, int64_t rank, float alpha) {
  if (lora_) throw Error("ZOFO_INVALID_STATE", "this model already has LoRA adapters");
  if (rank <= 0) throw invalid_arg("LoRA rank must be positive");
  std::vector<Linear*> chosen;
  for (auto& L : layers_)
    for (Linear* l : {&L->qkv, &L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->fc1, &L->fc2}) {
      if (l->w < 0) continue;
      for (const std::string& t : targets)
        if (ends_with(l->module, t)) {
          chosen.push_back(l);
          break;
        }
    }
  if (chosen.empty()) throw invalid_arg("LoRA targets match no linear layer of this model");
  int slot = 0;
  for (Linear* l : chosen) {
    l->rank = rank;
    l->scaling = alpha / (float)rank;
    l->lora_slot = slot++;
    l->lora_a = n_lora_;
    lora_specs_.push_back({l->module + ".lora_A.weight", {rank, l->in}, n_lora_});
    n_lora_ += rank * l->in;
    l->lora_b = n_lora_;
    lora_specs_.push_back({l->module + ".lora_B.weight", {l->out, rank}, n_lora_});
    n_lora_ += l->out * rank;
  }
  lora_ = be_.alloc((size_t)n_lora_);  // zeros: B = 0 makes the adapted model equal the base
  return lora_specs_;
}

namespace {
const TensorSpec& find_spec(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const TensorSpec& s : specs)
    if (s.name == name) return s;
  throw invalid_arg("the model has no LoRA tensor named " + name);
}
}  // namespace

void Transformer::set_lora_tensor(const std::string& name, const float* host, int64_t n) {
  const TensorSpec& s = find_spec(lora_specs_, name);
  if (n != s.numel())
    throw invalid_arg("LoRA tensor " + name + ": got " + std::to_string(n) + " values, needs " +
                      std::to_string(s.numel()));
  be_.upload(lora_ + s.offset, host, (size_t)n);
}

void Transformer::get_lora_tensor(const std::string& name, float* host, int64_t n) const {
  const TensorSpec& s = find_spec(lora_specs_, name);
  if (n != s.numel())
    throw invalid_arg("LoRA tensor " + name + ": output holds " + std::to_string(n) + " values, needs " +
                      std::to_string(s.numel()));
  be_.download(host, lora_ + s.offset, (size_t)n);
}

// ---- linear ----

void Transformer::linear_forward(const Linear& l, const float* u, float* y, int64_t N, float* lora_mid) {
  const Weight Wv = weight(l.w, true);
  const float* W = Wv.get();
  if (l.conv1d) be_.matmul(false, false, N, l.out, l.in, 1.0f, u, l.in, W, l.out, 0.0f, y, l.out);
  else be_.matmul(false, true, N, l.out, l.in, 1.0f, u, l.in, W, l.in, 0.0f, y, l.out);
  if (l.b >= 0) be_.add_bias(y, weight(l.b).get(), N, l.out);
  if (l.rank > 0) {  // y += s·(u·Aᵀ)·Bᵀ, keeping u·Aᵀ (N, r) for the backward
    be_.matmul(false, true, N, l.rank, l.in, 1.0f, u, l.in, lora_ + l.lora_a, l.in, 0.0f, lora_mid, l.rank);
    be_.matmul(false, true, N, l.out, l.rank, l.scaling, lora_mid, l.rank, lora_ + l.lora_b, l.rank, 1.0f, y, l.out);
  }
}

// du += dy·W (the frozen base: no weight gradient), and for an adapter
// dB += s·dyᵀ·(u·Aᵀ), d(u·Aᵀ) = s·dy·B, dA += d(u·Aᵀ)ᵀ·u, du += d(u·Aᵀ)·A.
void Transformer::linear_backward(const Linear& l, const float* u, const float* dy, float* du, int64_t N,
                                  const float* lora_mid, float* lora_grad) {
  if (du) {
    const Weight Wv = weight(l.w, true);
    const float* W = Wv.get();
    if (l.conv1d) be_.matmul(false, true, N, l.in, l.out, 1.0f, dy, l.out, W, l.out, 1.0f, du, l.in);
    else be_.matmul(false, false, N, l.in, l.out, 1.0f, dy, l.out, W, l.in, 1.0f, du, l.in);
  }
  if (base_grad_) {  // full fine-tuning: dW += dyᵀ·u ([out, in]) or uᵀ·dy (Conv1D [in, out]); db += Σ dy
    float* dW = base_grad_ + l.w;
    if (l.conv1d) be_.matmul(true, false, l.in, l.out, N, 1.0f, u, l.in, dy, l.out, 1.0f, dW, l.out);
    else be_.matmul(true, false, l.out, l.in, N, 1.0f, dy, l.out, u, l.in, 1.0f, dW, l.in);
    if (l.b >= 0) be_.bias_backward(base_grad_ + l.b, dy, N, l.out);
  }
  if (l.rank > 0) {
    Buf dmid(be_, N * l.rank);
    be_.matmul(true, false, l.out, l.rank, N, l.scaling, dy, l.out, lora_mid, l.rank, 1.0f, lora_grad + l.lora_b,
               l.rank);
    be_.matmul(false, false, N, l.rank, l.out, l.scaling, dy, l.out, lora_ + l.lora_b, l.rank, 0.0f, dmid.get(),
               l.rank);
    be_.matmul(true, false, l.rank, l.in, N, 1.0f, dmid.get(), l.rank, u, l.in, 1.0f, lora_grad + l.lora_a, l.in);
    if (du) be_.matmul(false, false, N, l.in, l.rank, 1.0f, dmid.get(), l.rank, lora_ + l.lora_a, l.in, 1.0f, du, l.in);
  }
}

// ---- forward ----

void Transformer::forward(const Batch& batch, Activations& act, bool keep) {
  const ModelConfig& c = config_;
  const int64_t B = batch.B, T = batch.T, N = B * T, C = c.hidden, E = c.embed_dim, F = c.ffn;
  const int64_t NH = c.heads, NKV = c.kv_heads, HS = c.head_dim, Q = NH * HS, KV = NKV * HS;
  for (int64_t i = 0; i < N; ++i) {
    if (batch.ids[i] < 0 || batch.ids[i] >= c.vocab)
      throw invalid_arg("token id " + std::to_string(batch.ids[i]) + " is outside the vocabulary of " +
                        std::to_string(c.vocab));
    if (c.family != ModelConfig::Llama && batch.mask[i] && batch.positions[i] >= c.max_positions)
      throw invalid_arg("sequence longer than the model's " + std::to_string(c.max_positions) + " positions");
  }
  act.ids = upload_vector(be_, batch.ids);
  act.positions = upload_vector(be_, batch.positions);
  act.mask = upload_vector(be_, batch.mask);
  const int32_t* ids = as<int32_t>(act.ids);
  const int32_t* positions = as<int32_t>(act.positions);
  act.lora_mid.clear();
  for (auto& L : layers_)
    for (const Linear* l : {&L->qkv, &L->q, &L->k, &L->v, &L->o, &L->gate, &L->up, &L->down, &L->fc1, &L->fc2})
      if (l->rank > 0) act.lora_mid.emplace_back(be_, N * l->rank);
  auto mid = [&](const Linear& l) { return l.rank > 0 ? act.lora_mid[l.lora_slot].get() : nullptr; };
  // operand: the output feeds only the next linears (pre-norm n1, n2).
  auto norm = [&](int64_t w, int64_t b, const float* in, Buf& out, Buf& mean, Buf& rstd, bool operand = false) {
    out = Buf(be_, N * C, operand ? Buf::Operand : Buf::Zeroed);
    rstd = Buf(be_, N);
    const Weight wv = weight(w);
    if (c.rmsnorm) be_.rmsnorm_forward(out.get(), rstd.get(), in, wv.get(), N, C, c.norm_eps);
    else {
      mean = Buf(be_, N);
      const Weight bv = b >= 0 ? weight(b) : Weight{};
      be_.layernorm_forward(out.get(), mean.get(), rstd.get(), in, wv.get(), bv.get(), N, C, c.norm_eps);
    }
  };

  // Embeddings (N, C).
  Buf x(be_, N * C);
  if (c.family == ModelConfig::Llama) {
    embedding_rows(x.get(), spec("model.embed_tokens.weight").offset, ids, N, C);
  } else if (c.family == ModelConfig::OPT) {
    if (E != C) {  // token embeddings (N, E), kept for project_in's weight gradient
      act.embed = Buf(be_, N * E);
      embedding_rows(act.embed.get(), spec("model.decoder.embed_tokens.weight").offset, ids, N, E);
      be_.matmul(false, true, N, C, E, 1.0f, act.embed.get(), E, p("model.decoder.project_in.weight").get(), E, 0.0f,
                 x.get(), C);
    } else {
      embedding_rows(x.get(), spec("model.decoder.embed_tokens.weight").offset, ids, N, C);
    }
    // OPT: row = cumsum(mask)·mask − 1 + 2 (pads read row 1).
    std::vector<int32_t> rows(N);
    for (int64_t i = 0; i < N; ++i) rows[i] = batch.mask[i] ? batch.positions[i] + (int32_t)c.position_offset : 1;
    act.embed_rows = upload_vector(be_, rows);
    Buf pos(be_, N * C);
    embedding_rows(pos.get(), spec("model.decoder.embed_positions.weight").offset, as<int32_t>(act.embed_rows), N, C);
    be_.axpy(x.get(), pos.get(), 1.0f, (size_t)(N * C));
  } else {
    embedding_rows(x.get(), spec("transformer.wte.weight").offset, ids, N, C);
    Buf pos(be_, N * C);
    embedding_rows(pos.get(), spec("transformer.wpe.weight").offset, positions, N, C);
    be_.axpy(x.get(), pos.get(), 1.0f, (size_t)(N * C));
  }

  const float scale = 1.0f / sqrtf((float)HS);
  act.layer.clear();
  act.layer.resize(layers_.size());
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& L = *layers_[li];
    auto& a = act.layer[li];
    a.x = std::move(x);
    const float* attn_in = a.x.get();
    if (c.pre_norm) {
      norm(L.ln1_w, L.ln1_b, a.x.get(), a.n1, a.n1_mean, a.n1_rstd, true);
      attn_in = a.n1.get();
    }
    a.q = Buf(be_, N * Q);
    a.k = Buf(be_, N * KV);
    a.v = Buf(be_, N * KV);
    if (L.packed_qkv) {
      Buf qkv(be_, N * 3 * C);
      linear_forward(L.qkv, attn_in, qkv.get(), N, mid(L.qkv));
      be_.copy2d(a.q.get(), Q, qkv.get(), 3 * C, N, Q);
      be_.copy2d(a.k.get(), KV, qkv.get() + C, 3 * C, N, KV);
      be_.copy2d(a.v.get(), KV, qkv.get() + 2 * C, 3 * C, N, KV);
    } else {
      linear_forward(L.q, attn_in, a.q.get(), N, mid(L.q));
      linear_forward(L.k, attn_in, a.k.get(), N, mid(L.k));
      linear_forward(L.v, attn_in, a.v.get(), N, mid(L.v));
    }
    if (c.family == ModelConfig::Llama) {
      be_.rope(a.q.get(), positions, B, T, NH, HS, c.rope_theta, false);
      be_.rope(a.k.get(), positions, B, T, NKV, HS, c.rope_theta, false);
    }
    a.att = Buf(be_, (int64_t)be_.attention_saved_size(B, T, NH));
    a.y = Buf(be_, N * Q, Buf::Operand);
    be_.attention_forward(a.y.get(), a.att.get(), a.q.get(), a.k.get(), a.v.get(), as<uint8_t>(act.mask), B, T, NH, NKV,
                          HS, scale);
    a.s1 = Buf(be_, N * C);
    linear_forward(L.o, a.y.get(), a.s1.get(), N, mid(L.o));
    be_.axpy(a.s1.get(), a.x.get(), 1.0f, (size_t)(N * C));  // s1 = x + attention

    const float* mlp_in;
    if (c.pre_norm) {
      norm(L.ln2_w, L.ln2_b, a.s1.get(), a.n2, a.n2_mean, a.n2_rstd, true);  // h = s1
      mlp_in = a.n2.get();
    } else {
      norm(L.ln1_w, L.ln1_b, a.s1.get(), a.h, a.n1_mean, a.n1_rstd);  // h = norm1(s1)
      mlp_in = a.h.get();
    }
    const float* h = c.pre_norm ? a.s1.get() : a.h.get();
    a.s2 = Buf(be_, N * C);
    a.act = Buf(be_, N * F, Buf::Operand);
    a.a = Buf(be_, N * F);
    if (c.activation == 2) {
      a.b = Buf(be_, N * F);
      linear_forward(L.gate, mlp_in, a.a.get(), N, mid(L.gate));
      linear_forward(L.up, mlp_in, a.b.get(), N, mid(L.up));
      be_.swiglu_forward(a.act.get(), a.a.get(), a.b.get(), N * F);
      linear_forward(L.down, a.act.get(), a.s2.get(), N, mid(L.down));
    } else {
      linear_forward(L.fc1, mlp_in, a.a.get(), N, mid(L.fc1));
      be_.activation_forward(c.activation, a.act.get(), a.a.get(), N * F);
      linear_forward(L.fc2, a.act.get(), a.s2.get(), N, mid(L.fc2));
    }
    be_.axpy(a.s2.get(), h, 1.0f, (size_t)(N * C));  // s2 = h + MLP
    if (c.pre_norm) {
      x = std::move(a.s2);  // out = s2; the pre-norm backward never reads s2
    } else {
      norm(L.ln2_w, L.ln2_b, a.s2.get(), x, a.n2_mean, a.n2_rstd);  // out = norm2(s2)
    }
    // Without a backward, this layer's activations are dead: free them now, so a forward
    // holds one layer's activations at a time instead of all of them.
    if (!keep) a = Activations::PerLayer{};
  }

  // Final norm and OPT's project_out: z (N, E).
  act.fin_in = std::move(x);
  const float* zin = act.fin_in.get();
  if (c.final_norm) {
    const auto [w, b] = final_norm();
    norm(w, b, zin, act.fin_norm, act.fin_mean, act.fin_rstd);
    zin = act.fin_norm.get();
  }
  act.z = zin;
  if (c.family == ModelConfig::OPT && E != C) {
    act.z_buf = Buf(be_, N * E);
    be_.matmul(false, true, N, E, C, 1.0f, zin, C, p("model.decoder.project_out.weight").get(), C, 0.0f,
               act.z_buf.get(), E);
    act.z = act.z_buf.get();
  }
}

// Offsets of the final norm's weight and bias (−1: none), per family.
std::pair<int64_t, int64_t> Transformer::final_norm() const {
  const ModelConfig& c = config_;
  if (c.family == ModelConfig::Llama) return {spec("model.norm.weight").offset, -1};
  const std::string base = c.family == ModelConfig::OPT ? "model.decoder.final_layer_norm" : "transformer.ln_f";
  return {spec(base + ".weight").offset, spec(base + ".bias").offset};
}

// ---- backward (adapter-only: activation gradients through the frozen base) ----

void Transformer::backward(const Batch& batch, Activations& act, const float* dz, float* lora_grad, float* base_grad) {
  base_grad_ = base_grad;  // read by linear_backward; cleared on exit
  struct Clear {
    float*& p;
    ~Clear() { p = nullptr; }
  } clear{base_grad_};
  const ModelConfig& c = config_;
  const int64_t B = batch.B, T = batch.T, N = B * T, C = c.hidden, E = c.embed_dim, F = c.ffn;
  const int64_t NH = c.heads, NKV = c.kv_heads, HS = c.head_dim, Q = NH * HS, KV = NKV * HS;
  const float scale = 1.0f / sqrtf((float)HS);
  auto mid = [&](const Linear& l) { return l.rank > 0 ? act.lora_mid[l.lora_slot].get() : nullptr; };
  // Gradients below the lowest adapted layer are never needed.
  int64_t lowest = -1;
  for (size_t li = 0; li < layers_.size() && lowest < 0; ++li) {
    const Layer& L = *layers_[li];
    for (const Linear* l : {&L.qkv, &L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.fc1, &L.fc2})
      if (l->rank > 0) lowest = (int64_t)li;
  }
  if (base_grad) lowest = 0;  // full fine-tuning: every layer, down to the embeddings
  if (lowest < 0) return;
  auto norm_backward =
      [&](int64_t w, int64_t b, const float* dout, const float* in, const Buf& mean, const Buf& rstd, float* din) {
    float* dw = base_grad ? base_grad + w : nullptr;
    float* dbias = base_grad && b >= 0 ? base_grad + b : nullptr;
    const Weight wv = weight(w);
    if (c.rmsnorm) be_.rmsnorm_backward(din, dw, dout, in, wv.get(), rstd.get(), N, C);
    else be_.layernorm_backward(din, dw, dbias, dout, in, wv.get(), mean.get(), rstd.get(), N, C);
  };

  // dx (N, C): the gradient of the residual stream, accumulated in place layer by layer.
  Buf dx(be_, N * C);
  {  // through project_out and the final norm
    Buf dproj;
    const float* dfin = dz;  // (N, C) gradient at the final norm's output
    if (c.family == ModelConfig::OPT && E != C) {
      dproj = Buf(be_, N * C);
      be_.matmul(false, false, N, C, E, 1.0f, dz, E, p("model.decoder.project_out.weight").get(), C, 0.0f, dproj.get(),
                 C);
      if (base_grad) {  // dW_out [E, C] += dzᵀ · (its input)
        const float* u = c.final_norm ? act.fin_norm.get() : act.fin_in.get();
        be_.matmul(true, false, E, C, N, 1.0f, dz, E, u, C, 1.0f,
                   base_grad + spec("model.decoder.project_out.weight").offset, C);
      }
      dfin = dproj.get();
    }
    if (c.final_norm) {
      const auto [w, b] = final_norm();
      norm_backward(w, b, dfin, act.fin_in.get(), act.fin_mean, act.fin_rstd, dx.get());
    } else {
      be_.axpy(dx.get(), dfin, 1.0f, (size_t)(N * C));
    }
  }

  for (int64_t li = (int64_t)layers_.size() - 1; li >= lowest; --li) {
    const Layer& L = *layers_[li];
    auto& a = act.layer[li];
    const bool need_input_grad = li > lowest || base_grad != nullptr;
    // g: the residual gradient, in place. Layer output → s2 (post-norm: through norm 2).
    Buf g;
    if (c.pre_norm) {
      g = std::move(dx);
    } else {
      g = Buf(be_, N * C);
      norm_backward(L.ln2_w, L.ln2_b, dx.get(), a.s2.get(), a.n2_mean, a.n2_rstd, g.get());
    }
    // s2 = h + MLP(mlp_in): the MLP reads g as its output gradient.
    Buf dmlp_in(be_, N * C), dact(be_, N * F), da(be_, N * F);
    const float* mlp_in = c.pre_norm ? a.n2.get() : a.h.get();
    if (c.activation == 2) {
      Buf db(be_, N * F);
      linear_backward(L.down, a.act.get(), g.get(), dact.get(), N, mid(L.down), lora_grad);
      be_.swiglu_backward(da.get(), db.get(), a.a.get(), a.b.get(), dact.get(), N * F);
      linear_backward(L.gate, mlp_in, da.get(), dmlp_in.get(), N, mid(L.gate), lora_grad);
      linear_backward(L.up, mlp_in, db.get(), dmlp_in.get(), N, mid(L.up), lora_grad);
    } else {
      linear_backward(L.fc2, a.act.get(), g.get(), dact.get(), N, mid(L.fc2), lora_grad);
      be_.activation_backward(c.activation, da.get(), a.a.get(), dact.get(), N * F);
      linear_backward(L.fc1, mlp_in, da.get(), dmlp_in.get(), N, mid(L.fc1), lora_grad);
    }
    // h → s1: g becomes d s1.
    if (c.pre_norm) {
      norm_backward(L.ln2_w, L.ln2_b, dmlp_in.get(), a.s1.get(), a.n2_mean, a.n2_rstd, g.get());
    } else {
      be_.axpy(g.get(), dmlp_in.get(), 1.0f, (size_t)(N * C));  // d h
      Buf ds1(be_, N * C);
      norm_backward(L.ln1_w, L.ln1_b, g.get(), a.s1.get(), a.n1_mean, a.n1_rstd, ds1.get());
      g = std::move(ds1);
    }
    // s1 = x + o(attention(q, k, v))
    Buf dy(be_, N * Q), dq(be_, N * Q), dk(be_, N * KV), dv(be_, N * KV);
    linear_backward(L.o, a.y.get(), g.get(), dy.get(), N, mid(L.o), lora_grad);
    be_.attention_backward(dq.get(), dk.get(), dv.get(), dy.get(), a.att.get(), a.q.get(), a.k.get(), a.v.get(), B, T,
                           NH, NKV, HS, scale);
    if (c.family == ModelConfig::Llama) {
      be_.rope(dq.get(), as<int32_t>(act.positions), B, T, NH, HS, c.rope_theta, true);
      be_.rope(dk.get(), as<int32_t>(act.positions), B, T, NKV, HS, c.rope_theta, true);
    }
    const float* attn_in = c.pre_norm ? a.n1.get() : a.x.get();
    Buf dattn_in(be_, N * C);
    float* dain = need_input_grad ? dattn_in.get() : nullptr;
    if (L.packed_qkv) {
      Buf dqkv(be_, N * 3 * C);
      be_.copy2d(dqkv.get(), 3 * C, dq.get(), Q, N, Q);
      be_.copy2d(dqkv.get() + C, 3 * C, dk.get(), KV, N, KV);
      be_.copy2d(dqkv.get() + 2 * C, 3 * C, dv.get(), KV, N, KV);
      linear_backward(L.qkv, attn_in, dqkv.get(), dain, N, mid(L.qkv), lora_grad);
    } else {
      linear_backward(L.q, attn_in, dq.get(), dain, N, mid(L.q), lora_grad);
      linear_backward(L.k, attn_in, dk.get(), dain, N, mid(L.k), lora_grad);
      linear_backward(L.v, attn_in, dv.get(), dain, N, mid(L.v), lora_grad);
    }
    if (!need_input_grad) break;
    // s1 = x + attention: g (d s1) carries the residual; add the attention input's gradient.
    if (c.pre_norm) norm_backward(L.ln1_w, L.ln1_b, dattn_in.get(), a.x.get(), a.n1_mean, a.n1_rstd, g.get());
    else be_.axpy(g.get(), dattn_in.get(), 1.0f, (size_t)(N * C));
    dx = std::move(g);
  }
  if (base_grad) embedding_backward(batch, act, dx.get(), base_grad);
}

// Full fine-tuning only: dx (N, C) of the first layer's input into the embedding tables.
void Transformer::embedding_backward(const Batch& batch, Activations& act, const float* dx, float* base_grad) {
  const ModelConfig& c = config_;
  const int64_t N = batch.B * batch.T, C = c.hidden, E = c.embed_dim;
  if (c.family == ModelConfig::Llama) {
    be_.scatter_add_rows(base_grad + spec("model.embed_tokens.weight").offset, dx, as<int32_t>(act.ids), N, C);
  } else if (c.family == ModelConfig::OPT) {
    be_.scatter_add_rows(base_grad + spec("model.decoder.embed_positions.weight").offset, dx,
                         as<int32_t>(act.embed_rows), N, C);
    Buf dembed(be_, N * E);
    if (E != C) {  // project_in: x = embed · W_inᵀ, W_in [C, E]
      const Weight Wv = p("model.decoder.project_in.weight");
      const float* Win = Wv.get();
      be_.matmul(false, false, N, E, C, 1.0f, dx, C, Win, E, 0.0f, dembed.get(), E);
      be_.matmul(true, false, C, E, N, 1.0f, dx, C, act.embed.get(), E, 1.0f,
                 base_grad + spec("model.decoder.project_in.weight").offset, E);
    } else {
      be_.axpy(dembed.get(), dx, 1.0f, (size_t)(N * C));
    }
    be_.scatter_add_rows(base_grad + spec("model.decoder.embed_tokens.weight").offset, dembed.get(),
                         as<int32_t>(act.ids), N, E);
  } else {
    be_.scatter_add_rows(base_grad + spec("transformer.wte.weight").offset, dx, as<int32_t>(act.ids), N, C);
    be_.scatter_add_rows(base_grad + spec("transformer.wpe.weight").offset, dx, as<int32_t>(act.positions), N, C);
  }
}

// ---- logits and losses ----

namespace {
const char* head_name(const ModelConfig& c) {
  if (!c.tie_embeddings) return "lm_head.weight";
  return c.family == ModelConfig::Llama ? "model.embed_tokens.weight"
         : c.family == ModelConfig::OPT ? "model.decoder.embed_tokens.weight"
                                        : "transformer.wte.weight";
}

void check_rows(const Batch& batch, const std::vector<int32_t>& rows) {
  for (int32_t r : rows)
    if (r < 0 || r >= batch.B * batch.T) throw invalid_arg("logits row " + std::to_string(r) + " is outside the batch");
}
}  // namespace

void Transformer::logits(const Batch& batch, const std::vector<int32_t>& rows, float* host_out) {
  check_rows(batch, rows);
  Activations act;
  forward(batch, act, false);
  const int64_t M = (int64_t)rows.size(), E = config_.embed_dim, V = config_.vocab;
  Buf zr(be_, M * E), out(be_, M * V);
  const Buf device_rows = upload_vector(be_, rows);
  be_.gather_rows(zr.get(), act.z, as<int32_t>(device_rows), M, E);
  be_.matmul(false, true, M, V, E, 1.0f, zr.get(), E, p(head_name(config_)).get(), E, 0.0f, out.get(), V);
  be_.download(host_out, out.get(), (size_t)(M * V));
}

LossResult Transformer::loss(const Batch& batch, const LossSpec& s, float* lora_grad_host, float* base_grad_host) {
  Buf grad(lora_grad_host ? Buf(be_, n_lora_) : Buf());
  Buf base(base_grad_host ? Buf(be_, n_params_) : Buf());
  LossResult result = loss_device(batch, s, grad.get(), base.get());
  if (lora_grad_host) be_.download(lora_grad_host, grad.get(), (size_t)n_lora_);
  if (base_grad_host) be_.download(base_grad_host, base.get(), (size_t)n_params_);
  return result;
}

float* Transformer::base_fp32() {
  if (dtype_ != DType::F32)
    throw Error("ZOFO_UNSUPPORTED",
                std::string("first-order updates of the base weights need fp32 storage; this model stores ") +
                    dtype_name(dtype_));
  return (float*)store_;
}

LossResult Transformer::loss_device(const Batch& batch, const LossSpec& s, float* lora_grad, float* base_grad) {
  if (base_grad) base_fp32();  // full fine-tuning: fp32 storage only
  check_rows(batch, s.rows);
  const int64_t M = (int64_t)s.rows.size(), E = config_.embed_dim, V = config_.vocab;
  if ((int64_t)s.targets.size() != M) throw invalid_arg("loss: one target per row");
  for (int32_t y : s.targets)
    if (y < 0 || y >= V) throw invalid_arg("loss: target token " + std::to_string(y) + " is outside the vocabulary");
  if (M == 0) throw invalid_arg("loss: no token to score");
  const bool want_grad = lora_grad != nullptr || base_grad != nullptr;
  const Buf rows = upload_vector(be_, s.rows), targets = upload_vector(be_, s.targets);
  Activations act;
  forward(batch, act, want_grad);
  Buf zr(be_, M * E), lg(be_, M * V);
  be_.gather_rows(zr.get(), act.z, as<int32_t>(rows), M, E);
  const Weight Wv = p(head_name(config_));
  const float* W = Wv.get();
  be_.matmul(false, true, M, V, E, 1.0f, zr.get(), E, W, E, 0.0f, lg.get(), V);
  // log p(target) per row; with grads, lg becomes the softmax rows (for the backward).
  std::vector<double> logp(M);
  {
    Buf device_logp(be_, 2 * M);
    be_.log_softmax_at(lg.get(), as<int32_t>(targets), reinterpret_cast<double*>(device_logp.get()), M, V, want_grad);
    be_.download_raw(logp.data(), device_logp.get(),
                     (size_t)M * sizeof(double));  // the loss scalars: the one read-back
  }
  LossResult result;
  std::vector<double> drow(M);  // d loss / d log p(target_i)
  if (s.kind == 0) {
    double sum = 0;
    for (int64_t i = 0; i < M; ++i) sum -= logp[i];
    result.loss = sum / M;
    for (int64_t i = 0; i < M; ++i) drow[i] = -1.0 / M;
  } else {
    const int64_t K = (int64_t)s.candidate_example.size();
    if ((int64_t)s.group.size() != M || (int64_t)s.candidate_is_label.size() != K || s.examples <= 0)
      throw invalid_arg("loss: malformed classification spec");
    std::vector<double> score(K, 0.0), count(K, 0.0);
    for (int64_t i = 0; i < M; ++i) {
      if (s.group[i] < 0 || s.group[i] >= K) throw invalid_arg("loss: row group out of range");
      score[s.group[i]] += logp[i];
      count[s.group[i]] += 1;
    }
    for (int64_t k = 0; k < K; ++k) score[k] /= std::max(1.0, count[k]);  // MEAN log-prob (MeZO)
    std::vector<double> dscore(K, 0.0);
    double total = 0;
    for (int64_t e = 0; e < s.examples; ++e) {
      double mx = -INFINITY;
      for (int64_t k = 0; k < K; ++k)
        if (s.candidate_example[k] == e) mx = std::max(mx, score[k]);
      double z = 0;
      for (int64_t k = 0; k < K; ++k)
        if (s.candidate_example[k] == e) z += exp(score[k] - mx);
      for (int64_t k = 0; k < K; ++k) {
        if (s.candidate_example[k] != e) continue;
        const double pk = exp(score[k] - mx) / z;
        if (s.candidate_is_label[k]) total -= score[k] - mx - log(z);
        dscore[k] = (pk - (s.candidate_is_label[k] ? 1.0 : 0.0)) / (double)s.examples;
      }
    }
    result.loss = total / (double)s.examples;
    result.scores = score;
    for (int64_t i = 0; i < M; ++i) drow[i] = dscore[s.group[i]] / std::max(1.0, count[s.group[i]]);
  }
  if (!want_grad) return result;

  // d loss / d logits_i = drow_i · (onehot(target_i) − softmax_i)
  const Buf device_drow = upload_vector(be_, drow);
  be_.xent_backward(lg.get(), as<int32_t>(targets), as<double>(device_drow), M, V);
  Buf dzr(be_, M * E), dz(be_, batch.B * batch.T * E);
  be_.matmul(false, false, M, E, V, 1.0f, lg.get(), V, W, E, 0.0f, dzr.get(), E);
  be_.scatter_add_rows(dz.get(), dzr.get(), as<int32_t>(rows), M, E);
  Buf scratch_grad(lora_grad || n_lora_ == 0 ? Buf() : Buf(be_, n_lora_));  // adapters present but not asked for
  if (base_grad)  // d head [V, E] += dlogitsᵀ · z rows (tied: into the embedding)
    be_.matmul(true, false, V, E, M, 1.0f, lg.get(), V, zr.get(), E, 1.0f, base_grad + spec(head_name(config_)).offset,
               E);
  backward(batch, act, dz.get(), lora_grad ? lora_grad : scratch_grad.get(), base_grad);
  return result;
}

}  // namespace zofo
