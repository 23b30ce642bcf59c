// The direct conv2d (conv2d_direct.h) for AVX2+FMA: 6 output positions × 16 (fp32) or 8 (fp64)
// output channels per tile, 12 accumulators of the 16 ymm registers. Compiled with -mavx2 -mfma;
// conv2d.cpp calls into it only when the CPU reports both.
#include <immintrin.h>

#include "cpu/conv2d_direct.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail {
namespace {

struct Avx2 {
  template <typename T>
  using Vec = avx2::Vec<T>;
  static constexpr int kFP = 6, kGO = 4, kGK = 3;
  // Few-tap forward rows: up to 10 input vectors held, 4 accumulators and a broadcast.
  static constexpr int kRT = 10;
  // Tap sums: 1 vector × up to 12 taps, 12 accumulators.
  static constexpr int kZV = 1, kZT = 12;

  // Rows r[0..5] of a 6×8 block (rows 6 and 7 taken as zero) transposed: ch[c] lane i = r[i]
  // lane c; lanes 6 and 7 are zero.
  static void transpose(const __m256 (&r)[kFP], __m256 (&ch)[8]) {
    const __m256 z = _mm256_setzero_ps();
    const __m256 a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 a4 = _mm256_unpacklo_ps(r[4], r[5]), a5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
    const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
    const __m256 b4 = _mm256_shuffle_ps(a4, z, 0x44), b5 = _mm256_shuffle_ps(a4, z, 0xEE);
    const __m256 b6 = _mm256_shuffle_ps(a5, z, 0x44), b7 = _mm256_shuffle_ps(a5, z, 0xEE);
    ch[0] = _mm256_permute2f128_ps(b0, b4, 0x20);
    ch[1] = _mm256_permute2f128_ps(b1, b5, 0x20);
    ch[2] = _mm256_permute2f128_ps(b2, b6, 0x20);
    ch[3] = _mm256_permute2f128_ps(b3, b7, 0x20);
    ch[4] = _mm256_permute2f128_ps(b0, b4, 0x31);
    ch[5] = _mm256_permute2f128_ps(b1, b5, 0x31);
    ch[6] = _mm256_permute2f128_ps(b2, b6, 0x31);
    ch[7] = _mm256_permute2f128_ps(b3, b7, 0x31);
  }
};

}  // namespace

template <typename T>
void conv2d_forward_direct_avx2(T* y, const T* x, const T* weight, const T* bias,
                                const ConvShape& s) {
  DirectConv<Avx2>::forward(y, x, weight, bias, s);
}

template <typename T>
bool conv2d_grad_weight_direct_avx2(T* dweight, const T* dy, const T* x, const ConvShape& s) {
  return DirectConv<Avx2>::grad_weight(dweight, dy, x, s);
}

template void conv2d_forward_direct_avx2<float>(float*, const float*, const float*, const float*,
                                                const ConvShape&);
template void conv2d_forward_direct_avx2<double>(double*, const double*, const double*,
                                                 const double*, const ConvShape&);
template bool conv2d_grad_weight_direct_avx2<float>(float*, const float*, const float*,
                                                    const ConvShape&);
template bool conv2d_grad_weight_direct_avx2<double>(double*, const double*, const double*,
                                                     const ConvShape&);

}  // namespace engine::cpu::detail
