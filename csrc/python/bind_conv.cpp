// Bindings of the CPU conv2d (forward, grad input, grad weight) and max_pool2d (forward,
// backward): every array and size is checked here, outputs are allocated here, and the GIL is
// released while the kernel runs.
#include <array>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "common/checks.h"
#include "common/workspace.h"
#include "cpu/conv2d.h"
#include "cpu/pool2d.h"
#include "python/bindings.h"

namespace engine {
namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

std::string pair_str(const Pair& p) {
  return "(" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")";
}

std::string quad_str(const Quad& q) {
  return "(" + std::to_string(q[0]) + ", " + std::to_string(q[1]) + ", " + std::to_string(q[2]) +
         ", " + std::to_string(q[3]) + ")";
}

py::array as_ndarray(const py::object& obj, const char* op, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(op) + ": " + name + " must be a numpy.ndarray, got " +
                         py::str(py::type::of(obj)).cast<std::string>());
  return py::reinterpret_borrow<py::array>(obj);
}

// A 4-D C-contiguous aligned float array.
py::array nchw_input(const py::object& obj, const char* op, const char* name) {
  py::array a = as_ndarray(obj, op, name);
  float_dtype(a, op, name);
  require_ndim(a, 4, op, name);
  require_c_contiguous(a, op, name);
  if (a.size() && !(py::detail::array_proxy(a.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw std::invalid_argument(std::string(op) + ": " + name + " " + shape_str(a) +
                                " is not aligned to its itemsize");
  return a;
}

Quad shape4(const py::array& a) { return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)}; }

void require_at_least(const Pair& p, int64_t lo, const char* op, const char* name) {
  if (p[0] < lo || p[1] < lo)
    throw std::invalid_argument(std::string(op) + ": " + name + " must be >= " +
                                std::to_string(lo) + ", got " + pair_str(p));
}

void require_shape(const py::array& a, const Quad& want, const char* op, const char* name,
                   const std::string& why) {
  if (shape4(a) != want)
    throw std::invalid_argument(std::string(op) + ": " + name + " has shape " + shape_str(a) +
                                ", expected " + quad_str(want) + " " + why);
}

// The conv shape from the input and weight shapes, every size and group rule checked.
cpu::ConvShape conv_shape(const char* op, const Quad& x, const Quad& wt, const Pair& stride,
                          const Pair& padding, const Pair& dilation, int64_t groups) {
  for (int64_t d : x)
    if (d < 0) throw std::invalid_argument(std::string(op) + ": input shape " + quad_str(x) + " has a negative size");
  for (int64_t d : wt)
    if (d < 0) throw std::invalid_argument(std::string(op) + ": weight shape " + quad_str(wt) + " has a negative size");
  require_at_least(stride, 1, op, "stride");
  require_at_least(dilation, 1, op, "dilation");
  require_at_least(padding, 0, op, "padding");
  if (groups < 1)
    throw std::invalid_argument(std::string(op) + ": groups must be >= 1, got " + std::to_string(groups));
  if (x[1] % groups || wt[0] % groups)
    throw std::invalid_argument(std::string(op) + ": groups=" + std::to_string(groups) +
                                " must divide the input channels (" + std::to_string(x[1]) +
                                ") and the output channels (" + std::to_string(wt[0]) + ")");
  if (wt[1] * groups != x[1])
    throw std::invalid_argument(std::string(op) + ": input " + quad_str(x) + " has " +
                                std::to_string(x[1]) + " channels but weight " + quad_str(wt) +
                                " expects " + std::to_string(wt[1] * groups) +
                                " (weight.shape[1] * groups)");
  if (wt[2] < 1 || wt[3] < 1)
    throw std::invalid_argument(std::string(op) + ": weight " + quad_str(wt) + " has an empty kernel");
  const int64_t oh = cpu::conv_out_size(x[2], wt[2], stride[0], padding[0], dilation[0]);
  const int64_t ow = cpu::conv_out_size(x[3], wt[3], stride[1], padding[1], dilation[1]);
  if (oh < 1 || ow < 1)
    throw std::invalid_argument(std::string(op) + ": kernel (" + std::to_string(wt[2]) + ", " +
                                std::to_string(wt[3]) + ") with dilation " + pair_str(dilation) +
                                " is larger than the padded input (" +
                                std::to_string(x[2] + 2 * padding[0]) + ", " +
                                std::to_string(x[3] + 2 * padding[1]) + ")");
  return {x[0], x[1], x[2], x[3], wt[0], wt[2], wt[3], oh, ow, stride[0], stride[1],
          padding[0], padding[1], dilation[0], dilation[1], groups};
}

// The kernels allocate plans and per-thread workspace sized by the problem; a problem too large
// for memory says so with the op's name instead of a bare std::bad_alloc.
[[noreturn]] void throw_out_of_memory(const char* op, const std::bad_alloc& e) {
  throw KernelAllocError(std::string(op) + ": Unable to allocate the kernel's working memory for "
                         "this problem size (" + e.what() + ")");
}

std::string dy_why(const cpu::ConvShape& s) {
  return "(N, O, OH, OW) for input (" + std::to_string(s.n) + ", " + std::to_string(s.c) + ", " +
         std::to_string(s.h) + ", " + std::to_string(s.w) + ")";
}

py::array conv2d_forward(const py::object& x_obj, const py::object& w_obj, const py::object& b_obj,
                         const Pair& stride, const Pair& padding, const Pair& dilation,
                         int64_t groups) {
  const char* op = "conv2d_forward";
  const py::array x = nchw_input(x_obj, op, "x"), w = nchw_input(w_obj, op, "weight");
  require_same_dtype(x, w, op, "x", "weight");
  const cpu::ConvShape s = conv_shape(op, shape4(x), shape4(w), stride, padding, dilation, groups);
  std::optional<py::array> b;
  if (!b_obj.is_none()) {
    b = as_ndarray(b_obj, op, "bias");
    require_same_dtype(x, *b, op, "x", "bias");
    if (b->ndim() != 1 || b->shape(0) != s.o)
      throw std::invalid_argument(std::string(op) + ": bias has shape " + shape_str(*b) +
                                  ", expected (" + std::to_string(s.o) + ",)");
    require_c_contiguous(*b, op, "bias");
  }
  const DType dt = float_dtype(x, op, "x");
  py::array y = empty_like_dtype(dt, {s.n, s.o, s.oh, s.ow});
  void* yp = y.mutable_data();
  const void *xp = x.data(), *wp = w.data(), *bp = b ? b->data() : nullptr;
  try {
    py::gil_scoped_release release;
    if (dt == DType::f32)
      cpu::conv2d_forward(static_cast<float*>(yp), static_cast<const float*>(xp),
                          static_cast<const float*>(wp), static_cast<const float*>(bp), s);
    else
      cpu::conv2d_forward(static_cast<double*>(yp), static_cast<const double*>(xp),
                          static_cast<const double*>(wp), static_cast<const double*>(bp), s);
  } catch (const std::bad_alloc& e) {
    throw_out_of_memory(op, e);
  }
  return y;
}

py::array conv2d_grad_input(const py::object& dy_obj, const py::object& w_obj,
                            const Quad& input_shape, const Pair& stride, const Pair& padding,
                            const Pair& dilation, int64_t groups) {
  const char* op = "conv2d_grad_input";
  const py::array dy = nchw_input(dy_obj, op, "dy"), w = nchw_input(w_obj, op, "weight");
  require_same_dtype(dy, w, op, "dy", "weight");
  const cpu::ConvShape s = conv_shape(op, input_shape, shape4(w), stride, padding, dilation, groups);
  require_shape(dy, {s.n, s.o, s.oh, s.ow}, op, "dy", dy_why(s));
  const DType dt = float_dtype(dy, op, "dy");
  py::array dx = empty_like_dtype(dt, {s.n, s.c, s.h, s.w});
  void* dxp = dx.mutable_data();
  const void *dyp = dy.data(), *wp = w.data();
  try {
    py::gil_scoped_release release;
    if (dt == DType::f32)
      cpu::conv2d_grad_input(static_cast<float*>(dxp), static_cast<const float*>(dyp),
                             static_cast<const float*>(wp), s);
    else
      cpu::conv2d_grad_input(static_cast<double*>(dxp), static_cast<const double*>(dyp),
                             static_cast<const double*>(wp), s);
  } catch (const std::bad_alloc& e) {
    throw_out_of_memory(op, e);
  }
  return dx;
}

py::array conv2d_grad_weight(const py::object& dy_obj, const py::object& x_obj,
                             const Quad& weight_shape, const Pair& stride, const Pair& padding,
                             const Pair& dilation, int64_t groups) {
  const char* op = "conv2d_grad_weight";
  const py::array dy = nchw_input(dy_obj, op, "dy"), x = nchw_input(x_obj, op, "x");
  require_same_dtype(dy, x, op, "dy", "x");
  const cpu::ConvShape s = conv_shape(op, shape4(x), weight_shape, stride, padding, dilation, groups);
  require_shape(dy, {s.n, s.o, s.oh, s.ow}, op, "dy", dy_why(s));
  const DType dt = float_dtype(dy, op, "dy");
  py::array dw = empty_like_dtype(dt, {weight_shape[0], weight_shape[1], weight_shape[2], weight_shape[3]});
  void* dwp = dw.mutable_data();
  const void *dyp = dy.data(), *xp = x.data();
  try {
    py::gil_scoped_release release;
    if (dt == DType::f32)
      cpu::conv2d_grad_weight(static_cast<float*>(dwp), static_cast<const float*>(dyp),
                              static_cast<const float*>(xp), s);
    else
      cpu::conv2d_grad_weight(static_cast<double*>(dwp), static_cast<const double*>(dyp),
                              static_cast<const double*>(xp), s);
  } catch (const std::bad_alloc& e) {
    throw_out_of_memory(op, e);
  }
  return dw;
}

cpu::PoolShape pool_shape(const char* op, const Quad& x, const Pair& kernel, const Pair& stride,
                          const Pair& padding, const Pair& dilation) {
  for (int64_t d : x)
    if (d < 0) throw std::invalid_argument(std::string(op) + ": input shape " + quad_str(x) + " has a negative size");
  require_at_least(kernel, 1, op, "kernel");
  require_at_least(stride, 1, op, "stride");
  require_at_least(dilation, 1, op, "dilation");
  require_at_least(padding, 0, op, "padding");
  // Wider padding could leave a window with no input element, whose argmax would not exist.
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2)
    throw std::invalid_argument(std::string(op) + ": padding " + pair_str(padding) +
                                " must be at most half the kernel size " + pair_str(kernel));
  const int64_t oh = cpu::conv_out_size(x[2], kernel[0], stride[0], padding[0], dilation[0]);
  const int64_t ow = cpu::conv_out_size(x[3], kernel[1], stride[1], padding[1], dilation[1]);
  if (oh < 1 || ow < 1)
    throw std::invalid_argument(std::string(op) + ": kernel " + pair_str(kernel) + " with dilation " +
                                pair_str(dilation) + " is larger than the padded input (" +
                                std::to_string(x[2] + 2 * padding[0]) + ", " +
                                std::to_string(x[3] + 2 * padding[1]) + ")");
  return {x[0], x[1], x[2], x[3], oh, ow, kernel[0], kernel[1], stride[0], stride[1],
          padding[0], padding[1], dilation[0], dilation[1]};
}

py::tuple max_pool2d_forward(const py::object& x_obj, const Pair& kernel, const Pair& stride,
                             const Pair& padding, const Pair& dilation) {
  const char* op = "max_pool2d_forward";
  const py::array x = nchw_input(x_obj, op, "x");
  const cpu::PoolShape s = pool_shape(op, shape4(x), kernel, stride, padding, dilation);
  const DType dt = float_dtype(x, op, "x");
  py::array y = empty_like_dtype(dt, {s.n, s.c, s.oh, s.ow});
  py::array_t<int64_t> idx(std::vector<py::ssize_t>{s.n, s.c, s.oh, s.ow});
  int64_t* ip = idx.mutable_data();
  void* yp = y.mutable_data();
  const void* xp = x.data();
  try {
    py::gil_scoped_release release;
    if (dt == DType::f32)
      cpu::max_pool2d_forward(static_cast<float*>(yp), ip, static_cast<const float*>(xp), s);
    else
      cpu::max_pool2d_forward(static_cast<double*>(yp), ip, static_cast<const double*>(xp), s);
  } catch (const std::bad_alloc& e) {
    throw_out_of_memory(op, e);
  }
  return py::make_tuple(y, idx);
}

py::array max_pool2d_backward(const py::object& dy_obj, const py::object& idx_obj,
                              const Quad& input_shape) {
  const char* op = "max_pool2d_backward";
  const py::array dy = nchw_input(dy_obj, op, "dy");
  const py::array idx = as_ndarray(idx_obj, op, "indices");
  if (!idx.dtype().is(py::dtype::of<int64_t>()))
    throw py::type_error(std::string(op) + ": indices must be int64, got " + dtype_str(idx));
  require_same_shape(dy, idx, op, "dy", "indices");
  require_c_contiguous(idx, op, "indices");
  for (int64_t d : input_shape)
    if (d < 0) throw std::invalid_argument(std::string(op) + ": input_shape " + quad_str(input_shape) + " has a negative size");
  if (input_shape[0] != dy.shape(0) || input_shape[1] != dy.shape(1))
    throw std::invalid_argument(std::string(op) + ": dy " + shape_str(dy) +
                                " does not match input_shape " + quad_str(input_shape) +
                                " in its batch and channel sizes");
  const cpu::PoolShape s{input_shape[0], input_shape[1], input_shape[2], input_shape[3],
                         dy.shape(2), dy.shape(3), 1, 1, 1, 1, 0, 0, 1, 1};
  const DType dt = float_dtype(dy, op, "dy");
  py::array dx = empty_like_dtype(dt, {s.n, s.c, s.h, s.w});
  bool ok;
  const auto* ip = static_cast<const int64_t*>(idx.data());
  void* dxp = dx.mutable_data();
  const void* dyp = dy.data();
  try {
    py::gil_scoped_release release;
    ok = dt == DType::f32
             ? cpu::max_pool2d_backward(static_cast<float*>(dxp), static_cast<const float*>(dyp), ip, s)
             : cpu::max_pool2d_backward(static_cast<double*>(dxp), static_cast<const double*>(dyp), ip, s);
  } catch (const std::bad_alloc& e) {
    throw_out_of_memory(op, e);
  }
  if (!ok)
    throw std::invalid_argument(std::string(op) + ": indices must lie in [0, H*W) = [0, " +
                                std::to_string(s.h * s.w) + ") for input_shape " +
                                quad_str(input_shape));
  return dx;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups") = 1,
        "y (N, O, OH, OW) = conv2d(x (N, C, H, W), weight (O, C/groups, KH, KW)) + bias (O,) or "
        "None; stride, padding, dilation: pairs. C-contiguous float32/float64 arrays of one dtype.");
  m.def("conv2d_grad_input", &conv2d_grad_input, py::arg("dy"), py::arg("weight"),
        py::arg("input_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups") = 1,
        "dx of input_shape (N, C, H, W) for conv2d_forward, from dy (N, O, OH, OW) and weight.");
  m.def("conv2d_grad_weight", &conv2d_grad_weight, py::arg("dy"), py::arg("x"),
        py::arg("weight_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups") = 1,
        "dweight of weight_shape (O, C/groups, KH, KW) for conv2d_forward, from dy and x; "
        "bitwise the same for every thread count.");
  m.def("conv2d_paths", &cpu::conv2d_paths,
        "The paths stride-1 conv2d can take on this CPU, widest first: from 'avx512-direct', "
        "'avx2-direct', 'gemm-panels' (every other stride takes 'gemm-panels').");
  m.def("conv2d_path", &cpu::conv2d_path, "The path stride-1 conv2d takes now.");
  m.def("conv2d_use_path", &cpu::conv2d_use_path, py::arg("path"),
        "Makes stride-1 conv2d take `path` (one of conv2d_paths(); tests hold one against "
        "another), or the widest again for 'auto'.");
  m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("x"), py::arg("kernel"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation") = Pair{1, 1},
        "(y, indices) of max pooling x (N, C, H, W) with -inf padding; indices (int64) hold h*W + w "
        "of each max in the unpadded plane; ties keep the first max, NaN is taken.");
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("dy"), py::arg("indices"),
        py::arg("input_shape"),
        "dx of input_shape: each dy element added at its plane's flat index from indices.");
}

}  // namespace engine
