// The _C module: CPU kernels in C++/OpenMP. Each family binds itself (python/bind_*.cpp);
// this file adds the runtime facts the Python side reports (threads, CPU features).
#include <pybind11/pybind11.h>

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
  engine::bind_elementwise(m);
  engine::bind_gemm(m);
  engine::bind_conv(m);
  engine::bind_attention(m);
}
