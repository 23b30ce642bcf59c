// CPU feature detection for runtime kernel dispatch.
#pragma once

namespace engine {
bool cpu_has_avx2_fma();  // true when the running CPU has both AVX2 and FMA3
bool cpu_has_avx512();   // AVX-512F (with the OS saving zmm state) besides AVX2 and FMA3

// Per-core data cache sizes in bytes as the OS reports them (0 where it does not).
struct CacheSizes {
  long l1d, l2;
};
CacheSizes cpu_cache_sizes();
}
