// Element-wise CPU kernels: a plain OpenMP loop the compiler vectorizes; serial below the grain.
#include "cpu/elementwise.h"

#include "common/parallel.h"

namespace engine::cpu {

template <typename T>
void axpby_add(T* out, const T* a, const T* b, T alpha, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + alpha * b[i];
}

template void axpby_add<float>(float*, const float*, const float*, float, int64_t);
template void axpby_add<double>(double*, const double*, const double*, double, int64_t);

}  // namespace engine::cpu
