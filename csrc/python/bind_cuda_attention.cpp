// Bindings of the GPU attention kernels and of the float32 <-> bf16 conversions: every array is
// validated (dims, shapes, dtypes, layout, device, overlap of outputs) before anything launches;
// the GIL is released while the kernels are queued on the caller's stream.
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "cuda/attention.cuh"
#include "python/bindings_cuda.h"
#include "python/cuda_array.h"

namespace engine {
namespace {

using cuda::AttnElem;

AttnElem elem_of(const CudaArray& a) {
  if (a.typestr == "<f8") return AttnElem::f64;
  if (a.typestr == "<u2") return AttnElem::bf16;
  return AttnElem::f32;
}

// The dtype of out, lse and the gradients: float64 for float64 inputs, float32 otherwise.
const char* acc_typestr(AttnElem e) { return e == AttnElem::f64 ? "<f8" : "<f4"; }

struct Checked {
  cuda::AttentionArgs args;
  CudaArray q, k, v;
  std::optional<CudaArray> mask;
  // The inputs an output must not overlap, named as in messages.
  std::vector<std::pair<const CudaArray*, const char*>> inputs() const {
    std::vector<std::pair<const CudaArray*, const char*>> r{{&q, "q"}, {&k, "k"}, {&v, "v"}};
    if (mask) r.emplace_back(&*mask, "mask");
    return r;
  }
};

// q, k, v, mask, scale and is_causal, checked; op names the binding in messages.
Checked check_inputs(const char* op, const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
                     const py::object& mask_obj, bool is_causal, const py::object& scale_obj, bool simt) {
  Checked c;
  c.q = cuda_array(q_obj, op, "q", Layout::contiguous, Elem::attention);
  c.k = cuda_array(k_obj, op, "k", Layout::contiguous, Elem::attention);
  c.v = cuda_array(v_obj, op, "v", Layout::contiguous, Elem::attention);
  require_ndim(c.q, 4, op, "q");
  require_ndim(c.k, 4, op, "k");
  require_ndim(c.v, 4, op, "v");
  require_same_dtype(c.k, c.q, op, "k", "q");
  require_same_dtype(c.v, c.q, op, "v", "q");
  const int64_t b = c.q.dim(0), h = c.q.dim(1), tq = c.q.dim(2), d = c.q.dim(3);
  const int64_t tk = c.k.dim(2), dv = c.v.dim(3);
  require_shape(c.k, {b, h, tk, d}, op, "k");
  require_shape(c.v, {b, h, tk, dv}, op, "v");

  cuda::AttentionArgs& a = c.args;
  a.elem = elem_of(c.q);
  a.b = b, a.h = h, a.tq = tq, a.tk = tk, a.d = d, a.dv = dv;
  a.q = reinterpret_cast<const void*>(c.q.ptr);
  a.k = reinterpret_cast<const void*>(c.k.ptr);
  a.v = reinterpret_cast<const void*>(c.v.ptr);
  a.causal = is_causal;
  a.force_simt = simt;
  if (scale_obj.is_none()) {
    if (d == 0) throw std::invalid_argument(std::string(op) + ": head dim 0 needs an explicit scale");
    a.scale = 1.0 / std::sqrt(double(d));
  } else {
    a.scale = scale_obj.cast<double>();
    if (!std::isfinite(a.scale)) throw std::invalid_argument(std::string(op) + ": scale must be finite");
  }

  if (!mask_obj.is_none()) {
    c.mask = cuda_array(mask_obj, op, "mask", Layout::strided, Elem::mask);
    const CudaArray& m = *c.mask;
    require_ndim(m, 4, op, "mask");
    const std::vector<int64_t> full{b, h, tq, tk};
    for (size_t i = 0; i < 4; ++i)
      if (m.shape[i] != full[i] && m.shape[i] != 1)
        throw std::invalid_argument(std::string(op) + ": mask of shape " + shape_str(m.shape) +
                                    " does not broadcast to " + shape_str(full));
    if (m.typestr != "|b1" && m.typestr != acc_typestr(a.elem))
      throw py::type_error(std::string(op) + ": a float mask must be " + dtype_name(acc_typestr(a.elem)) +
                           " for " + dtype_name(c.q.typestr) + " inputs, got " + dtype_name(m.typestr));
    a.mask.kind = m.typestr == "|b1" ? cuda::MaskKind::boolean : cuda::MaskKind::additive;
    a.mask.ptr = reinterpret_cast<const void*>(m.ptr);
    // A broadcast dimension (size 1) is read at index 0 whatever its stride says.
    auto stride = [&](size_t i) { return m.shape[i] == 1 ? int64_t(0) : m.strides[i]; };
    a.mask.sb = stride(0), a.mask.sh = stride(1), a.mask.sq = stride(2), a.mask.sk = stride(3);
  }
  return c;
}

// An output: C-contiguous, writeable, the accumulation dtype, the given shape, sharing memory with
// no input and no earlier output.
CudaArray check_output(const char* op, const char* name, const py::object& obj, const Checked& c,
                       const std::vector<int64_t>& shape, std::vector<std::pair<CudaArray, const char*>>& outputs) {
  CudaArray o = cuda_array(obj, op, name);
  const char* want = acc_typestr(c.args.elem);
  if (o.typestr != want)
    throw py::type_error(std::string(op) + ": " + name + " must be " + dtype_name(want) + " for " +
                         dtype_name(c.q.typestr) + " inputs, got " + dtype_name(o.typestr));
  require_shape(o, shape, op, name);
  require_writeable(o, op, name);
  for (const auto& [x, x_name] : c.inputs()) require_disjoint(o, *x, op, name, x_name);
  for (const auto& [other, other_name] : outputs) require_disjoint(o, other, op, name, other_name);
  outputs.emplace_back(o, name);
  return o;
}

void attention_forward(const py::object& q, const py::object& k, const py::object& v, const py::object& out_obj,
                       const py::object& lse_obj, const py::object& mask, bool is_causal, const py::object& scale,
                       bool simt, uintptr_t stream) {
  const char* op = "attention_forward";
  Checked c = check_inputs(op, q, k, v, mask, is_causal, scale, simt);
  const auto& a = c.args;
  std::vector<std::pair<CudaArray, const char*>> outputs;
  const CudaArray out = check_output(op, "out", out_obj, c, {a.b, a.h, a.tq, a.dv}, outputs);
  const CudaArray lse = check_output(op, "lse", lse_obj, c, {a.b, a.h, a.tq}, outputs);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = cuda::attention_forward(a, reinterpret_cast<void*>(out.ptr), reinterpret_cast<void*>(lse.ptr),
                                  as_stream(stream));
  }
  if (err == cudaErrorInvalidValue)
    throw std::invalid_argument(std::string(op) + ": head sizes D=" + std::to_string(a.d) + ", Dv=" +
                                std::to_string(a.dv) + " need more shared memory than the device has");
  check_cuda(err, op);
}

void attention_backward(const py::object& dout_obj, const py::object& q, const py::object& k, const py::object& v,
                        const py::object& out_obj, const py::object& lse_obj, const py::object& dq_obj,
                        const py::object& dk_obj, const py::object& dv_obj, const py::object& mask, bool is_causal,
                        const py::object& scale, bool simt, uintptr_t stream) {
  const char* op = "attention_backward";
  Checked c = check_inputs(op, q, k, v, mask, is_causal, scale, simt);
  const auto& a = c.args;
  const CudaArray dout = cuda_array(dout_obj, op, "dout", Layout::contiguous, Elem::attention);
  require_same_dtype(dout, c.q, op, "dout", "q");
  require_shape(dout, {a.b, a.h, a.tq, a.dv}, op, "dout");
  const CudaArray out = cuda_array(out_obj, op, "out");
  const CudaArray lse = cuda_array(lse_obj, op, "lse");
  for (const auto& [x, name] : {std::pair{&out, "out"}, std::pair{&lse, "lse"}})
    if (x->typestr != acc_typestr(a.elem))
      throw py::type_error(std::string(op) + ": " + name + " must be " + dtype_name(acc_typestr(a.elem)) + " for " +
                           dtype_name(c.q.typestr) + " inputs, got " + dtype_name(x->typestr));
  require_shape(out, {a.b, a.h, a.tq, a.dv}, op, "out");
  require_shape(lse, {a.b, a.h, a.tq}, op, "lse");

  std::vector<std::pair<CudaArray, const char*>> outputs;
  const CudaArray dq = check_output(op, "dq", dq_obj, c, {a.b, a.h, a.tq, a.d}, outputs);
  const CudaArray dk = check_output(op, "dk", dk_obj, c, {a.b, a.h, a.tk, a.d}, outputs);
  const CudaArray dv = check_output(op, "dv", dv_obj, c, {a.b, a.h, a.tk, a.dv}, outputs);
  for (const auto& [g, name] : outputs)
    for (const auto& [x, xname] : {std::pair{&dout, "dout"}, std::pair{&out, "out"}, std::pair{&lse, "lse"}})
      require_disjoint(g, *x, op, name, xname);
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = cuda::attention_backward(a, reinterpret_cast<const void*>(dout.ptr), reinterpret_cast<const void*>(out.ptr),
                                   reinterpret_cast<const void*>(lse.ptr), reinterpret_cast<void*>(dq.ptr),
                                   reinterpret_cast<void*>(dk.ptr), reinterpret_cast<void*>(dv.ptr), as_stream(stream));
  }
  if (err == cudaErrorInvalidValue)
    throw std::invalid_argument(std::string(op) + ": head sizes D=" + std::to_string(a.d) + ", Dv=" +
                                std::to_string(a.dv) + " need more shared memory than the device has");
  check_cuda(err, op);
}

bool attention_uses_tensor_cores(const py::object& q, const py::object& k, const py::object& v, bool simt) {
  Checked c = check_inputs("attention_uses_tensor_cores", q, k, v, py::none(), false, py::float_(1.0), simt);
  return cuda::attention_uses_tensor_cores(c.args);
}

// out = x converted: float32 -> uint16 bf16 bits (to_bf16) or back; same shape, both C-contiguous.
void convert(const char* op, const py::object& out_obj, const py::object& x_obj, bool to_bf16, uintptr_t stream) {
  const CudaArray x = cuda_array(x_obj, op, "x", Layout::contiguous, Elem::attention);
  const CudaArray out = cuda_array(out_obj, op, "out", Layout::contiguous, Elem::attention);
  const char* from = to_bf16 ? "<f4" : "<u2";
  const char* to = to_bf16 ? "<u2" : "<f4";
  if (x.typestr != from || out.typestr != to)
    throw py::type_error(std::string(op) + ": expected x " + dtype_name(from) + " and out " + dtype_name(to) +
                         ", got " + dtype_name(x.typestr) + " and " + dtype_name(out.typestr));
  require_shape(out, x.shape, op, "out");
  require_writeable(out, op, "out");
  require_disjoint(out, x, op, "out", "x");
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = to_bf16 ? cuda::float_to_bf16(reinterpret_cast<uint16_t*>(out.ptr), reinterpret_cast<const float*>(x.ptr),
                                        x.size, as_stream(stream))
                  : cuda::bf16_to_float(reinterpret_cast<float*>(out.ptr), reinterpret_cast<const uint16_t*>(x.ptr),
                                        x.size, as_stream(stream));
  }
  check_cuda(err, op);
}

}  // namespace

void bind_cuda_attention(py::module_& m) {
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"),
        py::arg("lse"), py::kw_only(), py::arg("mask") = py::none(), py::arg("is_causal") = false,
        py::arg("scale") = py::none(), py::arg("simt") = false, py::arg("stream") = 0,
        "out = softmax(q kᵀ·scale + mask) v and lse = the rows' log-sum-exp, flash style. q (B, H, Tq, D), k (B, H, "
        "Tk, D), v (B, H, Tk, Dv): C-contiguous float32, float64, or uint16 holding bf16 bits (tensor cores when "
        "D == Dv in {32, 64, 128} on sm_80+). out (B, H, Tq, Dv) and lse (B, H, Tq): float64 for float64 inputs, "
        "else float32. mask: None, bool (True = may attend) or a float added to the scores (the out dtype), of "
        "shape (B|1, H|1, Tq|1, Tk|1), any strides. is_causal: query i sees keys j <= i. scale defaults to "
        "1/sqrt(D). A row that may attend nowhere gives out = 0, lse = -inf. simt=True forces the CUDA-core "
        "kernels (for tests).");
  m.def("attention_backward", &attention_backward, py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("out"), py::arg("lse"), py::arg("dq"), py::arg("dk"), py::arg("dv"), py::kw_only(),
        py::arg("mask") = py::none(), py::arg("is_causal") = false, py::arg("scale") = py::none(),
        py::arg("simt") = false, py::arg("stream") = 0,
        "dq, dk, dv of attention_forward given dout (dtype of q) and the forward's out and lse; the outputs in "
        "out's dtype. Deterministic (no atomics).");
  m.def("attention_uses_tensor_cores", &attention_uses_tensor_cores, py::arg("q"), py::arg("k"), py::arg("v"),
        py::kw_only(), py::arg("simt") = false, "Whether attention on these arrays runs on tensor cores.");
  m.def(
      "float_to_bf16",
      [](const py::object& out, const py::object& x, uintptr_t stream) { convert("float_to_bf16", out, x, true, stream); },
      py::arg("out"), py::arg("x"), py::kw_only(), py::arg("stream") = 0,
      "out (uint16) = the bf16 bits of float32 x, rounded to nearest even.");
  m.def(
      "bf16_to_float",
      [](const py::object& out, const py::object& x, uintptr_t stream) { convert("bf16_to_float", out, x, false, stream); },
      py::arg("out"), py::arg("x"), py::kw_only(), py::arg("stream") = 0,
      "out (float32) = the values of the bf16 bits in x (uint16).");
}

}  // namespace engine
