// Binding of the GPU conv2d (forward, grad input, grad weight) and max_pool2d (forward,
// backward): C-contiguous NCHW GPU arrays, outputs allocated by the caller, sizes checked against
// each other before any launch, the caller's stream, the GIL released.
#include <pybind11/stl.h>

#include <string>
#include <utility>

#include "cuda/conv2d.cuh"
#include "python/bindings_cuda.h"
#include "python/cuda_array.h"

namespace engine {
namespace {

using Pair = std::pair<int64_t, int64_t>;

int64_t out_size(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d) { return (size + 2 * p - d * (k - 1) - 1) / s + 1; }

void require_geometry(const char* op, const Pair& stride, const Pair& padding, const Pair& dilation) {
  if (stride.first < 1 || stride.second < 1)
    throw std::invalid_argument(std::string(op) + ": stride must be >= 1, got (" + std::to_string(stride.first) + ", " +
                                std::to_string(stride.second) + ")");
  if (padding.first < 0 || padding.second < 0)
    throw std::invalid_argument(std::string(op) + ": padding must be >= 0, got (" + std::to_string(padding.first) +
                                ", " + std::to_string(padding.second) + ")");
  if (dilation.first < 1 || dilation.second < 1)
    throw std::invalid_argument(std::string(op) + ": dilation must be >= 1, got (" + std::to_string(dilation.first) +
                                ", " + std::to_string(dilation.second) + ")");
}

// The convolution's sizes from x's shape (N, C, H, W) and weight's (O, C/groups, KH, KW),
// checked for consistency.
cuda::ConvShape conv_shape(const char* op, const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                           const Pair& stride, const Pair& padding, const Pair& dilation, int64_t groups) {
  require_geometry(op, stride, padding, dilation);
  if (xs.size() != 4) throw std::invalid_argument(std::string(op) + ": input must be 4-D (N, C, H, W), got " + shape_str(xs));
  if (ws.size() != 4)
    throw std::invalid_argument(std::string(op) + ": weight must be 4-D (O, C/groups, KH, KW), got " + shape_str(ws));
  if (groups < 1 || xs[1] % groups || ws[0] % groups)
    throw std::invalid_argument(std::string(op) + ": groups=" + std::to_string(groups) +
                                " must divide the input channels (" + std::to_string(xs[1]) +
                                ") and the output channels (" + std::to_string(ws[0]) + ")");
  if (ws[1] * groups != xs[1])
    throw std::invalid_argument(std::string(op) + ": input " + shape_str(xs) + " has " + std::to_string(xs[1]) +
                                " channels but weight " + shape_str(ws) + " expects " + std::to_string(ws[1] * groups));
  if (ws[2] < 1 || ws[3] < 1) throw std::invalid_argument(std::string(op) + ": empty kernel " + shape_str(ws));
  cuda::ConvShape s{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], 0, 0, stride.first, stride.second,
                    padding.first, padding.second, dilation.first, dilation.second, groups};
  s.oh = out_size(s.h, s.kh, s.sh, s.ph, s.dh);
  s.ow = out_size(s.w, s.kw, s.sw, s.pw, s.dw);
  if (s.oh < 1 || s.ow < 1)
    throw std::invalid_argument(std::string(op) + ": kernel " + shape_str({s.kh, s.kw}) + " (dilation " +
                                shape_str({s.dh, s.dw}) + ") is larger than the padded input " +
                                shape_str({s.h + 2 * s.ph, s.w + 2 * s.pw}));
  return s;
}

void check_launch(cudaError_t err, const char* op) {
  if (err == cudaErrorInvalidValue)
    throw std::invalid_argument(std::string(op) + ": sizes too large for the kernel's 32-bit indexing or grid");
  check_cuda(err, op);
}

void conv2d_forward(const py::object& out_obj, const py::object& x_obj, const py::object& w_obj,
                    const py::object& bias_obj, Pair stride, Pair padding, Pair dilation, int64_t groups,
                    const std::string& precision, uintptr_t stream) {
  const char* op = "conv2d_forward";
  const CudaArray x = cuda_array(x_obj, op, "x"), w = cuda_array(w_obj, op, "weight");
  const CudaArray out = cuda_array(out_obj, op, "out");
  require_same_dtype(x, w, op, "x", "weight");
  require_same_dtype(out, x, op, "out", "x");
  const cuda::ConvShape s = conv_shape(op, x.shape, w.shape, stride, padding, dilation, groups);
  require_shape(out, {s.n, s.o, s.oh, s.ow}, op, "out");
  require_writeable(out, op, "out");
  require_disjoint(out, x, op, "out", "x");
  require_disjoint(out, w, op, "out", "weight");
  const void* bias = nullptr;
  if (!bias_obj.is_none()) {
    const CudaArray b = cuda_array(bias_obj, op, "bias");
    require_same_dtype(b, x, op, "bias", "x");
    require_shape(b, {s.o}, op, "bias");
    require_disjoint(out, b, op, "out", "bias");
    bias = reinterpret_cast<const void*>(b.ptr);
  }
  const cuda::Math math = parse_precision(precision, op);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    if (x.is_f32())
      err = cuda::conv2d_forward<float>(reinterpret_cast<float*>(out.ptr), reinterpret_cast<const float*>(x.ptr),
                                        reinterpret_cast<const float*>(w.ptr), static_cast<const float*>(bias), s,
                                        math, as_stream(stream));
    else
      err = cuda::conv2d_forward<double>(reinterpret_cast<double*>(out.ptr), reinterpret_cast<const double*>(x.ptr),
                                         reinterpret_cast<const double*>(w.ptr), static_cast<const double*>(bias), s,
                                         cuda::Math::simt, as_stream(stream));
  }
  check_launch(err, op);
}

void conv2d_grad_input(const py::object& dx_obj, const py::object& dy_obj, const py::object& w_obj, Pair stride,
                       Pair padding, Pair dilation, int64_t groups, const std::string& precision, uintptr_t stream) {
  const char* op = "conv2d_grad_input";
  const CudaArray dy = cuda_array(dy_obj, op, "dy"), w = cuda_array(w_obj, op, "weight");
  const CudaArray dx = cuda_array(dx_obj, op, "dx");
  require_same_dtype(dy, w, op, "dy", "weight");
  require_same_dtype(dx, dy, op, "dx", "dy");
  const cuda::ConvShape s = conv_shape(op, dx.shape, w.shape, stride, padding, dilation, groups);
  require_shape(dy, {s.n, s.o, s.oh, s.ow}, op, "dy");
  require_writeable(dx, op, "dx");
  require_disjoint(dx, dy, op, "dx", "dy");
  require_disjoint(dx, w, op, "dx", "weight");
  const cuda::Math math = parse_precision(precision, op);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    if (dy.is_f32())
      err = cuda::conv2d_grad_input<float>(reinterpret_cast<float*>(dx.ptr), reinterpret_cast<const float*>(dy.ptr),
                                           reinterpret_cast<const float*>(w.ptr), s, math, as_stream(stream));
    else
      err = cuda::conv2d_grad_input<double>(reinterpret_cast<double*>(dx.ptr), reinterpret_cast<const double*>(dy.ptr),
                                            reinterpret_cast<const double*>(w.ptr), s, cuda::Math::simt,
                                            as_stream(stream));
  }
  check_launch(err, op);
}

void conv2d_grad_weight(const py::object& dw_obj, const py::object& dy_obj, const py::object& x_obj, Pair stride,
                        Pair padding, Pair dilation, int64_t groups, const std::string& precision, uintptr_t stream) {
  const char* op = "conv2d_grad_weight";
  const CudaArray dy = cuda_array(dy_obj, op, "dy"), x = cuda_array(x_obj, op, "x");
  const CudaArray dw = cuda_array(dw_obj, op, "dw");
  require_same_dtype(dy, x, op, "dy", "x");
  require_same_dtype(dw, dy, op, "dw", "dy");
  const cuda::ConvShape s = conv_shape(op, x.shape, dw.shape, stride, padding, dilation, groups);
  require_shape(dy, {s.n, s.o, s.oh, s.ow}, op, "dy");
  require_writeable(dw, op, "dw");
  require_disjoint(dw, dy, op, "dw", "dy");
  require_disjoint(dw, x, op, "dw", "x");
  const cuda::Math math = parse_precision(precision, op);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    if (dy.is_f32())
      err = cuda::conv2d_grad_weight<float>(reinterpret_cast<float*>(dw.ptr), reinterpret_cast<const float*>(dy.ptr),
                                            reinterpret_cast<const float*>(x.ptr), s, math, as_stream(stream));
    else
      err = cuda::conv2d_grad_weight<double>(reinterpret_cast<double*>(dw.ptr),
                                             reinterpret_cast<const double*>(dy.ptr),
                                             reinterpret_cast<const double*>(x.ptr), s, cuda::Math::simt,
                                             as_stream(stream));
  }
  check_launch(err, op);
}

void max_pool2d_forward(const py::object& out_obj, const py::object& idx_obj, const py::object& x_obj, Pair kernel,
                        Pair stride, Pair padding, Pair dilation, uintptr_t stream) {
  const char* op = "max_pool2d_forward";
  const CudaArray x = cuda_array(x_obj, op, "x");
  const CudaArray out = cuda_array(out_obj, op, "out");
  const CudaArray idx = cuda_array(idx_obj, op, "indices", Layout::contiguous, Elem::int64);
  require_same_dtype(out, x, op, "out", "x");
  require_ndim(x, 4, op, "x");
  require_geometry(op, stride, padding, dilation);
  if (kernel.first < 1 || kernel.second < 1)
    throw std::invalid_argument(std::string(op) + ": kernel must be >= 1, got " + shape_str({kernel.first, kernel.second}));
  cuda::PoolShape s{x.dim(0), x.dim(1), x.dim(2), x.dim(3), 0, 0, kernel.first, kernel.second, stride.first,
                    stride.second, padding.first, padding.second, dilation.first, dilation.second};
  s.oh = out_size(s.h, s.kh, s.sh, s.ph, s.dh);
  s.ow = out_size(s.w, s.kw, s.sw, s.pw, s.dw);
  if (s.oh < 1 || s.ow < 1)
    throw std::invalid_argument(std::string(op) + ": kernel " + shape_str({s.kh, s.kw}) +
                                " is larger than the padded input " + shape_str({s.h + 2 * s.ph, s.w + 2 * s.pw}));
  const std::vector<int64_t> shape{s.n, s.c, s.oh, s.ow};
  require_shape(out, shape, op, "out");
  require_shape(idx, shape, op, "indices");
  require_writeable(out, op, "out");
  require_writeable(idx, op, "indices");
  require_disjoint(out, x, op, "out", "x");
  require_disjoint(idx, x, op, "indices", "x");
  require_disjoint(idx, out, op, "indices", "out");
  cudaError_t err;
  {
    py::gil_scoped_release release;
    auto* ip = reinterpret_cast<int64_t*>(idx.ptr);
    if (x.is_f32())
      err = cuda::max_pool2d_forward<float>(reinterpret_cast<float*>(out.ptr), ip, reinterpret_cast<const float*>(x.ptr),
                                            s, as_stream(stream));
    else
      err = cuda::max_pool2d_forward<double>(reinterpret_cast<double*>(out.ptr), ip,
                                             reinterpret_cast<const double*>(x.ptr), s, as_stream(stream));
  }
  check_launch(err, op);
}

void max_pool2d_backward(const py::object& dx_obj, const py::object& dy_obj, const py::object& idx_obj,
                         uintptr_t stream) {
  const char* op = "max_pool2d_backward";
  const CudaArray dy = cuda_array(dy_obj, op, "dy");
  const CudaArray idx = cuda_array(idx_obj, op, "indices", Layout::contiguous, Elem::int64);
  const CudaArray dx = cuda_array(dx_obj, op, "dx");
  require_same_dtype(dx, dy, op, "dx", "dy");
  require_ndim(dy, 4, op, "dy");
  require_ndim(dx, 4, op, "dx");
  require_shape(idx, dy.shape, op, "indices");
  if (dx.shape[0] != dy.shape[0] || dx.shape[1] != dy.shape[1])
    throw std::invalid_argument(std::string(op) + ": dx " + shape_str(dx.shape) + " and dy " + shape_str(dy.shape) +
                                " differ in their batch or channel sizes");
  require_writeable(dx, op, "dx");
  require_disjoint(dx, dy, op, "dx", "dy");
  require_disjoint(dx, idx, op, "dx", "indices");
  const int64_t planes = dx.dim(0) * dx.dim(1), hw_in = dx.dim(2) * dx.dim(3), hw_out = dy.dim(2) * dy.dim(3);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    const auto* ip = reinterpret_cast<const int64_t*>(idx.ptr);
    if (dy.is_f32())
      err = cuda::max_pool2d_backward<float>(reinterpret_cast<float*>(dx.ptr), reinterpret_cast<const float*>(dy.ptr),
                                             ip, planes, hw_in, hw_out, as_stream(stream));
    else
      err = cuda::max_pool2d_backward<double>(reinterpret_cast<double*>(dx.ptr),
                                              reinterpret_cast<const double*>(dy.ptr), ip, planes, hw_in, hw_out,
                                              as_stream(stream));
  }
  check_launch(err, op);
}

}  // namespace

void bind_cuda_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("out"), py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups") = 1,
        py::kw_only(), py::arg("precision") = "highest", py::arg("stream") = 0,
        "out (N, O, OH, OW) = conv2d(x (N, C, H, W), weight (O, C/groups, KH, KW)) + bias (O,) or None; "
        "C-contiguous float32/float64 GPU arrays; precision as in matmul.");
  m.def("conv2d_grad_input", &conv2d_grad_input, py::arg("dx"), py::arg("dy"), py::arg("weight"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups") = 1, py::kw_only(),
        py::arg("precision") = "highest", py::arg("stream") = 0,
        "dx (N, C, H, W) = the gradient of conv2d's input for dy (N, O, OH, OW); dx is overwritten.");
  m.def("conv2d_grad_weight", &conv2d_grad_weight, py::arg("dw"), py::arg("dy"), py::arg("x"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups") = 1, py::kw_only(),
        py::arg("precision") = "highest", py::arg("stream") = 0,
        "dw (O, C/groups, KH, KW) = the gradient of conv2d's weight for dy and x; dw is overwritten. "
        "Deterministic: split-K partial sums are added in a fixed order.");
  m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("out"), py::arg("indices"), py::arg("x"), py::arg("kernel"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::kw_only(), py::arg("stream") = 0,
        "out and indices (int64, h*W + w in the input plane) (N, C, OH, OW) = max over each window of x, as "
        "numpy_ref.max_pool2d_forward (first max wins ties, NaN is taken, padding never is).");
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dx"), py::arg("dy"), py::arg("indices"), py::kw_only(),
        py::arg("stream") = 0,
        "dx (N, C, H, W) = 0, then each dy element added at its index in its plane (indices outside the plane "
        "are skipped). Overlapping windows add atomically, so the order of those sums varies.");
}

}  // namespace engine
