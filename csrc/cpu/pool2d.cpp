// max_pool2d forward (max and argmax per window) and backward (scatter-add by argmax), one
// (n, c) plane per work item.
#include "cpu/pool2d.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cpu/parallel_items.h"

namespace engine::cpu {
namespace {

// The first tap of a window starting at `start` (stride·o − pad) that lies inside [0, size):
// start itself, or the first start + m·dil ≥ 0 (numpy_ref's _first_in_bounds).
int64_t first_in_bounds(int64_t start, int64_t dil) {
  return start >= 0 ? start : ((start % dil) + dil) % dil;
}

// Taps [lo, hi) of a window starting at `start` that fall inside [0, size).
void taps_inside(int64_t start, int64_t k, int64_t dil, int64_t size, int64_t& lo, int64_t& hi) {
  lo = start >= 0 ? 0 : (-start + dil - 1) / dil;
  hi = start + (k - 1) * dil < size ? k : (size - 1 - start) / dil + 1;
  if (start > size - 1) hi = 0;
  hi = std::max(lo, std::min(hi, k));
}

// m, best = v, at when take. With bit masks, not a branch: on real data which tap wins is a
// coin toss, and the compiler turns a plain `if` (even a ?:) into a branch that mispredicts
// about once per window, which costs more than all the window's comparisons.
template <typename T>
inline void take_if(bool take, T v, int64_t at, T& m, int64_t& best) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const U mask = U(0) - U(take);
  U vb, mb;
  std::memcpy(&vb, &v, sizeof(T));
  std::memcpy(&mb, &m, sizeof(T));
  mb = (vb & mask) | (mb & ~mask);
  std::memcpy(&m, &mb, sizeof(T));
  const int64_t imask = -int64_t(take);
  best = (at & imask) | (best & ~imask);
}

// take_if over outputs [ow, ow_end) of a row for one tap, four at a time with SSE2 (part of
// every x86-64 CPU); returns the first output it left for the scalar loop.
inline int64_t take_row_sse2(const float* xp, int64_t shift, int64_t sw, int64_t ow,
                             int64_t ow_end, float* m, int64_t* best) {
#if defined(__SSE2__)
  const __m128i step = _mm_set_epi64x(sw, 0), step2 = _mm_set1_epi64x(2 * sw);
  for (; ow + 4 <= ow_end; ow += 4) {
    const int64_t at = shift + ow * sw;
    const __m128 v = _mm_setr_ps(xp[at], xp[at + sw], xp[at + 2 * sw], xp[at + 3 * sw]);
    const __m128 mv = _mm_loadu_ps(m + ow);
    // NOTE: unordered(v, v) is the NaN test.
    const __m128 take = _mm_or_ps(_mm_cmpgt_ps(v, mv), _mm_cmpunord_ps(v, v));
    _mm_storeu_ps(m + ow, _mm_or_ps(_mm_and_ps(take, v), _mm_andnot_ps(take, mv)));
    const __m128i t = _mm_castps_si128(take);
    const __m128i t01 = _mm_unpacklo_epi32(t, t), t23 = _mm_unpackhi_epi32(t, t);
    const __m128i at01 = _mm_add_epi64(_mm_set1_epi64x(at), step), at23 = _mm_add_epi64(at01, step2);
    __m128i* b = reinterpret_cast<__m128i*>(best + ow);
    _mm_storeu_si128(b, _mm_or_si128(_mm_and_si128(t01, at01), _mm_andnot_si128(t01, _mm_loadu_si128(b))));
    _mm_storeu_si128(b + 1, _mm_or_si128(_mm_and_si128(t23, at23), _mm_andnot_si128(t23, _mm_loadu_si128(b + 1))));
  }
#else
  (void)xp, (void)shift, (void)sw, (void)ow_end, (void)m, (void)best;
#endif
  return ow;
}

}  // namespace

template <typename T>
void max_pool2d_forward(T* y, int64_t* indices, const T* x, const PoolShape& s) {
  const int64_t planes = s.n * s.c, hw = s.h * s.w, out = s.oh * s.ow;
  // The first in-bounds input column of each output column's window, and for each tap column j
  // the output columns [jlo, jhi) whose tap j lies inside the plane.
  std::vector<int64_t> col0(size_t(s.ow)), jlo(size_t(s.kw)), jhi(size_t(s.kw));
  for (int64_t ow = 0; ow < s.ow; ++ow) col0[size_t(ow)] = first_in_bounds(ow * s.sw - s.pw, s.dw);
  for (int64_t j = 0; j < s.kw; ++j) {
    const int64_t first = s.pw - j * s.dw, last = s.w - 1 + s.pw - j * s.dw;  // ow·sw in [first, last]
    const int64_t lo = first <= 0 ? 0 : (first + s.sw - 1) / s.sw;
    const int64_t hi = last < 0 ? 0 : last / s.sw + 1;
    jlo[size_t(j)] = std::min(lo, s.ow);
    jhi[size_t(j)] = std::clamp(hi, jlo[size_t(j)], s.ow);
  }
  const int nt = team_for(planes, double(out) * s.kh * s.kw);
  run_items(nt, planes, [&](int64_t pl, int) {
    const T* xp = x + pl * hw;
    T* yp = y + pl * out;
    int64_t* ip = indices + pl * out;
    for (int64_t oh = 0; oh < s.oh; ++oh) {
      const int64_t start = oh * s.sh - s.ph, row0 = first_in_bounds(start, s.dh);
      int64_t ilo, ihi;
      taps_inside(start, s.kh, s.dh, s.h, ilo, ihi);
      T* m = yp + oh * s.ow;
      int64_t* best = ip + oh * s.ow;
      for (int64_t ow = 0; ow < s.ow; ++ow) {
        m[ow] = -std::numeric_limits<T>::infinity();
        best[ow] = row0 * s.w + col0[size_t(ow)];
      }
      // Taps in window order, each over the whole output row: the outputs are independent, so
      // the comparisons of neighbouring windows overlap instead of waiting on each other.
      for (int64_t i = ilo; i < ihi; ++i) {
        const int64_t r = (start + i * s.dh) * s.w;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t shift = r - s.pw + j * s.dw, sw = s.sw;
          int64_t ow = jlo[size_t(j)];
          if constexpr (std::is_same_v<T, float>) ow = take_row_sse2(xp, shift, sw, ow, jhi[size_t(j)], m, best);
          for (; ow < jhi[size_t(j)]; ++ow) {
            const int64_t at = shift + ow * sw;
            const T v = xp[at];
            // NOTE: v != v is the NaN test; it must survive optimisation (no -ffast-math).
            take_if((v > m[ow]) | (v != v), v, at, m[ow], best[ow]);
          }
        }
      }
    }
  });
}

template <typename T>
bool max_pool2d_backward(T* dx, const T* dy, const int64_t* indices, const PoolShape& s) {
  const int64_t planes = s.n * s.c, hw = s.h * s.w, out = s.oh * s.ow;
  std::atomic<bool> ok{true};
  const int nt = team_for(planes, double(out + hw) / 4);
  run_items(nt, planes, [&](int64_t pl, int) {
    T* dp = dx + pl * hw;
    const T* gp = dy + pl * out;
    const int64_t* ip = indices + pl * out;
    std::fill(dp, dp + hw, T(0));
    for (int64_t q = 0; q < out; ++q) {
      const int64_t at = ip[q];
      if (at < 0 || at >= hw) {
        ok.store(false, std::memory_order_relaxed);
        return;
      }
      dp[at] += gp[q];
    }
  });
  return ok.load();
}

template void max_pool2d_forward<float>(float*, int64_t*, const float*, const PoolShape&);
template void max_pool2d_forward<double>(double*, int64_t*, const double*, const PoolShape&);
template bool max_pool2d_backward<float>(float*, const float*, const int64_t*, const PoolShape&);
template bool max_pool2d_backward<double>(double*, const double*, const int64_t*, const PoolShape&);

}  // namespace engine::cpu
