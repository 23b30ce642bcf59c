// The CPU attention's kernels (attention_simd.h) on AVX-512: a 6×32 fp32 (6×16 fp64) tile, two
// zmm vectors a row. Compiled with -mavx512f; attention.cpp calls into it only when the CPU
// reports AVX-512F.
#include "cpu/attention_simd.h"
#include "cpu/vec_avx512.h"

namespace engine::cpu::detail {

AttentionKernels<float> attention_avx512_f32() {
  return simd::kernels<avx512::Vec>(attention_portable_f32());
}
AttentionKernels<double> attention_avx512_f64() {
  return simd::kernels<avx512::Vec>(attention_portable_f64());
}

}  // namespace engine::cpu::detail
