// N-API binding of the communicator: zofo_comm.node, a separate binary that links
// libmpi (and, with ZOFO_NCCL, NCCL), so that the CPU addon never depends on them.
// lib/distributed/binding.ts loads it lazily; lib/distributed/communicator.ts is its
// typed face.
//
//   init() → { rank, size, threadLevel, timeout, device, handle }
//   allreduce(Float32Array | Float64Array, what) → Promise   in-place sum over ranks
//   broadcast(TypedArray, root, what) → Promise               in-place, from root
//   barrier(what) → Promise
//   enableDevice(cudaDevice)                                  NCCL for device buffers
//   abort(message, code)                                      ends every rank (MPI_Abort)
//   stats() → { calls, bytes, seconds }                      collectives so far
//   finalize()
//   library: MPI's library version string; nccl: built with NCCL
//   ncclSelfTest(device, n) → ""  (NCCL builds only)
//
// `handle` is an object tagged with kCommunicatorTag holding an External to the
// zofo::Communicator: the optimizer (in another addon) reads the pointer from it.
#include <dlfcn.h>
#include <mpi.h>
#include <napi.h>

#include <string>

#include "../addon/napi_util.h"
#include "mpi_communicator.h"
#ifdef ZOFO_NCCL
#include "nccl_channel.h"
#endif

namespace {

using namespace zofo::addon;
using zofo::comm::MpiCommunicator;

// Open MPI loads its plugins with dlopen and expects libmpi's symbols to be global;
// Node loads addons (and so libmpi) RTLD_LOCAL. Promote the already-loaded libmpi.
void promote_libmpi() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
}

MpiCommunicator& live_world() {
  if (!zofo::comm::world_live())
    throw zofo::Error("ZOFO_INVALID_STATE", "the communicator is not initialised (call init() first) or was finalised");
  return zofo::comm::world();
}

std::string what_of(const Napi::Value& v, const char* fallback) {
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(fallback);
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    MpiCommunicator& c = zofo::comm::world();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rank", Napi::Number::New(env, c.rank()));
    o.Set("size", Napi::Number::New(env, c.size()));
    o.Set("threadLevel", Napi::String::New(env, c.thread_level() == MPI_THREAD_MULTIPLE ? "multiple" : "serialized"));
    o.Set("timeout", Napi::Number::New(env, c.timeout_seconds()));
    Napi::Object handle = Napi::Object::New(env);
    const napi_type_tag tag = {zofo::kCommunicatorTagLower, zofo::kCommunicatorTagUpper};
    if (napi_type_tag_object(env, handle, &tag) != napi_ok)
      throw zofo::Error("ZOFO_INTERNAL", "could not tag the communicator handle");
    handle.Set("pointer", Napi::External<zofo::Communicator>::New(env, &c));
    handle.Freeze();
    o.Set("handle", handle);
    return o;
  });
}

// The typed array's memory and MPI datatype; only fp32 and fp64 are summed.
Napi::Value Allreduce(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    MpiCommunicator& c = live_world();
    const View v = get_view(info[0], "buffer");
    if (v.type != napi_float32_array && v.type != napi_float64_array)
      throw arg_error("allreduce sums a Float32Array or a Float64Array");
    const std::string what = what_of(info[1], "allreduce");
    auto* w = new PromiseWorker(
        info.Env(),
        [&c, v, what] {
      if (v.type == napi_float32_array) c.allreduce_sum(static_cast<float*>(v.data), v.length, what.c_str());
      else c.allreduce_sum(static_cast<double*>(v.data), v.length, what.c_str());
        },
        info[0]);
    Napi::Value p = w->promise();
    w->Queue();
    return p;
  });
}

Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    MpiCommunicator& c = live_world();
    const View v = get_view(info[0], "buffer");
    const size_t bytes = info[0].As<Napi::TypedArray>().ByteLength();
    const double root = get_number(info[1], "root");
    if (root != (double)(int)root) throw arg_error("root must be an integer rank");
    const std::string what = what_of(info[2], "broadcast");
    auto* w = new PromiseWorker(
        info.Env(), [&c, v, bytes, root, what] { c.broadcast(v.data, bytes, (int)root, what.c_str()); }, info[0]);
    Napi::Value p = w->promise();
    w->Queue();
    return p;
  });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    MpiCommunicator& c = live_world();
    const std::string what = what_of(info[0], "barrier");
    auto* w = new PromiseWorker(
        info.Env(), [&c, what] { c.barrier(what.c_str()); }, info.Env().Undefined());
    Napi::Value p = w->promise();
    w->Queue();
    return p;
  });
}

Napi::Value EnableDevice(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const double d = get_number(info[0], "device");
    if (!(d >= 0) || d != (double)(int)d) throw arg_error("device must be a CUDA device index");
    live_world().enable_device((int)d);
    return info.Env().Undefined();
  });
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const std::string message = what_of(info[0], "aborted");
    const int code = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 1;
    live_world().abort(message.c_str(), code);
    return info.Env().Undefined();
  });
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const MpiCommunicator::Stats s = live_world().stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("calls", Napi::Number::New(info.Env(), (double)s.calls));
    o.Set("bytes", Napi::Number::New(info.Env(), (double)s.bytes));
    o.Set("seconds", Napi::Number::New(info.Env(), s.seconds));
    return o;
  });
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (zofo::comm::world_live()) zofo::comm::world().finalize();
    return info.Env().Undefined();
  });
}

#ifdef ZOFO_NCCL
Napi::Value NcclSelfTest(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const int device = (int)get_number(info[0], "device");
    const size_t n = (size_t)get_number(info[1], "n");
    return Napi::String::New(info.Env(), zofo::comm::nccl_self_test(device, n));
  });
}
#endif

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  promote_libmpi();
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  exports.Set("library", Napi::String::New(env, std::string(version, (size_t)len)));
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("allreduce", Napi::Function::New(env, Allreduce, "allreduce"));
  exports.Set("broadcast", Napi::Function::New(env, Broadcast, "broadcast"));
  exports.Set("barrier", Napi::Function::New(env, Barrier, "barrier"));
  exports.Set("enableDevice", Napi::Function::New(env, EnableDevice, "enableDevice"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("stats", Napi::Function::New(env, Stats, "stats"));
  exports.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
#ifdef ZOFO_NCCL
  exports.Set("nccl", Napi::Boolean::New(env, true));
  exports.Set("ncclSelfTest", Napi::Function::New(env, NcclSelfTest, "ncclSelfTest"));
#else
  exports.Set("nccl", Napi::Boolean::New(env, false));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(zofo_comm, Module)
