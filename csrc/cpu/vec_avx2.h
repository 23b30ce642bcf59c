// The 256-bit float/double vector operations the AVX2+FMA kernels share (GEMM, conv2d,
// attention), behind one name per operation so a kernel is written once for both dtypes.
// Include only from files compiled with -mavx2 -mfma.
#pragma once
#include <immintrin.h>

namespace engine::cpu::avx2 {

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  using T = float;
  using R = __m256;
  static constexpr int kLanes = 8;
  static constexpr bool kFmaReadsBroadcast = false;  // fma_bcast is a broadcast, then an FMA
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R fma_bcast(const float* a, R b, R c) { return fma(bcast(a), b, c); }  // c + (*a)·b
  static R fnma(R a, R b, R c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a·b
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  // NOTE: min/max return b where either is NaN, so max(zero(), v) passes a NaN v through.
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  // v, with 0 in the lanes where key == x (a NaN key compares unequal)
  static R zero_where_eq(R key, R x, R v) {
    return _mm256_andnot_ps(_mm256_cmp_ps(key, x, _CMP_EQ_OQ), v);
  }
  // 2^n from t whose low mantissa bits hold the integer n + 127 (see the attention exp)
  static R pow2_of_biased(R t) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
  }
  static float hsum(R v) {  // (lanes 0+4, 1+5, 2+6, 3+7) paired, then those four
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};

template <>
struct Vec<double> {
  using T = double;
  using R = __m256d;
  static constexpr int kLanes = 4;
  static constexpr bool kFmaReadsBroadcast = false;
  static R zero() { return _mm256_setzero_pd(); }
  static R set1(double x) { return _mm256_set1_pd(x); }
  static R bcast(const double* p) { return _mm256_broadcast_sd(p); }
  static R load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, R v) { _mm256_storeu_pd(p, v); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R fma_bcast(const double* a, R b, R c) { return fma(bcast(a), b, c); }
  static R fnma(R a, R b, R c) { return _mm256_fnmadd_pd(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R sub(R a, R b) { return _mm256_sub_pd(a, b); }
  static R div(R a, R b) { return _mm256_div_pd(a, b); }
  static R min(R a, R b) { return _mm256_min_pd(a, b); }
  static R max(R a, R b) { return _mm256_max_pd(a, b); }
  static R zero_where_eq(R key, R x, R v) {
    return _mm256_andnot_pd(_mm256_cmp_pd(key, x, _CMP_EQ_OQ), v);
  }
  static double hsum(R v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

}  // namespace engine::cpu::avx2
