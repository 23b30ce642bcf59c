// Validation shared by every binding: the native code never trusts its caller, so each array is
// checked for dtype, rank, shape and layout here, and a wrong one becomes a clear Python error
// (std::invalid_argument -> ValueError, pybind11::type_error -> TypeError).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace engine {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

enum class DType { f32, f64 };

// The floating dtype of `a`; anything else is a TypeError naming the op and the argument.
inline DType float_dtype(const py::array& a, const char* op, const char* arg) {
  if (a.dtype().is(py::dtype::of<float>())) return DType::f32;
  if (a.dtype().is(py::dtype::of<double>())) return DType::f64;
  throw py::type_error(std::string(op) + ": " + arg + " must be float32 or float64, got " +
                       dtype_str(a));
}

inline void require_same_dtype(const py::array& a, const py::array& b, const char* op,
                               const char* an, const char* bn) {
  if (!a.dtype().is(b.dtype()))
    throw py::type_error(std::string(op) + ": " + an + " and " + bn +
                         " must have the same dtype, got " + dtype_str(a) + " and " + dtype_str(b));
}

inline void require_ndim(const py::array& a, py::ssize_t ndim, const char* op, const char* arg) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(op) + ": " + arg + " must be " + std::to_string(ndim) +
                                "-D, got shape " + shape_str(a));
}

inline void require_c_contiguous(const py::array& a, const char* op, const char* arg) {
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(op) + ": " + arg + " must be C-contiguous (shape " +
                                shape_str(a) + ")");
}

inline void require_writeable(const py::array& a, const char* op, const char* arg) {
  if (!a.writeable())
    throw std::invalid_argument(std::string(op) + ": " + arg + " must be writeable");
}

inline void require_same_shape(const py::array& a, const py::array& b, const char* op,
                               const char* an, const char* bn) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    throw std::invalid_argument(std::string(op) + ": " + an + " and " + bn +
                                " must have the same shape, got " + shape_str(a) + " and " +
                                shape_str(b));
}

// A new C-contiguous array of the given dtype and shape (outputs are always allocated here,
// never force-cast from a caller's array).
inline py::array empty_like_dtype(DType dt, const std::vector<py::ssize_t>& shape) {
  if (dt == DType::f32) return py::array_t<float>(shape);
  return py::array_t<double>(shape);
}

}  // namespace engine
