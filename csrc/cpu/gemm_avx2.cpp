// AVX2+FMA microkernels of the GEMM (6×16 fp32, 6×8 fp64: 12 accumulators + 2 B vectors + 1
// broadcast of the 16 ymm registers; 2- and 4-row ones for a last micro-panel of fewer rows) and
// the FMA peak probe. Compiled with -mavx2 -mfma; gemm.cpp calls into it only when the CPU
// reports both.
#include "cpu/gemm_tile.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail {

constexpr int kMR = 6, kNV = 2;

KernelInfo<float> avx2_kernel_f32() {
  return simd::kernel_set<avx2::Vec<float>, kMR, kNV, 2, 4>(avx2_packer_f32());
}
KernelInfo<double> avx2_kernel_f64() {
  return simd::kernel_set<avx2::Vec<double>, kMR, kNV, 2, 4>(avx2_packer_f64());
}
double fma_rate_avx2(bool f64) {
  return f64 ? simd::fma_rate<avx2::Vec<double>>() : simd::fma_rate<avx2::Vec<float>>();
}

}  // namespace engine::cpu::detail
