// Bindings of the element-wise CPU kernels: validate, allocate the output, release the GIL, call.
#include "common/checks.h"
#include "cpu/elementwise.h"
#include "python/bindings.h"

namespace engine {

template <typename T>
static void run_add(py::array& out, const py::array& a, const py::array& b, double alpha) {
  auto* o = static_cast<T*>(out.mutable_data());
  const auto* pa = static_cast<const T*>(a.data());
  const auto* pb = static_cast<const T*>(b.data());
  const int64_t n = a.size();
  py::gil_scoped_release release;
  cpu::axpby_add<T>(o, pa, pb, static_cast<T>(alpha), n);
}

static py::array add(const py::array& a, const py::array& b, double alpha) {
  const DType dt = float_dtype(a, "add", "a");
  require_same_dtype(a, b, "add", "a", "b");
  require_same_shape(a, b, "add", "a", "b");
  require_c_contiguous(a, "add", "a");
  require_c_contiguous(b, "add", "b");
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  py::array out = empty_like_dtype(dt, shape);
  if (dt == DType::f32) run_add<float>(out, a, b, alpha);
  else run_add<double>(out, a, b, alpha);
  return out;
}

void bind_elementwise(py::module_& m) {
  m.def("add", &add, py::arg("a"), py::arg("b"), py::arg("alpha") = 1.0,
        "a + alpha * b for two C-contiguous float arrays of one shape and dtype (OpenMP).");
}

}  // namespace engine
