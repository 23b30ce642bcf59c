// Direct conv2d for stride 1 (any padding, dilation and groups), forward and weight gradient
// (the input gradient is a forward convolution of dy, see conv2d.cpp): no column panel. Written
// once over an instruction set `Isa` (its vector type, tile height and register transpose) and
// compiled per set in conv2d_avx2.cpp and conv2d_avx512.cpp.
//
// The image is copied once into a zero-padded plane of width Wp = W + 2·pw; an output position
// (oh, ow) then sits at the "extended" position e = oh·Wp + ow, and tap (c, i, j) reads the padded
// image at e + off[c, i, j] with off = c·Hp·Wp + i·dh·Wp + j·dw. The forward is then a GEMM whose
// A operand (positions × taps) is read straight from the padded image through that offset table:
// its register tile broadcasts the input at kFP output positions and multiplies two vectors of
// output channels' weights, like the GEMM microkernel, so no load straddles a cache line and the
// weights stream in order. Two shapes take other tiles: few taps (output rows, row_tile) and one
// output channel per group (extended positions, single_tile, possibly over tap sums).
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/cpu_features.h"
#include "common/workspace.h"
#include "cpu/conv2d.h"
#include "cpu/parallel_items.h"
#include "cpu/prefetch.h"

namespace engine::cpu::detail {

// Isa provides: template <typename T> using Vec (vec_avx2.h's operations); kFP, the output
// positions of a forward tile (kFP × 2 accumulators, 2 weight vectors and a broadcast fit the
// registers); kGO × kGK, the weight gradient's tile of output channels × taps; kZV × kZT, the
// tap sums' tile of position vectors × taps; and transpose(rows[kFP], ch[L]) for float: ch[c]
// lane i = rows[i] lane c, lanes past kFP zero.
template <class Isa>
struct DirectConv {
  template <typename T>
  using Vec = typename Isa::template Vec<T>;

  // NOTE: the plan's vectors allocate through an allocator of this instruction set's own, so
  // their member functions are this file's copies alone. With std::vector<int64_t> in both the
  // AVX2 and the AVX-512 file, the linker would keep one copy of each method for both, and the
  // copy compiled with -mavx512f must never be the one an AVX2 CPU runs.
  template <typename U>
  struct Allocator : std::allocator<U> {
    using value_type = U;
    template <typename V>
    struct rebind {
      using other = Allocator<V>;
    };
    Allocator() = default;
    template <typename V>
    Allocator(const Allocator<V>&) noexcept {}
  };
  template <typename U>
  using Vector = std::vector<U, Allocator<U>>;

  static constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
  static constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

  // The forward register tile: kFP output positions × kFV vectors (kFNR lanes) of output channels.
  static constexpr int kFP = Isa::kFP, kFV = 2;
  template <typename T>
  static constexpr int kFNR = kFV * Vec<T>::kLanes;
  // With one output channel per group: kSV vectors (kSPos lanes) of consecutive extended
  // positions; 8 independent sums cover the FMA latency on two pipes.
  static constexpr int kSV = 8;
  template <typename T>
  static constexpr int kSPos = kSV * Vec<T>::kLanes;
  // The tap sums' tile (see tap_sums): kZV vectors (kZPos lanes) of positions × up to kZT taps.
  static constexpr int kZV = Isa::kZV, kZT = Isa::kZT;
  template <typename T>
  static constexpr int kZPos = kZV * Vec<T>::kLanes;
  // Up to kRT taps, the forward goes by rows (row_tiles), kRO output channels a step.
  static constexpr int kRT = Isa::kRT, kRO = 4;
  // From this many input channels on, one output channel is computed through the tap sums.
  static constexpr int64_t kZMinChannels = 4;

  template <typename T>
  struct Plan {
    int64_t hp, wp, image;  // padded plane, and its size with the zero slack after it
    int64_t extended;       // extended positions up to the last output's, (OH − 1)·Wp + OW
    Vector<int64_t> off;    // K tap offsets into the padded image of one group
    // The forward's: channel blocks of kFNR, tiles of kFP output positions (of kSPos extended
    // positions with one output channel per group; output rows with `rows`).
    int64_t ob = 0, tiles = 0;
    Vector<T> wpack;       // [g][ob][k][kFNR]: weight[g·Og + ob·kFNR + lane, k], 0 past Og
    Vector<T> bpack;       // [g][ob][kFNR]: bias, 0 past Og (or all 0)
    Vector<int64_t> epos;  // [tiles·kFP]: extended position of output p (the last one past L)
    // The forward's weights and bias (or nullptr) as given: single_tile and row_tile read them.
    const T* weight = nullptr;
    const T* bias = nullptr;
    bool rows = false;  // tiles are output rows (row_tiles)
    // With Og = 1 and Cg ≥ kZMinChannels, the tap sums z: their padded plane (Hp·Wp, 0 when they
    // are not used) and the unpadded one they are first computed on (H·W rounded up to a z tile),
    // KH·KW offsets t·zstride + i·dh·Wp + j·dw, and KH·KW ones (the weights of the sum over z).
    int64_t zstride = 0, zraw = 0;
    Vector<int64_t> zoff;
    Vector<T> ones;
  };

  // The geometry of the padded image; with a weight (the forward) also the packed weights and the
  // extended position of every output.
  template <typename T>
  static Plan<T> make_plan(const T* weight, const T* bias, const ConvShape& s) {
    const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), K = s.taps(), L = s.plane();
    Plan<T> p;
    p.hp = s.h + 2 * s.ph, p.wp = s.w + 2 * s.pw;
    // NOTE: single_tile's loads start at tile + off[k]; with Wp (and so Hp·Wp) a multiple of the
    // vector, those of the taps j = 0 are aligned, one in KW that does not straddle cache lines.
    if (weight && Og == 1) p.wp = round_up(p.wp, Vec<T>::kLanes);
    // The weight gradient reads runs of NL positions, the one-channel forward tiles of kSPos, up
    // to a run or tile past the last output, and pad_image stores up to a vector past the plane:
    // zero slack.
    const int64_t last_tap = (Cg - 1) * p.hp * p.wp + (s.kh - 1) * s.dh * p.wp + (s.kw - 1) * s.dw;
    p.extended = (s.oh - 1) * p.wp + s.ow;
    p.image = std::max(Cg * p.hp * p.wp + Vec<T>::kLanes, last_tap + round_up(p.extended, kSPos<T>));
    p.off.resize(size_t(K));
    for (int64_t c = 0, k = 0; c < Cg; ++c)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) p.off[size_t(k++)] = c * p.hp * p.wp + i * s.dh * p.wp + j * s.dw;
    if (!weight) return p;
    p.weight = weight, p.bias = bias;
    if (Og == 1) {
      p.tiles = ceil_div(p.extended, kSPos<T>);
      // NOTE: the tap sums are padded after they are summed, so their padding is 0 where the
      // reference has 0·w; with an inf or NaN weight that is NaN, which the direct sum keeps.
      if (Cg >= kZMinChannels && all_finite(weight, s.o * K)) {
        const int64_t khw = s.kh * s.kw;
        p.zstride = p.hp * p.wp;
        p.zraw = round_up(s.h * s.w, kZPos<T>);
        p.zoff.resize(size_t(khw));
        for (int64_t t = 0; t < khw; ++t)
          p.zoff[size_t(t)] = t * p.zstride + t / s.kw * s.dh * p.wp + t % s.kw * s.dw;
        p.ones.assign(size_t(khw), T(1));
      }
      return p;
    }
    if (K >= 1 && K <= kRT && s.ow >= Vec<T>::kLanes) {
      p.rows = true;
      p.tiles = s.oh;
      return p;
    }
    constexpr int NR = kFNR<T>;
    p.ob = ceil_div(Og, NR);
    p.tiles = ceil_div(L, kFP);
    p.wpack.assign(size_t(G * p.ob * K * NR), T(0));
    p.bpack.assign(size_t(G * p.ob * NR), T(0));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t o = 0; o < Og; ++o) {
        T* dst = p.wpack.data() + (g * p.ob + o / NR) * K * NR + o % NR;
        const T* src = weight + (g * Og + o) * K;
        for (int64_t k = 0; k < K; ++k) dst[k * NR] = src[k];
        if (bias) p.bpack[size_t((g * p.ob + o / NR) * NR + o % NR)] = bias[g * Og + o];
      }
    // Positions past L (the last tile's) repeat the last output's, so they read inside the image.
    p.epos.resize(size_t(p.tiles * kFP));
    for (int64_t q = 0; q < p.tiles * kFP; ++q) {
      const int64_t out = std::min(q, L - 1);
      p.epos[size_t(q)] = out / s.ow * p.wp + out % s.ow;
    }
    return p;
  }

  // ---- Short rows ------------------------------------------------------------------------------
  // NOTE: image rows are short (MNIST's are 28 values), and a memcpy and two memsets per row cost
  // more than the row itself; so rows are copied and zeroed in whole vectors, and the zeros may run
  // up to a vector past the span asked for, into what the caller writes next or its slack.

  // dst[0, n) = src[0, n); for n ≥ NL the last vector overlaps the one before.
  template <typename T>
  static void copy_row(T* dst, const T* src, int64_t n) {
    using V = Vec<T>;
    constexpr int NL = V::kLanes;
    if (n < NL) {
      for (int64_t q = 0; q < n; ++q) dst[q] = src[q];
      return;
    }
    for (int64_t q = 0; q + NL < n; q += NL) V::store(dst + q, V::load(src + q));
    V::store(dst + n - NL, V::load(src + n - NL));
  }

  // dst[0, n) = 0, and up to NL − n elements after it. A row's padding is one vector store; only
  // longer runs (whole padding rows) go to memset.
  template <typename T>
  static void zero_run(T* dst, int64_t n) {
    if (n <= 0) return;
    Vec<T>::store(dst, Vec<T>::zero());
    if (n > Vec<T>::kLanes) std::fill(dst + Vec<T>::kLanes, dst + n, T(0));
  }

  // `planes` planes of H×W, src_stride apart, copied into zero-padded (Hp, Wp) planes from out on,
  // in increasing address order (zero_run's overrun is written over next); returns their end.
  template <typename T>
  static T* pad_planes(T* out, const T* src, int64_t planes, int64_t src_stride, const ConvShape& s,
                       int64_t wp) {
    for (int64_t c = 0; c < planes; ++c) {
      zero_run(out, s.ph * wp);
      out += s.ph * wp;
      for (int64_t h = 0; h < s.h; ++h, out += wp) {
        zero_run(out, s.pw);
        copy_row(out + s.pw, src + c * src_stride + h * s.w, s.w);
        zero_run(out + s.pw + s.w, wp - s.pw - s.w);
      }
      zero_run(out, s.ph * wp);
      out += s.ph * wp;
    }
    return out;
  }

  // The image-group's channels copied into a zero-padded (Cg, Hp, Wp) plane plus zero slack.
  template <typename T>
  static void pad_image(T* xp, const T* x, const ConvShape& s, const Plan<T>& p) {
    std::fill(pad_planes(xp, x, s.cg(), s.h * s.w, s, p.wp), xp + p.image, T(0));
  }

  // One tile: outputs [t·kFP, t·kFP + kFP) ∩ [0, L) of channels ob·kFNR.. (`rows` of them) of the
  // group. acc[i][v] = bias + Σ_k xpad[epos_i + off[k]]·wpack[k][v·NL ..].
  template <typename T>
  static void tile(T* yg, const T* xp, const Plan<T>& p, const T* w, const T* b, int64_t K,
                   int64_t rows, int64_t L, int64_t t, int64_t limit) {
    using V = Vec<T>;
    using R = typename V::R;
    constexpr int NL = V::kLanes, NR = kFNR<T>;
    const int64_t* e = p.epos.data() + t * kFP;
    const T* x0 = xp + e[0];
    int64_t rel[kFP];  // the positions' distances from the first (kFP − 1 within one output row)
    bool consecutive = true;
#pragma GCC unroll 16
    for (int i = 0; i < kFP; ++i) rel[i] = e[i] - e[0], consecutive &= rel[i] == i;
    R acc[kFP][kFV];
#pragma GCC unroll 16
    for (int i = 0; i < kFP; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < kFV; ++v) acc[i][v] = V::load(b + v * NL);
    const int64_t* off = p.off.data();
    // NOTE: most tiles lie within one output row, their positions consecutive: the loop for them
    // addresses the input with immediate offsets. Through rel[] it needs an add per broadcast and
    // more registers than there are, so some of rel[] is reloaded from the stack every step.
    const auto k_loop = [&](auto consecutive) {
#pragma GCC unroll 2
      for (int64_t k = 0; k < K; ++k, w += NR) {
        const T* xk = x0 + off[k];
        const R w0 = V::load(w), w1 = V::load(w + NL);
#pragma GCC unroll 16
        for (int i = 0; i < kFP; ++i) {
          const R xi = V::bcast(xk + (consecutive ? i : rel[i]));
          acc[i][0] = V::fma(xi, w0, acc[i][0]);
          acc[i][1] = V::fma(xi, w1, acc[i][1]);
        }
      }
    };
    if (consecutive) k_loop(std::true_type{});
    else k_loop(std::false_type{});
    // NOTE: every loop touching acc is unrolled so its indices are constants; a runtime index
    // would make the compiler keep acc in memory and store it on every step of the K loop.
    // Each channel's outputs of the tile are consecutive in its plane.
    const int64_t p0 = t * kFP;
    if constexpr (std::is_same_v<T, float>) {
      if (rows == NR && p0 + NL <= limit) {
        // Transposed to a vector of positions per channel and stored whole: its lanes past kFP
        // spill onto the next tile's outputs, which this thread writes later (limit).
#pragma GCC unroll 2
        for (int v = 0; v < kFV; ++v) {
          R rows_v[kFP], ch[NL];
#pragma GCC unroll 16
          for (int i = 0; i < kFP; ++i) rows_v[i] = acc[i][v];
          Isa::transpose(rows_v, ch);
#pragma GCC unroll 16
          for (int c = 0; c < NL; ++c) V::store(yg + (v * NL + c) * L + p0, ch[c]);
        }
        return;
      }
    }
    alignas(64) T out[kFP][NR];
#pragma GCC unroll 16
    for (int i = 0; i < kFP; ++i)
#pragma GCC unroll 2
      for (int v = 0; v < kFV; ++v) V::store(out[i] + v * NL, acc[i][v]);
    const int64_t count = std::min<int64_t>(kFP, L - p0);
    for (int64_t r = 0; r < rows; ++r) {
      T* dst = yg + r * L + p0;
      for (int64_t i = 0; i < count; ++i) dst[i] = out[i][r];
    }
  }

  // ---- Prefetch -----------------------------------------------------------------------------------
  // Asks for the cache line `bytes` past p to be fetched for reading. The address may lie past the
  // end of p's buffer (a prefetch never faults), so it is formed as an integer, not by pointer
  // arithmetic outside the buffer.
  template <typename T>
  static void prefetch_ahead(const T* p, int64_t bytes) {
    __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + bytes));
  }

  // Asks for the cache lines of [p, p + n) to be fetched for writing.
  template <typename T>
  static void prefetch_for_write(const T* p, int64_t n) {
    constexpr int64_t line = 64 / int64_t(sizeof(T));
    for (int64_t q = 0; q < n; q += line) prefetch_for_store(p + q);
    prefetch_for_store(p + n - 1);
  }

  // ---- Few taps ---------------------------------------------------------------------------------
  // (MNIST's first layer: 9 taps.) A forward tile of kFP positions × kFNR channels spends more on
  // its transpose and its stores than on its K FMAs. With K ≤ kRT, output rows go a vector of
  // positions at a time instead: its K input vectors are loaded once and held in registers, and
  // each output channel is bias + Σ_k w[o, k]·x_k, stored straight into its row. A row's last
  // vector ends at OW, overlapping the one before with the same values (so OW ≥ NL).

  // Output channels [o, o + NO) at one vector of positions: bias + Σ_k w[o, k]·xv[k], stored at
  // y0 + o·L.
  template <int NO, int KT, typename T>
  static void row_channels(T* y0, int64_t L, const typename Vec<T>::R (&xv)[KT], const T* w,
                           const T* b, int64_t o) {
    using V = Vec<T>;
    typename V::R acc[NO];
#pragma GCC unroll 4
    for (int j = 0; j < NO; ++j) acc[j] = V::set1(b ? b[o + j] : T(0));
#pragma GCC unroll 32
    for (int k = 0; k < KT; ++k)
#pragma GCC unroll 4
      for (int j = 0; j < NO; ++j) acc[j] = V::fma(V::bcast(w + (o + j) * KT + k), xv[k], acc[j]);
#pragma GCC unroll 4
    for (int j = 0; j < NO; ++j) V::store(y0 + (o + j) * L, acc[j]);
  }

  // Output row oh of every channel of the group, with KT = K taps.
  template <int KT, typename T>
  static void row_tile(T* yg, const T* xp, const Plan<T>& p, const ConvShape& s, const T* w,
                       const T* b, int64_t oh) {
    using V = Vec<T>;
    using R = typename V::R;
    constexpr int NL = V::kLanes;
    const int64_t Og = s.og(), L = s.plane();
    const int64_t* off = p.off.data();
    // NOTE: the next row of each channel is fetched for writing meanwhile: every store here misses
    // (the output is too big for L2), and 1.12-1.16x came of this (3 rows ahead: 1.00-1.02x).
    if (oh + 1 < s.oh)
      for (int64_t o = 0; o < Og; ++o) prefetch_for_write(yg + o * L + (oh + 1) * s.ow, s.ow);
    for (int64_t ow0 = 0; ow0 < s.ow; ow0 += NL) {
      const int64_t ow = std::min(ow0, s.ow - NL);
      const T* x0 = xp + oh * p.wp + ow;
      T* y0 = yg + oh * s.ow + ow;
      R xv[KT];
#pragma GCC unroll 32
      for (int k = 0; k < KT; ++k) xv[k] = V::load(x0 + off[k]);
      int64_t o = 0;
      for (; o + kRO <= Og; o += kRO) row_channels<kRO>(y0, L, xv, w, b, o);
      for (; o < Og; ++o) row_channels<1>(y0, L, xv, w, b, o);
    }
  }

  // Rows [r0, r1) of image-group g, through row_tile<K>.
  template <typename T, int KT = kRT>
  static void row_tiles(T* yg, const T* xp, const Plan<T>& p, const ConvShape& s, int64_t g,
                        int64_t r0, int64_t r1) {
    if constexpr (KT > 1)
      if (s.taps() < KT) return row_tiles<T, KT - 1>(yg, xp, p, s, g, r0, r1);
    const T* w = p.weight + g * s.og() * KT;
    const T* b = p.bias ? p.bias + g * s.og() : nullptr;
    for (int64_t oh = r0; oh < r1; ++oh) row_tile<KT>(yg, xp, p, s, w, b, oh);
  }

  // ---- One output channel per group ----------------------------------------------------------
  // (The input gradient of a layer with one input channel; a depthwise convolution.) A channel
  // tile would be 1/kFNR full, so tiles run along the extended positions instead. With few input
  // channels, directly: y[e] = bias + Σ_k xpad[e + off[k]]·w[k]. With more, the loads of that sum
  // are mostly unaligned (two cache lines each) and its throughput halves; so first the tap sums
  // z[t] = Σ_c x[c]·w[c, t] for the KH·KW taps t of a channel, each load reused for up to kZT
  // taps, on the unpadded planes, and z padded; then y[e] = bias + Σ_t zpad[t][e + i·dh·Wp + j·dw],
  // KH·KW loads per output vector instead of Cg·KH·KW (MNIST's first-layer input gradient:
  // Cg = 32; padding its 32 planes of dy instead of 9 of z took half the time).

  // Extended positions [t·kSPos, t·kSPos + kSPos): acc[v] = bias + Σ_k src[e + v·NL + off[k]]·w[k]
  // over K terms, one broadcast for kSV loads and FMAs; the positions past each row's OW are
  // computed and dropped.
  template <typename T>
  static void single_tile(T* yg, const T* src, const int64_t* off, int64_t K, const T* w, T bias,
                          const Plan<T>& p, const ConvShape& s, int64_t t) {
    using V = Vec<T>;
    using R = typename V::R;
    constexpr int NL = V::kLanes;
    const int64_t e0 = t * kSPos<T>;
    R acc[kSV];
#pragma GCC unroll 8
    for (int v = 0; v < kSV; ++v) acc[v] = V::set1(bias);
    for (int64_t k = 0; k < K; ++k) {
      const T* xk = src + e0 + off[k];
      const R wk = V::bcast(w + k);
#pragma GCC unroll 8
      for (int v = 0; v < kSV; ++v) acc[v] = V::fma(V::load(xk + v * NL), wk, acc[v]);
    }
    alignas(64) T out[kSPos<T>];
#pragma GCC unroll 8
    for (int v = 0; v < kSV; ++v) V::store(out + v * NL, acc[v]);
    const int64_t e1 = std::min(e0 + kSPos<T>, p.extended);
    for (int64_t row = e0 / p.wp; row * p.wp < e1; ++row) {  // the outputs of each row it meets
      const int64_t a = std::max(e0, row * p.wp), b = std::min(e1, row * p.wp + s.ow);
      if (b > a) copy_row(yg + row * s.ow + (a - row * p.wp), out + (a - e0), b - a);
    }
  }

  // z[t][u] = Σ_c x[c, u]·w[c, t] for taps [t0, t0 + NT) and kZPos positions u of the unpadded
  // planes: kZV vectors of positions × NT taps in registers. x and z point at the tile's first
  // position; x's channels are `cstride` apart, z's planes p.zraw.
  template <int NT, typename T>
  static void z_tile(T* z, const T* x, int64_t cstride, const Plan<T>& p, int64_t cg, int64_t khw,
                     const T* w, int64_t t0) {
    // NOTE: the channels of a tile are far apart (an image plane each), too many streams for the
    // hardware prefetcher to keep ahead of; asking for each 256 bytes ahead (2 tiles of floats
    // with AVX-512) measured 1.22x on MNIST's first-layer input gradient (128 and 1024 bytes:
    // slower than 256).
    using V = Vec<T>;
    using R = typename V::R;
    constexpr int NL = V::kLanes;
    R acc[NT][kZV];
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n)
#pragma GCC unroll 4
      for (int v = 0; v < kZV; ++v) acc[n][v] = V::zero();
    for (int64_t c = 0; c < cg; ++c) {
      const T* xc = x + c * cstride;
      const T* wc = w + c * khw + t0;
      R xv[kZV];
#pragma GCC unroll 4
      for (int v = 0; v < kZV; ++v) {
        prefetch_ahead(xc + v * NL, 256);
        xv[v] = V::load(xc + v * NL);
      }
#pragma GCC unroll 16
      for (int n = 0; n < NT; ++n) {
        const R wn = V::bcast(wc + n);
#pragma GCC unroll 4
        for (int v = 0; v < kZV; ++v) acc[n][v] = V::fma(xv[v], wn, acc[n][v]);
      }
    }
#pragma GCC unroll 16
    for (int n = 0; n < NT; ++n)
#pragma GCC unroll 4
      for (int v = 0; v < kZV; ++v) V::store(z + (t0 + n) * p.zraw + v * NL, acc[n][v]);
  }

  // z_tile for nt taps, 1 ≤ nt ≤ NT.
  template <typename T, int NT = kZT>
  static void z_tile_for(int64_t nt, T* z, const T* x, int64_t cstride, const Plan<T>& p,
                         int64_t cg, int64_t khw, const T* w, int64_t t0) {
    if constexpr (NT > 1)
      if (nt < NT) return z_tile_for<T, NT - 1>(nt, z, x, cstride, p, cg, khw, w, t0);
    z_tile<NT>(z, x, cstride, p, cg, khw, w, t0);
  }

  // The tap sums of one image-group x (weights w) into z: first on the unpadded planes (zr, whose
  // loads straddle cache lines but are few: kZV per kZV·kZT FMAs), in tap groups of equal size up
  // to kZT; then padded, KH·KW planes instead of the Cg of the image, with a zero tile after them
  // where single_tile's last tile reads past the last plane. The last, partial tile of positions
  // reads a zero-filled copy (tail, Cg·kZPos), never past the end of x.
  template <typename T>
  static void tap_sums(T* z, T* zr, T* tail, const T* x, const Plan<T>& p, const ConvShape& s,
                       const T* w) {
    const int64_t khw = s.kh * s.kw, groups = ceil_div(khw, kZT), per = ceil_div(khw, groups);
    const int64_t cg = s.cg(), hw = s.h * s.w;
    for (int64_t u0 = 0; u0 < hw; u0 += kZPos<T>) {
      const T* xt = x + u0;
      int64_t cstride = hw;
      if (u0 + kZPos<T> > hw) {
        for (int64_t c = 0; c < cg; ++c) {
          std::copy(x + c * hw + u0, x + (c + 1) * hw, tail + c * kZPos<T>);
          std::fill(tail + c * kZPos<T> + hw - u0, tail + (c + 1) * kZPos<T>, T(0));
        }
        xt = tail, cstride = kZPos<T>;
      }
      for (int64_t t0 = 0; t0 < khw; t0 += per)
        z_tile_for<T>(std::min(per, khw - t0), zr + u0, xt, cstride, p, cg, khw, w, t0);
    }
    T* end = pad_planes(z, zr, khw, p.zraw, s, p.wp);
    std::fill(end, end + kSPos<T>, T(0));
  }

  // Tiles [t0, t1) of one image-group, every output channel of the group, from its padded image xp
  // (or, with one output channel and p.zstride, its tap sums); with p.rows, output rows [t0, t1).
  // Tiles go in chunks whose input rows stay in L2 while every channel block passes over them; a
  // block's weights stream in order from L2 once per tile.
  template <typename T>
  static void tiles(T* yg, const T* xp, const Plan<T>& p, const ConvShape& s, int64_t g, int64_t t0,
             int64_t t1) {
    if (p.rows) return row_tiles(yg, xp, p, s, g, t0, t1);
    const int64_t K = s.taps(), Og = s.og(), L = s.plane(), limit = std::min(L, t1 * kFP);
    if (Og == 1) {
      const T bias = p.bias ? p.bias[g] : T(0);
      for (int64_t t = t0; t < t1; ++t)
        if (p.zstride) single_tile(yg, xp, p.zoff.data(), s.kh * s.kw, p.ones.data(), bias, p, s, t);
        else single_tile(yg, xp, p.off.data(), K, p.weight + g * K, bias, p, s, t);
      return;
    }
    // ~64 KiB of input per chunk: Cg channels × (chunk / OW + KH·dh) rows of Wp values.
    const int64_t rows = std::max<int64_t>(1, (int64_t{64} << 10) / int64_t(sizeof(T)) /
                                                   std::max<int64_t>(1, s.cg() * p.wp));
    const int64_t chunk = std::max<int64_t>(1, std::max<int64_t>(rows - s.kh * s.dh, 1) * s.ow / kFP);
    constexpr int NR = kFNR<T>;
    for (int64_t c0 = t0; c0 < t1; c0 += chunk)
      for (int64_t ob = 0; ob < p.ob; ++ob)
        for (int64_t t = c0; t < std::min(t1, c0 + chunk); ++t)
          tile(yg + ob * NR * L, xp, p, p.wpack.data() + (g * p.ob + ob) * K * NR,
               p.bpack.data() + (g * p.ob + ob) * NR, K, std::min<int64_t>(NR, Og - ob * NR), L, t,
               limit);
  }

  // ---- Gradient w.r.t. the weight -------------------------------------------------------------
  // dweight[o, k] = Σ_n Σ_e dyx[n, o, e]·xpad[n, off[k] + e]: dy laid out on the extended positions
  // (zero on the Wp − OW columns past each row, so those positions add nothing) against the same
  // shifted views of the padded image the forward reads. A register tile holds kGO output channels ×
  // kGK taps of NL-lane partial sums over a run of positions, folded into dweight at the end of the
  // run in a fixed order; so every element's sum depends on the shape alone, not on the threads.
  static constexpr int kGO = Isa::kGO, kGK = Isa::kGK;

  // `channels` planes of dy on the extended positions: (channels, E) with E a multiple of NL, and
  // a vector of slack after it for zero_run.
  template <typename T>
  static void extend_dy(T* dyx, const T* dy, const ConvShape& s, int64_t wp, int64_t e_len,
                        int64_t channels) {
    for (int64_t o = 0; o < channels; ++o) {
      T* row = dyx + o * e_len;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        // NOTE: a channel's dy is a few KiB, a stream too short for the hardware prefetcher to
        // get ahead of; asking for 1 KiB ahead measured 1.03-1.09x on MNIST layer 1.
        prefetch_ahead(dy + (o * s.oh + oh) * s.ow, 1024);
        copy_row(row + oh * wp, dy + (o * s.oh + oh) * s.ow, s.ow);
        zero_run(row + oh * wp + s.ow, (oh + 1 < s.oh ? (oh + 1) * wp : e_len) - oh * wp - s.ow);
      }
    }
  }

  // dweight rows [o0, o0 + kGO) (rows ≥ orows are skipped) × taps [k0, k0 + kGK) (≥ krows skipped)
  // += Σ over positions [e0, e1) of `images` images, whose padded images are xp_stride apart and
  // extended dy blocks dyx_stride apart.
  template <typename T>
  static void weight_tile(T* dw, int64_t ldw, const T* dyx, int64_t e_len, const T* xp,
                          const int64_t* off, int64_t orows, int64_t krows, int64_t e0, int64_t e1,
                          int64_t images, int64_t xp_stride, int64_t dyx_stride) {
    using V = Vec<T>;
    using R = typename V::R;
    constexpr int NL = V::kLanes;
    R acc[kGO][kGK];
#pragma GCC unroll 8
    for (int a = 0; a < kGO; ++a)
#pragma GCC unroll 8
      for (int b = 0; b < kGK; ++b) acc[a][b] = V::zero();
    const T* xk[kGK];
    const T* dyo[kGO];
#pragma GCC unroll 8
    for (int b = 0; b < kGK; ++b) xk[b] = xp + off[std::min<int64_t>(b, krows - 1)];
#pragma GCC unroll 8
    for (int a = 0; a < kGO; ++a) dyo[a] = dyx + std::min<int64_t>(a, orows - 1) * e_len;
    for (int64_t image = 0; image < images; ++image) {
      for (int64_t e = e0; e < e1; e += NL) {
        R xv[kGK];
#pragma GCC unroll 8
        for (int b = 0; b < kGK; ++b) xv[b] = V::load(xk[b] + e);
#pragma GCC unroll 8
        for (int a = 0; a < kGO; ++a) {
          const R d = V::load(dyo[a] + e);
#pragma GCC unroll 8
          for (int b = 0; b < kGK; ++b) acc[a][b] = V::fma(d, xv[b], acc[a][b]);
        }
      }
#pragma GCC unroll 8
      for (int b = 0; b < kGK; ++b) xk[b] += xp_stride;
#pragma GCC unroll 8
      for (int a = 0; a < kGO; ++a) dyo[a] += dyx_stride;
    }
#pragma GCC unroll 8
    for (int a = 0; a < kGO; ++a)
#pragma GCC unroll 8
      for (int b = 0; b < kGK; ++b)
        if (a < orows && b < krows) dw[a * ldw + b] += V::hsum(acc[a][b]);
  }

  static inline thread_local Workspace t_image, t_dy, t_sums;

  // Whether every value of p[0, n) is finite: x·0 is 0 for those and NaN for an inf or a NaN.
  template <typename T>
  static bool all_finite(const T* p, int64_t n) {
    using V = Vec<T>;
    typename V::R acc = V::zero();
    int64_t q = 0;
    for (; q + V::kLanes <= n; q += V::kLanes) acc = V::add(acc, V::mul(V::load(p + q), V::zero()));
    T rest = 0;
    for (; q < n; ++q) rest += p[q] * T(0);
    return V::hsum(acc) + rest == T(0);
  }

  // False, with dweight unspecified, where x holds an inf or a NaN: the zeros of dy on the
  // extended positions past each row's OW meet real values of x there, which a correct sum never
  // multiplies (0·inf would make NaN of a finite element); the caller takes another path then.
  template <typename T>
  static bool grad_weight(T* dweight, const T* dy, const T* x, const ConvShape& s) {
    constexpr int NL = Vec<T>::kLanes;
    const Plan<T> p = make_plan<T>(nullptr, nullptr, s);
    const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), K = s.taps(), L = s.plane();
    std::fill(dweight, dweight + s.o * K, T(0));
    if (s.n == 0 || K == 0 || Og == 0) return true;
    const int64_t e_len = round_up(p.extended, NL);
    const int64_t oblocks = ceil_div(Og, kGO), kblocks = ceil_div(K, kGK);
    // Owners of disjoint blocks of dweight: split the taps when there are enough, else the output
    // channels. The split is by the machine's thread count but changes no result bit.
    const int64_t want = std::max<int64_t>(1, (max_threads() + G - 1) / G);
    const int64_t ksplit = kblocks >= 2 * want ? want : 1;
    const int64_t osplit = ksplit > 1 ? 1 : std::min(oblocks, want);
    const int64_t items = G * ksplit * osplit;
    // Positions per run: the input rows a run reads (Cg channels × its rows) stay in a quarter of
    // L2 while the channel and tap blocks pass over them, and a channel block's dy rows stay in
    // half of L1 while the tap blocks pass.
    const CacheSizes cache = cpu_cache_sizes();
    const int64_t in_l2 =
        cache.l2 / 4 / int64_t(sizeof(T)) / std::max<int64_t>(1, Cg) - s.kh * s.dh * p.wp;
    const int64_t in_l1 = cache.l1d / 2 / int64_t(sizeof(T)) / kGO;
    const int64_t run = std::max<int64_t>(NL, std::min(in_l2, in_l1) / NL * NL);
    // Planes shorter than a run go several images to a run, their padded images together within
    // a quarter of L2 (up to kMaxImages): a tile's horizontal sums, as many instructions as its
    // FMAs over one 13×13 plane, are then paid once for them all.
    constexpr int64_t kMaxImages = 16;
    const int64_t images = std::clamp<int64_t>(
        std::min(run / e_len, cache.l2 / 4 / int64_t(sizeof(T)) / p.image), 1,
        std::min(kMaxImages, s.n));
    const int64_t dyx_stride = kGO * e_len;
    const int nt = team_for(items, double(s.n) * Og * K * L / items);
    Vector<char> finite(size_t(items), 1);  // per item, so no two threads write one flag
    run_items(nt, items, [&](int64_t it, int) {
      const int64_t os = it % osplit, ks = it / osplit % ksplit, g = it / osplit / ksplit;
      const int64_t ob0 = oblocks * os / osplit, ob1 = oblocks * (os + 1) / osplit;
      const int64_t kb0 = kblocks * ks / ksplit, kb1 = kblocks * (ks + 1) / ksplit;
      T* xp = t_image.get<T>(size_t(images * p.image));
      T* dyx = t_dy.get<T>(size_t(images * dyx_stride + NL));
      T* dwg = dweight + g * Og * K;
      for (int64_t n0 = 0; n0 < s.n; n0 += images) {
        const int64_t m = std::min(images, s.n - n0);
        for (int64_t i = 0; i < m; ++i)
          pad_image(xp + i * p.image, x + ((n0 + i) * s.c + g * Cg) * s.h * s.w, s, p);
        if (!all_finite(xp, m * p.image)) {
          finite[size_t(it)] = 0;
          return;
        }
        for (int64_t ob = ob0; ob < ob1; ++ob) {
          // Only this thread's channels of dy are extended, a block at a time just before its
          // tiles: the hardware prefetcher streams the next block's rows in meanwhile (extended
          // all at once, MNIST's first layer spent 60% of its time waiting on that copy).
          const int64_t orows = std::min<int64_t>(kGO, Og - ob * kGO);
          for (int64_t i = 0; i < m; ++i)
            extend_dy(dyx + i * dyx_stride, dy + ((n0 + i) * s.o + g * Og + ob * kGO) * L, s, p.wp,
                      e_len, orows);
          for (int64_t e0 = 0; e0 < e_len; e0 += run)
            for (int64_t kb = kb0; kb < kb1; ++kb)
              weight_tile(dwg + ob * kGO * K + kb * kGK, K, dyx, e_len, xp, p.off.data() + kb * kGK,
                          orows, std::min<int64_t>(kGK, K - kb * kGK), e0, std::min(e_len, e0 + run),
                          m, p.image, dyx_stride);
        }
      }
    });
    for (const char ok : finite)
      if (!ok) return false;
    return true;
  }

  template <typename T>
  static void forward(T* y, const T* x, const T* weight, const T* bias,
                                  const ConvShape& s) {
    const Plan<T> p = make_plan(weight, bias, s);
    const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), L = s.plane(), ng = s.n * G;
    const double tile_macs = double(s.taps()) * (Og == 1 ? kSPos<T> : Og * (p.rows ? s.ow : kFP));
    const int nt = team_for(ng * p.tiles, tile_macs);
    auto image = [&](int64_t it) { return x + (it / G * s.c + it % G * Cg) * s.h * s.w; };
    auto out = [&](int64_t it) { return y + (it / G * s.o + it % G * Og) * L; };
    // What the tiles of an image-group read: its padded image, or its padded tap sums.
    auto source = [&](int64_t it) -> const T* {
      if (p.zstride) {
        const int64_t khw = s.kh * s.kw;
        T* z = t_sums.get<T>(size_t(khw * p.zstride + kSPos<T>));
        T* zr = t_image.get<T>(size_t(khw * p.zraw + Cg * kZPos<T>));
        tap_sums(z, zr, zr + khw * p.zraw, image(it), p, s, weight + it % G * s.taps());
        return z;
      }
      T* xp = t_image.get<T>(size_t(p.image));
      pad_image(xp, image(it), s, p);
      return xp;
    };
    if (ng >= nt) {  // whole image-groups per thread
      run_items(
          nt, ng, [&](int64_t it, int) { tiles(out(it), source(it), p, s, it % G, 0, p.tiles); },
          Schedule::dynamic);
      return;
    }
    // Fewer image-groups than threads: the team shares the tiles of each one.
    for (int64_t it = 0; it < ng; ++it) {
      const T* src = source(it);
      const int64_t chunk = std::max<int64_t>(1, p.tiles / (4 * nt));
      const int64_t chunks = ceil_div(p.tiles, chunk);
      run_items(
          std::min<int64_t>(nt, chunks), chunks,
          [&](int64_t c, int) {
            tiles(out(it), src, p, s, it % G, c * chunk, std::min(p.tiles, (c + 1) * chunk));
          },
          Schedule::dynamic);
    }
  }
};

}  // namespace engine::cpu::detail
