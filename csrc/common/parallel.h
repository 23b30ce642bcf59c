// OpenMP helpers that also compile without OpenMP (the serial fallback).
#pragma once
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace engine {

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

// True inside an OpenMP parallel region: kernels called from one (a tile of a bigger kernel)
// run serially instead of opening a nested team.
inline bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return false;
#endif
}

// This thread's number in its team, and the team's size (0 and 1 outside a parallel region).
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

// NOTE: below this many elements a parallel region costs more than it saves (thread wake-up is
// a few microseconds), so element-wise loops run serially.
constexpr int64_t kParallelGrain = 1 << 15;

}  // namespace engine
