// Binding of the GPU GEMM: matmul on 2-D or batched 3-D GPU arrays read through their strides
// (transposed views need no copy), launched on the caller's stream with the GIL released.
#include <optional>
#include <string>

#include "cuda/gemm.cuh"
#include "python/bindings_cuda.h"
#include "python/cuda_array.h"

namespace engine {
namespace {

// One operand as (batch, rows, cols) with element strides; a 2-D operand has batch stride 0, so
// it is reused by every item of a batched product.
struct Operand {
  int64_t batch, rows, cols, bs, rs, cs;
};

Operand operand(const CudaArray& x, const char* name) {
  const size_t d = x.shape.size() - 2;
  Operand o{d ? x.shape[0] : 1, x.shape[d], x.shape[d + 1], d ? x.strides[0] : 0, x.strides[d], x.strides[d + 1]};
  // A dimension of size 1 never steps, so its stride says nothing about the layout.
  if (o.rows == 1) o.rs = 1;
  if (o.cols == 1) o.cs = 1;
  if (x.size == 0) o.rs = o.cs = 1;  // nothing is read: any layout will do
  if (x.size && o.rs != 1 && o.cs != 1)
    throw std::invalid_argument(std::string("matmul: ") + name + " " + shape_str(x.shape) + " with element strides " +
                                shape_str(x.strides) +
                                " has no unit stride in its last two dimensions; make it contiguous first "
                                "(cupy.ascontiguousarray)");
  return o;
}

cuda::Activation parse_activation(const std::string& name) {
  if (name == "none") return cuda::Activation::none;
  if (name == "relu") return cuda::Activation::relu;
  if (name == "gelu") return cuda::Activation::gelu;
  throw std::invalid_argument("matmul: activation must be 'none', 'relu' or 'gelu', got '" + name + "'");
}

template <typename T>
void run_gemm(const CudaArray& out, const Operand& oa, const CudaArray& a, const Operand& ob, const CudaArray& b,
              const std::optional<CudaArray>& bias, double alpha, double beta, cuda::Activation act, cuda::Math math,
              uintptr_t stream) {
  cuda::GemmArgs<T> g;
  g.batch = a.shape.size() == 3 ? oa.batch : ob.batch;
  g.m = oa.rows, g.n = ob.cols, g.k = oa.cols;
  g.a = reinterpret_cast<const T*>(a.ptr), g.a_bs = oa.bs, g.a_rs = oa.rs, g.a_cs = oa.cs;
  g.b = reinterpret_cast<const T*>(b.ptr), g.b_bs = ob.bs, g.b_rs = ob.rs, g.b_cs = ob.cs;
  g.c = reinterpret_cast<T*>(out.ptr), g.c_bs = g.m * g.n, g.c_rs = g.n;
  g.alpha = static_cast<T>(alpha), g.beta = static_cast<T>(beta);
  g.bias = bias ? reinterpret_cast<const T*>(bias->ptr) : nullptr;
  g.act = act;
  g.math = math;
  cudaError_t err;
  {
    py::gil_scoped_release release;
    err = cuda::gemm<T>(g, as_stream(stream));
  }
  check_cuda(err, "matmul");
}

void matmul(const py::object& a_obj, const py::object& b_obj, const py::object& out_obj, double alpha, double beta,
            const py::object& bias_obj, const std::string& activation, const std::string& precision,
            uintptr_t stream) {
  const CudaArray a = cuda_array(a_obj, "matmul", "a", Layout::strided);
  const CudaArray b = cuda_array(b_obj, "matmul", "b", Layout::strided);
  const std::string ab = "a " + shape_str(a.shape) + " and b " + shape_str(b.shape);
  for (const auto& [x, name] : {std::pair{&a, "a"}, std::pair{&b, "b"}})
    if (x->shape.size() != 2 && x->shape.size() != 3)
      throw std::invalid_argument(std::string("matmul: ") + name + " must be 2-D or 3-D, got shape " +
                                  shape_str(x->shape));
  require_same_dtype(a, b, "matmul", "a", "b");
  const Operand oa = operand(a, "a"), ob = operand(b, "b");
  if (oa.cols != ob.rows)
    throw std::invalid_argument("matmul: " + ab + ": inner dimensions " + std::to_string(oa.cols) + " and " +
                                std::to_string(ob.rows) + " differ");
  if (a.shape.size() == 3 && b.shape.size() == 3 && oa.batch != ob.batch)
    throw std::invalid_argument("matmul: " + ab + ": batch sizes " + std::to_string(oa.batch) + " and " +
                                std::to_string(ob.batch) + " differ");
  const cuda::Activation act = parse_activation(activation);
  const cuda::Math math = parse_precision(precision, "matmul");

  std::vector<int64_t> shape{oa.rows, ob.cols};
  if (a.shape.size() == 3 || b.shape.size() == 3) shape.insert(shape.begin(), a.shape.size() == 3 ? oa.batch : ob.batch);

  const CudaArray out = cuda_array(out_obj, "matmul", "out");
  require_same_dtype(out, a, "matmul", "out", "a");
  require_shape(out, shape, "matmul", "out");
  require_writeable(out, "matmul", "out");
  require_disjoint(out, a, "matmul", "out", "a");
  require_disjoint(out, b, "matmul", "out", "b");

  std::optional<CudaArray> bias;
  if (!bias_obj.is_none()) {
    bias = cuda_array(bias_obj, "matmul", "bias");
    require_same_dtype(*bias, a, "matmul", "bias", "a");
    require_shape(*bias, {ob.cols}, "matmul", "bias");
    require_disjoint(out, *bias, "matmul", "out", "bias");
  }
  for (const CudaArray* x : {&a, &b})
    if (x->device >= 0 && out.device >= 0 && x->device != out.device)
      throw std::invalid_argument("matmul: operands are on different devices");
  if (a.is_f32()) run_gemm<float>(out, oa, a, ob, b, bias, alpha, beta, act, math, stream);
  else run_gemm<double>(out, oa, a, ob, b, bias, alpha, beta, act, cuda::Math::simt, stream);
}

}  // namespace

void bind_cuda_gemm(py::module_& m) {
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out"), py::kw_only(), py::arg("alpha") = 1.0,
        py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("activation") = "none",
        py::arg("precision") = "highest", py::arg("stream") = 0,
        "out = act(alpha * a @ b + beta * out + bias) for float32/float64 GPU arrays a (M, K) or (B, M, K) and b "
        "(K, N) or (B, K, N); a 2-D operand is shared by every batch item. Each operand needs a unit stride in "
        "one of its last two dimensions (C-contiguous or a transposed view). out: a C-contiguous array of the "
        "result shape and dtype sharing no memory with a, b or bias; beta == 0 never reads it. activation: "
        "'none', 'relu' or 'gelu' (exact erf). precision (float32 only; float64 is always exact): 'highest' "
        "(fp32 FMA), 'tf32' or 'bf16' (tensor cores on sm_80+, operands rounded to that format, fp32 "
        "accumulation). Runs on `stream` (a cudaStream_t as an int; 0 is the legacy default stream).");
}

}  // namespace engine
