// AVX-512 kernels of the CPU attention: the 6×(2 vectors) register tile of its block products
// (attention_tile.h; 32 fp32 or 16 fp64 columns) and the vectorised exp of the softmax. Compiled with -mavx512f;
// attention.cpp calls into it only when the CPU reports AVX-512F.
#include <immintrin.h>

#include <cmath>

#include "cpu/attention.h"
#include "cpu/attention_tile.h"
#include "cpu/vec_avx512.h"

namespace engine::cpu::detail {
namespace {

// exp(x) for 16 floats x <= 88: the AVX2 exp_ps of attention_avx2.cpp (its comment has the
// derivation) on 512-bit vectors, the same operations lane for lane, so the same bits.
__m512 exp_ps(__m512 x) {
  const __m512 magic = _mm512_set1_ps(12582912.0f + 127.0f);
  x = _mm512_max_ps(_mm512_set1_ps(-88.0f), x);
  const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
  const __m512 n = _mm512_sub_ps(t, magic);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(8.31471942e-3f), r, _mm512_set1_ps(4.18902077e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.66670904e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.99992311e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512 two_n = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23));
  return _mm512_mul_ps(p, two_n);
}

void exp_block_f32(float* s, int64_t ld, int64_t rows, int64_t cols, const float* shift) {
  for (int64_t j = 0; j < cols; j += 16) {
    const __m512 m = _mm512_loadu_ps(shift + j);
    float* x = s + j;
    for (int64_t p = 0; p < rows; ++p, x += ld)
      _mm512_storeu_ps(x, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x), m)));
  }
}

// The online softmax step (AttentionKernels::softmax_block) 16 query columns at a time.
void softmax_block_f32(float* s, int64_t ld, int64_t rows, int64_t cols, float* m, float* l,
                       float* alpha) {
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < cols; j += 16) {
    float* x = s + j;
    // NOTE: max(s, m) keeps m when s is NaN (the second operand wins), like std::max; a NaN
    // score still reaches out through exp(NaN) below.
    __m512 mx = _mm512_loadu_ps(m + j);
    const __m512 old = mx;
    for (int64_t p = 0; p < rows; ++p, x += ld) mx = _mm512_max_ps(_mm512_loadu_ps(x), mx);
    _mm512_storeu_ps(m + j, mx);
    const __m512 shift =
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mx, neg_inf, _CMP_NEQ_UQ), mx);  // -inf -> 0
    const __m512 a = exp_ps(_mm512_sub_ps(old, shift));
    _mm512_storeu_ps(alpha + j, a);
    // Two partial sums (even and odd rows) keep the additions off one dependency chain.
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    x = s + j;
    int64_t p = 0;
    for (; p + 2 <= rows; p += 2, x += 2 * ld) {
      const __m512 e0 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x), shift));
      const __m512 e1 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + ld), shift));
      _mm512_storeu_ps(x, e0);
      _mm512_storeu_ps(x + ld, e1);
      s0 = _mm512_add_ps(s0, e0);
      s1 = _mm512_add_ps(s1, e1);
    }
    if (p < rows) {
      const __m512 e0 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x), shift));
      _mm512_storeu_ps(x, e0);
      s0 = _mm512_add_ps(s0, e0);
    }
    _mm512_storeu_ps(l + j, _mm512_fmadd_ps(a, _mm512_loadu_ps(l + j), _mm512_add_ps(s0, s1)));
  }
}

void dscores_block_f32(const float* p, float* ds, int64_t ld, int64_t rows, int64_t cols,
                       const float* delta) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; j += 16) {
      const __m512 pj = _mm512_loadu_ps(p + r * ld + j);
      float* d = ds + r * ld + j;
      const __m512 g = _mm512_mul_ps(pj, _mm512_sub_ps(_mm512_loadu_ps(d), _mm512_loadu_ps(delta + j)));
      _mm512_storeu_ps(d, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(pj, zero, _CMP_NEQ_UQ), g));
    }
}

}  // namespace

// float64 is the gradient-check dtype: its exp is the exact std::exp of the portable kernels.
AttentionKernels<float> attention_avx512_f32() {
  return {kAttnMaxNR<float>, &attention_tile<avx512::Vec<float>>, &exp_block_f32,
          &softmax_block_f32, &dscores_block_f32};
}
AttentionKernels<double> attention_avx512_f64() {
  const AttentionKernels<double> portable = attention_portable_f64();
  return {kAttnMaxNR<double>, &attention_tile<avx512::Vec<double>>, portable.exp_block,
          portable.softmax_block, portable.dscores_block};
}

}  // namespace engine::cpu::detail
