// CPU feature detection for runtime kernel dispatch.
#pragma once

namespace engine {
bool cpu_has_avx2_fma();  // true when the running CPU has both AVX2 and FMA3
}
