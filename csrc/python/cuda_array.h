// A checked view of a GPU array received through __cuda_array_interface__ (CuPy, PyTorch,
// Numba all export it), so the binding depends on no array library's headers.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace engine {
namespace py = pybind11;

struct CudaArray {
  uintptr_t ptr = 0;
  std::string typestr;          // "<f4", "<f8", "<i8"; "<u2" (bf16 bit patterns), "|b1" (bool) where asked for
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements (C-contiguous when the interface gives none)
  int64_t itemsize = 0;
  int64_t size = 1;
  bool readonly = false;
  int device = -1;  // -1 for an empty array, which has no memory to locate

  bool is_f32() const { return typestr == "<f4"; }
  int64_t dim(size_t i) const { return shape[i]; }
  bool c_contiguous() const {
    int64_t expect = 1;
    for (size_t i = shape.size(); i-- > 0;) {
      if (shape[i] != 1 && strides[i] != expect) return false;
      expect *= shape[i];
    }
    return true;
  }
  // The byte range [lo, hi) the array touches; empty for an empty array.
  std::pair<uintptr_t, uintptr_t> extent() const {
    if (size == 0) return {ptr, ptr};
    uintptr_t lo = ptr, hi = ptr;
    for (size_t i = 0; i < shape.size(); ++i) {
      const int64_t span = (shape[i] - 1) * strides[i] * itemsize;
      if (span < 0) lo -= uintptr_t(-span);
      else hi += uintptr_t(span);
    }
    return {lo, hi + uintptr_t(itemsize)};
  }
};

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

inline std::string dtype_name(const std::string& typestr) {
  if (typestr == "<f4") return "float32";
  if (typestr == "<f8") return "float64";
  if (typestr == "<f2") return "float16";
  if (typestr == "<i8") return "int64";
  if (typestr == "<i4") return "int32";
  if (typestr == "<u2") return "uint16 (bf16 bits)";
  if (typestr == "|b1") return "bool";
  return typestr;
}

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// floating: float32/float64; int64; attention: float32/float64 or bf16 bit patterns in uint16;
// mask: bool, float32 or float64.
enum class Elem { floating, int64, attention, mask };

inline bool elem_accepts(Elem elem, const std::string& t) {
  switch (elem) {
    case Elem::floating: return t == "<f4" || t == "<f8";
    case Elem::int64: return t == "<i8";
    case Elem::attention: return t == "<f4" || t == "<f8" || t == "<u2";
    case Elem::mask: return t == "|b1" || t == "<f4" || t == "<f8";
  }
  return false;
}

inline const char* elem_name(Elem elem) {
  switch (elem) {
    case Elem::floating: return "float32 or float64";
    case Elem::int64: return "int64";
    case Elem::attention: return "float32, float64 or uint16 (bf16 bit patterns)";
    case Elem::mask: return "bool, float32 or float64";
  }
  return "";
}
enum class Layout { contiguous, strided };

// Parses and validates `obj`: a float32/float64 (or int64) array in device memory on the current
// device, C-contiguous unless `layout` allows strides.
inline CudaArray cuda_array(const py::handle& obj, const char* op, const char* arg, Layout layout = Layout::contiguous,
                            Elem elem = Elem::floating) {
  const std::string where = std::string(op) + ": " + arg;
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(where + " must be a GPU array (CuPy), got " + py::str(py::type::of(obj)).cast<std::string>());
  py::dict iface = obj.attr("__cuda_array_interface__");
  CudaArray a;
  py::tuple data = iface["data"];
  a.ptr = data[0].cast<uintptr_t>();
  a.readonly = data[1].cast<bool>();
  a.typestr = iface["typestr"].cast<std::string>();
  for (auto d : iface["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<int64_t>());
  for (int64_t d : a.shape) a.size *= d;
  if (!elem_accepts(elem, a.typestr))
    throw py::type_error(where + " must be " + elem_name(elem) + ", got " + dtype_name(a.typestr));
  a.itemsize = std::stoi(a.typestr.substr(2));  // every accepted typestr ends in its size in bytes
  a.strides.assign(a.shape.size(), 0);
  if (iface.contains("strides") && !iface["strides"].is_none()) {
    auto bytes = iface["strides"].cast<std::vector<int64_t>>();
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (bytes[i] % a.itemsize)
        throw std::invalid_argument(where + " has byte strides that are not multiples of its itemsize " +
                                    std::to_string(a.itemsize));
      a.strides[i] = bytes[i] / a.itemsize;
    }
  } else {
    int64_t s = 1;
    for (size_t i = a.shape.size(); i-- > 0;) a.strides[i] = s, s *= a.shape[i];
  }
  if (layout == Layout::contiguous && !a.c_contiguous())
    throw std::invalid_argument(where + " must be C-contiguous (shape " + shape_str(a.shape) + ")");
  if (a.size > 0) {
    if (a.ptr % a.itemsize)
      throw std::invalid_argument(where + " is not aligned to its itemsize " + std::to_string(a.itemsize));
    cudaPointerAttributes attr{};
    const cudaError_t err = cudaPointerGetAttributes(&attr, reinterpret_cast<void*>(a.ptr));
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error so the next call starts clean
      throw std::invalid_argument(where + " is not GPU memory (" + cudaGetErrorString(err) + ")");
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw std::invalid_argument(where + " is not in GPU memory");
    a.device = attr.device;
    int current = 0;
    check_cuda(cudaGetDevice(&current), op);
    if (a.device != current)
      throw std::invalid_argument(where + " is on cuda:" + std::to_string(a.device) + " but the current device is cuda:" +
                                  std::to_string(current) + " (use cupy.cuda.Device(" + std::to_string(a.device) +
                                  ") around the call)");
  }
  return a;
}

inline void require_writeable(const CudaArray& a, const char* op, const char* arg) {
  if (a.readonly) throw std::invalid_argument(std::string(op) + ": " + arg + " is read-only");
}

inline void require_same_dtype(const CudaArray& a, const CudaArray& b, const char* op, const char* an, const char* bn) {
  if (a.typestr != b.typestr)
    throw py::type_error(std::string(op) + ": " + an + " and " + bn + " must have the same dtype, got " +
                         dtype_name(a.typestr) + " and " + dtype_name(b.typestr));
}

inline void require_shape(const CudaArray& a, const std::vector<int64_t>& shape, const char* op, const char* arg) {
  if (a.shape != shape)
    throw std::invalid_argument(std::string(op) + ": " + arg + " has shape " + shape_str(a.shape) + ", expected " +
                                shape_str(shape));
}

inline void require_ndim(const CudaArray& a, size_t ndim, const char* op, const char* arg) {
  if (a.shape.size() != ndim)
    throw std::invalid_argument(std::string(op) + ": " + arg + " must be " + std::to_string(ndim) + "-D, got shape " +
                                shape_str(a.shape));
}

// An output must not share memory with an input (the kernels read inputs while writing it).
inline void require_disjoint(const CudaArray& out, const CudaArray& x, const char* op, const char* out_name,
                             const char* x_name) {
  const auto [olo, ohi] = out.extent();
  const auto [xlo, xhi] = x.extent();
  if (olo < xhi && xlo < ohi)
    throw std::invalid_argument(std::string(op) + ": " + out_name + " " + shape_str(out.shape) +
                                " shares memory with " + x_name + " " + shape_str(x.shape) +
                                "; pass a separate output array");
}

}  // namespace engine
