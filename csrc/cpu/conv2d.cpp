// conv2d forward and gradients as implicit GEMM over tiles of output positions: for one image
// and a tile of positions, the needed input windows are packed into a small (taps × tile) column
// panel in per-thread memory and multiplied with the GEMM; nothing the size of the batch's
// im2col is ever built. Stride-1 convolutions on an AVX2 or AVX-512 CPU take the direct kernels
// of conv2d_direct.h instead.
#include "cpu/conv2d.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/isa_choice.h"
#include "common/workspace.h"
#include "cpu/gemm.h"
#include "cpu/parallel_items.h"

namespace engine::cpu {
namespace {

thread_local Workspace t_panel;

IsaChoice g_path("conv2d_use_path", {"gemm-panels", "avx2-direct", "avx512-direct"});

bool use_direct() { return g_path.get() != Isa::portable; }

// The direct kernels of the path in use (use_direct() must hold).
template <typename T>
void forward_direct(T* y, const T* x, const T* weight, const T* bias, const ConvShape& s) {
  if (g_path.get() == Isa::avx512) detail::conv2d_forward_direct_avx512(y, x, weight, bias, s);
  else detail::conv2d_forward_direct_avx2(y, x, weight, bias, s);
}

// False where x holds an inf or a NaN, which the direct weight gradient does not take.
template <typename T>
bool grad_weight_direct(T* dweight, const T* dy, const T* x, const ConvShape& s) {
  if (g_path.get() == Isa::avx512) return detail::conv2d_grad_weight_direct_avx512(dweight, dy, x, s);
  return detail::conv2d_grad_weight_direct_avx2(dweight, dy, x, s);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- Column panels ----------------------------------------------------------------------------
// Column panel of channels [c0, c1) of one image-group and output positions [l0, l0 + lt):
// panel[k·lt + t] = xpad[c0 + c, oh·sh + i·dh, ow·sw + j·dw] with k = (c, i, j) and
// (oh, ow) the position l0 + t. walk_tap visits one tap's row of it as runs: inside(t, count,
// offset) for runs that read the input plane at offset, offset + sw, ...; outside(t, count)
// for runs that read padding.
template <typename Inside, typename Outside>
void walk_tap(const ConvShape& s, int64_t i, int64_t j, int64_t l0, int64_t lt, Inside inside,
              Outside outside) {
  // Output columns whose input column ow·sw + j·dw − pw lies in [0, W).
  const int64_t first = s.pw - j * s.dw;  // ow·sw ≥ first
  int64_t ow_lo = first <= 0 ? 0 : ceil_div(first, s.sw);
  const int64_t last = s.w - 1 + s.pw - j * s.dw;  // ow·sw ≤ last
  int64_t ow_hi = last < 0 ? 0 : last / s.sw + 1;
  ow_lo = std::min(ow_lo, s.ow);
  ow_hi = std::clamp(ow_hi, ow_lo, s.ow);
  int64_t t = 0;
  while (t < lt) {
    const int64_t l = l0 + t, oh = l / s.ow, ow0 = l % s.ow;
    const int64_t run = std::min(lt - t, s.ow - ow0);  // to the end of this output row
    const int64_t ih = oh * s.sh + i * s.dh - s.ph;
    if (ih < 0 || ih >= s.h) {
      outside(t, run);
    } else {
      const int64_t a = std::clamp(ow_lo, ow0, ow0 + run), b = std::clamp(ow_hi, a, ow0 + run);
      if (a > ow0) outside(t, a - ow0);
      if (b > a) inside(t + a - ow0, b - a, ih * s.w + a * s.sw + j * s.dw - s.pw);
      if (ow0 + run > b) outside(t + b - ow0, ow0 + run - b);
    }
    t += run;
  }
}

template <typename T>
void pack_columns(T* panel, const T* x, const ConvShape& s, int64_t c0, int64_t c1, int64_t l0,
                  int64_t lt) {
  const int64_t hw = s.h * s.w, sw = s.sw;
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        T* row = panel + (((c - c0) * s.kh + i) * s.kw + j) * lt;
        const T* plane = x + c * hw;
        walk_tap(
            s, i, j, l0, lt,
            [&](int64_t t, int64_t n, int64_t off) {
              if (sw == 1) std::memcpy(row + t, plane + off, sizeof(T) * n);
              else
                for (int64_t q = 0; q < n; ++q) row[t + q] = plane[off + q * sw];
            },
            [&](int64_t t, int64_t n) { std::fill(row + t, row + t + n, T(0)); });
      }
}

// The transpose of pack_columns: adds each panel element onto the input element it was read
// from (runs over padding are dropped). Windows overlap, so this is a sum, done in tap order.
template <typename T>
void add_columns(T* dx, const T* panel, const ConvShape& s, int64_t c0, int64_t c1, int64_t l0,
                 int64_t lt) {
  const int64_t hw = s.h * s.w, sw = s.sw;
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* row = panel + (((c - c0) * s.kh + i) * s.kw + j) * lt;
        T* plane = dx + c * hw;
        walk_tap(
            s, i, j, l0, lt,
            [&](int64_t t, int64_t n, int64_t off) {
              for (int64_t q = 0; q < n; ++q) plane[off + q * sw] += row[t + q];
            },
            [](int64_t, int64_t) {});
      }
}

// Output positions per tile: a multiple of 16 (the GEMM's widest NR) up to 128, the widest B the
// GEMM reads A in place for, fewer when the panel (rows × tile) would outgrow ~256 KiB (half of
// L2); tiles of one plane are made about equal.
template <typename T>
int64_t tile_width(int64_t rows, int64_t plane, int64_t cap) {
  const int64_t budget = (int64_t{256} << 10) / int64_t(sizeof(T));
  int64_t lt = std::clamp<int64_t>(budget / std::max<int64_t>(rows, 1) / 16 * 16, 16, cap);
  if (plane <= lt) return std::max<int64_t>(plane, 1);
  const int64_t tiles = ceil_div(plane, lt);
  return std::min(lt, ceil_div(ceil_div(plane, tiles), 16) * 16);
}

// ---- Forward ----------------------------------------------------------------------------------
template <typename T>
void forward_panels(T* y, const T* x, const T* weight, const T* bias, const ConvShape& s) {
  const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), K = s.taps(), L = s.plane();
  const int64_t lt = tile_width<T>(K, L, 128), tiles = ceil_div(L, lt);
  const int64_t items = s.n * G * tiles;
  // Items share out the team when there are enough; otherwise one at a time, each GEMM using it.
  const int nt = team_for(items, double(Og) * K * lt);
  run_items(items >= nt ? nt : 1, items, [&](int64_t it, int) {
    const int64_t tile = it % tiles, ng = it / tiles, g = ng % G, n = ng / G;
    const int64_t l0 = tile * lt, w = std::min(lt, L - l0);
    T* panel = t_panel.get<T>(size_t(K * w));
    pack_columns(panel, x + (n * s.c + g * Cg) * s.h * s.w, s, 0, Cg, l0, w);
    T* yt = y + (n * s.o + g * Og) * L + l0;
    if (bias)
      for (int64_t o = 0; o < Og; ++o) std::fill(yt + o * L, yt + o * L + w, bias[g * Og + o]);
    GemmArgs<T> a{};
    a.c = yt, a.c_rs = L;
    a.a = weight + g * Og * K, a.a_rs = K, a.a_cs = 1;
    a.b = panel, a.b_rs = w, a.b_cs = 1;
    a.batch = 1, a.m = Og, a.n = w, a.k = K;
    a.beta = bias ? T(1) : T(0);
    gemm(a);
  });
}

// ---- Gradient w.r.t. the input ----------------------------------------------------------------
// In the forward pass the panel of a tile was multiplied by weight (Og × K); so now weightᵀ·dy of
// that tile is a (K × tile) panel of gradients, added back onto the windows it was packed from.
template <typename T>
void grad_input_panels(T* dx, const T* dy, const T* weight, const ConvShape& s) {
  const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), K = s.taps(), L = s.plane();
  const int64_t khw = s.kh * s.kw, hw = s.h * s.w;
  // Images (and groups) are independent; with fewer of them than threads the channels are split
  // too, so that no two items ever add into the same input element.
  const int64_t ng = s.n * G;
  const int64_t blocks = ng >= max_threads() ? 1 : std::clamp<int64_t>(Cg, 1, max_threads());
  const int64_t items = ng * blocks;
  const int64_t lt = tile_width<T>(K / blocks, L, 128);
  const int nt = team_for(items, double(Og) * K * L / blocks);
  run_items(items >= nt ? nt : 1, items, [&](int64_t it, int) {
    const int64_t b = it % blocks, n = it / blocks / G, g = it / blocks % G;
    const int64_t c0 = Cg * b / blocks, c1 = Cg * (b + 1) / blocks;
    T* dxg = dx + (n * s.c + g * Cg) * hw;
    std::fill(dxg + c0 * hw, dxg + c1 * hw, T(0));
    if (c1 == c0) return;
    for (int64_t l0 = 0; l0 < L; l0 += lt) {
      const int64_t w = std::min(lt, L - l0);
      T* panel = t_panel.get<T>(size_t((c1 - c0) * khw * w));
      GemmArgs<T> a{};
      a.c = panel, a.c_rs = w;
      a.a = weight + g * Og * K + c0 * khw, a.a_rs = 1, a.a_cs = K;  // weightᵀ rows of c0..c1
      a.b = dy + (n * s.o + g * Og) * L + l0, a.b_rs = L, a.b_cs = 1;
      a.batch = 1, a.m = (c1 - c0) * khw, a.n = w, a.k = Og;
      gemm(a);
      add_columns(dxg, panel, s, c0, c1, l0, w);
    }
  });
}

// ---- Gradient w.r.t. the weight ---------------------------------------------------------------
// dweight_g (Og × K) = Σ_n dy_g[n] (Og × L) · panel[n]ᵀ (L × K). Each thread owns a block of
// dweight (a group, a range of input channels, a range of output channels) and sums every image
// and tile into it in order, so no partial sums are combined and the thread count changes nothing.
template <typename T>
void grad_weight_panels(T* dweight, const T* dy, const T* x, const ConvShape& s) {
  const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), K = s.taps(), L = s.plane();
  const int64_t khw = s.kh * s.kw;
  std::fill(dweight, dweight + s.o * K, T(0));
  if (s.n == 0 || L == 0 || K == 0 || Og == 0) return;
  const int64_t want = G >= max_threads() ? 1 : ceil_div(max_threads(), G);
  const int64_t cblocks = std::min(Cg, want), oblocks = std::min(Og, ceil_div(want, cblocks));
  const int64_t items = G * cblocks * oblocks;
  // NOTE: the reduction over positions is cut into tiles of a width that depends on the shape
  // alone (never on the blocks), each short enough that gemm() sums it in one K block whatever
  // the block's M and N.
  const int64_t lt = tile_width<T>(K, L, kGemmUnsplitK);
  const int nt = team_for(items, double(s.n) * Og * K * L / items);
  run_items(items >= nt ? nt : 1, items, [&](int64_t it, int) {
    const int64_t ob = it % oblocks, cb = it / oblocks % cblocks, g = it / oblocks / cblocks;
    const int64_t c0 = Cg * cb / cblocks, c1 = Cg * (cb + 1) / cblocks;
    const int64_t o0 = Og * ob / oblocks, o1 = Og * (ob + 1) / oblocks;
    if (c1 == c0 || o1 == o0) return;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t l0 = 0; l0 < L; l0 += lt) {
        const int64_t w = std::min(lt, L - l0);
        T* panel = t_panel.get<T>(size_t((c1 - c0) * khw * w));
        pack_columns(panel, x + (n * s.c + g * Cg) * s.h * s.w, s, c0, c1, l0, w);
        GemmArgs<T> a{};
        a.c = dweight + (g * Og + o0) * K + c0 * khw, a.c_rs = K;
        a.a = dy + (n * s.o + g * Og + o0) * L + l0, a.a_rs = L, a.a_cs = 1;
        a.b = panel, a.b_rs = 1, a.b_cs = w;  // panelᵀ
        a.batch = 1, a.m = o1 - o0, a.n = (c1 - c0) * khw, a.k = w;
        a.beta = T(1);
        gemm(a);
      }
  });
}

// The stride-1 gradient w.r.t. the input is itself a stride-1 convolution of dy: with the
// kernel flipped and its channel axes swapped, and padding dil·(k − 1) − pad on each side
// (which needs pad ≤ dil·(k − 1)).
bool grad_input_as_conv(const ConvShape& s) {
  return s.sh == 1 && s.sw == 1 && s.ph <= s.dh * (s.kh - 1) && s.pw <= s.dw * (s.kw - 1);
}

}  // namespace

template <typename T>
void conv2d_forward(T* y, const T* x, const T* weight, const T* bias, const ConvShape& s) {
  if (s.n == 0 || s.o == 0 || s.plane() == 0) return;
  if (s.sh == 1 && s.sw == 1 && use_direct())
    return forward_direct(y, x, weight, bias, s);
  forward_panels(y, x, weight, bias, s);
}

template <typename T>
void conv2d_grad_input(T* dx, const T* dy, const T* weight, const ConvShape& s) {
  if (s.n == 0 || s.c == 0 || s.h * s.w == 0) return;
  if (use_direct() && grad_input_as_conv(s) && s.o > 0) {
    // flipped[g, c, o, i, j] = weight[g·Og + o, c, KH−1−i, KW−1−j], as a (C, Og, KH, KW) weight
    const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), khw = s.kh * s.kw;
    std::vector<T> flipped(size_t(s.o * Cg * khw));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t o = 0; o < Og; ++o)
          for (int64_t k = 0; k < khw; ++k)
            flipped[((g * Cg + c) * Og + o) * khw + k] =
                weight[((g * Og + o) * Cg + c) * khw + khw - 1 - k];
    ConvShape t{s.n, s.o, s.oh, s.ow, s.c, s.kh, s.kw, s.h, s.w, 1, 1,
                s.dh * (s.kh - 1) - s.ph, s.dw * (s.kw - 1) - s.pw, s.dh, s.dw, s.groups};
    return forward_direct(dx, dy, flipped.data(), static_cast<const T*>(nullptr), t);
  }
  grad_input_panels(dx, dy, weight, s);
}

template <typename T>
void conv2d_grad_weight(T* dweight, const T* dy, const T* x, const ConvShape& s) {
  if (s.sh == 1 && s.sw == 1 && use_direct() && s.plane() > 0 && grad_weight_direct(dweight, dy, x, s))
    return;
  grad_weight_panels(dweight, dy, x, s);
}

template void conv2d_forward<float>(float*, const float*, const float*, const float*, const ConvShape&);
template void conv2d_forward<double>(double*, const double*, const double*, const double*, const ConvShape&);
template void conv2d_grad_input<float>(float*, const float*, const float*, const ConvShape&);
template void conv2d_grad_input<double>(double*, const double*, const double*, const ConvShape&);
template void conv2d_grad_weight<float>(float*, const float*, const float*, const ConvShape&);
template void conv2d_grad_weight<double>(double*, const double*, const double*, const ConvShape&);

std::vector<std::string> conv2d_paths() { return g_path.available(); }

const char* conv2d_path() { return g_path.name(); }

void conv2d_use_path(const std::string& path) { g_path.use(path); }

}  // namespace engine::cpu
