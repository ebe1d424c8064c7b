// N-API wrap of the hybrid step (native/engine/hybrid.h): `new NativeOptimizer(model,
// config)`; step(...) runs the whole step in one AsyncWorker; cancel() asks the
// in-flight step to stop before its update phase. lib/train/optimizer.ts validates
// options and is the typed face.
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "../engine/hybrid.h"
#include "model_wrap.h"
#include "napi_util.h"

namespace zofo::addon {

namespace {

// The Communicator* inside a handle made by zofo_comm.node (native/comm/addon_comm.cpp):
// an object carrying the communicator type tag and an External to it.
Communicator* communicator_of(const Napi::Value& v) {
  const napi_type_tag tag = {kCommunicatorTagLower, kCommunicatorTagUpper};
  bool tagged = false;
  if (!v.IsObject() || napi_check_object_type_tag(v.Env(), v, &tag, &tagged) != napi_ok || !tagged)
    throw arg_error("comm must be the handle of a zofo communicator (distributed.init())");
  const Napi::Value p = v.As<Napi::Object>().Get("pointer");
  if (!p.IsExternal()) throw arg_error("comm handle holds no communicator");
  return p.As<Napi::External<Communicator>>().Data();
}

double num_field(const Napi::Object& o, const char* key) {
  return get_number(o.Get(key), (std::string("optimizer config field ") + key).c_str());
}

HybridConfig config_from_js(const Napi::Value& v) {
  if (!v.IsObject()) throw arg_error("optimizer config must be an object");
  const Napi::Object o = v.As<Napi::Object>();
  HybridConfig c;
  c.zo = o.Get("zo").ToBoolean();
  c.central = o.Get("central").ToBoolean();
  c.fo_at_plus = o.Get("foAtPlus").ToBoolean();
  c.q = (int)get_integer(o.Get("q"), "optimizer config field q", 0, 1 << 20);
  c.mu = (float)num_field(o, "mu");
  c.trainable = copy_array<uint8_t>(o.Get("trainable"), "trainable", napi_uint8_array);
  c.decay = copy_array<float>(o.Get("decay"), "decay", napi_float32_array);
  c.fo_adapters = o.Get("foAdapters").ToBoolean();
  c.fo_base = o.Get("foBase").ToBoolean();
  const double kind = num_field(o, "foKind");
  if (kind != 0 && kind != 1 && kind != 2) throw arg_error("foKind must be 0 (sgd), 1 (momentum) or 2 (adamw)");
  c.fo.kind = (FoKind)(int)kind;
  c.fo.momentum = (float)num_field(o, "momentum");
  c.fo.beta1 = (float)num_field(o, "beta1");
  c.fo.beta2 = (float)num_field(o, "beta2");
  c.fo.eps = (float)num_field(o, "eps");
  c.seed = get_u64(o.Get("seed"), "seed");
  const Napi::Value parallel = o.Get("parallel");
  if (!parallel.IsUndefined()) {
    const double kind = get_number(parallel, "parallel");
    if (kind != 0 && kind != 1 && kind != 2) throw arg_error("parallel must be 0 (none), 1 (data) or 2 (perturbation)");
    c.parallel = (HybridConfig::Parallel)(int)kind;
    if (kind != 0) c.comm = communicator_of(o.Get("comm"));
  }
  return c;
}

class OptimizerWrap : public Napi::ObjectWrap<OptimizerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "NativeOptimizer",
        {InstanceMethod<&OptimizerWrap::Step>("step"), InstanceMethod<&OptimizerWrap::Cancel>("cancel"),
         InstanceMethod<&OptimizerWrap::Moments>("moments"),
         InstanceMethod<&OptimizerWrap::MomentIO<false>>("getMoment"),
         InstanceMethod<&OptimizerWrap::MomentIO<true>>("setMoment"),
         InstanceAccessor<&OptimizerWrap::GetFoUpdates, &OptimizerWrap::SetFoUpdates>("foUpdates"),
         InstanceMethod<&OptimizerWrap::Dispose>("dispose"), StaticMethod<&OptimizerWrap::StepSeed>("stepSeed")});
  }

  // new NativeOptimizer(model: NativeModel, config)
  explicit OptimizerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OptimizerWrap>(info) {
    guarded(info, [&]() -> Napi::Value {
      auto model = model_state_of(info[0]);
      HybridConfig config = config_from_js(info[1]);
      std::lock_guard<std::mutex> guard(model->lock);
      state_ = std::make_shared<State>();
      state_->model = model;
      state_->opt = std::make_unique<HybridOptimizer>(*model->model, std::move(config));
      return info.Env().Undefined();
    });
  }

 private:
  // Shared with an in-flight step; it holds the model alive too.
  struct State {
    std::shared_ptr<ModelState> model;
    std::unique_ptr<HybridOptimizer> opt;
    std::atomic<bool> cancel{false};
  };

  std::shared_ptr<State> live() const {
    if (!state_ || !state_->opt) throw Error("ZOFO_DISPOSED", "this optimizer has been disposed");
    if (!state_->model->model) throw Error("ZOFO_DISPOSED", "the optimizer's model has been disposed");
    return state_;
  }

  // step(ids, positions, mask, B, T, kind, rows, targets, group, candidateExample,
  //      candidateIsLabel, examples, { step, lrX, wdX, lrY, wdY }) → Promise<result>
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      auto batch = std::make_shared<Batch>(batch_from_js(info, 0));
      auto spec = std::make_shared<LossSpec>(loss_spec_from_js(info, 5));
      if (!info[12].IsObject()) throw arg_error("step arguments must be an object");
      const Napi::Object o = info[12].As<Napi::Object>();
      StepArgs args;
      args.step = get_integer(o.Get("step"), "step", 0, int64_t(1) << 53);
      args.lr_x = (float)get_number(o.Get("lrX"), "lrX");
      args.wd_x = (float)get_number(o.Get("wdX"), "wdX");
      args.lr_y = (float)get_number(o.Get("lrY"), "lrY");
      args.wd_y = (float)get_number(o.Get("wdY"), "wdY");
      args.idle = o.Get("idle").ToBoolean();
      s->cancel.store(false);
      auto out = std::make_shared<StepOutcome>();
      auto* w = new PromiseWorker(
          info.Env(),
          [s, batch, spec, args, out] {
        std::lock_guard<std::mutex> guard(s->model->lock);
        if (!s->model->model) throw Error("ZOFO_DISPOSED", "the model was disposed");
        *out = s->opt->step(*batch, *spec, args, &s->cancel);
          },
          [out](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("status", Napi::Number::New(env, (double)out->status));
            o.Set("loss", Napi::Number::New(env, out->loss));
            o.Set("reason", Napi::String::New(env, out->reason));
            auto f64 = [&](const std::vector<double>& v) {
              Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
              for (size_t i = 0; i < v.size(); ++i) a[i] = v[i];
              return a;
            };
            o.Set("scores", f64(out->scores));
            o.Set("perturbed", f64(out->perturbed));
            o.Set("projected", f64(out->projected));
            Napi::BigUint64Array seeds = Napi::BigUint64Array::New(env, out->seeds.size());
            for (size_t i = 0; i < out->seeds.size(); ++i) seeds[i] = out->seeds[i];
            o.Set("seeds", seeds);
            Napi::Float32Array scales = Napi::Float32Array::New(env, out->scales.size());
            for (size_t i = 0; i < out->scales.size(); ++i) scales[i] = out->scales[i];
            o.Set("scales", scales);
            o.Set("etaLambda", Napi::Number::New(env, out->eta_lambda));
            return o;
          },
          {});
      Napi::Value p = w->promise();
      w->Queue();
      return p;
    });
  }

  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    if (state_) state_->cancel.store(true);
    return info.Env().Undefined();
  }

  // moments() → [{ name, length }]
  Napi::Value Moments(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      std::lock_guard<std::mutex> guard(s->model->lock);
      auto list = s->opt->moments();
      Napi::Array out = Napi::Array::New(info.Env(), list.size());
      for (size_t i = 0; i < list.size(); ++i) {
        Napi::Object m = Napi::Object::New(info.Env());
        m.Set("name", list[i].name);
        m.Set("length", Napi::Number::New(info.Env(), (double)list[i].n));
        out.Set((uint32_t)i, m);
      }
      return out;
    });
  }

  // getMoment(name, out Float32Array) / setMoment(name, data Float32Array)
  template <bool Set>
  Napi::Value MomentIO(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto s = live();
      if (!info[0].IsString()) throw arg_error("moment name must be a string");
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      const View data = get_view(info[1], "data");
      if (data.type != napi_float32_array) throw arg_error("moment data must be a Float32Array");
      std::lock_guard<std::mutex> guard(s->model->lock);
      for (const auto& m : s->opt->moments()) {
        if (m.name != name) continue;
        if ((int64_t)data.length != m.n)
          throw arg_error("moment " + name + " holds " + std::to_string(m.n) + " values, got " +
                          std::to_string(data.length));
        Backend& be = s->opt->backend();
        if (Set) be.upload(m.data, static_cast<const float*>(data.data), (size_t)m.n);
        else be.download(static_cast<float*>(data.data), m.data, (size_t)m.n);
        return info.Env().Undefined();
      }
      throw arg_error("this optimizer has no moment named " + name);
    });
  }

  Napi::Value GetFoUpdates(const Napi::CallbackInfo& info) {
    return guarded(info,
                   [&]() -> Napi::Value { return Napi::Number::New(info.Env(), (double)live()->opt->fo_updates()); });
  }
  void SetFoUpdates(const Napi::CallbackInfo& info, const Napi::Value& v) {
    guarded(info, [&]() -> Napi::Value {
      const double t = get_number(v, "foUpdates");
      if (!(t >= 0) || t != (double)(int64_t)t) throw arg_error("foUpdates must be a non-negative integer");
      auto s = live();
      std::lock_guard<std::mutex> guard(s->model->lock);
      s->opt->set_fo_updates((int64_t)t);
      return info.Env().Undefined();
    });
  }

  // stepSeed(runSeed: bigint, k, j) → bigint: s_{k,j}
  static Napi::Value StepSeed(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      const uint64_t seed = get_u64(info[0], "runSeed");
      const int64_t k = get_integer(info[1], "k", 0, int64_t(1) << 53);
      const int64_t j = get_integer(info[2], "j", 0, UINT32_MAX);
      return Napi::BigInt::New(info.Env(), HybridOptimizer::step_seed(seed, k, (int)(uint32_t)j));
    });
  }

  // Drops this wrap's reference: the moments are freed once no step holds the state.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<State> state_;
};

}  // namespace

Napi::Function optimizer_class(Napi::Env env) { return OptimizerWrap::Define(env); }

}  // namespace zofo::addon
