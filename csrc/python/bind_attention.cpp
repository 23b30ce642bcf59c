// Binding of the CPU attention: attention_forward / attention_backward on (B, H, T, D) float
// arrays read through their strides (a unit stride in the last dim), with an optional bool or
// float mask broadcastable to (B, H, Tq, Tk) that is read in place, never expanded.
#include <cmath>
#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "common/checks.h"
#include "cpu/attention.h"
#include "python/bindings.h"

namespace engine {
namespace {

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

std::string strides_str(const py::array& x) {
  return dims_str({x.strides(), x.strides() + x.ndim()});
}

bool is_aligned(const py::array& x) {
  return x.size() == 0 ||
         (py::detail::array_proxy(x.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_);
}

// The element strides of x; byte strides that are not whole elements, or a misaligned array, are
// refused (they cannot be addressed as T).
std::vector<int64_t> element_strides(const py::array& x, const std::string& op, const char* name) {
  const auto item = static_cast<int64_t>(x.itemsize());
  std::vector<int64_t> st(x.ndim());
  for (py::ssize_t i = 0; i < x.ndim(); ++i) {
    if (x.strides(i) % item)
      throw std::invalid_argument(op + ": " + name + " " + shape_str(x) + " has byte strides " +
                                  strides_str(x) + " that are not multiples of its itemsize " +
                                  std::to_string(item));
    st[i] = x.strides(i) / item;
  }
  if (!is_aligned(x))
    throw std::invalid_argument(op + ": " + name + " " + shape_str(x) +
                                " is not aligned to its itemsize");
  return st;
}

template <typename T>
cpu::AttentionOperand<T> operand(const py::array& x, const std::string& op, const char* name) {
  const std::vector<int64_t> st = element_strides(x, op, name);
  // The last dim of a (B, H, T, X) operand is contiguous; that of an lse (B, H, T) is its rows.
  const py::ssize_t last = x.ndim() - 1;
  if (x.ndim() == 4 && x.size() && x.shape(last) > 1 && st[last] != 1)
    throw std::invalid_argument(op + ": " + name + " " + shape_str(x) + " with byte strides " +
                                strides_str(x) +
                                " needs a unit stride in its last dim; make it contiguous first "
                                "(numpy.ascontiguousarray)");
  return {static_cast<const T*>(x.data()), st[0], st[1], st[2]};
}

void require_rank(const py::array& x, py::ssize_t ndim, const std::string& op, const char* name,
                  const char* legend) {
  if (x.ndim() != ndim)
    throw std::invalid_argument(op + ": " + name + " must be " + std::to_string(ndim) + "-D " +
                                legend + ", got shape " + shape_str(x));
}

void require_dims(const py::array& x, const std::vector<int64_t>& want, const std::string& op,
                  const char* name, const std::string& why) {
  for (size_t i = 0; i < want.size(); ++i)
    if (x.shape(i) != want[i])
      throw std::invalid_argument(op + ": " + name + " has shape " + shape_str(x) + ", expected " +
                                  dims_str(want) + " (" + why + ")");
}

// The sizes of q, k, v, checked against each other.
struct Sizes {
  int64_t b, h, tq, tk, d, dv;
};

Sizes check_qkv(const py::array& q, const py::array& k, const py::array& v, const std::string& op) {
  require_rank(q, 4, op, "q", "(B, H, Tq, D)");
  require_rank(k, 4, op, "k", "(B, H, Tk, D)");
  require_rank(v, 4, op, "v", "(B, H, Tk, Dv)");
  float_dtype(q, op.c_str(), "q");
  require_same_dtype(q, k, op.c_str(), "q", "k");
  require_same_dtype(q, v, op.c_str(), "q", "v");
  const std::string qkv = "q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v);
  if (k.shape(0) != q.shape(0) || k.shape(1) != q.shape(1) || v.shape(0) != q.shape(0) ||
      v.shape(1) != q.shape(1))
    throw std::invalid_argument(op + ": q, k and v must have the same batch and head dims, got " +
                                qkv);
  if (k.shape(3) != q.shape(3))
    throw std::invalid_argument(op + ": q and k must have the same head size D, got " + qkv);
  if (v.shape(2) != k.shape(2))
    throw std::invalid_argument(op + ": k and v must have the same length Tk, got " + qkv);
  return {q.shape(0), q.shape(1), q.shape(2), k.shape(2), q.shape(3), v.shape(3)};
}

// The mask, right-aligned against (B, H, Tq, Tk) like NumPy broadcasting: each of its dims is 1
// (stride 0) or the full size.
cpu::AttentionMask check_mask(const py::object& obj, const py::array& q, const Sizes& s,
                              const std::string& op) {
  cpu::AttentionMask m;
  if (obj.is_none()) return m;
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(op + ": mask must be a numpy.ndarray or None, got " +
                         py::str(py::type::of(obj)).cast<std::string>());
  const auto mask = py::reinterpret_borrow<py::array>(obj);
  m.is_bool = mask.dtype().is(py::dtype::of<bool>());
  if (!m.is_bool && !mask.dtype().is(q.dtype()))
    throw py::type_error(op + ": mask must be bool or " + dtype_str(q) + " like q, got " +
                         dtype_str(mask));
  const std::vector<int64_t> full{s.b, s.h, s.tq, s.tk};
  if (mask.ndim() > 4)
    throw std::invalid_argument(op + ": mask of shape " + shape_str(mask) +
                                " does not broadcast to " + dims_str(full));
  const std::vector<int64_t> st = element_strides(mask, op, "mask");
  int64_t strides[4] = {0, 0, 0, 0};
  for (py::ssize_t i = 0; i < mask.ndim(); ++i) {
    const py::ssize_t j = 4 - mask.ndim() + i;
    if (mask.shape(i) != 1 && mask.shape(i) != full[j])
      throw std::invalid_argument(op + ": mask of shape " + shape_str(mask) +
                                  " does not broadcast to " + dims_str(full) + " (dim " +
                                  std::to_string(i) + ")");
    strides[j] = mask.shape(i) == 1 ? 0 : st[i];
  }
  m.data = mask.data();
  m.sb = strides[0], m.sh = strides[1], m.sq = strides[2], m.sk = strides[3];
  return m;
}

double check_scale(const py::object& scale, int64_t d, const std::string& op) {
  if (scale.is_none()) {
    if (d == 0) throw std::invalid_argument(op + ": head size D = 0 needs an explicit scale");
    return 1.0 / std::sqrt(static_cast<double>(d));
  }
  if (!PyNumber_Check(scale.ptr()) || py::isinstance<py::str>(scale))
    throw py::type_error(op + ": scale must be a number or None, got " +
                         py::str(py::type::of(scale)).cast<std::string>());
  const double s = py::float_(scale).cast<double>();
  if (!std::isfinite(s))
    throw std::invalid_argument(op + ": scale must be finite, got " + std::to_string(s));
  return s;
}

template <typename T>
cpu::AttentionArgs<T> make_args(const Sizes& s, double scale, bool causal,
                                const cpu::AttentionMask& mask, const py::array& q,
                                const py::array& k, const py::array& v, const std::string& op) {
  return {s.b, s.h, s.tq, s.tk, s.d, s.dv, static_cast<T>(scale), causal, mask,
          operand<T>(q, op, "q"), operand<T>(k, op, "k"), operand<T>(v, op, "v")};
}

template <typename T>
py::tuple run_forward(const Sizes& s, double scale, bool causal, const cpu::AttentionMask& mask,
                      const py::array& q, const py::array& k, const py::array& v) {
  const cpu::AttentionArgs<T> a =
      make_args<T>(s, scale, causal, mask, q, k, v, "attention_forward");
  py::array_t<T> out({s.b, s.h, s.tq, s.dv}), lse({s.b, s.h, s.tq});
  T* po = out.mutable_data();
  T* pl = lse.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::attention_forward<T>(po, pl, a);
  }
  return py::make_tuple(out, lse);
}

py::tuple attention_forward(const py::array& q, const py::array& k, const py::array& v,
                            const py::object& mask, bool is_causal, const py::object& scale) {
  const std::string op = "attention_forward";
  const Sizes s = check_qkv(q, k, v, op);
  const cpu::AttentionMask m = check_mask(mask, q, s, op);
  const double sc = check_scale(scale, s.d, op);
  if (float_dtype(q, op.c_str(), "q") == DType::f32)
    return run_forward<float>(s, sc, is_causal, m, q, k, v);
  return run_forward<double>(s, sc, is_causal, m, q, k, v);
}

template <typename T>
py::tuple run_backward(const Sizes& s, double scale, bool causal, const cpu::AttentionMask& mask,
                       const py::array& dout, const py::array& q, const py::array& k,
                       const py::array& v, const py::array& out, const py::array& lse) {
  const std::string op = "attention_backward";
  const cpu::AttentionArgs<T> a = make_args<T>(s, scale, causal, mask, q, k, v, op);
  const cpu::AttentionOperand<T> g = operand<T>(dout, op, "dout"), o = operand<T>(out, op, "out");
  const cpu::AttentionOperand<T> l = operand<T>(lse, op, "lse");
  py::array_t<T> dq({s.b, s.h, s.tq, s.d}), dk({s.b, s.h, s.tk, s.d}), dv({s.b, s.h, s.tk, s.dv});
  T* pq = dq.mutable_data();
  T* pk = dk.mutable_data();
  T* pv = dv.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::attention_backward<T>(pq, pk, pv, g, a, o, l);
  }
  return py::make_tuple(dq, dk, dv);
}

py::tuple attention_backward(const py::array& dout, const py::array& q, const py::array& k,
                             const py::array& v, const py::array& out, const py::array& lse,
                             const py::object& mask, bool is_causal, const py::object& scale) {
  const std::string op = "attention_backward";
  const Sizes s = check_qkv(q, k, v, op);
  require_rank(dout, 4, op, "dout", "(B, H, Tq, Dv)");
  require_rank(out, 4, op, "out", "(B, H, Tq, Dv)");
  require_rank(lse, 3, op, "lse", "(B, H, Tq)");
  for (const auto& [x, name] : {std::pair{&dout, "dout"}, std::pair{&out, "out"},
                                std::pair{&lse, "lse"}})
    require_same_dtype(q, *x, op.c_str(), "q", name);
  const std::string why = "q " + shape_str(q) + ", v " + shape_str(v);
  require_dims(dout, {s.b, s.h, s.tq, s.dv}, op, "dout", why);
  require_dims(out, {s.b, s.h, s.tq, s.dv}, op, "out", why);
  require_dims(lse, {s.b, s.h, s.tq}, op, "lse", why);
  const cpu::AttentionMask m = check_mask(mask, q, s, op);
  const double sc = check_scale(scale, s.d, op);
  if (float_dtype(q, op.c_str(), "q") == DType::f32)
    return run_backward<float>(s, sc, is_causal, m, dout, q, k, v, out, lse);
  return run_backward<double>(s, sc, is_causal, m, dout, q, k, v, out, lse);
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("mask") = py::none(), py::arg("is_causal") = false, py::arg("scale") = py::none(),
        "(out, lse) = softmax(q·kᵀ·scale + mask)·v and its per-row log-sum-exp, for float32/"
        "float64 q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv) of one dtype, each with a "
        "unit stride in its last dim. mask: None, bool (True = may attend) or q's float dtype "
        "(added), broadcastable to (B, H, Tq, Tk). is_causal: query i sees keys j <= i. scale "
        "defaults to 1/sqrt(D). A row that sees no key gets out = 0, lse = -inf.");
  m.def("attention_backward", &attention_backward, py::arg("dout"), py::arg("q"), py::arg("k"),
        py::arg("v"), py::arg("out"), py::arg("lse"), py::arg("mask") = py::none(),
        py::arg("is_causal") = false, py::arg("scale") = py::none(),
        "(dq, dk, dv) of attention_forward given dout and the forward's out and lse, recomputing "
        "the probabilities block by block; the same arguments as attention_forward. Bitwise "
        "identical for any thread count.");
  m.def("attention_isas", &cpu::attention_isas,
        "The kernel sets this CPU runs, widest first: from 'avx512-amx' (the float32 forward's "
        "products on AMX tiles, the rest as 'avx512'), 'avx512', 'avx2-fma', 'portable'.");
  m.def("attention_isa", &cpu::attention_isa, "The kernel set attention uses now.");
  m.def("attention_use_isa", &cpu::attention_use_isa, py::arg("isa"),
        "Makes attention use `isa` (one of attention_isas(), to test and time each on one "
        "machine), or the widest again for 'auto'.");
}

}  // namespace engine
