// The collectives a data- or perturbation-parallel hybrid step needs, as an abstract
// interface the engine calls through a pointer. The implementation (MPI for host
// memory, NCCL for device memory) lives in a separate addon, zofo_comm.node, so the
// CPU addon never links libmpi: the comm addon hands the engine a pointer to one of
// these, wrapped in a type-tagged napi External (kCommunicatorTag).
//
// Only plain types cross the interface (it is called across two shared objects), and
// no method throws: a failed collective means a broken job, which the implementation
// ends on every rank (MPI_Abort) after printing why.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace zofo {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sums over all ranks, host memory. Every rank must call the same sequence.
  virtual void allreduce_sum(double* host, size_t n, const char* what) = 0;
  virtual void allreduce_sum(float* host, size_t n, const char* what) = 0;
  // In-place sum of device memory (a CUDA pointer, on the given cudaStream_t). Returns
  // false, having done nothing, when this communicator has no device path: the caller
  // then stages through host memory.
  virtual bool allreduce_sum_device(float* device, size_t n, void* stream, const char* what) {
    (void)device, (void)n, (void)stream, (void)what;
    return false;
  }
  virtual void broadcast(void* host, size_t bytes, int root, const char* what) = 0;
  virtual void barrier(const char* what) = 0;
  // Ends every rank of the job now, after printing `message` (MPI_Abort).
  virtual void abort(const char* message, int code) = 0;
};

// napi_type_tag of the External that carries a Communicator* between addons.
constexpr uint64_t kCommunicatorTagLower = 0x7a6f666f636f6d6dull;  // "zofocomm"
constexpr uint64_t kCommunicatorTagUpper = 0x0000000000000001ull;  // interface version

}  // namespace zofo
