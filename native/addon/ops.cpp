// N-API glue for the CPU model kernels (norms, RoPE, activations, attention): the
// `ops` object of the CPU addon. Not public API: the tests drive each kernel directly
// against float64 references and finite differences. Every array is checked for
// type and length before any pointer is used.
#include <string>

#include "../cpu/activation.h"
#include "../cpu/attention.h"
#include "../cpu/norm.h"
#include "../cpu/rope.h"
#include "napi_util.h"

namespace zofo::addon {

namespace {

int64_t get_size(const Napi::Value& v, const char* what) {
  const double d = get_number(v, what);
  if (!(d >= 1 && d <= 1e12) || d != (double)(int64_t)d)
    throw arg_error(std::string(what) + " must be a positive integer");
  return (int64_t)d;
}

template <class T>
T* array_of(const Napi::Value& v, const char* what, napi_typedarray_type type, int64_t need, bool optional = false) {
  if (optional && (v.IsNull() || v.IsUndefined())) return nullptr;
  const View view = get_view(v, what);
  if (view.type != type) throw arg_error(std::string(what) + " has the wrong typed-array type");
  if ((int64_t)view.length < need)
    throw arg_error(std::string(what) + " has " + std::to_string(view.length) + " elements, needs " +
                    std::to_string(need));
  return static_cast<T*>(view.data);
}

float* f32(const Napi::CallbackInfo& info, int i, const char* what, int64_t need, bool optional = false) {
  return array_of<float>(info[i], what, napi_float32_array, need, optional);
}

Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[4], "N"), C = get_size(info[5], "C");
    cpu::rmsnorm_forward(f32(info, 0, "out", N * C), f32(info, 1, "rstd", N), f32(info, 2, "inp", N * C),
                         f32(info, 3, "weight", C), N, C, (float)get_number(info[6], "eps"));
    return info.Env().Undefined();
  });
}

Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[6], "N"), C = get_size(info[7], "C");
    cpu::rmsnorm_backward(f32(info, 0, "dinp", N * C), f32(info, 1, "dweight", C, true), f32(info, 2, "dout", N * C),
                          f32(info, 3, "inp", N * C), f32(info, 4, "weight", C), f32(info, 5, "rstd", N), N, C);
    return info.Env().Undefined();
  });
}

Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[6], "N"), C = get_size(info[7], "C");
    cpu::layernorm_forward(f32(info, 0, "out", N * C), f32(info, 1, "mean", N), f32(info, 2, "rstd", N),
                           f32(info, 3, "inp", N * C), f32(info, 4, "weight", C), f32(info, 5, "bias", C, true), N, C,
                           (float)get_number(info[8], "eps"));
    return info.Env().Undefined();
  });
}

Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[8], "N"), C = get_size(info[9], "C");
    cpu::layernorm_backward(f32(info, 0, "dinp", N * C), f32(info, 1, "dweight", C, true),
                            f32(info, 2, "dbias", C, true), f32(info, 3, "dout", N * C), f32(info, 4, "inp", N * C),
                            f32(info, 5, "weight", C), f32(info, 6, "mean", N), f32(info, 7, "rstd", N), N, C);
    return info.Env().Undefined();
  });
}

// rope(x, positions, B, T, NH, HS, theta, backward)
Napi::Value Rope(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t B = get_size(info[2], "B"), T = get_size(info[3], "T"), NH = get_size(info[4], "NH"),
                  HS = get_size(info[5], "HS");
    if (HS % 2) throw arg_error("HS must be even for RoPE");
    float* x = f32(info, 0, "x", B * T * NH * HS);
    const int32_t* pos = array_of<int32_t>(info[1], "positions", napi_int32_array, B * T);
    const float theta = (float)get_number(info[6], "theta");
    if (info[7].ToBoolean()) cpu::rope_backward(x, pos, B, T, NH, HS, theta);
    else cpu::rope_forward(x, pos, B, T, NH, HS, theta);
    return info.Env().Undefined();
  });
}

// activation(kind, ...): kind 0 gelu_new, 1 relu; forward(out, inp, N) / backward(dinp, inp, dout, N)
Napi::Value ActivationForward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[3], "N");
    float* out = f32(info, 1, "out", N);
    const float* inp = f32(info, 2, "inp", N);
    const double kind = get_number(info[0], "kind");
    if (kind == 0) cpu::gelu_new_forward(out, inp, N);
    else if (kind == 1) cpu::relu_forward(out, inp, N);
    else throw arg_error("activation kind must be 0 (gelu_new) or 1 (relu)");
    return info.Env().Undefined();
  });
}

Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[4], "N");
    float* dinp = f32(info, 1, "dinp", N);
    const float* inp = f32(info, 2, "inp", N);
    const float* dout = f32(info, 3, "dout", N);
    const double kind = get_number(info[0], "kind");
    if (kind == 0) cpu::gelu_new_backward(dinp, inp, dout, N);
    else if (kind == 1) cpu::relu_backward(dinp, inp, dout, N);
    else throw arg_error("activation kind must be 0 (gelu_new) or 1 (relu)");
    return info.Env().Undefined();
  });
}

// swigluForward(out, gate, up, N); swigluBackward(dgate, dup, gate, up, dout, N)
Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[3], "N");
    cpu::swiglu_forward(f32(info, 0, "out", N), f32(info, 1, "gate", N), f32(info, 2, "up", N), N);
    return info.Env().Undefined();
  });
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int64_t N = get_size(info[5], "N");
    cpu::swiglu_backward(f32(info, 0, "dgate", N), f32(info, 1, "dup", N), f32(info, 2, "gate", N),
                         f32(info, 3, "up", N), f32(info, 4, "dout", N), N);
    return info.Env().Undefined();
  });
}

struct AttentionShape {
  int64_t B, T, NH, NKV, HS;
  int64_t q() const { return B * T * NH * HS; }
  int64_t kv() const { return B * T * NKV * HS; }
  int64_t att() const { return B * NH * T * T; }
};

AttentionShape get_attention_shape(const Napi::CallbackInfo& info, int first) {
  AttentionShape s{get_size(info[first], "B"), get_size(info[first + 1], "T"), get_size(info[first + 2], "NH"),
                   get_size(info[first + 3], "NKV"), get_size(info[first + 4], "HS")};
  if (s.NH % s.NKV) throw arg_error("NH must be a multiple of NKV");
  return s;
}

// attentionForward(out, att, q, k, v, mask, B, T, NH, NKV, HS, scale)
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const AttentionShape s = get_attention_shape(info, 6);
    cpu::attention_forward(f32(info, 0, "out", s.q()), f32(info, 1, "att", s.att()), f32(info, 2, "q", s.q()),
                           f32(info, 3, "k", s.kv()), f32(info, 4, "v", s.kv()),
                           array_of<uint8_t>(info[5], "mask", napi_uint8_array, s.B * s.T), s.B, s.T, s.NH, s.NKV, s.HS,
                           (float)get_number(info[11], "scale"));
    return info.Env().Undefined();
  });
}

// attentionBackward(dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, HS, scale)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const AttentionShape s = get_attention_shape(info, 8);
    cpu::attention_backward(f32(info, 0, "dq", s.q()), f32(info, 1, "dk", s.kv()), f32(info, 2, "dv", s.kv()),
                            f32(info, 3, "dout", s.q()), f32(info, 4, "att", s.att()), f32(info, 5, "q", s.q()),
                            f32(info, 6, "k", s.kv()), f32(info, 7, "v", s.kv()), s.B, s.T, s.NH, s.NKV, s.HS,
                            (float)get_number(info[13], "scale"));
    return info.Env().Undefined();
  });
}

}  // namespace

Napi::Object model_ops(Napi::Env env) {
  Napi::Object ops = Napi::Object::New(env);
  ops.Set("rmsnormForward", Napi::Function::New(env, RmsnormForward, "rmsnormForward"));
  ops.Set("rmsnormBackward", Napi::Function::New(env, RmsnormBackward, "rmsnormBackward"));
  ops.Set("layernormForward", Napi::Function::New(env, LayernormForward, "layernormForward"));
  ops.Set("layernormBackward", Napi::Function::New(env, LayernormBackward, "layernormBackward"));
  ops.Set("rope", Napi::Function::New(env, Rope, "rope"));
  ops.Set("activationForward", Napi::Function::New(env, ActivationForward, "activationForward"));
  ops.Set("activationBackward", Napi::Function::New(env, ActivationBackward, "activationBackward"));
  ops.Set("swigluForward", Napi::Function::New(env, SwigluForward, "swigluForward"));
  ops.Set("swigluBackward", Napi::Function::New(env, SwigluBackward, "swigluBackward"));
  ops.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  ops.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  return ops;
}

}  // namespace zofo::addon
