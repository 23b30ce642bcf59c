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
  // p·2^n, with 0 in the lanes where key < bound (a NaN key compares false), for the attention
  // exp: 2^n is built from t, whose low mantissa bits hold n + 127 (the AVX-512 version uses n).
  // NOTE: t is first held to n ≥ -127 (2^n = 0 there): below, n + 127 would wrap into the exponent
  // field, and some wrapped values make p·2^n subnormal in a lane about to be zeroed, which costs
  // a microcode assist on CPUs that take one for subnormal results.
  static R scale_pow2_unless_below(R p, R /*n*/, R t, R key, R bound) {
    t = _mm256_max_ps(t, _mm256_set1_ps(12582912.0f));  // 1.5·2^23: n + 127 = 0
    const R pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
    return _mm256_andnot_ps(_mm256_cmp_ps(key, bound, _CMP_LT_OQ), _mm256_mul_ps(p, pow2));
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

// In-register transpose of an L×L block (GEMM packing, attention): r[i] holds row i in, column
// i out.
inline void transpose(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

inline void transpose(__m256d r[4]) {
  const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
  const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
  r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
  r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
  r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
  r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

}  // namespace engine::cpu::avx2
