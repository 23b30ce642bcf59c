// AVX-512 microkernels of the GEMM (12×32 fp32, 12×16 fp64: 24 accumulators + 2 B vectors of the
// 32 zmm registers; the FMAs read packed A as broadcast memory operands; 4- and 8-row ones for a
// last micro-panel of fewer rows) and the FMA peak probe. Compiled with -mavx512f -mavx2 -mfma;
// gemm.cpp calls into it only when the CPU reports AVX-512F. The packers are the AVX2 ones
// (gemm_pack_avx2.cpp).
#include "cpu/gemm_tile.h"
#include "cpu/vec_avx512.h"

namespace engine::cpu::detail {

constexpr int kMR = 12, kNV = 2;

KernelInfo<float> avx512_kernel_f32() {
  return simd::kernel_set<avx512::Vec<float>, kMR, kNV, 4, 8>(avx2_packer_f32());
}
KernelInfo<double> avx512_kernel_f64() {
  return simd::kernel_set<avx512::Vec<double>, kMR, kNV, 4, 8>(avx2_packer_f64());
}
double fma_rate_avx512(bool f64) {
  return f64 ? simd::fma_rate<avx512::Vec<double>>() : simd::fma_rate<avx512::Vec<float>>();
}

}  // namespace engine::cpu::detail
