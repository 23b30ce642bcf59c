// AVX2+FMA microkernels of the GEMM (6×16 fp32, 6×8 fp64: 12 accumulators + 2 B vectors + 1
// broadcast of the 16 ymm registers) and the FMA peak probe. Compiled with -mavx2 -mfma;
// gemm.cpp calls into it only when the CPU reports both.
#include "cpu/gemm_tile.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail {

constexpr int kMR = 6, kNV = 2;

namespace {

// With 2- and 4-row kernels for the last micro-panel (read through its strides: a packed panel's
// steps are kMR apart). NOTE: file-local, like every name here that both kernel files define:
// the linker would otherwise keep one of the two.
template <typename T>
KernelInfo<T> kernel(int nr, Packer<T> pack) {
  using V = avx2::Vec<T>;
  KernelInfo<T> ki{&simd::microkernel<V, kMR, kNV>, kMR, nr, pack};
  ki.by_rows[2] = &simd::microkernel<V, 2, kNV>;
  ki.by_rows[4] = &simd::microkernel<V, 4, kNV>;
  return ki;
}

}  // namespace

KernelInfo<float> avx2_kernel_f32() { return kernel<float>(16, avx2_packer_f32()); }
KernelInfo<double> avx2_kernel_f64() { return kernel<double>(8, avx2_packer_f64()); }
double fma_rate_avx2(bool f64) {
  return f64 ? simd::fma_rate<avx2::Vec<double>>() : simd::fma_rate<avx2::Vec<float>>();
}

}  // namespace engine::cpu::detail
