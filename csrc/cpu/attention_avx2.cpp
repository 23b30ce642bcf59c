// The CPU attention's kernels (attention_simd.h) on AVX2+FMA: a 6×16 fp32 (6×8 fp64) tile, 12
// accumulators of the 16 ymm registers. Compiled with -mavx2 -mfma; attention.cpp calls into it
// only when the CPU reports both.
#include "cpu/attention_simd.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail {

AttentionKernels<float> attention_avx2_f32() {
  return simd::kernels<avx2::Vec>(attention_portable_f32());
}
AttentionKernels<double> attention_avx2_f64() {
  return simd::kernels<avx2::Vec>(attention_portable_f64());
}

}  // namespace engine::cpu::detail
