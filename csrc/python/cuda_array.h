// A checked view of a GPU array received through __cuda_array_interface__ (CuPy, PyTorch,
// Numba all export it), so the binding depends on no array library's headers.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace engine {
namespace py = pybind11;

struct CudaArray {
  uintptr_t ptr = 0;
  std::string typestr;  // "<f4" or "<f8"
  std::vector<int64_t> shape;
  int64_t size = 1;
  bool readonly = false;
};

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Parses and validates `obj`: a C-contiguous float32/float64 array living in device memory.
inline CudaArray cuda_array(const py::handle& obj, const char* op, const char* arg) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(op) + ": " + arg + " must be a GPU array (CuPy), got " +
                         py::str(py::type::of(obj)).cast<std::string>());
  py::dict iface = obj.attr("__cuda_array_interface__");
  CudaArray a;
  py::tuple data = iface["data"];
  a.ptr = data[0].cast<uintptr_t>();
  a.readonly = data[1].cast<bool>();
  a.typestr = iface["typestr"].cast<std::string>();
  for (auto d : iface["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<int64_t>());
  for (int64_t d : a.shape) a.size *= d;
  if (a.typestr != "<f4" && a.typestr != "<f8")
    throw py::type_error(std::string(op) + ": " + arg + " must be float32 or float64, got " + a.typestr);
  const int64_t item = a.typestr == "<f4" ? 4 : 8;
  if (iface.contains("strides") && !iface["strides"].is_none()) {
    auto strides = iface["strides"].cast<std::vector<int64_t>>();
    int64_t expect = item;
    for (size_t i = a.shape.size(); i-- > 0;) {
      if (a.shape[i] != 1 && strides[i] != expect)
        throw std::invalid_argument(std::string(op) + ": " + arg + " must be C-contiguous (shape " +
                                    shape_str(a.shape) + ")");
      expect *= a.shape[i];
    }
  }
  if (a.size > 0) {
    cudaPointerAttributes attr{};
    check_cuda(cudaPointerGetAttributes(&attr, reinterpret_cast<void*>(a.ptr)), op);
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw std::invalid_argument(std::string(op) + ": " + arg + " is not in GPU memory");
  }
  return a;
}

}  // namespace engine
