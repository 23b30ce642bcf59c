// The _C module: CPU kernels in C++/OpenMP. Each family binds itself (python/bind_*.cpp);
// this file adds the runtime facts the Python side reports (threads, CPU features) and the
// allocator setting engine/runtime.py applies.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "common/cpu_features.h"
#include "common/parallel.h"
#include "python/bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "engine CPU kernels (C++17, OpenMP)";
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
    engine::set_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &engine::max_threads);
  m.def("openmp_enabled", &engine::openmp_enabled);
  m.def("cpu_has_avx2_fma", &engine::cpu_has_avx2_fma);
  m.def("cpu_has_avx512", &engine::cpu_has_avx512);
  // glibc only (elsewhere it returns false and changes nothing): blocks up to 32 MiB (glibc's
  // most) come from the heap instead of mmaps of their own, and up to `retain_bytes` of free
  // memory at the top of the heap is kept instead of going back to the system.
  m.def("retain_freed_memory", [](int64_t retain_bytes) {
    if (retain_bytes < 0)
      throw std::invalid_argument("retain_freed_memory: bytes must be >= 0, got " + std::to_string(retain_bytes));
#if defined(__GLIBC__)
    const int64_t most = int64_t{1} << 30;  // mallopt takes an int
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 &&
           mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min(retain_bytes, most))) == 1;
#else
    return false;
#endif
  }, py::arg("retain_bytes"));
  engine::bind_elementwise(m);
  engine::bind_gemm(m);
  engine::bind_conv(m);
  engine::bind_attention(m);
}
