// The _cuda module: CUDA kernels over GPU arrays given through __cuda_array_interface__.
// Outputs are allocated by the caller (CuPy) and passed in; kernels run on the caller's stream.
#include <pybind11/pybind11.h>

#include "cuda/elementwise.cuh"
#include "cuda/math_mode.h"
#include "python/bindings_cuda.h"
#include "python/cuda_array.h"

namespace py = pybind11;
using engine::CudaArray;

static int device_count() {
  int n = 0;
  // No driver or no device is not an error here: the answer is simply zero devices.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

static void add(const py::object& out, const py::object& a, const py::object& b, double alpha,
                uintptr_t stream) {
  CudaArray o = engine::cuda_array(out, "add", "out");
  CudaArray x = engine::cuda_array(a, "add", "a");
  CudaArray y = engine::cuda_array(b, "add", "b");
  if (x.shape != y.shape || x.shape != o.shape)
    throw std::invalid_argument("add: shapes must match, got " + engine::shape_str(o.shape) + ", " +
                                engine::shape_str(x.shape) + " and " + engine::shape_str(y.shape));
  if (x.typestr != y.typestr || x.typestr != o.typestr)
    throw py::type_error("add: dtypes must match, got " + o.typestr + ", " + x.typestr + ", " + y.typestr);
  if (o.readonly) throw std::invalid_argument("add: out is read-only");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    if (x.typestr == "<f4")
      err = engine::cuda::axpby_add<float>(reinterpret_cast<float*>(o.ptr), reinterpret_cast<const float*>(x.ptr),
                                           reinterpret_cast<const float*>(y.ptr), float(alpha), x.size, s);
    else
      err = engine::cuda::axpby_add<double>(reinterpret_cast<double*>(o.ptr), reinterpret_cast<const double*>(x.ptr),
                                            reinterpret_cast<const double*>(y.ptr), alpha, x.size, s);
  }
  engine::check_cuda(err, "add");
}

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "engine CUDA kernels";
  m.def("device_count", &device_count, "Number of CUDA devices visible (0 without a driver).");
  m.def("tensor_cores_supported", &engine::cuda::tensor_cores_supported,
        "Whether the current device runs the tf32/bf16 precisions on tensor cores (sm_80+); "
        "elsewhere they run as 'highest'.");
  m.def("add", &add, py::arg("out"), py::arg("a"), py::arg("b"), py::arg("alpha") = 1.0,
        py::arg("stream") = 0, "out = a + alpha * b on GPU arrays of one shape and dtype.");
  engine::bind_cuda_gemm(m);
  engine::bind_cuda_conv(m);
  engine::bind_cuda_attention(m);
  engine::bind_cuda_fused(m);
}
