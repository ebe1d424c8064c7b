#include "nccl_channel.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <vector>

#include "../common/error.h"

namespace zofo::comm {

namespace {

void nccl_check(ncclResult_t rc, const char* call) {
  if (rc != ncclSuccess) throw Error("ZOFO_COMM", std::string(call) + ": " + ncclGetErrorString(rc));
}

void cuda_check(cudaError_t rc, const char* call) {
  if (rc != cudaSuccess) throw Error("ZOFO_COMM", std::string(call) + ": " + cudaGetErrorString(rc));
}

}  // namespace

static_assert(sizeof(ncclUniqueId) == NcclChannel::kIdBytes, "NCCL unique id size");

void NcclChannel::unique_id(unsigned char* id) {
  ncclUniqueId u;
  nccl_check(ncclGetUniqueId(&u), "ncclGetUniqueId");
  std::memcpy(id, &u, sizeof u);
}

NcclChannel::NcclChannel(const unsigned char* id, int rank, int size, int device) : device_(device) {
  ncclUniqueId u;
  std::memcpy(&u, id, sizeof u);
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  ncclComm_t comm = nullptr;
  nccl_check(ncclCommInitRank(&comm, size, u, rank), "ncclCommInitRank");
  comm_ = comm;
}

NcclChannel::~NcclChannel() {
  if (comm_) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
}

void NcclChannel::allreduce_sum(float* device, size_t n, void* stream) {
  cuda_check(cudaSetDevice(device_), "cudaSetDevice");
  auto s = static_cast<cudaStream_t>(stream);
  nccl_check(ncclAllReduce(device, device, n, ncclFloat32, ncclSum, static_cast<ncclComm_t>(comm_), s),
             "ncclAllReduce");
  cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize after ncclAllReduce");
}

std::string nccl_self_test(int device, size_t n) {
  try {
    unsigned char id[NcclChannel::kIdBytes];
    NcclChannel::unique_id(id);
    NcclChannel channel(id, 0, 1, device);
    std::vector<float> host(n), back(n);
    for (size_t i = 0; i < n; ++i) host[i] = (float)i * 0.5f - 3.0f;
    float* d = nullptr;
    cuda_check(cudaMalloc(&d, n * sizeof(float)), "cudaMalloc");
    struct Free {
      float* p;
      ~Free() { cudaFree(p); }
    } free_d{d};
    cuda_check(cudaMemcpy(d, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    channel.allreduce_sum(d, n, nullptr);
    cuda_check(cudaMemcpy(back.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    for (size_t i = 0; i < n; ++i)
      if (back[i] != host[i])
        return "element " + std::to_string(i) + ": " + std::to_string(back[i]) + " after a one-rank sum of " +
               std::to_string(host[i]);
    return "";
  } catch (const std::exception& e) { return e.what(); }
}

}  // namespace zofo::comm
