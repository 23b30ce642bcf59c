// GPU GEMM on strided device matrices: C = act(alpha·A·B + beta·C + bias), batched.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/math_mode.h"

namespace engine::cuda {

// A (batch, M, K), B (batch, K, N) with element strides: each needs a unit stride in one of its
// last two dims (row-major, or a transposed view); a batch stride of 0 shares the matrix across
// the batch. C (batch, M, N) has unit column stride. bias (N,) or null. beta == 0 never reads C.
template <typename T>
struct GemmArgs {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  const T* a = nullptr;
  int64_t a_bs = 0, a_rs = 0, a_cs = 1;
  const T* b = nullptr;
  int64_t b_bs = 0, b_rs = 0, b_cs = 1;
  T* c = nullptr;
  int64_t c_bs = 0, c_rs = 0;
  T alpha = T(1), beta = T(0);
  const T* bias = nullptr;
  Activation act = Activation::none;
  // simt: fp32/fp64 FMA; tf32 / bf16: tensor cores with operands rounded to that format and fp32
  // accumulation (float only, sm_80+; elsewhere simt is used).
  Math math = Math::simt;
};

template <typename T>
cudaError_t gemm(const GemmArgs<T>& args, cudaStream_t stream);

}  // namespace engine::cuda
