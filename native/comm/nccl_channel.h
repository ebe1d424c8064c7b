// Device-memory allreduce over NCCL, for a model whose weights live on a GPU. The
// channel is bootstrapped over MPI: rank 0 creates the NCCL unique id, the MPI
// communicator broadcasts its bytes, then every rank joins (ncclCommInitRank).
// Built only with ZOFO_NCCL (CMake option); CUDA types stay out of this header so the
// MPI side compiles without the CUDA toolkit.
#pragma once

#include <stddef.h>

#include <string>

namespace zofo::comm {

class NcclChannel {
 public:
  static constexpr size_t kIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
  // Rank 0: a fresh unique id into id[kIdBytes]. Throws zofo::Error (ZOFO_COMM).
  static void unique_id(unsigned char* id);
  // Joins the clique of `size` ranks named by id, on CUDA device `device`.
  NcclChannel(const unsigned char* id, int rank, int size, int device);
  ~NcclChannel();
  NcclChannel(const NcclChannel&) = delete;
  NcclChannel& operator=(const NcclChannel&) = delete;
  // In-place fp32 sum on `stream` (a cudaStream_t; null: the legacy default stream),
  // synchronised before returning. Throws zofo::Error (ZOFO_COMM) naming NCCL's error.
  void allreduce_sum(float* device, size_t n, void* stream);
  int device() const { return device_; }

 private:
  void* comm_ = nullptr;  // ncclComm_t
  int device_ = 0;
};

// A one-process smoke check of the calls: n floats on device `device`, allreduced by
// a one-rank clique, must come back unchanged. Returns "" or what went wrong.
std::string nccl_self_test(int device, size_t n);

}  // namespace zofo::comm
