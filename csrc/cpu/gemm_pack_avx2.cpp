// AVX2 packing of GEMM micro-panels (the layout is described at detail::Packer in gemm.h).
// Packing is the GEMM's only pass over A and B outside the microkernel; done one element at a
// time it costs ~10% of a 1024³ product, so the two common layouts get vector paths here:
//  - lanes contiguous (row-major B, transposed A): each step is a short contiguous copy;
//  - K contiguous (row-major A, transposed B): L×L blocks are transposed in registers.
// A partial last panel takes the same paths, its missing lanes zero. Anything else (both strides
// > 1) goes element by element, as in the portable packer.
#include <immintrin.h>

#include <algorithm>

#include "cpu/gemm.h"
#include "cpu/vec_avx2.h"

namespace engine::cpu::detail {
namespace {

template <typename T>
using V = avx2::Vec<T>;

// Stores the first n lanes of v (n is L, or what a 6- or 12-wide panel leaves after whole
// vectors).
inline void store_n(float* p, __m256 v, int n) {
  if (n == 8) return _mm256_storeu_ps(p, v);
  if (n == 4) return _mm_storeu_ps(p, _mm256_castps256_ps128(v));
  if (n == 6) {
    const __m128 hi = _mm256_extractf128_ps(v, 1);
    _mm_storeu_ps(p, _mm256_castps256_ps128(v));
    return _mm_storel_pi(reinterpret_cast<__m64*>(p + 4), hi);
  }
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  std::copy(tmp, tmp + n, p);
}

inline void store_n(double* p, __m256d v, int n) {
  if (n == 4) return _mm256_storeu_pd(p, v);
  if (n == 2) return _mm_storeu_pd(p, _mm256_castpd256_pd128(v));
  alignas(32) double tmp[4];
  _mm256_store_pd(tmp, v);
  std::copy(tmp, tmp + n, p);
}

// One panel whose lanes are contiguous along K, `rows` of its `width` lanes present (the rest
// are zero, as are a 6-wide panel's 7th and 8th rows of each transpose): L steps at a time, each
// an L×L register transpose. `next` is the following panel's first lane, or null.
// NOTE: a panel reads `width` rows of under a page each, too short for the hardware prefetchers
// to catch on, so each step block also prefetches the same block of the next panel's rows.
template <typename T, int width>
void pack_k_contiguous(const T* src, const T* next, int64_t lane_stride, int rows, int64_t kc,
                       T* out) {
  constexpr int L = V<T>::kLanes;
  using R = typename V<T>::R;
  int64_t p = 0;
  for (; p + L <= kc; p += L) {
    if (next)
      for (int l = 0; l < width; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(next + l * lane_stride + p), _MM_HINT_T0);
#pragma GCC unroll 2
    for (int l0 = 0; l0 < width; l0 += L) {
      const int n = std::min(L, width - l0);
      R r[L];
#pragma GCC unroll 8
      for (int i = 0; i < L; ++i)
        r[i] = l0 + i < rows ? V<T>::load(src + (l0 + i) * lane_stride + p) : V<T>::zero();
      if (l0 < rows) avx2::transpose(r);
#pragma GCC unroll 8
      for (int i = 0; i < L; ++i) store_n(out + (p + i) * width + l0, r[i], n);
    }
  }
  for (; p < kc; ++p)
    for (int l = 0; l < width; ++l) out[p * width + l] = l < rows ? src[l * lane_stride + p] : T(0);
}

// Panels whose lanes are contiguous in each step, in blocks of kStepBlock steps across all
// panels: the reads are then kStepBlock streams along B's rows (not one page-strided line per
// step, which the hardware prefetchers do not follow) and each panel is written in 1 KiB runs.
// A partial last panel's missing lanes are zero.
template <typename T, int width>
void pack_lanes_contiguous(const T* src, int64_t k_stride, int64_t lanes, int64_t kc, T* out) {
  constexpr int kStepBlock = 16, L = V<T>::kLanes;
  const int64_t panels = (lanes + width - 1) / width;
  for (int64_t p0 = 0; p0 < kc; p0 += kStepBlock) {
    const int64_t p1 = std::min(kc, p0 + kStepBlock);
    for (int64_t q = 0; q < panels; ++q) {
      T* dst = out + q * width * kc;
      const int64_t n = std::min<int64_t>(width, lanes - q * width);
      for (int64_t p = p0; p < p1; ++p) {
        const T* step = src + p * k_stride + q * width;
        T* d = dst + p * width;
        if (n == width) {
#pragma GCC unroll 8
          for (int l = 0; l + L <= width; l += L) V<T>::store(d + l, V<T>::load(step + l));
          for (int l = width / L * L; l < width; ++l) d[l] = step[l];
        } else {
          std::copy(step, step + n, d);
          std::fill(d + n, d + width, T(0));
        }
      }
    }
  }
}

template <typename T, int width>
void pack_panels(const T* src, int64_t lane_stride, int64_t k_stride, int64_t lanes, int64_t kc,
                 T* out) {
  if (lane_stride == 1) return pack_lanes_contiguous<T, width>(src, k_stride, lanes, kc, out);
  if (k_stride != 1) return pack_panels_strided(src, lane_stride, k_stride, lanes, kc, width, out);
  for (int64_t l0 = 0; l0 < lanes; l0 += width) {
    const T* panel = src + l0 * lane_stride;
    const int rows = static_cast<int>(std::min<int64_t>(width, lanes - l0));
    pack_k_contiguous<T, width>(panel, l0 + width < lanes ? panel + width * lane_stride : nullptr,
                                lane_stride, rows, kc, out + l0 * kc);
  }
}

// The widths the microkernels use: MR = 6 (AVX2) or 12 (AVX-512) rows of A, NR = 2 vectors of
// B's columns of 256 (AVX2) or 512 bits (AVX-512).
template <typename T>
void pack_avx2(const T* src, int64_t lane_stride, int64_t k_stride, int64_t lanes, int64_t kc,
               int width, T* out) {
  constexpr int kNR2 = 2 * V<T>::kLanes, kNR512 = 2 * kNR2;
  if (width == 6) pack_panels<T, 6>(src, lane_stride, k_stride, lanes, kc, out);
  else if (width == 12) pack_panels<T, 12>(src, lane_stride, k_stride, lanes, kc, out);
  else if (width == kNR2) pack_panels<T, kNR2>(src, lane_stride, k_stride, lanes, kc, out);
  else if (width == kNR512) pack_panels<T, kNR512>(src, lane_stride, k_stride, lanes, kc, out);
  else pack_panels_strided(src, lane_stride, k_stride, lanes, kc, width, out);
}

}  // namespace

Packer<float> avx2_packer_f32() { return &pack_avx2<float>; }
Packer<double> avx2_packer_f64() { return &pack_avx2<double>; }

}  // namespace engine::cpu::detail
