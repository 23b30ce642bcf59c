// The SIMD kernels of the CPU attention (AttentionKernels in attention.h), written once over a
// vector type V (avx2::Vec or avx512::Vec): the kAttnMR × (2 vectors) register tile of its block
// products, the vectorised exp, the softmax steps built on it, and the register transpose of the
// query blocks. Include only from a file compiled for V's instructions (attention_avx2.cpp,
// attention_avx512.cpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cpu/attention.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail::simd {

// AttentionKernels::tile on kAttnMR × (2 vectors of V): 12 accumulators, 2 B vectors and a
// broadcast.
template <typename V>
void tile(int64_t kc, const typename V::T* a, int64_t a_rs, int64_t a_cs,
          const typename V::T* b, int64_t b_rs, typename V::T* c, int64_t ldc,
          typename V::T alpha, typename V::T beta, const typename V::T* row_beta) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr int L = V::kLanes, MR = kAttnMR;
  R acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = V::zero();
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const R b0 = V::load(b), b1 = V::load(b + L);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const R ai = V::bcast(a + i * a_rs);
      acc[i][0] = V::fma(ai, b0, acc[i][0]);
      acc[i][1] = V::fma(ai, b1, acc[i][1]);
    }
    a += a_cs;
    b += b_rs;
  }
  const R va = V::set1(alpha);
  const bool read_c = row_beta || beta != T(0);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    const R vb = V::set1(row_beta ? row_beta[i] : beta);
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      T* cp = c + i * ldc + v * L;
      R r = V::mul(va, acc[i][v]);
      if (read_c) r = V::fma(vb, V::load(cp), r);
      V::store(cp, r);
    }
  }
}

// exp(x) for float lanes x <= 88 (the softmax only takes exponents <= 0, shifted by a row
// maximum): x = n·ln2 + r with |r| <= ln2/2 (ln2 split in two so n·ln2 is exact), exp(r) by a degree-5
// minimax polynomial (relative error 1.03e-7; 2.2 ulp at most after rounding), times 2^n.
// n comes out of one FMA: adding 1.5·2^23 rounds x·log2(e) to an integer held in the low mantissa
// bits, already biased by 127 (which the AVX2 version shifts into the exponent field to build 2^n).
// NOTE: results from FLT_MIN down are 0, never subnormal (x < -87.33, a hair above -126·ln2 so the
// polynomial's error cannot leave one; exp(-inf) = 0, as masked scores need): every FMA of the P·V
// tiles that reads a subnormal probability takes a microcode assist (~250x its time, measured on
// an Intel Xeon). With AVX-512 those lanes need no clamp beforehand: masked off, they are not
// computed. NaN propagates. 11 vector operations with AVX-512, 14 with AVX2; the softmax is bound
// by them.
template <typename V>
typename V::R exp_ps(typename V::R x) {
  using R = typename V::R;
  const R magic = V::set1(12582912.0f + 127.0f);
  const R t = V::fma(x, V::set1(1.44269504088896341f), magic);
  const R n = V::sub(t, magic);
  R r = V::fnma(n, V::set1(0.693359375f), x);
  r = V::fnma(n, V::set1(-2.12194440e-4f), r);
  R p = V::fma(V::set1(8.31471942e-3f), r, V::set1(4.18902077e-2f));
  p = V::fma(p, r, V::set1(1.66670904e-1f));
  p = V::fma(p, r, V::set1(4.99992311e-1f));
  p = V::fma(p, r, V::set1(1.0f));
  p = V::fma(p, r, V::set1(1.0f));
  return V::scale_pow2_unless_below(p, n, t, x, V::set1(-87.33f));
}

template <typename V>
void exp_block(float* s, int64_t ld, int64_t rows, int64_t cols, const float* shift) {
  for (int64_t j = 0; j < cols; j += V::kLanes) {
    const typename V::R m = V::load(shift + j);
    float* x = s + j;
    for (int64_t p = 0; p < rows; ++p, x += ld) V::store(x, exp_ps<V>(V::sub(V::load(x), m)));
  }
}

// The maxima of rows [0, rows) of the two vectors of columns at x and of m0, m1, into m0, m1: in
// four chains of rows, so that the max operations do not wait on each other's latency.
// NOTE: max(s, m) keeps m when s is NaN (the second operand wins), like std::max, so a NaN score
// never becomes a maximum (it still reaches out through its exp).
template <typename V>
void column_max(const float* x, int64_t ld, int64_t rows, typename V::R& m0, typename V::R& m1) {
  using R = typename V::R;
  constexpr int L = V::kLanes;
  const R neg_inf = V::set1(-INFINITY);
  R c0[4] = {m0, neg_inf, neg_inf, neg_inf}, c1[4] = {m1, neg_inf, neg_inf, neg_inf};
  int64_t p = 0;
  for (; p + 4 <= rows; p += 4, x += 4 * ld)
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      c0[u] = V::max(V::load(x + u * ld), c0[u]);
      c1[u] = V::max(V::load(x + u * ld + L), c1[u]);
    }
  for (; p < rows; ++p, x += ld) {
    c0[0] = V::max(V::load(x), c0[0]);
    c1[0] = V::max(V::load(x + L), c1[0]);
  }
  m0 = V::max(V::max(c0[3], c0[2]), V::max(c0[1], c0[0]));
  m1 = V::max(V::max(c1[3], c1[2]), V::max(c1[1], c1[0]));
}

// Two vectors of query columns at a time (the tile's width). The exp pass over one such group
// also takes the maxima of the next: on their own, between two exp passes, those max operations
// would leave the FMA ports idle while each waited on the one before (a softmax block 1.14-1.2x
// faster, measured on an Intel Xeon). Bitwise the same either way.
template <typename V>
void softmax_block(float* s, int64_t ld, int64_t rows, int64_t cols, float* m, float* l,
                   float* alpha) {
  using R = typename V::R;
  constexpr int L = V::kLanes;
  const R neg_inf = V::set1(-INFINITY);
  if (cols == 0) return;
  R next0 = V::load(m), next1 = V::load(m + L);
  column_max<V>(s, ld, rows, next0, next1);
  for (int64_t j = 0; j < cols; j += 2 * L) {
    const R old0 = V::load(m + j), old1 = V::load(m + j + L), m0 = next0, m1 = next1;
    V::store(m + j, m0);
    V::store(m + j + L, m1);
    const R sh0 = V::zero_where_eq(m0, neg_inf, m0), sh1 = V::zero_where_eq(m1, neg_inf, m1);
    const R a0 = exp_ps<V>(V::sub(old0, sh0)), a1 = exp_ps<V>(V::sub(old1, sh1));
    V::store(alpha + j, a0);
    V::store(alpha + j + L, a1);
    // the last group takes its own maxima again, unused
    const int64_t jn = j + 2 * L < cols ? j + 2 * L : j;
    next0 = V::load(m + jn);
    next1 = V::load(m + jn + L);
    R s0 = V::zero(), s1 = V::zero();
    float* x = s + j;
    const float* y = s + jn;
    for (int64_t p = 0; p < rows; ++p, x += ld, y += ld) {
      next0 = V::max(V::load(y), next0);
      next1 = V::max(V::load(y + L), next1);
      const R e0 = exp_ps<V>(V::sub(V::load(x), sh0)), e1 = exp_ps<V>(V::sub(V::load(x + L), sh1));
      V::store(x, e0);
      V::store(x + L, e1);
      s0 = V::add(s0, e0);
      s1 = V::add(s1, e1);
    }
    V::store(l + j, V::fma(a0, V::load(l + j), s0));
    V::store(l + j + L, V::fma(a1, V::load(l + j + L), s1));
  }
}

template <typename V>
void dscores_block(const float* p, float* ds, int64_t ld, int64_t rows, int64_t cols,
                   const float* delta) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; j += V::kLanes) {
      const typename V::R pj = V::load(p + r * ld + j);
      float* d = ds + r * ld + j;
      const typename V::R g = V::mul(pj, V::sub(V::load(d), V::load(delta + j)));
      V::store(d, V::zero_where_eq(pj, V::zero(), g));
    }
}

// L×L blocks transposed in AVX2 registers (8×8 fp32, 4×4 fp64; the AVX-512 kernels use them too),
// the ragged right and bottom edges element by element.
template <typename T>
void transpose(const T* src, int64_t rs, int64_t rows, int64_t cols, T* dst, int64_t ld) {
  using W = avx2::Vec<T>;
  constexpr int L = W::kLanes;
  const int64_t rows_full = rows / L * L, cols_full = cols / L * L;
  for (int64_t r0 = 0; r0 < rows_full; r0 += L)
    for (int64_t c0 = 0; c0 < cols_full; c0 += L) {
      typename W::R x[L];
#pragma GCC unroll 8
      for (int i = 0; i < L; ++i) x[i] = W::load(src + (r0 + i) * rs + c0);
      avx2::transpose(x);
#pragma GCC unroll 8
      for (int i = 0; i < L; ++i) W::store(dst + (c0 + i) * ld + r0, x[i]);
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = r < rows_full ? cols_full : 0; c < cols; ++c) dst[c * ld + r] = src[r * rs + c];
}

// The kernel set on vectors of VecOf<T>. float64 is the gradient-check dtype: its exp is the
// exact std::exp of the portable kernels.
template <template <typename> class VecOf, typename T>
AttentionKernels<T> kernels(const AttentionKernels<T>& portable) {
  constexpr int nr = 2 * VecOf<T>::kLanes;
  if constexpr (std::is_same_v<T, float>) {
    using V = VecOf<float>;
    return {nr, &tile<V>, &exp_block<V>, &softmax_block<V>, &dscores_block<V>, &transpose<T>};
  } else {
    return {nr, &tile<VecOf<T>>, portable.exp_block, portable.softmax_block,
            portable.dscores_block, &transpose<T>};
  }
}

}  // namespace engine::cpu::detail::simd
