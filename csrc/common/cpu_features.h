// CPU feature detection for runtime kernel dispatch.
#pragma once
#include <cstdint>

namespace engine {
bool cpu_has_avx2_fma();  // true when the running CPU has both AVX2 and FMA3
bool cpu_has_avx512();   // AVX-512F (with the OS saving zmm state) besides AVX2 and FMA3
// AMX tiles with bfloat16 products besides AVX-512F, and the OS's leave to use them (asked once,
// for the whole process, on Linux; elsewhere false).
bool cpu_has_amx_bf16();

// Per-core data cache sizes in bytes as the OS reports them; AMD Zen 3's 32 KiB and 512 KiB
// where it reports none (the sizes the kernels' blockings were first tuned for).
struct CacheSizes {
  int64_t l1d, l2;
};
CacheSizes cpu_cache_sizes();
}
