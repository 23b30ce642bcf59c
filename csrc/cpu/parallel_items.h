// A static split of independent work items over an OpenMP team, for kernels that parallelise
// over their own tiles (and call gemm() or microkernels serially inside).
#pragma once
#include <algorithm>
#include <atomic>
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

// How run_items shares the items: thread t takes the t-th contiguous share, or each thread takes
// the next item not yet taken whenever it finishes one (for items whose results do not depend on
// the thread, where the threads may run at different speeds: two vCPUs of a shared host).
enum class Schedule { contiguous, dynamic };

// fn(item, thread) for item in [0, items). An exception thrown by fn (bad_alloc of a workspace)
// is carried out of the team and rethrown here, since one escaping an OpenMP region would
// terminate the process.
template <typename Fn>
void run_items(int nt, int64_t items, Fn&& fn, Schedule schedule = Schedule::contiguous) {
  if (items <= 0) return;
  if (nt <= 1) {
    for (int64_t it = 0; it < items; ++it) fn(it, 0);
    return;
  }
  std::exception_ptr error;
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  {
    const int tid = thread_id(), team = team_size();
    try {
      if (schedule == Schedule::contiguous) {
        for (int64_t it = items * tid / team; it < items * (tid + 1) / team; ++it) fn(it, tid);
      } else {
        for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < items;) fn(it, tid);
      }
    } catch (...) {
#pragma omp critical(engine_run_items_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace engine::cpu
