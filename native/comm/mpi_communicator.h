// The MPI communicator: host-memory collectives on a duplicate of MPI_COMM_WORLD, and,
// when built with NCCL (ZOFO_NCCL), device-memory allreduce through an NCCL
// communicator whose unique id rank 0 broadcasts over MPI (llm.c's and DeepSpeed's
// bootstrap).
//
// Threads: collectives are issued from the addon's worker threads (a step runs in an
// AsyncWorker; so do the JS-level allreduce/broadcast/barrier), one at a time under a
// mutex. That needs MPI_THREAD_SERIALIZED; MPI is initialised asking for
// MPI_THREAD_MULTIPLE so that the watchdog thread may call MPI_Abort while another
// thread is blocked in a collective. With only SERIALIZED the watchdog ends its own
// process instead (and mpirun then ends the others).
//
// Failure: every MPI call returns its error (MPI_ERRORS_RETURN) and any error ends the
// whole job with MPI_Abort after printing the call and MPI's message. A collective
// that waits longer than the watchdog timeout (ZOFO_COMM_TIMEOUT seconds, default 300;
// 0 disables it) is a dead or hung peer: the job is aborted naming the collective.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "communicator.h"

namespace zofo::comm {

class NcclChannel;  // nccl_channel.h; only with ZOFO_NCCL

class MpiCommunicator final : public Communicator {
 public:
  // Initialises MPI (once per process) and duplicates MPI_COMM_WORLD. Throws zofo::Error
  // (ZOFO_COMM) if MPI cannot give at least MPI_THREAD_SERIALIZED.
  MpiCommunicator();
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE, as provided.
  int thread_level() const { return thread_level_; }
  double timeout_seconds() const { return timeout_s_; }

  void allreduce_sum(double* host, size_t n, const char* what) override;
  void allreduce_sum(float* host, size_t n, const char* what) override;
  bool allreduce_sum_device(float* device, size_t n, void* stream, const char* what) override;
  void broadcast(void* host, size_t bytes, int root, const char* what) override;
  void barrier(const char* what) override;
  void abort(const char* message, int code) override;

  // Device collectives over NCCL on CUDA device `device` (ZOFO_NCCL builds only; throws
  // ZOFO_UNSUPPORTED otherwise). Collective: every rank calls it.
  void enable_device(int device);
  bool device_enabled() const;

  // Collectives made so far, the bytes they carried per rank, and the wall time spent
  // in them (waiting for slower ranks included).
  struct Stats {
    uint64_t calls, bytes;
    double seconds;
  };
  Stats stats() const;

  // MPI_Finalize (collective). Idempotent; later collectives are errors.
  void finalize();
  bool finalized() const { return finalized_; }

 private:
  // Serialises collectives and tells the watchdog what is in flight.
  class Guard {
   public:
    Guard(MpiCommunicator& c, const char* call, const char* what, size_t bytes);
    ~Guard();

   private:
    MpiCommunicator& c_;
    std::lock_guard<std::mutex> lock_;
    std::chrono::steady_clock::time_point start_;
  };
  void check(int rc, const char* call, const char* what);
  void live(const char* call) const;
  void watch();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, thread_level_ = 0;
  double timeout_s_ = 300;
  bool finalized_ = false;
  std::mutex call_mu_;
  // What the watchdog sees: the call in flight and since when.
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  std::string in_flight_;
  std::chrono::steady_clock::time_point since_;
  bool busy_ = false, stop_ = false;
  std::thread watchdog_;
  std::unique_ptr<NcclChannel> nccl_;
  std::atomic<uint64_t> calls_{0}, bytes_{0}, nanoseconds_{0};
};

// The process's communicator (MPI can be initialised once per process).
MpiCommunicator& world();
// Whether world() was created (and not finalised).
bool world_live();

}  // namespace zofo::comm
