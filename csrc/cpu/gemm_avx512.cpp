// AVX-512 microkernels of the GEMM (12×32 fp32, 12×16 fp64: 24 accumulators + 2 B vectors of the
// 32 zmm registers; the FMAs read packed A as broadcast memory operands) and the FMA peak
// probe. Compiled with -mavx512f -mavx2 -mfma; gemm.cpp calls into it only when the CPU reports
// AVX-512F. The packers are the AVX2 ones (gemm_pack_avx2.cpp).
#include "cpu/gemm_tile.h"
#include "cpu/vec_avx512.h"

namespace engine::cpu::detail {

constexpr int kMR = 12, kNV = 2;

namespace {

// With 4- and 8-row kernels for the last micro-panel (read through its strides: a packed panel's
// steps are kMR apart). NOTE: file-local, like every name here that both kernel files define:
// the linker would otherwise keep one of the two.
template <typename T>
KernelInfo<T> kernel(int nr, Packer<T> pack) {
  using V = avx512::Vec<T>;
  KernelInfo<T> ki{&simd::microkernel<V, kMR, kNV>, kMR, nr, pack};
  ki.by_rows[4] = &simd::microkernel<V, 4, kNV>;
  ki.by_rows[8] = &simd::microkernel<V, 8, kNV>;
  return ki;
}

}  // namespace

KernelInfo<float> avx512_kernel_f32() { return kernel<float>(32, avx2_packer_f32()); }
KernelInfo<double> avx512_kernel_f64() { return kernel<double>(16, avx2_packer_f64()); }
double fma_rate_avx512(bool f64) {
  return f64 ? simd::fma_rate<avx512::Vec<double>>() : simd::fma_rate<avx512::Vec<float>>();
}

}  // namespace engine::cpu::detail
