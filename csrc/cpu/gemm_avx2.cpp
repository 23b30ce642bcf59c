// AVX2+FMA microkernels of the GEMM (6×16 fp32, 6×8 fp64) and the FMA peak probe. This is the
// only file compiled with -mavx2 -mfma; gemm.cpp calls into it only when the CPU reports both.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "cpu/gemm.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail {
namespace {

// The shared vector operations, plus the epilogue activations.
template <typename T>
struct Vec;

template <>
struct Vec<float> : avx2::Vec<float> {
  // NOTE: max(0, v) (not max(v, 0)) returns v when v is NaN, so NaN propagates like np.maximum.
  static R relu(R v) { return _mm256_max_ps(zero(), v); }
  // erf by the rational minimax fit Eigen and XLA use for float (a few ulp on [-4, 4], ±1 outside).
  static R gelu(R x) {
    R z = mul(x, set1(0.70710678118654752f));
    z = _mm256_max_ps(set1(-4.f), _mm256_min_ps(set1(4.f), z));  // NaN passes through
    const R z2 = mul(z, z);
    R p = fma(z2, set1(-2.72614225801306e-10f), set1(2.77068142495902e-08f));
    p = fma(z2, p, set1(-2.10102402082508e-06f));
    p = fma(z2, p, set1(-5.69250639462346e-05f));
    p = fma(z2, p, set1(-7.34990630326855e-04f));
    p = fma(z2, p, set1(-2.95459980854025e-03f));
    p = fma(z2, p, set1(-1.60960333262415e-02f));
    R q = fma(z2, set1(-1.45660718464996e-05f), set1(-2.13374055278905e-04f));
    q = fma(z2, q, set1(-1.68282697438203e-03f));
    q = fma(z2, q, set1(-7.37332916720468e-03f));
    q = fma(z2, q, set1(-1.42647390514189e-02f));
    const R erf = _mm256_div_ps(mul(z, p), q);
    return mul(mul(set1(0.5f), x), add(set1(1.f), erf));
  }
};

template <>
struct Vec<double> : avx2::Vec<double> {
  static R relu(R v) { return _mm256_max_pd(zero(), v); }
  // float64 is the gradient-check dtype: exact std::erf, speed is secondary.
  static R gelu(R x) {
    alignas(32) double v[kLanes];
    store(v, x);
    for (double& e : v) e = 0.5 * e * (1.0 + std::erf(e * 0.70710678118654752));
    return load(v);
  }
};

constexpr int kMR = 6;  // 6 rows × 2 vectors = 12 accumulators + 2 B vectors + 1 broadcast ≤ 16 ymm

// The 6×(2 vectors) tile. kPackedA fixes A's strides (1, MR) at compile time so the hot loop
// addresses A with immediate offsets; otherwise A is read in place through its strides.
template <typename T, bool kPackedA>
inline void tile_6x2v(int64_t kc, const T* a, int64_t a_rs, int64_t a_cs, const T* b, T* c,
                      int64_t ldc, const Epilogue<T>& ep) {
  using V = Vec<T>;
  using R = typename V::R;
  constexpr int L = V::kLanes, NR = 2 * L;
  if constexpr (kPackedA) a_rs = 1, a_cs = kMR;
  // NOTE: C is fetched twice. At the start, so a tile in L3 or memory is in L2 by the end; and
  // again kCTail steps before the end: C's rows are often a multiple of 4 KiB apart, so they all
  // fall in one L1 set, where the A and B lines streaming past evict them long before the K loop
  // ends.
  constexpr int64_t kCTail = 24;
  const auto fetch_c = [&] {
    for (int i = 0; i < kMR; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
  };
  fetch_c();
  // NOTE: the K loop is left rolled: unrolled, GCC hoists the next step's loads and spills an
  // accumulator to the stack (a load and a store per step). Rolled it is 12 FMAs, 8 loads and
  // 4 integer ops per step, which Zen 3 issues within the FMAs' 6 cycles.
  R c00 = V::zero(), c01 = V::zero(), c10 = V::zero(), c11 = V::zero(), c20 = V::zero(),
    c21 = V::zero(), c30 = V::zero(), c31 = V::zero(), c40 = V::zero(), c41 = V::zero(),
    c50 = V::zero(), c51 = V::zero();
  const auto steps = [&](int64_t count) {
#pragma GCC unroll 1
    for (int64_t p = 0; p < count; ++p) {
      const R b0 = V::load(b), b1 = V::load(b + L);
      R ai = V::bcast(a);
      c00 = V::fma(ai, b0, c00), c01 = V::fma(ai, b1, c01);
      ai = V::bcast(a + a_rs);
      c10 = V::fma(ai, b0, c10), c11 = V::fma(ai, b1, c11);
      ai = V::bcast(a + 2 * a_rs);
      c20 = V::fma(ai, b0, c20), c21 = V::fma(ai, b1, c21);
      ai = V::bcast(a + 3 * a_rs);
      c30 = V::fma(ai, b0, c30), c31 = V::fma(ai, b1, c31);
      ai = V::bcast(a + 4 * a_rs);
      c40 = V::fma(ai, b0, c40), c41 = V::fma(ai, b1, c41);
      ai = V::bcast(a + 5 * a_rs);
      c50 = V::fma(ai, b0, c50), c51 = V::fma(ai, b1, c51);
      a += a_cs;
      b += NR;
    }
  };
  steps(kc - std::min(kc, kCTail));
  fetch_c();
  steps(std::min(kc, kCTail));
  R acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  // NOTE: every load of C comes before the first store. C's rows are often a multiple of 4 KiB
  // apart, and a load after a store to the same address modulo 4 KiB waits for the store
  // (4K aliasing): interleaved, each of the 12 loads but the first would.
  const R alpha = V::set1(ep.alpha), beta = V::set1(ep.beta);
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      acc[i][v] = V::mul(alpha, acc[i][v]);
      if (ep.beta != T(0)) acc[i][v] = V::fma(beta, V::load(c + i * ldc + v * L), acc[i][v]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) {
      R r = acc[i][v];
      if (ep.bias) r = V::add(r, V::load(ep.bias + v * L));
      if (ep.act == Activation::relu) r = V::relu(r);
      else if (ep.act == Activation::gelu) r = V::gelu(r);
      V::store(c + i * ldc + v * L, r);
    }
  }
}

template <typename T>
void micro_avx2(int64_t kc, const T* a, int64_t a_rs, int64_t a_cs, const T* b, T* c, int64_t ldc,
                const Epilogue<T>& ep) {
  if (a_rs == 1 && a_cs == kMR) tile_6x2v<T, true>(kc, a, a_rs, a_cs, b, c, ldc, ep);
  else tile_6x2v<T, false>(kc, a, a_rs, a_cs, b, c, ldc, ep);
}

// Twelve independent FMA chains: enough to cover 4-cycle latency on two FMA pipes.
template <typename T>
double fma_rate() {
  using V = Vec<T>;
  using R = typename V::R;
  using clock = std::chrono::steady_clock;
  constexpr int kChains = 12, kRounds = 1000;
  R acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = V::set1(T(i));
  const R mul = V::set1(T(0.999999)), add = V::set1(T(1e-6));
  const auto start = clock::now();
  double seconds = 0;
  int64_t rounds = 0;
  do {
    for (int r = 0; r < kRounds; ++r) {
#pragma GCC unroll 12
      for (int i = 0; i < kChains; ++i) acc[i] = V::fma(acc[i], mul, add);
    }
    rounds += kRounds;
    seconds = std::chrono::duration<double>(clock::now() - start).count();
  } while (seconds < 0.2);
  R sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = V::add(sum, acc[i]);
  alignas(32) T out[V::kLanes];
  V::store(out, sum);
  volatile T sink = out[0];  // keeps the chains from being optimized away
  (void)sink;
  return 2.0 * V::kLanes * kChains * static_cast<double>(rounds) / seconds;
}

}  // namespace

KernelInfo<float> avx2_kernel_f32() { return {&micro_avx2<float>, kMR, 16, avx2_packer_f32()}; }
KernelInfo<double> avx2_kernel_f64() { return {&micro_avx2<double>, kMR, 8, avx2_packer_f64()}; }
double fma_rate_avx2(bool f64) { return f64 ? fma_rate<double>() : fma_rate<float>(); }

}  // namespace engine::cpu::detail
