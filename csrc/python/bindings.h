// Each kernel family registers its functions on the _C module from its own binding file.
#pragma once
#include <pybind11/pybind11.h>

namespace engine {
void bind_conv(pybind11::module_& m);
void bind_attention(pybind11::module_& m);
void bind_elementwise(pybind11::module_& m);
void bind_gemm(pybind11::module_& m);
}  // namespace engine
