// Registration of the _cuda module's parts, and what their bindings share.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/math_mode.h"

namespace engine {

void bind_cuda_gemm(pybind11::module_& m);
void bind_cuda_conv(pybind11::module_& m);
void bind_cuda_attention(pybind11::module_& m);
void bind_cuda_fused(pybind11::module_& m);

// "highest" (fp32/fp64 FMA), "tf32" or "bf16" (tensor cores, fp32 accumulation)
inline cuda::Math parse_precision(const std::string& name, const char* op) {
  if (name == "highest") return cuda::Math::simt;
  if (name == "tf32") return cuda::Math::tf32;
  if (name == "bf16") return cuda::Math::bf16;
  throw std::invalid_argument(std::string(op) + ": precision must be 'highest', 'tf32' or 'bf16', got '" + name + "'");
}

inline cudaStream_t as_stream(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

}  // namespace engine
