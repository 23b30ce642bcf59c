// Binding of the CPU GEMM: matmul on 2-D or batched 3-D float arrays given through their strides
// (so transposed views need no copy), the FMA peak probe, and the microkernel switch for tests.
#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "common/checks.h"
#include "common/parallel.h"
#include "cpu/gemm.h"
#include "python/bindings.h"

namespace engine {
namespace {

// One operand as (batch, rows, cols) with element strides; a 2-D operand has batch stride 0,
// so it is reused by every item of a batched product.
struct Operand {
  int64_t batch, rows, cols, bs, rs, cs;
};

std::string dims_str(const std::vector<py::ssize_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

std::string strides_str(const py::array& x) {
  return dims_str({x.strides(), x.strides() + x.ndim()});
}

Operand operand(const py::array& x, const char* name) {
  const auto item = static_cast<int64_t>(x.itemsize());
  int64_t st[3] = {0, 0, 0};
  for (py::ssize_t i = 0; i < x.ndim(); ++i) {
    if (x.strides(i) % item)
      throw std::invalid_argument(std::string("matmul: ") + name + " " + shape_str(x) +
                                  " has byte strides " + strides_str(x) +
                                  " that are not multiples of its itemsize " + std::to_string(item));
    st[i] = x.strides(i) / item;
  }
  if (x.size() && !(py::detail::array_proxy(x.ptr())->flags &
                    py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw std::invalid_argument(std::string("matmul: ") + name + " " + shape_str(x) +
                                " is not aligned to its itemsize");
  const py::ssize_t d = x.ndim() - 2;
  Operand o{d ? x.shape(0) : 1, x.shape(d), x.shape(d + 1), d ? st[0] : 0, st[d], st[d + 1]};
  // A dimension of size 1 never steps, so its stride says nothing about the layout.
  if (o.rows == 1) o.rs = 1;
  if (o.cols == 1) o.cs = 1;
  if (x.size() && o.rs != 1 && o.cs != 1)
    throw std::invalid_argument(std::string("matmul: ") + name + " " + shape_str(x) +
                                " with byte strides " + strides_str(x) +
                                " has no unit stride in its last two dimensions; make it "
                                "contiguous first (numpy.ascontiguousarray)");
  return o;
}

// The byte range [lo, hi) an array touches; empty for an empty array.
std::pair<const char*, const char*> extent(const py::array& x) {
  const char* lo = static_cast<const char*>(x.data());
  const char* hi = lo;
  if (x.size() == 0) return {lo, lo};
  for (py::ssize_t i = 0; i < x.ndim(); ++i) {
    const py::ssize_t span = (x.shape(i) - 1) * x.strides(i);
    (span < 0 ? lo : hi) += span;
  }
  return {lo, hi + x.itemsize()};
}

void require_disjoint(const py::array& out, const py::array& x, const char* name) {
  const auto [olo, ohi] = extent(out);
  const auto [xlo, xhi] = extent(x);
  if (olo < xhi && xlo < ohi)
    throw std::invalid_argument(std::string("matmul: out ") + shape_str(out) +
                                " shares memory with " + name + " " + shape_str(x) +
                                "; pass a separate out array");
}

py::array require_ndarray(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string("matmul: ") + name + " must be a numpy.ndarray, got " +
                         py::str(py::type::of(obj)).cast<std::string>());
  return py::reinterpret_borrow<py::array>(obj);
}

cpu::Activation parse_activation(const std::string& name) {
  if (name == "none") return cpu::Activation::none;
  if (name == "relu") return cpu::Activation::relu;
  if (name == "gelu") return cpu::Activation::gelu;
  throw std::invalid_argument("matmul: activation must be 'none', 'relu' or 'gelu', got '" + name +
                              "'");
}

template <typename T>
void run_gemm(py::array& out, const py::array& a, const Operand& oa, const py::array& b,
              const Operand& ob, const std::optional<py::array>& bias, double alpha, double beta,
              cpu::Activation act) {
  cpu::GemmArgs<T> g;
  g.batch = a.ndim() == 3 ? oa.batch : ob.batch;
  g.m = oa.rows, g.n = ob.cols, g.k = oa.cols;
  g.a = static_cast<const T*>(a.data()), g.a_bs = oa.bs, g.a_rs = oa.rs, g.a_cs = oa.cs;
  g.b = static_cast<const T*>(b.data()), g.b_bs = ob.bs, g.b_rs = ob.rs, g.b_cs = ob.cs;
  g.c = static_cast<T*>(out.mutable_data()), g.c_bs = g.m * g.n, g.c_rs = g.n;
  g.alpha = static_cast<T>(alpha), g.beta = static_cast<T>(beta);
  g.bias = bias ? static_cast<const T*>(bias->data()) : nullptr;
  g.act = act;
  py::gil_scoped_release release;
  cpu::gemm<T>(g);
}

py::array matmul(const py::array& a, const py::array& b, const py::object& out_obj, double alpha,
                 double beta, const py::object& bias_obj, const std::string& activation) {
  // Built only for a message: formatting shapes costs about as much as a small product's checks.
  const auto ab = [&] { return "a " + shape_str(a) + " and b " + shape_str(b); };
  for (const auto& [x, name] : {std::pair{&a, "a"}, std::pair{&b, "b"}})
    if (x->ndim() != 2 && x->ndim() != 3)
      throw std::invalid_argument(std::string("matmul: ") + name + " must be 2-D or 3-D, got shape " +
                                  shape_str(*x));
  const DType dt = float_dtype(a, "matmul", "a");
  require_same_dtype(a, b, "matmul", "a", "b");
  const Operand oa = operand(a, "a"), ob = operand(b, "b");
  if (oa.cols != ob.rows)
    throw std::invalid_argument("matmul: " + ab() + ": inner dimensions " + std::to_string(oa.cols) +
                                " and " + std::to_string(ob.rows) + " differ");
  if (a.ndim() == 3 && b.ndim() == 3 && oa.batch != ob.batch)
    throw std::invalid_argument("matmul: " + ab() + ": batch sizes " + std::to_string(oa.batch) +
                                " and " + std::to_string(ob.batch) + " differ");
  const cpu::Activation act = parse_activation(activation);

  std::vector<py::ssize_t> shape{oa.rows, ob.cols};
  if (a.ndim() == 3 || b.ndim() == 3) shape.insert(shape.begin(), a.ndim() == 3 ? oa.batch : ob.batch);

  std::optional<py::array> bias;
  if (!bias_obj.is_none()) {
    bias = require_ndarray(bias_obj, "bias");
    if (!bias->dtype().is(a.dtype()))
      throw py::type_error("matmul: bias must be " + dtype_str(a) + " like a and b, got " +
                           dtype_str(*bias));
    if (bias->ndim() != 1 || bias->shape(0) != ob.cols)
      throw std::invalid_argument("matmul: bias has shape " + shape_str(*bias) + ", expected (" +
                                  std::to_string(ob.cols) + ",) for " + ab());
    require_c_contiguous(*bias, "matmul", "bias");
  }

  py::array out;
  if (out_obj.is_none()) {
    if (beta != 0.0)
      throw std::invalid_argument("matmul: beta=" + std::to_string(beta) +
                                  " needs out= (beta scales out's previous contents)");
    out = empty_like_dtype(dt, shape);
  } else {
    out = require_ndarray(out_obj, "out");
    if (!out.dtype().is(a.dtype()))
      throw py::type_error("matmul: out must be " + dtype_str(a) + " like a and b, got " +
                           dtype_str(out));
    bool same = out.ndim() == static_cast<py::ssize_t>(shape.size());
    for (size_t i = 0; same && i < shape.size(); ++i) same = out.shape(i) == shape[i];
    if (!same)
      throw std::invalid_argument("matmul: out has shape " + shape_str(out) + ", expected " +
                                  dims_str(shape) + " for " + ab());
    require_c_contiguous(out, "matmul", "out");
    require_writeable(out, "matmul", "out");
    require_disjoint(out, a, "a");
    require_disjoint(out, b, "b");
    if (bias) require_disjoint(out, *bias, "bias");
  }
  if (dt == DType::f32) run_gemm<float>(out, a, oa, b, ob, bias, alpha, beta, act);
  else run_gemm<double>(out, a, oa, b, ob, bias, alpha, beta, act);
  return out;
}

double fma_peak(const py::object& dtype, std::optional<int> threads) {
  const py::dtype dt = py::dtype::from_args(dtype);
  const bool f64 = dt.is(py::dtype::of<double>());
  if (!f64 && !dt.is(py::dtype::of<float>()))
    throw py::type_error("fma_peak_gflops: dtype must be float32 or float64, got " +
                         py::str(dt).cast<std::string>());
  const int n = threads.value_or(max_threads());
  if (n < 1)
    throw std::invalid_argument("fma_peak_gflops: threads must be >= 1, got " + std::to_string(n));
  py::gil_scoped_release release;
  return cpu::fma_peak_gflops(f64, n);
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::kw_only(),
        py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("bias") = py::none(),
        py::arg("activation") = "none",
        "act(alpha * a @ b + beta * out + bias) for float32/float64 a (M, K) or (B, M, K) and b "
        "(K, N) or (B, K, N); a 2-D operand is shared by every batch item. Each operand needs a "
        "unit stride in its last two dimensions (C-contiguous or a transposed view). out, when "
        "given, is a C-contiguous array of the result shape and dtype that shares no memory with "
        "a, b or bias; beta != 0 needs out. activation: 'none', 'relu' or 'gelu' (exact erf). "
        "Returns out, or a new C-contiguous array. Bitwise identical for any thread count.");
  m.def("fma_peak_gflops", &fma_peak, py::arg("dtype") = "float32", py::arg("threads") = py::none(),
        "Measured FMA throughput in GFLOP/s (2 flops per lane) of `threads` threads (default: "
        "the OpenMP thread count) running independent FMA chains for ~0.2 s.");
  m.def("gemm_isas", &cpu::gemm_isas,
        "The microkernel sets this CPU runs, widest first: from 'avx512', 'avx2-fma', 'portable'.");
  m.def("gemm_isa", &cpu::gemm_isa, "The microkernel set matmul uses now (one of gemm_isas()).");
  m.def("gemm_use_isa", &cpu::gemm_use_isa, py::arg("isa"),
        "Makes matmul use `isa` (one of gemm_isas(), to test and time each on one machine), or "
        "the widest again for 'auto'.");
}

}  // namespace engine
