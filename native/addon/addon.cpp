// N-API binding of the CPU backend. The TypeScript layer (lib/kernels.ts) validates
// options and builds clear messages; this layer re-checks everything it relies on
// (types, lengths, detached or shared buffers) because it is the last line before
// raw pointers. C++ exceptions become JS Errors carrying `code`.
#include <napi.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../common/dtype.h"
#include "../common/error.h"
#include "../common/param_table.h"
#include "../common/philox.h"
#include "../cpu/backend_cpu.h"
#include "../cpu/matmul.h"
#include "../cpu/parallel.h"
#include "../cpu/perturb.h"
#include "../cpu/philox_chunk.h"
#include "../io/mapped_file.h"
#include "model_wrap.h"
#include "napi_util.h"

// This addon runs models on the CPU only; zofo_cuda.node (addon_cuda.cpp) adds devices.
zofo::Backend& zofo::addon::choose_backend(const std::string& device, zofo::Compute compute,
                                           std::unique_ptr<zofo::Backend>&) {
  if (device == "cpu") return zofo::cpu::cpu_backend(compute);
  if (device.rfind("cuda", 0) == 0)
    throw zofo::Error("ZOFO_CUDA",
                      "device '" + device + "' needs the CUDA addon (zofo_cuda.node); this is the CPU addon");
  throw zofo::addon::arg_error("unknown device '" + device + "' (expected 'cpu' or 'cuda')");
}

namespace {

using namespace zofo::addon;
using zofo::DType;
using zofo::ParamEntry;

// ---- generator ----

Napi::Value Philox4x32(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const View ctr = get_view(info[0], "counter"), key = get_view(info[1], "key");
    if (ctr.type != napi_uint32_array || ctr.length != 4) throw arg_error("counter must be a Uint32Array of 4 words");
    if (key.type != napi_uint32_array || key.length != 2) throw arg_error("key must be a Uint32Array of 2 words");
    uint32_t c[4], k[2];
    memcpy(c, ctr.data, sizeof c);
    memcpy(k, key.data, sizeof k);
    const zofo::PhiloxKeys keys = zofo::philox_keys((uint64_t)k[0] | ((uint64_t)k[1] << 32));
    zofo::philox4x32_10<uint32_t>(c[0], c[1], c[2], c[3], keys);
    Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), 4);
    memcpy(out.Data(), c, sizeof c);
    return out;
  });
}

// Philox words of kChunkBlocks consecutive blocks, by the portable or the fastest
// implementation: lets tests prove the SIMD path equals the reference.
Napi::Value PhiloxChunk(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const uint64_t seed = get_u64(info[0], "seed"), stream = get_u64(info[1], "stream"),
                   block = get_u64(info[2], "block");
    const bool best = info[3].ToBoolean();
    const zofo::PhiloxKeys keys = zofo::philox_keys(seed);
    uint32_t words[4][zofo::cpu::kChunkBlocks];
    (best ? zofo::cpu::philox_chunk_best() : zofo::cpu::philox_chunk_portable)(keys, stream, block, words);
    Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), 4 * zofo::cpu::kChunkBlocks);
    memcpy(out.Data(), words, sizeof words);
    return out;
  });
}

Napi::Value Fnv1a64(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!info[0].IsString()) throw arg_error("name must be a string");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    return Napi::BigInt::New(info.Env(), zofo::fnv1a64(name.data(), name.size()));
  });
}

// gaussian(seed, stream, first, out: Float32Array, threads)
Napi::Value Gaussian(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const GaussianArgs g = get_gaussian_args(info);
    zofo::cpu::gaussian(g.seed, g.stream, g.first, g.count, g.out, get_threads(info[4]));
    return info.Env().Undefined();
  });
}

// ---- fused perturbation / restore+update ----

struct AxpbyArgs {
  DType dtype;
  void* data;
  size_t n_elems;
  std::vector<ParamEntry> table;
  uint64_t seed;
  float a, eta_lambda;
  int threads;
};

AxpbyArgs get_axpby_args(const Napi::CallbackInfo& info) {
  const View x = get_view(info[0], "weights");
  AxpbyArgs args;
  args.dtype = get_dtype(info[1], x);
  args.data = x.data;
  args.n_elems = x.length;
  args.table = get_table(info[2], info[3]);
  args.seed = get_u64(info[4], "seed");
  args.a = (float)get_number(info[5], "scale");
  args.eta_lambda = (float)get_number(info[6], "lr·weightDecay");
  args.threads = get_threads(info[7]);
  zofo::validate_param_table(args.table.data(), args.table.size(), args.n_elems);
  return args;
}

void run_axpby(const AxpbyArgs& a) {
  zofo::cpu::restore_update(a.dtype, a.data, a.n_elems, a.table.data(), a.table.size(), a.seed, a.a, a.eta_lambda,
                            a.threads);
}

// axpby(weights, dtype, table, decay, seed, a, etaLambda, threads): x ← (1 − ηλ·mask)x + a·z
Napi::Value Axpby(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    run_axpby(get_axpby_args(info));
    return info.Env().Undefined();
  });
}

// ---- matmul ----

// sgemm(transA, transB, M, N, K, alpha, A, B, beta, C, impl: 0 auto | 1 blas | 2 builtin, threads,
//       compute: 0 fp32 | 1 tf32 | 2 bf16 operands)
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const bool ta = info[0].ToBoolean(), tb = info[1].ToBoolean();
    const double M = get_number(info[2], "M"), N = get_number(info[3], "N"), K = get_number(info[4], "K");
    for (double d : {M, N, K})
      if (!(d >= 0 && d < 2147483648.0) || d != (double)(int64_t)d)
        throw arg_error("matmul sizes must be integers in 0..2^31-1");
    const View A = get_view(info[6], "A"), B = get_view(info[7], "B"), C = get_view(info[9], "C");
    for (const View* v : {&A, &B, &C})
      if (v->type != napi_float32_array) throw arg_error("matmul operands must be Float32Arrays");
    const int64_t m = (int64_t)M, n = (int64_t)N, k = (int64_t)K;
    if ((int64_t)A.length < m * k || (int64_t)B.length < k * n || (int64_t)C.length < m * n)
      throw arg_error("matmul operand too short for (M, N, K) = (" + std::to_string(m) + ", " + std::to_string(n) +
                      ", " + std::to_string(k) + ")");
    const double impl = get_number(info[10], "impl");
    const auto which = impl == 1   ? zofo::cpu::MatmulImpl::Blas
                       : impl == 2 ? zofo::cpu::MatmulImpl::Builtin
                                   : zofo::cpu::MatmulImpl::Auto;
    const double compute = info.Length() > 12 && !info[12].IsUndefined() ? get_number(info[12], "compute") : 0;
    if (compute != 0 && compute != 1 && compute != 2)
      throw arg_error("compute code must be 0 (fp32), 1 (tf32) or 2 (bf16)");
    zofo::cpu::sgemm_compute((zofo::Compute)(int)compute, ta, tb, m, n, k, (float)get_number(info[5], "alpha"),
                             static_cast<float*>(A.data), ta ? m : k, static_cast<float*>(B.data), tb ? k : n,
                             (float)get_number(info[8], "beta"), static_cast<float*>(C.data), n, which,
                             get_threads(info[11]));
    return info.Env().Undefined();
  });
}

// ---- benchmark baselines (not public API) ----

// dst ← src, threaded: the memory-copy limit.
Napi::Value BenchCopy(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const View dst = get_view(info[0], "dst"), src = get_view(info[1], "src");
    if (dst.type != src.type || dst.length != src.length) throw arg_error("dst and src must match");
    const size_t width = dst.type == napi_float32_array ? 4 : 2;
    zofo::cpu::parallel_ranges(dst.length * width, get_threads(info[2]), 1 << 20, [&](uint64_t lo, uint64_t hi) {
      memcpy(static_cast<uint8_t*>(dst.data) + lo, static_cast<const uint8_t*>(src.data) + lo, hi - lo);
    });
    return info.Env().Undefined();
  });
}

// x ← s·x in place, threaded: the read+write streaming limit.
Napi::Value BenchScale(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const View x = get_view(info[0], "x");
    if (x.type != napi_float32_array) throw arg_error("x must be a Float32Array");
    const float s = (float)get_number(info[1], "s");
    float* p = static_cast<float*>(x.data);
    zofo::cpu::parallel_ranges(x.length, get_threads(info[2]), 1 << 16, [&](uint64_t lo, uint64_t hi) {
      for (uint64_t i = lo; i < hi; ++i) p[i] *= s;
    });
    return info.Env().Undefined();
  });
}

// MeZO-style: materialise z for the whole tensor into a scratch buffer, then a second
// pass x += a·z. The scratch is preallocated by the caller, so the baseline pays no
// allocation or page faults: the strongest version of it.
Napi::Value BenchMaterializeAxpy(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const View x = get_view(info[0], "x");
    const View z = get_view(info[1], "scratch");
    if (z.type != napi_float32_array || z.length != x.length)
      throw arg_error("scratch must be a Float32Array as long as x");
    const uint64_t seed = get_u64(info[2], "seed"), stream = get_u64(info[3], "stream");
    const float a = (float)get_number(info[4], "a");
    const int threads = get_threads(info[5]);
    float* zs = static_cast<float*>(z.data);
    zofo::cpu::gaussian(seed, stream, 0, x.length, zs, threads);
    zofo::cpu::axpy_materialized(x.type == napi_float32_array ? DType::F32 : DType::BF16, x.data, zs, x.length, a,
                                 threads);
    return info.Env().Undefined();
  });
}

// axpby off the JS thread (see PromiseWorker): the weights' ArrayBuffer is held by a
// reference until the work completes, so it cannot be collected under us.
Napi::Value AxpbyAsync(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    auto args = std::make_shared<AxpbyArgs>(get_axpby_args(info));
    auto* worker = new PromiseWorker(
        info.Env(), [args] { run_axpby(*args); }, info[0]);
    Napi::Value p = worker->promise();
    worker->Queue();
    return p;
  });
}

// ---- checkpoint files (lib/formats/safetensors.ts decides which ranges are tensors) ----

// A byte offset or count from JS: a non-negative safe integer.
uint64_t get_byte_count(const Napi::Value& v, const char* what) {
  const double d = get_number(v, what);
  if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(uint64_t)d)
    throw arg_error(std::string(what) + " must be a non-negative safe integer");
  return (uint64_t)d;
}

// new MappedFile(path): .size, .mapped, .readRaw(offset, out: Uint8Array),
// .readF32(offset, nbytes, dtype 0 f32 | 1 bf16 | 2 f16, out: Float32Array) (both
// return Promises), .close(). Reads share ownership of the file, so close() during a
// read unmaps only when that read ends; the finalizer is the safety net for a
// forgotten close().
class FileWrap : public Napi::ObjectWrap<FileWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "MappedFile",
                       {InstanceAccessor<&FileWrap::Size>("size"), InstanceAccessor<&FileWrap::Mapped>("mapped"),
                        InstanceMethod<&FileWrap::ReadRaw>("readRaw"), InstanceMethod<&FileWrap::ReadF32>("readF32"),
                        InstanceMethod<&FileWrap::Close>("close")});
  }

  explicit FileWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FileWrap>(info) {
    guarded(info, [&]() -> Napi::Value {
      if (!info[0].IsString()) throw arg_error("path must be a string");
      file_ = std::make_shared<zofo::io::MappedFile>(info[0].As<Napi::String>().Utf8Value());
      return info.Env().Undefined();
    });
  }

 private:
  std::shared_ptr<zofo::io::MappedFile> open_file() const {
    if (!file_) throw zofo::Error("ZOFO_CLOSED", "file " + closed_path_ + " was closed");
    return file_;
  }

  Napi::Value Size(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), (double)open_file()->size()); });
  }
  Napi::Value Mapped(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), open_file()->mapped()); });
  }

  // readRaw(offset, out: Uint8Array): out ← bytes [offset, offset + out.length).
  Napi::Value ReadRaw(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto file = open_file();
      const uint64_t offset = get_byte_count(info[0], "offset");
      const View out = get_view(info[1], "out");
      if (out.type != napi_uint8_array) throw arg_error("out must be a Uint8Array");
      file->check_range(offset, out.length);
      void* dst = out.data;
      const uint64_t n = out.length;
      return queue([file, offset, n, dst] { file->read(offset, n, dst); }, info[1]);
    });
  }

  // readF32(offset, nbytes, dtype, out: Float32Array): nbytes must be out.length · width.
  Napi::Value ReadF32(const Napi::CallbackInfo& info) {
    return guarded(info, [&]() -> Napi::Value {
      auto file = open_file();
      const uint64_t offset = get_byte_count(info[0], "offset"), nbytes = get_byte_count(info[1], "nbytes");
      const double code = get_number(info[2], "dtype");
      if (code != 0 && code != 1 && code != 2) throw arg_error("dtype code must be 0 (f32), 1 (bf16) or 2 (f16)");
      const DType dtype = static_cast<DType>((int)code);
      const View out = get_view(info[3], "out");
      if (out.type != napi_float32_array) throw arg_error("out must be a Float32Array");
      if (nbytes != out.length * zofo::dtype_size(dtype))
        throw arg_error("nbytes " + std::to_string(nbytes) + " does not match out (" + std::to_string(out.length) +
                        " elements of " + zofo::dtype_name(dtype) + ")");
      file->check_range(offset, nbytes);
      float* dst = static_cast<float*>(out.data);
      const uint64_t count = out.length;
      return queue([file, offset, dtype, count, dst] { file->read_f32(offset, dtype, count, dst, 0); }, info[3]);
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (file_) closed_path_ = file_->path();
    file_.reset();
    return info.Env().Undefined();
  }

  Napi::Value queue(std::function<void()> work, Napi::Value out) {
    auto* worker = new PromiseWorker(Env(), std::move(work), out);
    Napi::Value p = worker->promise();
    worker->Queue();
    return p;
  }

  std::shared_ptr<zofo::io::MappedFile> file_;
  std::string closed_path_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  register_env(env);
  exports.Set("backend", Napi::String::New(env, "cpu"));
  exports.Set("simd", Napi::String::New(env, zofo::cpu::simd_level()));
  exports.Set("philoxImpl", Napi::String::New(env, zofo::cpu::philox_chunk_best_name()));
  exports.Set("blas", Napi::String::New(env, zofo::cpu::blas_name()));
  exports.Set("defaultThreads", Napi::Number::New(env, zofo::cpu::default_threads()));
  exports.Set("philox4x32", Napi::Function::New(env, Philox4x32, "philox4x32"));
  exports.Set("philoxChunk", Napi::Function::New(env, PhiloxChunk, "philoxChunk"));
  exports.Set("philoxChunkBlocks", Napi::Number::New(env, zofo::cpu::kChunkBlocks));
  exports.Set("fnv1a64", Napi::Function::New(env, Fnv1a64, "fnv1a64"));
  exports.Set("gaussian", Napi::Function::New(env, Gaussian, "gaussian"));
  exports.Set("axpby", Napi::Function::New(env, Axpby, "axpby"));
  exports.Set("ops", model_ops(env));
  exports.Set("NativeModel", model_class(env));
  exports.Set("NativeOptimizer", optimizer_class(env));
  exports.Set("axpbyAsync", Napi::Function::New(env, AxpbyAsync, "axpbyAsync"));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  exports.Set("benchCopy", Napi::Function::New(env, BenchCopy, "benchCopy"));
  exports.Set("benchScale", Napi::Function::New(env, BenchScale, "benchScale"));
  exports.Set("benchMaterializeAxpy", Napi::Function::New(env, BenchMaterializeAxpy, "benchMaterializeAxpy"));
  exports.Set("MappedFile", FileWrap::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(zofo_cpu, Init)
