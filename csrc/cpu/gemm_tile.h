// The SIMD GEMM microkernel, written once over a vector type V (avx2::Vec or avx512::Vec): the
// MR×(NV vectors) register tile, its epilogue, and the FMA peak probe. Include only from a file
// compiled for V's instructions (gemm_avx2.cpp, gemm_avx512.cpp).
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <type_traits>

#include "cpu/gemm.h"
#include "cpu/prefetch.h"

namespace engine::cpu::detail::simd {

// NOTE: max(0, v) (not max(v, 0)) returns v when v is NaN, so NaN propagates like np.maximum.
template <typename V>
typename V::R relu(typename V::R v) {
  return V::max(V::zero(), v);
}

// 0.5·x·(1 + erf(x/√2)). float: erf by the rational minimax fit Eigen and XLA use (a few ulp on
// [-4, 4], ±1 outside); double is the gradient-check dtype, so it takes the exact std::erf.
template <typename V>
typename V::R gelu(typename V::R x) {
  using R = typename V::R;
  if constexpr (std::is_same_v<typename V::T, float>) {
    R z = V::mul(x, V::set1(0.70710678118654752f));
    z = V::max(V::set1(-4.f), V::min(V::set1(4.f), z));  // NaN passes through
    const R z2 = V::mul(z, z);
    R p = V::fma(z2, V::set1(-2.72614225801306e-10f), V::set1(2.77068142495902e-08f));
    p = V::fma(z2, p, V::set1(-2.10102402082508e-06f));
    p = V::fma(z2, p, V::set1(-5.69250639462346e-05f));
    p = V::fma(z2, p, V::set1(-7.34990630326855e-04f));
    p = V::fma(z2, p, V::set1(-2.95459980854025e-03f));
    p = V::fma(z2, p, V::set1(-1.60960333262415e-02f));
    R q = V::fma(z2, V::set1(-1.45660718464996e-05f), V::set1(-2.13374055278905e-04f));
    q = V::fma(z2, q, V::set1(-1.68282697438203e-03f));
    q = V::fma(z2, q, V::set1(-7.37332916720468e-03f));
    q = V::fma(z2, q, V::set1(-1.42647390514189e-02f));
    const R erf = V::div(V::mul(z, p), q);
    return V::mul(V::mul(V::set1(0.5f), x), V::add(V::set1(1.f), erf));
  } else {
    alignas(64) double v[V::kLanes];
    V::store(v, x);
    for (double& e : v) e = 0.5 * e * (1.0 + std::erf(e * 0.70710678118654752));
    return V::load(v);
  }
}

// One MR×(NV vectors) tile (the MicroKernel contract in gemm.h). kPackedA fixes packed A's
// strides (1, MR) at compile time so the hot loop addresses A with immediate offsets, kPackedB
// packed B's row stride (NR); otherwise they are read through their strides (one more register
// in a loop that reads A in place is one more spilled row offset: 128³ 0.96-0.98x).
template <typename V, int MR, int NV, bool kPackedA, bool kPackedB>
inline void tile(int64_t kc, const typename V::T* a, int64_t a_rs, int64_t a_cs,
                 const typename V::T* b, int64_t b_rs, typename V::T* c, int64_t ldc,
                 const Epilogue<typename V::T>& ep) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr int L = V::kLanes, NR = NV * L;
  if constexpr (kPackedA) a_rs = 1, a_cs = MR;
  if constexpr (kPackedB) b_rs = NR;
  // NOTE: with A and B packed (kPackedA), C's rows are fetched during the last steps of the K
  // loop, a row every kGap steps: first towards L2 (prefetcht1), then into L1 in the state a
  // store needs (prefetchw), ending kAfter steps before the end. Fetched all at once (24 lines) at
  // the start and again 24 steps before the end, as before, they took the line fill buffers the
  // A and B streams need; the spread fetches measured, same process: 1024³ fp32 1.02-1.05x, 2048³
  // 1.02-1.06x, 4096×768×3072 (C from memory) 1.05x, fp64 1.04-1.08x, 2 threads 1.01-1.09x. Into
  // L1 only near the end, because C's rows are often a multiple of 4 KiB apart, so they all fall
  // in one L1 set, where the A and B lines streaming past evict them. Otherwise (A or B read in
  // place, the kernels of fewer rows) all rows are fetched towards L2 at the start and again
  // kLate steps before the end, as before but for the hint (t0 then): 1.00x there, where the
  // spread fetches measured 0.90-0.95x (128×784×64 and 64×784×64; cause not found).
  constexpr int kRowBytes = NR * int(sizeof(T));
  constexpr int64_t kGap = 4, kAfter = 8, kWindow = 2 * MR * kGap + kAfter, kLate = 24;
  const auto fetch_row = [&](int i, bool for_store) {  // else towards L2
    const char* row = reinterpret_cast<const char*>(c + i * ldc);
    const auto fetch = [&](const char* p) {
      if (for_store) prefetch_for_store(p);
      else _mm_prefetch(p, _MM_HINT_T1);
    };
    for (int o = 0; o < kRowBytes; o += 64) fetch(row + o);
    fetch(row + kRowBytes - 1);  // a row need not start on a line
  };
  R acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  // A step is MR·NV FMAs and NV loads of B. A packed is read by the FMAs themselves where they can
  // take a broadcast operand (V::fma_bcast, AVX-512), two steps per iteration to halve the loop's
  // integer ops. Otherwise each A element is broadcast into a register, a step per iteration:
  // unrolled, GCC hoists the next step's broadcasts and spills accumulators or row addresses (A
  // in place has MR of them, too many to address each FMA's operand from a register).
  // NOTE: fma_bcast measured 1.00-1.03x on the GEMM shapes of the benchmark in a fast phase of
  // the host, 1.02-1.05x in slow ones (1024³, same-process A/B). The conv2d and attention tiles
  // keep their broadcasts in registers: with them folded, 0.80-0.88x (conv 3×3 on 56×56 and
  // 28×28) and 0.95x (attention P·V).
  const auto step = [&] {
    R bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if constexpr (kPackedA) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = V::fma_bcast(a + i, bv[v], acc[i][v]);
      } else {
        const R ai = V::bcast(a + i * a_rs);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(ai, bv[v], acc[i][v]);
      }
    }
    a += a_cs;
    b += b_rs;
  };
  const auto steps = [&](int64_t count) {
    int64_t p = 0;
    if constexpr (kPackedA && V::kFmaReadsBroadcast) {
#pragma GCC unroll 1
      for (; p + 1 < count; p += 2) step(), step();
    }
#pragma GCC unroll 1
    for (; p < count; ++p) step();
  };
  if constexpr (!kPackedA) {
    for (int i = 0; i < MR; ++i) fetch_row(i, false);
    steps(kc - std::min(kc, kLate));
    for (int i = 0; i < MR; ++i) fetch_row(i, false);
    steps(std::min(kc, kLate));
  } else if (kc >= kWindow) {
    steps(kc - kWindow);
    for (int j = 0; j < 2 * MR; ++j) fetch_row(j % MR, j >= MR), steps(kGap);
    steps(kAfter);
  } else {  // too few steps to spread the fetches over
    for (int i = 0; i < MR; ++i) fetch_row(i, true);
    steps(kc);
  }
  // NOTE: every load of C comes before the first store. C's rows are often a multiple of 4 KiB
  // apart, and a load after a store to the same address modulo 4 KiB waits for the store
  // (4K aliasing): interleaved, each load but the first would.
  const R alpha = V::set1(ep.alpha), beta = V::set1(ep.beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      acc[i][v] = V::mul(alpha, acc[i][v]);
      if (ep.beta != T(0)) acc[i][v] = V::fma(beta, V::load(c + i * ldc + v * L), acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      R r = acc[i][v];
      if (ep.bias) r = V::add(r, V::load(ep.bias + v * L));
      if (ep.act == Activation::relu) r = relu<V>(r);
      else if (ep.act == Activation::gelu) r = gelu<V>(r);
      V::store(c + i * ldc + v * L, r);
    }
  }
}

template <typename V, int MR, int NV>
void microkernel(int64_t kc, const typename V::T* a, int64_t a_rs, int64_t a_cs,
                 const typename V::T* b, int64_t b_rs, typename V::T* c, int64_t ldc,
                 const Epilogue<typename V::T>& ep) {
  const bool packed_b = b_rs == NV * V::kLanes;
  if (a_rs == 1 && a_cs == MR && packed_b)
    tile<V, MR, NV, true, true>(kc, a, a_rs, a_cs, b, b_rs, c, ldc, ep);
  else if (packed_b) tile<V, MR, NV, false, true>(kc, a, a_rs, a_cs, b, b_rs, c, ldc, ep);
  else tile<V, MR, NV, false, false>(kc, a, a_rs, a_cs, b, b_rs, c, ldc, ep);
}

// V's kernel set: the MR-row microkernel, NV vectors wide, and for a last micro-panel of fewer
// rows one of each count in kFewer (read through its strides: a packed panel's steps are MR
// apart).
template <typename V, int MR, int NV, int... kFewer>
KernelInfo<typename V::T> kernel_set(Packer<typename V::T> pack) {
  KernelInfo<typename V::T> ki{&microkernel<V, MR, NV>, MR, NV * V::kLanes, pack};
  ((ki.by_rows[kFewer] = &microkernel<V, kFewer, NV>), ...);
  return ki;
}

// FLOP/s of the calling thread on V's FMA: twelve independent chains, enough to cover a 4-cycle
// latency on two FMA pipes.
template <typename V>
double fma_rate() {
  using T = typename V::T;
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
  alignas(64) T out[V::kLanes];
  V::store(out, sum);
  volatile T sink = out[0];  // keeps the chains from being optimized away
  (void)sink;
  return 2.0 * V::kLanes * kChains * static_cast<double>(rounds) / seconds;
}

}  // namespace engine::cpu::detail::simd
