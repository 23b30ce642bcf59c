// The direct conv2d (conv2d_direct.h) for AVX-512: 12 output positions × 32 (fp32) or 16 (fp64)
// output channels per forward tile, 24 accumulators of the 32 zmm registers. Compiled with
// -mavx512f; conv2d.cpp calls into it only when the CPU reports AVX-512F.
#include <immintrin.h>

#include "cpu/conv2d_direct.h"
#include "cpu/vec_avx512.h"

namespace engine::cpu::detail {
namespace {

struct Avx512 {
  template <typename T>
  using Vec = avx512::Vec<T>;
  // NOTE: the weight gradient's 4 channels × 6 taps (24 accumulators, 10 loads a step) measured
  // 62 ms against 88 for 4 × 3 on 32x64x56x56; with 8 × 3 GCC runs out of pointer registers and
  // reloads dy for every FMA.
  static constexpr int kFP = 12, kGO = 4, kGK = 6;
  // Few-tap forward rows: up to 24 input vectors held, 4 accumulators and a broadcast.
  static constexpr int kRT = 24;
  // Tap sums: 2 vectors × up to 12 taps, 24 accumulators.
  static constexpr int kZV = 2, kZT = 12;

  // Rows r[0..11] of a 12×16 block (rows 12-15 taken as zero) transposed: ch[c] lane i = r[i]
  // lane c; lanes 12-15 are zero. 4×4 blocks are transposed within each 128-bit lane, then the
  // 128-bit lanes are gathered across the four row groups.
  static void transpose(const __m512 (&r)[kFP], __m512 (&ch)[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
      const __m512 a = i < kFP ? r[i] : _mm512_setzero_ps();
      const __m512 b = i + 1 < kFP ? r[i + 1] : _mm512_setzero_ps();
      t[i] = _mm512_unpacklo_ps(a, b);
      t[i + 1] = _mm512_unpackhi_ps(a, b);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) {
      u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
      u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
      u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    // u[4j + m], 128-bit lane k: column 4k + m of rows 4j..4j+3.
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) {
      const __m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88);  // lanes 0, 2 of each
      const __m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);  // lanes 1, 3 of each
      const __m512 w0 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
      const __m512 w1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
      ch[m] = _mm512_shuffle_f32x4(v0, w0, 0x88);
      ch[4 + m] = _mm512_shuffle_f32x4(v1, w1, 0x88);
      ch[8 + m] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
      ch[12 + m] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
  }
};

}  // namespace

template <typename T>
void conv2d_forward_direct_avx512(T* y, const T* x, const T* weight, const T* bias,
                                  const ConvShape& s) {
  DirectConv<Avx512>::forward(y, x, weight, bias, s);
}

template <typename T>
bool conv2d_grad_weight_direct_avx512(T* dweight, const T* dy, const T* x, const ConvShape& s) {
  return DirectConv<Avx512>::grad_weight(dweight, dy, x, s);
}

template void conv2d_forward_direct_avx512<float>(float*, const float*, const float*,
                                                  const float*, const ConvShape&);
template void conv2d_forward_direct_avx512<double>(double*, const double*, const double*,
                                                   const double*, const ConvShape&);
template bool conv2d_grad_weight_direct_avx512<float>(float*, const float*, const float*,
                                                      const ConvShape&);
template bool conv2d_grad_weight_direct_avx512<double>(double*, const double*, const double*,
                                                       const ConvShape&);

}  // namespace engine::cpu::detail
