// AVX2+FMA kernels of the CPU attention: the 6×(2 vectors) register tile of its block products
// (attention_tile.h; 12 accumulators of the 16 ymm registers) and the vectorised exp of the
// softmax. Compiled with -mavx2 -mfma; attention.cpp calls into it only
// when the CPU reports both.
#include <immintrin.h>

#include <cmath>

#include "cpu/attention.h"
#include "cpu/attention_tile.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail {
namespace {

// exp(x) for 8 floats x <= 88 (the softmax only takes exponents <= 0, shifted by a row maximum):
// x = n·ln2 + r with |r| <= ln2/2 (ln2 split in two so n·ln2 is exact), exp(r) by a degree-5
// minimax polynomial (relative error 1.03e-7; 2.2 ulp at most after rounding), times 2^n.
// n comes out of one FMA: adding 1.5·2^23 rounds x·log2(e) to an integer held in the low mantissa
// bits, already biased by 127, so shifting those bits into the exponent field builds 2^n. This
// keeps the exp to 9 multiply-port operations, the port the softmax is bound by.
// NOTE: x is clamped at -88, where n = -127: the biased exponent is 0, so 2^n and the result are
// exactly 0 (exp(-inf) = 0, as masked scores need). Results below FLT_MIN (x < -87.34) are 0 or
// subnormal. NaN propagates: max(lo, NaN) is NaN (the second operand wins).
__m256 exp_ps(__m256 x) {
  const __m256 magic = _mm256_set1_ps(12582912.0f + 127.0f);
  x = _mm256_max_ps(_mm256_set1_ps(-88.0f), x);
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(8.31471942e-3f), r, _mm256_set1_ps(4.18902077e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.66670904e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.99992311e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256 two_n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
  return _mm256_mul_ps(p, two_n);
}

void exp_block_f32(float* s, int64_t ld, int64_t rows, int64_t cols, const float* shift) {
  for (int64_t j = 0; j < cols; j += 8) {
    const __m256 m = _mm256_loadu_ps(shift + j);
    float* x = s + j;
    for (int64_t p = 0; p < rows; ++p, x += ld)
      _mm256_storeu_ps(x, exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x), m)));
  }
}

void softmax_block_f32(float* s, int64_t ld, int64_t rows, int64_t cols, float* m, float* l,
                       float* alpha) {
  const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
  for (int64_t j = 0; j < cols; j += 16) {
    float* x = s + j;
    // NOTE: max(s, m) keeps m when s is NaN (the second operand wins), like std::max; a NaN
    // score still reaches out through exp(NaN) below.
    __m256 m0 = _mm256_loadu_ps(m + j), m1 = _mm256_loadu_ps(m + j + 8);
    const __m256 old0 = m0, old1 = m1;
    for (int64_t p = 0; p < rows; ++p, x += ld) {
      m0 = _mm256_max_ps(_mm256_loadu_ps(x), m0);
      m1 = _mm256_max_ps(_mm256_loadu_ps(x + 8), m1);
    }
    _mm256_storeu_ps(m + j, m0);
    _mm256_storeu_ps(m + j + 8, m1);
    const __m256 sh0 = _mm256_andnot_ps(_mm256_cmp_ps(m0, neg_inf, _CMP_EQ_OQ), m0);
    const __m256 sh1 = _mm256_andnot_ps(_mm256_cmp_ps(m1, neg_inf, _CMP_EQ_OQ), m1);
    const __m256 a0 = exp_ps(_mm256_sub_ps(old0, sh0)), a1 = exp_ps(_mm256_sub_ps(old1, sh1));
    _mm256_storeu_ps(alpha + j, a0);
    _mm256_storeu_ps(alpha + j + 8, a1);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    x = s + j;
    for (int64_t p = 0; p < rows; ++p, x += ld) {
      const __m256 e0 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x), sh0));
      const __m256 e1 = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 8), sh1));
      _mm256_storeu_ps(x, e0);
      _mm256_storeu_ps(x + 8, e1);
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
    }
    _mm256_storeu_ps(l + j, _mm256_fmadd_ps(a0, _mm256_loadu_ps(l + j), s0));
    _mm256_storeu_ps(l + j + 8, _mm256_fmadd_ps(a1, _mm256_loadu_ps(l + j + 8), s1));
  }
}

void dscores_block_f32(const float* p, float* ds, int64_t ld, int64_t rows, int64_t cols,
                       const float* delta) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; j += 8) {
      const __m256 pj = _mm256_loadu_ps(p + r * ld + j);
      float* d = ds + r * ld + j;
      const __m256 dp = _mm256_sub_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(delta + j));
      const __m256 g = _mm256_mul_ps(pj, dp);
      _mm256_storeu_ps(d, _mm256_andnot_ps(_mm256_cmp_ps(pj, zero, _CMP_EQ_OQ), g));
    }
}

}  // namespace

// float64 is the gradient-check dtype: its exp is the exact std::exp of the portable kernels.
AttentionKernels<float> attention_avx2_f32() {
  return {kAttnNR<float>, &attention_tile<avx2::Vec<float>>, &exp_block_f32, &softmax_block_f32,
          &dscores_block_f32};
}
AttentionKernels<double> attention_avx2_f64() {
  const AttentionKernels<double> portable = attention_portable_f64();
  return {kAttnNR<double>, &attention_tile<avx2::Vec<double>>, portable.exp_block,
          portable.softmax_block, portable.dscores_block};
}

}  // namespace engine::cpu::detail
