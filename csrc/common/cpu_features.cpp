// CPU feature detection for runtime kernel dispatch: the AVX2 kernels are compiled into every
// build, but only called on CPUs that report the instructions they use.
#include "common/cpu_features.h"

namespace engine {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace engine
