// Splits [0, n) into `threads` contiguous ranges and runs them concurrently.
// Kernels compute each element from its own index only, so results never depend
// on the split (thread-count independence is a tested property).
#pragma once

#include <stdint.h>
#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

namespace zofo::cpu {

int default_threads();  // ZOFO_NUM_THREADS, else hardware concurrency

template <class Fn>  // fn(begin, end)
void parallel_ranges(uint64_t n, int threads, uint64_t min_per_thread, Fn fn) {
  if (threads <= 0) threads = default_threads();
  const uint64_t useful = std::max<uint64_t>(1, n / std::max<uint64_t>(1, min_per_thread));
  const int t_count = (int)std::min<uint64_t>((uint64_t)threads, useful);
  if (t_count <= 1) {
    fn(uint64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(t_count);
  pool.reserve(t_count - 1);
  auto run = [&](int t) {
    try {
      fn(n * t / t_count, n * (t + 1) / t_count);
    } catch (...) { errors[t] = std::current_exception(); }
  };
  for (int t = 1; t < t_count; ++t) pool.emplace_back(run, t);
  run(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace zofo::cpu
