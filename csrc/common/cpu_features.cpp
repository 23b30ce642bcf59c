// CPU feature detection for runtime kernel dispatch: the AVX2 and AVX-512 kernels are compiled
// into every build, but only called on CPUs that report the instructions they use.
#include "common/cpu_features.h"

#include <unistd.h>

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

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  // NOTE: libgcc reports avx512f only when XGETBV says the OS saves the opmask and zmm state.
  static const bool has = [] {
    __builtin_cpu_init();
    return cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f");
  }();
  return has;
#else
  return false;
#endif
}

CacheSizes cpu_cache_sizes() {
  static const CacheSizes sizes = [] {
    long l1d = 0, l2 = 0;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
    l1d = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return CacheSizes{l1d > 0 ? l1d : 32 << 10, l2 > 0 ? l2 : 512 << 10};
  }();
  return sizes;
}

}  // namespace engine
