#include "mpi_communicator.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "../common/error.h"
#ifdef ZOFO_NCCL
#include "nccl_channel.h"
#endif

namespace zofo::comm {

#ifndef ZOFO_NCCL
class NcclChannel {};  // an empty stand-in so unique_ptr<NcclChannel> is complete
#endif

namespace {

double timeout_from_env() {
  const char* s = getenv("ZOFO_COMM_TIMEOUT");
  if (!s || !*s) return 300;
  char* end = nullptr;
  const double t = strtod(s, &end);
  if (end == s || *end || !(t >= 0))
    throw Error("ZOFO_INVALID_ARG",
                std::string("ZOFO_COMM_TIMEOUT must be a number of seconds ≥ 0 (0: no watchdog), got '") + s + "'");
  return t;
}

std::string mpi_message(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, (size_t)len);
}

}  // namespace

MpiCommunicator::MpiCommunicator() : timeout_s_(timeout_from_env()) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) throw Error("ZOFO_COMM", "MPI was already finalised in this process; it cannot be initialised again");
  if (!initialized) {
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_) != MPI_SUCCESS)
      throw Error("ZOFO_COMM", "MPI_Init_thread failed");
  } else {
    MPI_Query_thread(&thread_level_);
  }
  if (thread_level_ < MPI_THREAD_SERIALIZED)
    throw Error(
        "ZOFO_COMM",
        "this MPI library provides thread level " + std::to_string(thread_level_) +
            "; zofo issues collectives from worker threads and needs MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE");
  MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  if (timeout_s_ > 0) watchdog_ = std::thread([this] { watch(); });
}

MpiCommunicator::~MpiCommunicator() { finalize(); }

MpiCommunicator::Guard::Guard(MpiCommunicator& c, const char* call, const char* what, size_t bytes)
    : c_(c), lock_(c.call_mu_), start_(std::chrono::steady_clock::now()) {
  c.live(call);
  c.calls_ += 1;
  c.bytes_ += bytes;
  std::lock_guard<std::mutex> g(c.watch_mu_);
  c.in_flight_ = std::string(call) + " (" + what + ")";
  c.since_ = std::chrono::steady_clock::now();
  c.busy_ = true;
}

MpiCommunicator::Guard::~Guard() {
  c_.nanoseconds_ +=
      (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
  std::lock_guard<std::mutex> g(c_.watch_mu_);
  c_.busy_ = false;
}

MpiCommunicator::Stats MpiCommunicator::stats() const {
  return {calls_.load(), bytes_.load(), (double)nanoseconds_.load() * 1e-9};
}

void MpiCommunicator::live(const char* call) const {
  if (finalized_) throw Error("ZOFO_COMM", std::string(call) + ": the communicator has been finalised");
}

void MpiCommunicator::check(int rc, const char* call, const char* what) {
  if (rc == MPI_SUCCESS) return;
  const std::string msg = std::string(call) + " (" + what + ") failed: " + mpi_message(rc) +
                          ". Another rank has probably died; aborting every rank";
  abort(msg.c_str(), 1);
}

void MpiCommunicator::abort(const char* message, int code) {
  fprintf(stderr, "zofo: rank %d of %d: %s\n", rank_, size_, message);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
  _exit(code ? code : 1);  // MPI_Abort does not return; this only guards a broken MPI
}

void MpiCommunicator::watch() {
  std::unique_lock<std::mutex> g(watch_mu_);
  const auto limit = std::chrono::duration<double>(timeout_s_);
  while (!stop_) {
    watch_cv_.wait_for(g, std::chrono::seconds(1));
    if (stop_ || !busy_ || std::chrono::steady_clock::now() - since_ < limit) continue;
    const std::string msg = in_flight_ + " has waited " + std::to_string((int)timeout_s_) +
                            " s for the other ranks (ZOFO_COMM_TIMEOUT): a rank has died or hangs; aborting every rank";
    if (thread_level_ == MPI_THREAD_MULTIPLE) abort(msg.c_str(), 1);
    // Only SERIALIZED: no MPI call may run beside the blocked one. End this process;
    // mpirun ends the rest when one of them exits without MPI_Finalize.
    fprintf(stderr, "zofo: rank %d of %d: %s\n", rank_, size_, msg.c_str());
    fflush(stderr);
    _exit(1);
  }
}

void MpiCommunicator::allreduce_sum(double* host, size_t n, const char* what) {
  Guard g(*this, "MPI_Allreduce", what, n * sizeof(double));
  if (n > (size_t)INT32_MAX) throw Error("ZOFO_COMM", "allreduce of more than 2^31 values");
  check(MPI_Allreduce(MPI_IN_PLACE, host, (int)n, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce", what);
}

void MpiCommunicator::allreduce_sum(float* host, size_t n, const char* what) {
  Guard g(*this, "MPI_Allreduce", what, n * sizeof(float));
  if (n > (size_t)INT32_MAX) throw Error("ZOFO_COMM", "allreduce of more than 2^31 values");
  check(MPI_Allreduce(MPI_IN_PLACE, host, (int)n, MPI_FLOAT, MPI_SUM, comm_), "MPI_Allreduce", what);
}

bool MpiCommunicator::allreduce_sum_device(float* device, size_t n, void* stream, const char* what) {
#ifdef ZOFO_NCCL
  if (!nccl_) return false;
  Guard g(*this, "ncclAllReduce", what, n * sizeof(float));
  try {
    nccl_->allreduce_sum(device, n, stream);
  } catch (const std::exception& e) {
    abort((std::string(e.what()) + " (" + what + "); aborting every rank").c_str(), 1);
  }
  return true;
#else
  (void)device, (void)n, (void)stream, (void)what;
  return false;
#endif
}

void MpiCommunicator::broadcast(void* host, size_t bytes, int root, const char* what) {
  Guard g(*this, "MPI_Bcast", what, bytes);
  if (bytes > (size_t)INT32_MAX) throw Error("ZOFO_COMM", "broadcast of more than 2^31 bytes");
  if (root < 0 || root >= size_)
    throw Error("ZOFO_INVALID_ARG",
                "broadcast root " + std::to_string(root) + " is not a rank of " + std::to_string(size_));
  check(MPI_Bcast(host, (int)bytes, MPI_BYTE, root, comm_), "MPI_Bcast", what);
}

void MpiCommunicator::barrier(const char* what) {
  Guard g(*this, "MPI_Barrier", what, 0);
  check(MPI_Barrier(comm_), "MPI_Barrier", what);
}

void MpiCommunicator::enable_device(int device) {
#ifdef ZOFO_NCCL
  unsigned char id[NcclChannel::kIdBytes] = {0};
  if (rank_ == 0) NcclChannel::unique_id(id);
  broadcast(id, sizeof id, 0, "NCCL unique id");
  Guard g(*this, "ncclCommInitRank", "NCCL bootstrap", 0);
  nccl_ = std::make_unique<NcclChannel>(id, rank_, size_, device);
#else
  (void)device;
  throw Error("ZOFO_UNSUPPORTED",
              "this zofo_comm.node was built without NCCL (configure with -DZOFO_NCCL=ON where NCCL is installed); "
              "device buffers are staged through host memory");
#endif
}

bool MpiCommunicator::device_enabled() const { return nccl_ != nullptr; }

void MpiCommunicator::finalize() {
  std::lock_guard<std::mutex> lock(call_mu_);
  if (finalized_) return;
  {
    // MPI_Finalize waits for every rank: watched like a collective.
    std::lock_guard<std::mutex> g(watch_mu_);
    in_flight_ = "MPI_Finalize";
    since_ = std::chrono::steady_clock::now();
    busy_ = true;
  }
  nccl_.reset();
  MPI_Comm_free(&comm_);
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
  finalized_ = true;
  {
    std::lock_guard<std::mutex> g(watch_mu_);
    busy_ = false;
    stop_ = true;
  }
  watch_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

namespace {
std::mutex world_mu;
MpiCommunicator* world_ptr = nullptr;  // lives until process exit (MPI is once per process)
}  // namespace

MpiCommunicator& world() {
  std::lock_guard<std::mutex> g(world_mu);
  if (!world_ptr) {
    world_ptr = new MpiCommunicator();
    // A process that ends without finalize() still leaves MPI cleanly (the watchdog
    // bounds the wait for the others).
    atexit([] {
      if (world_ptr) world_ptr->finalize();
    });
  }
  if (world_ptr->finalized())
    throw Error("ZOFO_COMM", "MPI was finalised in this process; it cannot be initialised again");
  return *world_ptr;
}

bool world_live() {
  std::lock_guard<std::mutex> g(world_mu);
  return world_ptr && !world_ptr->finalized();
}

}  // namespace zofo::comm
