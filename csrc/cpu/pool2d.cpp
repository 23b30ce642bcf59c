// max_pool2d forward (max and argmax per window) and backward (scatter-add by argmax), one
// (n, c) plane per work item.
#include "cpu/pool2d.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

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

}  // namespace

template <typename T>
void max_pool2d_forward(T* y, int64_t* indices, const T* x, const PoolShape& s) {
  const int64_t planes = s.n * s.c, hw = s.h * s.w, out = s.oh * s.ow;
  // Per output column: its window's in-bounds taps and first in-bounds input column.
  std::vector<int64_t> jlo(size_t(s.ow)), jhi(size_t(s.ow)), col0(size_t(s.ow));
  for (int64_t ow = 0; ow < s.ow; ++ow) {
    const int64_t start = ow * s.sw - s.pw;
    taps_inside(start, s.kw, s.dw, s.w, jlo[size_t(ow)], jhi[size_t(ow)]);
    col0[size_t(ow)] = first_in_bounds(start, s.dw);
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
      for (int64_t ow = 0; ow < s.ow; ++ow) {
        const int64_t c = ow * s.sw - s.pw;
        T m = -std::numeric_limits<T>::infinity();
        int64_t best = row0 * s.w + col0[size_t(ow)];
        for (int64_t i = ilo; i < ihi; ++i) {
          const int64_t r = (start + i * s.dh) * s.w;
          for (int64_t j = jlo[size_t(ow)]; j < jhi[size_t(ow)]; ++j) {
            const T v = xp[r + c + j * s.dw];
            // NOTE: v != v is the NaN test; it must survive optimisation (no -ffast-math).
            if (v > m || v != v) m = v, best = r + c + j * s.dw;
          }
        }
        yp[oh * s.ow + ow] = m;
        ip[oh * s.ow + ow] = best;
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
