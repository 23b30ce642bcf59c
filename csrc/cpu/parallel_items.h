// A static split of independent work items over an OpenMP team, for kernels that parallelise
// over their own tiles (and call gemm() or microkernels serially inside).
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>

#include "common/parallel.h"

namespace engine::cpu {

// How many threads `items` independent items of `macs_per_item` multiply-adds each are worth:
// 1 below kSerialMacs in all, inside another team, or for a single item.
inline int team_for(int64_t items, double macs_per_item) {
  constexpr double kSerialMacs = double(int64_t{1} << 16);
  if (items < 2 || in_parallel() || items * macs_per_item < kSerialMacs) return 1;
  return static_cast<int>(std::min<int64_t>(max_threads(), items));
}

// fn(item, thread) for item in [0, items), thread t taking the t-th contiguous share. An exception
// thrown by fn (bad_alloc of a workspace) is carried out of the team and rethrown here, since one
// escaping an OpenMP region would terminate the process.
template <typename Fn>
void run_items(int nt, int64_t items, Fn&& fn) {
  if (items <= 0) return;
  if (nt <= 1) {
    for (int64_t it = 0; it < items; ++it) fn(it, 0);
    return;
  }
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  {
    const int tid = thread_id(), team = team_size();
    try {
      for (int64_t it = items * tid / team; it < items * (tid + 1) / team; ++it) fn(it, tid);
    } catch (...) {
#pragma omp critical(engine_run_items_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace engine::cpu
