// The register tile of the CPU attention's block products, written once over a vector type V
// (avx2::Vec or avx512::Vec). Include only from a file compiled for V's instructions.
#pragma once
#include <cstdint>

#include "cpu/attention.h"

namespace engine::cpu::detail {

// AttentionKernels::tile on kAttnMR × (2 vectors of V): 12 accumulators, 2 B vectors and a
// broadcast.
template <typename V>
void attention_tile(int64_t kc, const typename V::T* a, int64_t a_rs, int64_t a_cs,
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

}  // namespace engine::cpu::detail
