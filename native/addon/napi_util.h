// Argument helpers shared by the CPU and CUDA bindings: typed, bounds-aware reads
// of JS values, and the mapping of C++ exceptions to JS Errors carrying `code`.
#pragma once

#include <napi.h>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "../common/dtype.h"
#include "../common/error.h"
#include "../common/param_table.h"

namespace zofo::addon {

using zofo::DType;
using zofo::ParamEntry;

inline Napi::Error coded_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

// Runs fn, turning zofo::Error / std::exception into JS exceptions with a code.
template <class Fn>
Napi::Value guarded(const Napi::CallbackInfo& info, Fn fn) {
  Napi::Env env = info.Env();
  try {
    return fn();
  } catch (const Napi::Error&) { throw; } catch (const zofo::Error& e) {
    throw coded_error(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throw coded_error(env, "ZOFO_OUT_OF_MEMORY", "zofo: out of memory");
  } catch (const std::exception& e) { throw coded_error(env, "ZOFO_INTERNAL", e.what()); }
}

inline zofo::Error arg_error(const std::string& message) { return zofo::invalid_arg(message); }

inline uint64_t get_u64(const Napi::Value& v, const char* what) {
  if (!v.IsBigInt()) throw arg_error(std::string(what) + " must be a bigint");
  bool lossless = false;
  const uint64_t out = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw arg_error(std::string(what) + " does not fit in an unsigned 64-bit integer");
  return out;
}

inline double get_number(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw arg_error(std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// An integer in [lo, hi]. Casting a NaN or out-of-range double to an integer is
// undefined behaviour, so every count from JS comes through here.
inline int64_t get_integer(const Napi::Value& v, const char* what, int64_t lo, int64_t hi) {
  const double d = get_number(v, what);
  if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d)
    throw arg_error(std::string(what) + " must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
  return (int64_t)d;
}

inline int get_threads(const Napi::Value& v) {
  if (v.IsUndefined()) return 0;
  const double t = get_number(v, "threads");
  if (!(t >= 0 && t <= 4096) || t != (double)(int)t) throw arg_error("threads must be an integer in 0..4096");
  return (int)t;
}

// A typed array whose memory we may touch: not detached, not shared.
struct View {
  void* data;
  size_t length;  // elements
  napi_typedarray_type type;
};

inline View get_view(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) throw arg_error(std::string(what) + " must be a typed array");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  Napi::Value backing = ta.Get("buffer");
  if (!backing.IsArrayBuffer())
    throw arg_error(std::string(what) + " is backed by a SharedArrayBuffer; zofo only writes to unshared memory");
  Napi::ArrayBuffer ab = backing.As<Napi::ArrayBuffer>();
  if (ab.IsDetached()) throw arg_error(std::string(what) + " is backed by a detached ArrayBuffer");
  return View{static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset(), ta.ElementLength(), ta.TypedArrayType()};
}

inline DType get_dtype(const Napi::Value& v, const View& view) {
  const double d = get_number(v, "dtype");
  if (d == 0) {
    if (view.type != napi_float32_array) throw arg_error("dtype f32 needs a Float32Array");
    return DType::F32;
  }
  if (d == 1 || d == 2) {
    if (view.type != napi_uint16_array) throw arg_error("dtype bf16/f16 needs a Uint16Array");
    return d == 1 ? DType::BF16 : DType::F16;
  }
  throw arg_error("dtype code must be 0 (f32), 1 (bf16) or 2 (f16)");
}

// Table from a BigUint64Array of rows (offset, count, stream, first) + Float32Array decay.
inline std::vector<ParamEntry> get_table(const Napi::Value& rows_v, const Napi::Value& decay_v) {
  const View rows = get_view(rows_v, "table");
  const View decay = get_view(decay_v, "decay");
  if (rows.type != napi_biguint64_array) throw arg_error("table must be a BigUint64Array");
  if (decay.type != napi_float32_array) throw arg_error("decay must be a Float32Array");
  if (rows.length % 4 != 0 || rows.length / 4 != decay.length)
    throw arg_error("table must hold 4 values per entry and decay one per entry");
  std::vector<ParamEntry> table(decay.length);
  const uint64_t* r = static_cast<const uint64_t*>(rows.data);
  const float* dm = static_cast<const float*>(decay.data);
  for (size_t i = 0; i < table.size(); ++i)
    table[i] = ParamEntry{r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3], dm[i]};
  return table;
}

// Per-environment state of an addon (napi instance data): `closing` is set by an env
// cleanup hook when the environment (main thread, worker thread, Electron window) is
// torn down, so late completions know not to reach for JS.
struct EnvState {
  std::atomic<bool> closing{false};
};

// Called once from each addon's Init: instance data + the cleanup hook. Never throws:
// registration may happen in an environment that is already terminating.
inline void register_env(napi_env env) {
  auto* state = new EnvState();
  if (napi_set_instance_data(
          env, state, [](napi_env, void* data, void*) { delete static_cast<EnvState*>(data); }, nullptr) != napi_ok) {
    delete state;
    return;
  }
  napi_add_env_cleanup_hook(
      env, [](void* data) { static_cast<EnvState*>(data)->closing.store(true); }, state);
}

// True once the environment has begun its teardown. Without instance data (its
// registration failed) this says false: completions then rely on never throwing.
inline bool env_closing(napi_env env) {
  void* data = nullptr;
  if (napi_get_instance_data(env, &data) != napi_ok || data == nullptr) return false;
  return static_cast<EnvState*>(data)->closing.load();
}

// Runs work() off the JS thread (it must not touch V8), then settles a promise: resolved
// with to_js(env) on the JS thread, or rejected with a coded Error. `keep` holds the
// typed arrays the work reads or writes, so they cannot be collected under it.
//
// The completion never throws. When the environment is being torn down (worker.terminate()
// with this work in flight) nothing may run JS and every napi call fails; a C++
// exception escaping the completion would abort the whole process. Such a completion is
// dropped: the promise dies with its environment. The work itself always finishes
// (a kernel cannot be interrupted), and the env's teardown waits for it.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> to_js,
                std::vector<Napi::Value> keep)
      : Napi::AsyncWorker(env), work_(std::move(work)), to_js_(std::move(to_js)) {
    if (napi_create_promise(env, &deferred_, &promise_) != napi_ok) throw Napi::Error::New(env);
    for (auto& v : keep)
      if (v.IsObject()) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  // A worker whose promise resolves to undefined.
  PromiseWorker(Napi::Env env, std::function<void()> work, Napi::Value keep)
      : PromiseWorker(env, std::move(work), [](Napi::Env e) { return e.Undefined(); }, {keep}) {}
  Napi::Value promise() { return Napi::Value(Env(), promise_); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const zofo::Error& e) { fail(e.code, e.what()); } catch (const std::bad_alloc&) {
      fail("ZOFO_OUT_OF_MEMORY", "out of memory");
    } catch (const std::exception& e) { fail("ZOFO_INTERNAL", e.what()); } catch (...) {
      fail("ZOFO_INTERNAL", "unknown native exception");
    }
  }

  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status != napi_cancelled && !env_closing(env)) {
      try {
        Napi::HandleScope scope(env);
        if (!failed_) napi_resolve_deferred(env, deferred_, to_js_(env));
        else napi_reject_deferred(env, deferred_, coded_error(env, code_, message_).Value());
      } catch (...) {
        // The environment began closing under us: nobody is left to see the result.
      }
    }
    // (A deferred never settled is reclaimed with its environment.)
    Destroy();
  }
  void OnOK() override {}
  void OnError(const Napi::Error&) override {}

 private:
  void fail(std::string code, std::string message) {
    failed_ = true;
    code_ = std::move(code);
    message_ = std::move(message);
  }

  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> to_js_;
  napi_deferred deferred_ = nullptr;
  napi_value promise_ = nullptr;
  std::vector<Napi::ObjectReference> keep_;
  bool failed_ = false;
  std::string code_, message_;
};

// Arguments of gaussian(seed, stream, offset, out: Float32Array, ...), both backends.
struct GaussianArgs {
  uint64_t seed, stream, first;
  float* out;
  size_t count;
};

inline GaussianArgs get_gaussian_args(const Napi::CallbackInfo& info) {
  GaussianArgs g;
  g.seed = get_u64(info[0], "seed");
  g.stream = get_u64(info[1], "stream");
  g.first = get_u64(info[2], "offset");
  const View out = get_view(info[3], "out");
  if (out.type != napi_float32_array) throw arg_error("out must be a Float32Array");
  g.out = static_cast<float*>(out.data);
  g.count = out.length;
  return g;
}

// The `ops` object (native/addon/ops.cpp): the CPU model kernels, for tests.
Napi::Object model_ops(Napi::Env env);

// The NativeModel class (native/addon/model.cpp): the model engine.
Napi::Function model_class(Napi::Env env);

}  // namespace zofo::addon
