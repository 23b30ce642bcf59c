// The 512-bit float/double vector operations of the AVX-512 kernels, with the same names as
// avx2::Vec (vec_avx2.h) so a kernel template is written once for either width.
// Include only from files compiled with -mavx512f.
#pragma once
#include <immintrin.h>

namespace engine::cpu::avx512 {

// NOTE: fma_bcast is an FMA whose broadcast operand comes from memory ({1to16}): one fused uop,
// where a broadcast into a register and an FMA reading it are two, at the price of a load per FMA
// instead of one per broadcast. The intrinsics cannot ask for it: GCC loads a value that two FMAs
// use into a register once. Where a kernel is bound by issuing uops rather than by the FMA pipes
// or the loads (as when a sibling hyperthread shares the core's front end) it gains; measure it.
template <typename T>
struct Vec;

template <>
struct Vec<float> {
  using T = float;
  using R = __m512;
  static constexpr int kLanes = 16;
  static constexpr bool kFmaReadsBroadcast = true;  // fma_bcast is one instruction
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R bcast(const float* p) { return _mm512_set1_ps(*p); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R fma_bcast(const float* a, R b, R c) {  // c + (*a)·b, see the NOTE above
    asm("vfmadd231ps %2%{1to16%}, %1, %0" : "+v"(c) : "v"(b), "m"(*a));
    return c;
  }
  static R fnma(R a, R b, R c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a·b
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  // NOTE: min/max return b where either is NaN, so max(zero(), v) passes a NaN v through.
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  // v, with 0 in the lanes where key == x (a NaN key compares unequal)
  static R zero_where_eq(R key, R x, R v) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(key, x, _CMP_NEQ_UQ), v);
  }
  // p·2^n, with 0 in the lanes where key < bound (a NaN key compares false), for the attention
  // exp (t, n + 127 in its low mantissa bits, is for the AVX2 version). Masked-off lanes are not
  // computed, so whatever n holds there costs nothing.
  static R scale_pow2_unless_below(R p, R n, R /*t*/, R key, R bound) {
    return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(key, bound, _CMP_NLT_UQ), p, n);
  }
  static float hsum(R v) { return _mm512_reduce_add_ps(v); }
};

template <>
struct Vec<double> {
  using T = double;
  using R = __m512d;
  static constexpr int kLanes = 8;
  static constexpr bool kFmaReadsBroadcast = true;
  static R zero() { return _mm512_setzero_pd(); }
  static R set1(double x) { return _mm512_set1_pd(x); }
  static R bcast(const double* p) { return _mm512_set1_pd(*p); }
  static R load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, R v) { _mm512_storeu_pd(p, v); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R fma_bcast(const double* a, R b, R c) {
    asm("vfmadd231pd %2%{1to8%}, %1, %0" : "+v"(c) : "v"(b), "m"(*a));
    return c;
  }
  static R fnma(R a, R b, R c) { return _mm512_fnmadd_pd(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R sub(R a, R b) { return _mm512_sub_pd(a, b); }
  static R div(R a, R b) { return _mm512_div_pd(a, b); }
  static R min(R a, R b) { return _mm512_min_pd(a, b); }
  static R max(R a, R b) { return _mm512_max_pd(a, b); }
  static R zero_where_eq(R key, R x, R v) {
    return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(key, x, _CMP_NEQ_UQ), v);
  }
  static double hsum(R v) { return _mm512_reduce_add_pd(v); }
};

}  // namespace engine::cpu::avx512
