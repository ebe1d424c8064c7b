// What the model and optimizer wraps share: the model's state (kept alive by
// in-flight work), and the conversions of batches and loss specs from JS.
#pragma once

#include <napi.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../engine/transformer.h"
#include "napi_util.h"

namespace zofo::addon {

// One mutex per model serialises forwards, steps and weight writes. A model on a
// device owns its backend (stream, memory pool); it is destroyed after the model.
struct ModelState {
  std::mutex lock;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> model;
};

// The backend a new model runs on, by device name ("cpu", "cuda", "cuda:N"), with its
// matmuls at precision `compute` (set before the first forward). Each addon links its
// own definition: addon.cpp (CPU only) and addon_cuda.cpp. A backend it creates is
// handed to `owned`; the CPU ones (one per compute precision) are shared.
Backend& choose_backend(const std::string& device, Compute compute, std::unique_ptr<Backend>& owned);

// The live state behind a JS NativeModel (throws ZOFO_DISPOSED / invalid argument).
std::shared_ptr<ModelState> model_state_of(const Napi::Value& v);

// Batch from (ids Int32Array, positions Int32Array, mask Uint8Array, B, T) at info[first..].
Batch batch_from_js(const Napi::CallbackInfo& info, int first);
// LossSpec from (kind, rows, targets, group, candidateExample, candidateIsLabel, examples) at info[first..].
LossSpec loss_spec_from_js(const Napi::CallbackInfo& info, int first);

template <class T>
std::vector<T> copy_array(const Napi::Value& v, const char* what, napi_typedarray_type type) {
  const View view = get_view(v, what);
  if (view.type != type) throw arg_error(std::string(what) + " has the wrong typed-array type");
  const T* p = static_cast<const T*>(view.data);
  return std::vector<T>(p, p + view.length);
}

Napi::Function optimizer_class(Napi::Env env);

}  // namespace zofo::addon
