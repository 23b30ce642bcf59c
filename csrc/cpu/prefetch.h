// Software prefetches the kernels share.
#pragma once

namespace engine::cpu {

// Fetches p's cache line into L1 in the state a store needs (prefetchw), so the store that
// follows neither misses nor asks again for ownership. Written in assembly: GCC emits prefetchw
// for __builtin_prefetch(p, 1) only under -mprfchw, and a plain read prefetch otherwise. CPUs
// without the instruction execute it as a no-op.
inline void prefetch_for_store(const void* p) {
  asm volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p)));
}

}  // namespace engine::cpu
