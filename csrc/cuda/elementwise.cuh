// Element-wise CUDA kernels on contiguous device buffers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {
// out[i] = a[i] + alpha * b[i] on `stream`
template <typename T>
cudaError_t axpby_add(T* out, const T* a, const T* b, T alpha, int64_t n, cudaStream_t stream);
}  // namespace engine::cuda
