// N-API wrap of the model engine (native/engine/transformer.h): `new NativeModel(config)`.
// lib/model/model.ts builds configs, batches and loss specs and validates them;
// this layer re-checks what it relies on. Forward/loss run off the JS thread; one
// mutex per model serialises them with weight updates.
#include <napi.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../engine/transformer.h"
#include "../io/mapped_file.h"
#include "model_wrap.h"
#include "napi_util.h"

namespace zofo::addon {

namespace {

// Marks NativeModel objects, so unwrapping another wrap type can never be mistaken for one.
const napi_type_tag kModelTag = {0x7a6f666f6d6f6465ull, 0x6c5f777261700001ull};

int64_t get_int(const Napi::Object& o, const char* key) {
  const std::string what = std::string("model config field ") + key;
  return get_integer(o.Get(key), what.c_str(), -(int64_t(1) << 53), int64_t(1) << 53);
}

float get_float(const Napi::Object& o, const char* key) {
  const std::string what = std::string("model config field ") + key;
  return (float)get_number(o.Get(key), what.c_str());
}

bool get_bool(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean(); }

ModelConfig config_from_js(const Napi::Value& v) {
  if (!v.IsObject()) throw arg_error("model config must be an object");
  const Napi::Object o = v.As<Napi::Object>();
  ModelConfig c;
  const int64_t family = get_int(o, "family");
  if (family < 0 || family > 2) throw arg_error("model config family must be 0 (llama), 1 (opt) or 2 (gpt2)");
  c.family = (ModelConfig::Family)family;
  c.vocab = get_int(o, "vocab");
  c.hidden = get_int(o, "hidden");
  c.layers = get_int(o, "layers");
  c.heads = get_int(o, "heads");
  c.kv_heads = get_int(o, "kvHeads");
  c.head_dim = get_int(o, "headDim");
  c.ffn = get_int(o, "ffn");
  c.max_positions = get_int(o, "maxPositions");
  c.embed_dim = get_int(o, "embedDim");
  c.position_offset = get_int(o, "positionOffset");
  c.rmsnorm = get_bool(o, "rmsnorm");
  c.norm_eps = get_float(o, "normEps");
  c.activation = (int)get_int(o, "activation");
  c.rope_theta = get_float(o, "ropeTheta");
  c.tie_embeddings = get_bool(o, "tieEmbeddings");
  c.attention_bias = get_bool(o, "attentionBias");
  c.output_bias = get_bool(o, "outputBias");
  c.mlp_bias = get_bool(o, "mlpBias");
  c.pre_norm = get_bool(o, "preNorm");
  c.final_norm = get_bool(o, "finalNorm");
  return c;
}

Napi::Array specs_to_js(Napi::Env env, const std::vector<TensorSpec>& specs) {
  Napi::Array out = Napi::Array::New(env, specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    Napi::Object s = Napi::Object::New(env);
    s.Set("name", specs[i].name);
    Napi::Array shape = Napi::Array::New(env, specs[i].shape.size());
    for (size_t d = 0; d < specs[i].shape.size(); ++d)
      shape.Set((uint32_t)d, Napi::Number::New(env, (double)specs[i].shape[d]));
    s.Set("shape", shape);
    s.Set("offset", Napi::Number::New(env, (double)specs[i].offset));
    out.Set((uint32_t)i, s);
  }
  return out;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeModel",
        {InstanceMethod<&ModelWrap::TensorSpecs>("tensorSpecs"), InstanceMethod<&ModelWrap::SetTensor>("setTensor"),
         InstanceMethod<&ModelWrap::LoadTensors>("loadTensors"),
         InstanceMethod<&ModelWrap::DeviceMemory>("deviceMemory"), InstanceMethod<&ModelWrap::GetTensor>("getTensor"),
         InstanceMethod<&ModelWrap::AddLora>("addLoRA"), InstanceMethod<&ModelWrap::LoraSpecs>("loraSpecs"),
         InstanceMethod<&ModelWrap::SetLoraTensor>("setLoraTensor"),
         InstanceMethod<&ModelWrap::GetLoraTensor>("getLoraTensor"), InstanceMethod<&ModelWrap::Logits>("logits"),
         InstanceMethod<&ModelWrap::Loss>("loss"), InstanceMethod<&ModelWrap::SetStreamNames>("setStreamNames"),
         InstanceMethod<&ModelWrap::HashParameters>("hashParameters"),
         InstanceMethod<&ModelWrap::ApplyUpdates>("applyUpdates"), InstanceMethod<&ModelWrap::Dispose>("dispose"),
         StaticMethod<&ModelWrap::TensorSpecsOf>("tensorSpecsOf")});
  }

  // NativeModel.tensorSpecsOf(config) → specs: the tensor table a config implies, with
  // nothing allocated, so a loader can check it against a checkpoint first.
  static Napi::Value TensorSpecsOf(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      std::unique_ptr<Backend> owned;
      Transformer plan(config_from_js(info[0]), choose_backend("cpu", Compute::FP32, owned), DType::F32, false);
      return specs_to_js(info.Env(), plan.tensors());
    });
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    guarded(info, [&]() -> Napi::Value {
      napi_type_tag_object(info.Env(), info.This(), &kModelTag);
      state_ = std::make_shared<State>();
      DType dtype = DType::F32;
      if (info.Length() > 1 && !info[1].IsUndefined()) {
        const double d = get_number(info[1], "dtype");
        if (d != 0 && d != 1 && d != 2) throw arg_error("dtype code must be 0 (f32), 1 (bf16) or 2 (f16)");
        dtype = (DType)(int)d;
      }
      std::string device = "cpu";
      if (info.Length() > 2 && !info[2].IsUndefined()) {
        if (!info[2].IsString()) throw arg_error("device must be a string ('cpu' or 'cuda')");
        device = info[2].As<Napi::String>().Utf8Value();
      }
      Compute compute = Compute::FP32;
      if (info.Length() > 3 && !info[3].IsUndefined()) {
        const double c = get_number(info[3], "compute");
        if (c != 0 && c != 1 && c != 2) throw arg_error("compute code must be 0 (fp32), 1 (tf32) or 2 (bf16)");
        compute = (Compute)(int)c;
      }
      Backend& backend = choose_backend(device, compute, state_->backend);
      state_->model = std::make_unique<Transformer>(config_from_js(info[0]), backend, dtype);
      return info.Env().Undefined();
    });
  }

 private:
  // Shared with in-flight workers, so dispose() during a forward frees only after it.
  using State = ModelState;

 public:
  std::shared_ptr<State> live() const {
    if (!state_ || !state_->model) throw Error("ZOFO_DISPOSED", "this model has been disposed");
    return state_;
  }

 private:
  Napi::Value TensorSpecs(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value { return specs_to_js(info.Env(), live()->model->tensors()); });
  }
  Napi::Value LoraSpecs(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value { return specs_to_js(info.Env(), live()->model->lora_tensors()); });
  }

  // setTensor(name, Float32Array) / getTensor(name, Float32Array out); lora variants alike.
  template <bool Lora, bool Set>
  Napi::Value TensorIO(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      if (!info[0].IsString()) throw arg_error("tensor name must be a string");
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      const View data = get_view(info[1], "data");
      if (data.type != napi_float32_array) throw arg_error("tensor data must be a Float32Array");
      std::lock_guard<std::mutex> guard(s->lock);
      float* p = static_cast<float*>(data.data);
      if (Lora && Set) s->model->set_lora_tensor(name, p, (int64_t)data.length);
      else if (Lora) s->model->get_lora_tensor(name, p, (int64_t)data.length);
      else if (Set) s->model->set_tensor(name, p, (int64_t)data.length);
      else s->model->get_tensor(name, p, (int64_t)data.length);
      return info.Env().Undefined();
    });
  }
  Napi::Value SetTensor(const Napi::CallbackInfo& info) { return TensorIO<false, true>(info); }
  Napi::Value GetTensor(const Napi::CallbackInfo& info) { return TensorIO<false, false>(info); }
  Napi::Value SetLoraTensor(const Napi::CallbackInfo& info) { return TensorIO<true, true>(info); }
  Napi::Value GetLoraTensor(const Napi::CallbackInfo& info) { return TensorIO<true, false>(info); }

  // loadTensors(path, fileSize, names: string[], offsets: Float64Array, dtypes: Uint8Array)
  //   → Promise<void>: tensor i ← the file's bytes from offsets[i] (its shape's element
  //   count of dtype dtypes[i]: 0 f32, 1 bf16, 2 f16), converted to the storage dtype.
  // Read straight into the parameter buffer in bounded chunks, each chunk's file pages
  // given back once copied: loading never holds a second copy of the weights. fileSize
  // is the size whose header the caller validated; a file that changed is refused.
  Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      if (!info[0].IsString()) throw arg_error("path must be a string");
      const std::string path = info[0].As<Napi::String>().Utf8Value();
      const double size = get_number(info[1], "fileSize");
      if (!info[2].IsArray()) throw arg_error("names must be an array of strings");
      Napi::Array arr = info[2].As<Napi::Array>();
      auto names = std::make_shared<std::vector<std::string>>();
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value v = arr.Get(i);
        if (!v.IsString()) throw arg_error("names must be an array of strings");
        names->push_back(v.As<Napi::String>().Utf8Value());
      }
      auto offsets = std::make_shared<std::vector<double>>(copy_array<double>(info[3], "offsets", napi_float64_array));
      auto codes = std::make_shared<std::vector<uint8_t>>(copy_array<uint8_t>(info[4], "dtypes", napi_uint8_array));
      if (offsets->size() != names->size() || codes->size() != names->size())
        throw arg_error("loadTensors: names, offsets and dtypes must have one value per tensor");
      for (size_t i = 0; i < names->size(); ++i) {
        s->model->spec((*names)[i]);  // throws naming an unknown tensor, before any I/O
        const double o = (*offsets)[i];
        if (!(o >= 0 && o <= 9007199254740991.0) || o != (double)(uint64_t)o)
          throw arg_error("loadTensors: offsets must be non-negative safe integers");
        if ((*codes)[i] > 2) throw arg_error("loadTensors: dtype codes must be 0 (f32), 1 (bf16) or 2 (f16)");
      }
      auto* w = new PromiseWorker(
          info.Env(),
          [s, path, size, names, offsets, codes] {
        zofo::io::MappedFile file(path);
        if ((double)file.size() != size)
          throw Error("ZOFO_BAD_FILE", path + ": file changed size while loading (" + std::to_string((uint64_t)size) +
                                           " → " + std::to_string(file.size()) + " bytes)");
        constexpr int64_t kChunk = 1 << 20;  // elements: 4 MiB of fp32 staging
        std::vector<float> staging;
        for (size_t i = 0; i < names->size(); ++i) {
          const DType dtype = (DType)(*codes)[i];
          const uint64_t width = dtype_size(dtype), base = (uint64_t)(*offsets)[i];
          std::lock_guard<std::mutex> guard(s->lock);
          if (!s->model) throw Error("ZOFO_DISPOSED", "the model was disposed");
          const int64_t n = s->model->spec((*names)[i]).numel();
          file.check_range(base, (uint64_t)n * width);
          staging.resize((size_t)std::min(n, kChunk));
          for (int64_t first = 0; first < n; first += kChunk) {
            const int64_t count = std::min(kChunk, n - first);
            const uint64_t at = base + (uint64_t)first * width;
            file.read_f32(at, dtype, (uint64_t)count, staging.data(), 0);
            s->model->set_tensor_range((*names)[i], first, staging.data(), count);
            file.release(at, (uint64_t)count * width);
          }
        }
          },
          [](Napi::Env env) { return env.Undefined(); }, {});
      Napi::Value p = w->promise();
      w->Queue();
      return p;
    });
  }

  // deviceMemory(resetPeak: boolean) → { inUse, peak } bytes of device memory the
  // model's backend holds (peak: since the last reset), or null on the CPU.
  Napi::Value DeviceMemory(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      Backend& be = s->model->backend();
      if (std::string(be.name()) == "cpu") return info.Env().Null();
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("inUse", Napi::Number::New(info.Env(), (double)be.bytes_in_use()));
      o.Set("peak", Napi::Number::New(info.Env(), (double)be.peak_bytes()));
      if (info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value()) be.reset_peak();
      return o;
    });
  }

  // addLoRA(targets: string[], rank, alpha) → specs
  Napi::Value AddLora(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      if (!info[0].IsArray()) throw arg_error("LoRA targets must be an array of strings");
      Napi::Array arr = info[0].As<Napi::Array>();
      std::vector<std::string> targets;
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value t = arr.Get(i);
        if (!t.IsString()) throw arg_error("LoRA targets must be strings");
        targets.push_back(t.As<Napi::String>().Utf8Value());
      }
      std::lock_guard<std::mutex> guard(s->lock);
      return specs_to_js(info.Env(), s->model->add_lora(targets, get_integer(info[1], "rank", 1, 1 << 20),
                                                        (float)get_number(info[2], "alpha")));
    });
  }

  // logits(ids, positions, mask, B, T, rows Int32Array, out Float32Array) → Promise<void>
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      auto batch = std::make_shared<Batch>(batch_from_js(info, 0));
      auto rows = std::make_shared<std::vector<int32_t>>(copy_array<int32_t>(info[5], "rows", napi_int32_array));
      const View out = get_view(info[6], "out");
      if (out.type != napi_float32_array || (int64_t)out.length != (int64_t)rows->size() * s->model->config().vocab)
        throw arg_error("out must be a Float32Array of rows × vocab values");
      float* dst = static_cast<float*>(out.data);
      auto* w = new PromiseWorker(
          info.Env(),
          [s, batch, rows, dst] {
        std::lock_guard<std::mutex> guard(s->lock);
        if (!s->model) throw Error("ZOFO_DISPOSED", "the model was disposed");
        s->model->logits(*batch, *rows, dst);
          },
          [](Napi::Env env) { return env.Undefined(); }, {info[6]});
      Napi::Value p = w->promise();
      w->Queue();
      return p;
    });
  }

  // loss(ids, positions, mask, B, T, kind, rows, targets, group, candidateExample,
  //      candidateIsLabel Uint8Array, examples, loraGradOut Float32Array | null,
  //      baseGradOut Float32Array | null)
  //   → Promise<{ loss, scores: Float64Array }>
  Napi::Value Loss(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      auto batch = std::make_shared<Batch>(batch_from_js(info, 0));
      auto spec = std::make_shared<LossSpec>(loss_spec_from_js(info, 5));
      float* grad = nullptr;
      if (!info[12].IsNull() && !info[12].IsUndefined()) {
        const View g = get_view(info[12], "gradOut");
        if (g.type != napi_float32_array || (int64_t)g.length != s->model->total_lora_parameters())
          throw arg_error("gradOut must be a Float32Array with one value per LoRA parameter");
        if (g.length == 0) throw Error("ZOFO_INVALID_STATE", "the model has no LoRA adapters: call addLoRA first");
        grad = static_cast<float*>(g.data);
      }
      float* base_grad = nullptr;  // info[13]: full-parameter gradient, parameter-buffer layout
      if (info.Length() > 13 && !info[13].IsNull() && !info[13].IsUndefined()) {
        const View g = get_view(info[13], "baseGradOut");
        if (g.type != napi_float32_array || (int64_t)g.length != s->model->total_parameters())
          throw arg_error("baseGradOut must be a Float32Array with one value per base parameter");
        base_grad = static_cast<float*>(g.data);
      }
      auto result = std::make_shared<LossResult>();
      auto* w = new PromiseWorker(
          info.Env(),
          [s, batch, spec, grad, base_grad, result] {
        std::lock_guard<std::mutex> guard(s->lock);
        if (!s->model) throw Error("ZOFO_DISPOSED", "the model was disposed");
        *result = s->model->loss(*batch, *spec, grad, base_grad);
          },
          [result](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("loss", Napi::Number::New(env, result->loss));
            Napi::Float64Array scores = Napi::Float64Array::New(env, result->scores.size());
            for (size_t i = 0; i < result->scores.size(); ++i) scores[i] = result->scores[i];
            o.Set("scores", scores);
            return o;
          },
          {info[12], info.Length() > 13 ? info[13] : info.Env().Undefined()});
      Napi::Value p = w->promise();
      w->Queue();
      return p;
    });
  }

  // setStreamNames(names: string[]): Philox streams from the checkpoint keys as stored.
  Napi::Value SetStreamNames(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      std::vector<std::string> names;
      if (!info[0].IsArray()) throw arg_error("stream names must be an array of strings");
      Napi::Array arr = info[0].As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        if (!arr.Get(i).IsString()) throw arg_error("stream names must be strings");
        names.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
      }
      std::lock_guard<std::mutex> guard(s->lock);
      s->model->set_stream_names(names);
      return info.Env().Undefined();
    });
  }

  // hashParameters() → Promise<bigint>: identity of the stored base weights.
  Napi::Value HashParameters(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      auto out = std::make_shared<uint64_t>(0);
      auto* w = new PromiseWorker(
          info.Env(),
          [s, out] {
        std::lock_guard<std::mutex> guard(s->lock);
        if (!s->model) throw Error("ZOFO_DISPOSED", "the model was disposed");
        *out = s->model->hash_parameters();
          },
          [out](Napi::Env env) -> Napi::Value { return Napi::BigInt::New(env, *out); }, {});
      Napi::Value p = w->promise();
      w->Queue();
      return p;
    });
  }

  // applyUpdates(seeds BigUint64Array, scales Float32Array, etaLambdas Float32Array,
  //              trainable Uint8Array, decay Float32Array) → Promise<void>:
  // the base-weight update passes of a trajectory, in order (seed replay).
  Napi::Value ApplyUpdates(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      auto seeds =
          std::make_shared<std::vector<uint64_t>>(copy_array<uint64_t>(info[0], "seeds", napi_biguint64_array));
      auto scales = std::make_shared<std::vector<float>>(copy_array<float>(info[1], "scales", napi_float32_array));
      auto el = std::make_shared<std::vector<float>>(copy_array<float>(info[2], "etaLambdas", napi_float32_array));
      auto trainable =
          std::make_shared<std::vector<uint8_t>>(copy_array<uint8_t>(info[3], "trainable", napi_uint8_array));
      auto decay = std::make_shared<std::vector<float>>(copy_array<float>(info[4], "decay", napi_float32_array));
      if (scales->size() != seeds->size() || el->size() != seeds->size())
        throw arg_error("applyUpdates: seeds, scales and etaLambdas must have one value per update pass");
      auto* w = new PromiseWorker(
          info.Env(),
          [s, seeds, scales, el, trainable, decay] {
        std::lock_guard<std::mutex> guard(s->lock);
        if (!s->model) throw Error("ZOFO_DISPOSED", "the model was disposed");
        for (size_t i = 0; i < seeds->size(); ++i)
          s->model->zo_update((*seeds)[i], (*scales)[i], (*el)[i], *trainable, *decay);
          },
          [](Napi::Env env) { return env.Undefined(); }, {});
      Napi::Value p = w->promise();
      w->Queue();
      return p;
    });
  }

  // Drops this wrap's reference: in-flight work keeps the model alive until it ends,
  // so the JS thread never waits on a forward.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<State> state_;
};

}  // namespace

Napi::Function model_class(Napi::Env env) { return ModelWrap::Define(env); }

std::shared_ptr<ModelState> model_state_of(const Napi::Value& v) {
  if (!v.IsObject()) throw arg_error("expected a NativeModel");
  bool tagged = false;
  napi_check_object_type_tag(v.Env(), v, &kModelTag, &tagged);
  if (!tagged) throw arg_error("expected a NativeModel");
  ModelWrap* wrap = nullptr;
  napi_status st = napi_unwrap(v.Env(), v, reinterpret_cast<void**>(&wrap));
  if (st != napi_ok || !wrap) throw arg_error("expected a NativeModel");
  return wrap->live();
}

// Batch from (ids Int32Array, positions Int32Array, mask Uint8Array, B, T) at info[first..].
Batch batch_from_js(const Napi::CallbackInfo& info, int first) {
  Batch b;
  b.ids = copy_array<int32_t>(info[first], "ids", napi_int32_array);
  b.positions = copy_array<int32_t>(info[first + 1], "positions", napi_int32_array);
  b.mask = copy_array<uint8_t>(info[first + 2], "mask", napi_uint8_array);
  b.B = get_integer(info[first + 3], "B", 1, INT32_MAX);
  b.T = get_integer(info[first + 4], "T", 1, INT32_MAX);
  const size_t n = (size_t)(b.B * b.T);  // < 2^62
  if (b.ids.size() != n || b.positions.size() != n || b.mask.size() != n)
    throw arg_error("batch arrays must each hold B·T values");
  return b;
}

LossSpec loss_spec_from_js(const Napi::CallbackInfo& info, int first) {
  LossSpec spec;
  spec.kind = (int)get_integer(info[first], "loss kind (0 lm, 1 classification)", 0, 1);
  spec.rows = copy_array<int32_t>(info[first + 1], "rows", napi_int32_array);
  spec.targets = copy_array<int32_t>(info[first + 2], "targets", napi_int32_array);
  spec.group = copy_array<int32_t>(info[first + 3], "group", napi_int32_array);
  spec.candidate_example = copy_array<int32_t>(info[first + 4], "candidateExample", napi_int32_array);
  spec.candidate_is_label = copy_array<uint8_t>(info[first + 5], "candidateIsLabel", napi_uint8_array);
  spec.examples = get_integer(info[first + 6], "examples", 0, INT32_MAX);
  return spec;
}

}  // namespace zofo::addon
