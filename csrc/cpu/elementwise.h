// Element-wise CPU kernels on contiguous buffers.
#pragma once
#include <cstdint>

namespace engine::cpu {
// out[i] = a[i] + alpha * b[i]
template <typename T>
void axpby_add(T* out, const T* a, const T* b, T alpha, int64_t n);
}  // namespace engine::cpu
