// Bindings of the fused GPU ops (softmax, layer norm, cross-entropy, Adam): C-contiguous
// float32/float64 arrays of one dtype, shapes checked against the op's signature, outputs
// writeable and sharing no memory with the inputs; the GIL is released while they are queued.
#include <optional>
#include <string>
#include <vector>

#include "cuda/fused_ops.cuh"
#include "python/bindings_cuda.h"
#include "python/cuda_array.h"

namespace engine {
namespace {

// The arrays of one call: inputs and outputs checked together, so every message names the op.
struct Call {
  explicit Call(const char* name) : op(name) {}
  const char* op;
  std::vector<std::pair<CudaArray, const char*>> inputs, outputs;
  std::string typestr;

  CudaArray in(const py::object& obj, const char* name, const std::vector<int64_t>& shape) {
    CudaArray a = cuda_array(obj, op, name);
    same_dtype(a, name);
    require_shape(a, shape, op, name);
    inputs.emplace_back(a, name);
    return a;
  }
  std::optional<CudaArray> opt_in(const py::object& obj, const char* name, const std::vector<int64_t>& shape) {
    if (obj.is_none()) return std::nullopt;
    return in(obj, name, shape);
  }
  CudaArray index(const py::object& obj, const char* name, const std::vector<int64_t>& shape) {
    CudaArray a = cuda_array(obj, op, name, Layout::contiguous, Elem::int64);
    require_shape(a, shape, op, name);
    inputs.emplace_back(a, name);
    return a;
  }
  CudaArray out(const py::object& obj, const char* name, const std::vector<int64_t>& shape) {
    CudaArray a = cuda_array(obj, op, name);
    same_dtype(a, name);
    require_shape(a, shape, op, name);
    require_writeable(a, op, name);
    for (const auto& [x, xn] : inputs) require_disjoint(a, x, op, name, xn);
    for (const auto& [x, xn] : outputs) require_disjoint(a, x, op, name, xn);
    outputs.emplace_back(a, name);
    return a;
  }
  // An array updated in place: an output that other in-place arrays and the inputs must not overlap.
  CudaArray inout(const py::object& obj, const char* name, const std::vector<int64_t>& shape) {
    return out(obj, name, shape);
  }
  void same_dtype(const CudaArray& a, const char* name) {
    if (typestr.empty()) typestr = a.typestr;
    else if (a.typestr != typestr)
      throw py::type_error(std::string(op) + ": " + name + " must be " + dtype_name(typestr) + " like the other "
                           "arrays, got " + dtype_name(a.typestr));
  }
  bool f32() const { return typestr == "<f4"; }
};

template <typename T>
T* ptr(const CudaArray& a) { return reinterpret_cast<T*>(a.ptr); }
template <typename T>
T* ptr(const std::optional<CudaArray>& a) { return a ? reinterpret_cast<T*>(a->ptr) : nullptr; }

// Runs f<float> or f<double> without the GIL, then turns a CUDA error into an exception.
template <typename F>
void launch(const Call& c, F&& f) {
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = c.f32() ? f(float{}) : f(double{});
  }
  check_cuda(err, c.op);
}

std::pair<int64_t, int64_t> rows_cols(const CudaArray& x, const char* op, const char* name) {
  if (x.shape.empty()) throw std::invalid_argument(std::string(op) + ": " + name + " must have at least one dim");
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < x.shape.size(); ++i) rows *= x.shape[i];
  return {rows, x.shape.back()};
}

void softmax_forward(const py::object& y_obj, const py::object& x_obj, bool log, uintptr_t stream) {
  Call c("softmax_forward");
  const CudaArray x = cuda_array(x_obj, c.op, "x");
  c.in(x_obj, "x", x.shape);
  const CudaArray y = c.out(y_obj, "y", x.shape);
  const auto [rows, cols] = rows_cols(x, c.op, "x");
  launch(c, [&](auto t) {
    using T = decltype(t);
    return cuda::softmax_forward<T>(ptr<T>(y), ptr<const T>(x), rows, cols, log, as_stream(stream));
  });
}

void softmax_backward(const py::object& dx_obj, const py::object& dy_obj, const py::object& y_obj, bool log,
                      uintptr_t stream) {
  Call c("softmax_backward");
  const CudaArray dy = cuda_array(dy_obj, c.op, "dy");
  c.in(dy_obj, "dy", dy.shape);
  const CudaArray y = c.in(y_obj, "y", dy.shape);
  const CudaArray dx = c.out(dx_obj, "dx", dy.shape);
  const auto [rows, cols] = rows_cols(dy, c.op, "dy");
  launch(c, [&](auto t) {
    using T = decltype(t);
    return cuda::softmax_backward<T>(ptr<T>(dx), ptr<const T>(dy), ptr<const T>(y), rows, cols, log,
                                     as_stream(stream));
  });
}

void layer_norm_forward(const py::object& y_obj, const py::object& mean_obj, const py::object& rstd_obj,
                        const py::object& x_obj, const py::object& w_obj, const py::object& b_obj, double eps,
                        uintptr_t stream) {
  Call c("layer_norm_forward");
  const CudaArray x = cuda_array(x_obj, c.op, "x");
  c.in(x_obj, "x", x.shape);
  const auto [rows, cols] = rows_cols(x, c.op, "x");
  const auto w = c.opt_in(w_obj, "weight", {cols});
  const auto b = c.opt_in(b_obj, "bias", {cols});
  std::vector<int64_t> row_shape(x.shape.begin(), x.shape.end() - 1);
  const CudaArray y = c.out(y_obj, "y", x.shape);
  const CudaArray mean = c.out(mean_obj, "mean", row_shape);
  const CudaArray rstd = c.out(rstd_obj, "rstd", row_shape);
  if (!(eps >= 0)) throw std::invalid_argument("layer_norm_forward: eps must be >= 0");
  launch(c, [&](auto t) {
    using T = decltype(t);
    return cuda::layer_norm_forward<T>(ptr<T>(y), ptr<T>(mean), ptr<T>(rstd), ptr<const T>(x), ptr<const T>(w),
                                       ptr<const T>(b), rows, cols, eps, as_stream(stream));
  });
}

void layer_norm_backward(const py::object& dx_obj, const py::object& dw_obj, const py::object& db_obj,
                         const py::object& dy_obj, const py::object& x_obj, const py::object& w_obj,
                         const py::object& mean_obj, const py::object& rstd_obj, uintptr_t stream) {
  Call c("layer_norm_backward");
  const CudaArray x = cuda_array(x_obj, c.op, "x");
  c.in(x_obj, "x", x.shape);
  const auto [rows, cols] = rows_cols(x, c.op, "x");
  std::vector<int64_t> row_shape(x.shape.begin(), x.shape.end() - 1);
  const CudaArray dy = c.in(dy_obj, "dy", x.shape);
  const auto w = c.opt_in(w_obj, "weight", {cols});
  const CudaArray mean = c.in(mean_obj, "mean", row_shape);
  const CudaArray rstd = c.in(rstd_obj, "rstd", row_shape);
  const CudaArray dx = c.out(dx_obj, "dx", x.shape);
  std::optional<CudaArray> dw, db;
  if (w) {
    if (dw_obj.is_none() || db_obj.is_none())
      throw std::invalid_argument("layer_norm_backward: dweight and dbias are required with a weight");
    dw = c.out(dw_obj, "dweight", {cols});
    db = c.out(db_obj, "dbias", {cols});
  }
  launch(c, [&](auto t) {
    using T = decltype(t);
    return cuda::layer_norm_backward<T>(ptr<T>(dx), ptr<T>(dw), ptr<T>(db), ptr<const T>(dy), ptr<const T>(x),
                                        ptr<const T>(w), ptr<const T>(mean), ptr<const T>(rstd), rows, cols,
                                        as_stream(stream));
  });
}

void cross_entropy_forward(const py::object& losses_obj, const py::object& lse_obj, const py::object& logits_obj,
                           const py::object& target_obj, int64_t ignore_index, uintptr_t stream) {
  Call c("cross_entropy_forward");
  const CudaArray logits = cuda_array(logits_obj, c.op, "logits");
  require_ndim(logits, 2, c.op, "logits");
  c.in(logits_obj, "logits", logits.shape);
  const int64_t rows = logits.dim(0), cols = logits.dim(1);
  const CudaArray target = c.index(target_obj, "target", {rows});
  const CudaArray losses = c.out(losses_obj, "losses", {rows});
  const CudaArray lse = c.out(lse_obj, "lse", {rows});
  if (rows > 0 && cols == 0) throw std::invalid_argument("cross_entropy_forward: logits has no classes");
  launch(c, [&](auto t) {
    using T = decltype(t);
    return cuda::cross_entropy_forward<T>(ptr<T>(losses), ptr<T>(lse), ptr<const T>(logits),
                                          ptr<const int64_t>(target), rows, cols, ignore_index, as_stream(stream));
  });
}

void cross_entropy_backward(const py::object& dlogits_obj, const py::object& dlosses_obj, const py::object& logits_obj,
                            const py::object& target_obj, const py::object& lse_obj, int64_t ignore_index,
                            uintptr_t stream) {
  Call c("cross_entropy_backward");
  const CudaArray logits = cuda_array(logits_obj, c.op, "logits");
  require_ndim(logits, 2, c.op, "logits");
  c.in(logits_obj, "logits", logits.shape);
  const int64_t rows = logits.dim(0), cols = logits.dim(1);
  const CudaArray dlosses = c.in(dlosses_obj, "dlosses", {rows});
  const CudaArray target = c.index(target_obj, "target", {rows});
  const CudaArray lse = c.in(lse_obj, "lse", {rows});
  const CudaArray dlogits = c.out(dlogits_obj, "dlogits", logits.shape);
  launch(c, [&](auto t) {
    using T = decltype(t);
    return cuda::cross_entropy_backward<T>(ptr<T>(dlogits), ptr<const T>(dlosses), ptr<const T>(logits),
                                           ptr<const int64_t>(target), ptr<const T>(lse), rows, cols, ignore_index,
                                           as_stream(stream));
  });
}

void adam_update(const py::object& p_obj, const py::object& g_obj, const py::object& m_obj, const py::object& v_obj,
                 int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
                 uintptr_t stream) {
  Call c("adam_update");
  const CudaArray g = cuda_array(g_obj, c.op, "grad");
  c.in(g_obj, "grad", g.shape);
  const CudaArray p = c.inout(p_obj, "param", g.shape);
  const CudaArray m = c.inout(m_obj, "exp_avg", g.shape);
  const CudaArray v = c.inout(v_obj, "exp_avg_sq", g.shape);
  if (step < 1) throw std::invalid_argument("adam_update: step must be >= 1, got " + std::to_string(step));
  launch(c, [&](auto t) {
    using T = decltype(t);
    return cuda::adam_update<T>(ptr<T>(p), ptr<const T>(g), ptr<T>(m), ptr<T>(v), g.size, step, lr, beta1, beta2,
                                eps, weight_decay, decoupled, as_stream(stream));
  });
}

}  // namespace

void bind_cuda_fused(py::module_& m) {
  using py::arg;
  m.def("softmax_forward", &softmax_forward, arg("y"), arg("x"), py::kw_only(), arg("log") = false, arg("stream") = 0,
        "y = softmax(x) (log_softmax with log=True) over the last axis; C-contiguous float32/float64.");
  m.def("softmax_backward", &softmax_backward, arg("dx"), arg("dy"), arg("y"), py::kw_only(), arg("log") = false,
        arg("stream") = 0, "dx of softmax (or log_softmax) from dy and the forward's y.");
  m.def("layer_norm_forward", &layer_norm_forward, arg("y"), arg("mean"), arg("rstd"), arg("x"), arg("weight"),
        arg("bias"), py::kw_only(), arg("eps") = 1e-5, arg("stream") = 0,
        "Layer norm over the last axis: y, mean, rstd (rstd = 1/sqrt(biased var + eps)); weight, bias or None.");
  m.def("layer_norm_backward", &layer_norm_backward, arg("dx"), arg("dweight"), arg("dbias"), arg("dy"), arg("x"),
        arg("weight"), arg("mean"), arg("rstd"), py::kw_only(), arg("stream") = 0,
        "dx (and dweight, dbias when weight is given, summed over rows in a fixed order) of layer_norm_forward.");
  m.def("cross_entropy_forward", &cross_entropy_forward, arg("losses"), arg("lse"), arg("logits"), arg("target"),
        py::kw_only(), arg("ignore_index") = -100, arg("stream") = 0,
        "Per-row loss lse - logits[target] (0 where target == ignore_index, NaN for a target outside the "
        "classes) and each row's log-sum-exp; logits (N, C), target int64 (N,).");
  m.def("cross_entropy_backward", &cross_entropy_backward, arg("dlogits"), arg("dlosses"), arg("logits"),
        arg("target"), arg("lse"), py::kw_only(), arg("ignore_index") = -100, arg("stream") = 0,
        "dlogits = dlosses[:, None] * (softmax(logits) - onehot(target)), zero rows where ignored.");
  m.def("adam_update", &adam_update, arg("param"), arg("grad"), arg("exp_avg"), arg("exp_avg_sq"), py::kw_only(),
        arg("step"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("decoupled"),
        arg("stream") = 0,
        "One Adam (decoupled=False) or AdamW step in place on param, exp_avg, exp_avg_sq (PyTorch's formulas).");
}

}  // namespace engine
