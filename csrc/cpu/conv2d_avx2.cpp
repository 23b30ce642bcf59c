// Direct AVX2+FMA conv2d for stride 1 (any padding, dilation and groups), forward and weight
// gradient (the input gradient is a forward convolution of dy, see conv2d.cpp): no column panel.
// The image is copied once into a zero-padded plane of width Wp = W + 2·pw; an output position
// (oh, ow) is then the "extended" position e = oh·Wp + ow, and tap (c, i, j) reads the padded
// image at e + off[c, i, j] with off = c·Hp·Wp + i·dh·Wp + j·dw. So the input values a tile of
// consecutive extended positions needs for one tap are consecutive in memory: the register tile
// loads them as whole vectors straight from the padded image. Extended positions with
// ow ≥ OW (the Wp − OW columns past each output row) are computed and dropped on store.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/workspace.h"
#include "cpu/conv2d.h"
#include "cpu/vec_avx2.h"
#include "cpu/parallel_items.h"

namespace engine::cpu::detail {
namespace {

// The shared vector operations, plus masked stores and lane permutes.
template <typename T>
struct Vec;

template <>
struct Vec<float> : avx2::Vec<float> {
  // Lanes [lo, hi) set.
  static __m256i mask(int lo, int hi) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(lo), lane),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), lane));
  }
  static void store_masked(float* p, __m256i m, R v) { _mm256_maskstore_ps(p, m, v); }
  static R permute(R v, __m256i idx32) { return _mm256_permutevar8x32_ps(v, idx32); }
};

template <>
struct Vec<double> : avx2::Vec<double> {
  static __m256i mask(int lo, int hi) {
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_andnot_si256(_mm256_cmpgt_epi64(_mm256_set1_epi64x(lo), lane),
                               _mm256_cmpgt_epi64(_mm256_set1_epi64x(hi), lane));
  }
  static void store_masked(double* p, __m256i m, R v) { _mm256_maskstore_pd(p, m, v); }
  static R permute(R v, __m256i idx32) {  // idx32 moves both 32-bit halves of each double
    return _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(v), idx32));
  }
};

// The register tile: kMR output channels × kNV vectors of extended positions; 12 accumulators,
// kNV input vectors and one broadcast weight fit the 16 ymm registers. Four channels divide the
// usual channel counts (32, 64, 128), so no tile is partly empty along O.
constexpr int kMR = 4, kNV = 3;

// Where one vector of a tile goes. Its valid lanes (ow < OW) land on `count` consecutive outputs
// starting at `base`: moved to the front by the permutation `idx` (32-bit lanes), the vector is
// stored whole, and its last NL − count lanes spill garbage onto outputs a later store of the same
// thread overwrites. Where that is not so (the end of a plane or of a thread's share), the lanes
// go out through masked stores of the runs in `pieces` instead.
struct VecStore {
  int64_t base;
  int32_t count;
  bool identity;  // all lanes valid, in order: no permutation
  alignas(32) int32_t idx[8];
};

// Lanes [lo, hi) of a vector go to the output plane at dest − lo + lane.
struct Piece {
  int32_t lo, hi;
  int64_t dest;
};

template <typename T>
struct Plan {
  int64_t hp, wp, nr, tiles, ob, image;  // padded plane, tile width, tiles, channel blocks, image
  std::vector<int64_t> off;              // K tap offsets into the padded image of one group
  std::vector<T> wpack;                  // [g][ob][k][r]: weight[g·Og + ob·kMR + r, k], 0 past Og
  std::vector<T> bpack;                  // [g][ob][r]: bias, 0 past Og (or all 0)
  std::vector<VecStore> stores;          // [t·kNV + v]
  std::vector<Piece> pieces;             // for tile t, vector v: [first[t·kNV + v], first[.. + 1])
  std::vector<int64_t> first;
  std::vector<int64_t> tile_base;        // first output of each tile (and L at the end)
};

// The geometry of the padded image; with a weight (the forward) also the packed weights and the
// store tables.
template <typename T>
Plan<T> make_plan(const T* weight, const T* bias, const ConvShape& s) {
  constexpr int L = Vec<T>::kLanes;
  const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), K = s.taps();
  Plan<T> p;
  p.hp = s.h + 2 * s.ph, p.wp = s.w + 2 * s.pw, p.nr = kNV * L;
  const int64_t extended = (s.oh - 1) * p.wp + s.ow;  // up to the last output position
  p.tiles = (extended + p.nr - 1) / p.nr;
  p.ob = (Og + kMR - 1) / kMR;
  // The last tile reads up to nr − 1 positions past the last output: zero slack after the image.
  const int64_t last_tap = (Cg - 1) * p.hp * p.wp + (s.kh - 1) * s.dh * p.wp + (s.kw - 1) * s.dw;
  p.image = std::max(Cg * p.hp * p.wp, last_tap + p.tiles * p.nr);
  p.off.resize(size_t(K));
  for (int64_t c = 0, k = 0; c < Cg; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) p.off[size_t(k++)] = c * p.hp * p.wp + i * s.dh * p.wp + j * s.dw;
  if (!weight) return p;
  p.wpack.assign(size_t(G * p.ob * K * kMR), T(0));
  p.bpack.assign(size_t(G * p.ob * kMR), T(0));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t o = 0; o < Og; ++o) {
      T* dst = p.wpack.data() + ((g * p.ob + o / kMR) * K) * kMR + o % kMR;
      const T* src = weight + (g * Og + o) * K;
      for (int64_t k = 0; k < K; ++k) dst[k * kMR] = src[k];
      if (bias) p.bpack[size_t((g * p.ob + o / kMR) * kMR + o % kMR)] = bias[g * Og + o];
    }
  // Where each lane of each tile goes.
  constexpr int kLanes32 = 8 / L;  // 32-bit lanes per element
  p.first.reserve(size_t(p.tiles * kNV + 1));
  p.stores.resize(size_t(p.tiles * kNV));
  p.tile_base.assign(size_t(p.tiles + 1), s.plane());
  for (int64_t t = 0; t < p.tiles; ++t)
    for (int v = 0; v < kNV; ++v) {
      p.first.push_back(int64_t(p.pieces.size()));
      VecStore& vs = p.stores[size_t(t * kNV + v)];
      vs.base = -1, vs.count = 0;
      for (int q = 0; q < L; ++q) {
        const int64_t e = t * p.nr + v * L + q, oh = e / p.wp, ow = e % p.wp;
        if (oh >= s.oh || ow >= s.ow) continue;
        const int64_t dest = oh * s.ow + ow;
        if (vs.base < 0) vs.base = dest;
        for (int h = 0; h < kLanes32; ++h) vs.idx[vs.count * kLanes32 + h] = q * kLanes32 + h;
        ++vs.count;
        if (int64_t(p.pieces.size()) > p.first.back()) {  // extend this vector's last run
          Piece& last = p.pieces.back();
          if (last.hi == q && last.dest + (q - last.lo) == dest) {
            last.hi = q + 1;
            continue;
          }
        }
        p.pieces.push_back({q, q + 1, dest});
      }
      for (int k = vs.count * kLanes32; k < 8; ++k) vs.idx[k] = k;
      vs.identity = vs.count == L && p.pieces.back().lo == 0 && p.pieces.back().hi == L;
    }
  for (int64_t t = p.tiles - 1; t >= 0; --t)  // the first output a tile writes, or the next one's
    for (int v = kNV - 1; v >= 0; --v) {
      const VecStore& vs = p.stores[size_t(t * kNV + v)];
      if (vs.count) p.tile_base[size_t(t)] = vs.base;
    }
  for (int64_t t = p.tiles - 1; t >= 0; --t)
    p.tile_base[size_t(t)] = std::min(p.tile_base[size_t(t)], p.tile_base[size_t(t + 1)]);
  p.first.push_back(int64_t(p.pieces.size()));
  return p;
}

// The image-group's channels copied into a zero-padded (Cg, Hp, Wp) plane plus zero slack.
template <typename T>
void pad_image(T* xp, const T* x, const ConvShape& s, const Plan<T>& p) {
  const int64_t Cg = s.cg();
  T* out = xp;
  for (int64_t c = 0; c < Cg; ++c) {
    std::fill(out, out + s.ph * p.wp, T(0));
    out += s.ph * p.wp;
    for (int64_t h = 0; h < s.h; ++h, out += p.wp) {
      std::fill(out, out + s.pw, T(0));
      std::memcpy(out + s.pw, x + (c * s.h + h) * s.w, sizeof(T) * s.w);
      std::fill(out + s.pw + s.w, out + p.wp, T(0));
    }
    std::fill(out, out + s.ph * p.wp, T(0));
    out += s.ph * p.wp;
  }
  std::fill(out, xp + p.image, T(0));
}

// One tile: y rows ob·kMR.. of the group, extended positions [t·nr, t·nr + nr).
template <typename T>
inline void tile(T* yg, const T* xt, const Plan<T>& p, const T* w, const T* b, int64_t K,
                 int64_t rows, int64_t L, int64_t t, int64_t limit) {
  using V = Vec<T>;
  using R = typename V::R;
  constexpr int NL = V::kLanes;
  R acc[kMR][kNV];
#pragma GCC unroll 4
  for (int r = 0; r < kMR; ++r) {
    const R br = V::bcast(b + r);
#pragma GCC unroll 3
    for (int v = 0; v < kNV; ++v) acc[r][v] = br;
  }
  const int64_t* off = p.off.data();
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; ++k) {
    const T* xk = xt + off[k];
    R xv[kNV];
#pragma GCC unroll 3
    for (int v = 0; v < kNV; ++v) xv[v] = V::load(xk + v * NL);
#pragma GCC unroll 4
    for (int r = 0; r < kMR; ++r) {
      const R wr = V::bcast(w + k * kMR + r);
#pragma GCC unroll 3
      for (int v = 0; v < kNV; ++v) acc[r][v] = V::fma(wr, xv[v], acc[r][v]);
    }
  }
  // NOTE: every loop touching acc is unrolled so its indices are constants; a runtime index
  // would make the compiler keep acc in memory and store it on every step of the K loop.
#pragma GCC unroll 3
  for (int v = 0; v < kNV; ++v) {
    const VecStore& vs = p.stores[size_t(t * kNV + v)];
    if (vs.count == 0) continue;
    if (vs.identity) {
#pragma GCC unroll 4
      for (int r = 0; r < kMR; ++r)
        if (r < rows) V::store(yg + r * L + vs.base, acc[r][v]);
    } else if (vs.base + NL <= limit) {
      const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(vs.idx));
#pragma GCC unroll 4
      for (int r = 0; r < kMR; ++r)
        if (r < rows) V::store(yg + r * L + vs.base, V::permute(acc[r][v], idx));
    } else {
      const Piece* pc = p.pieces.data() + p.first[size_t(t * kNV + v)];
      const Piece* end = p.pieces.data() + p.first[size_t(t * kNV + v + 1)];
      for (; pc < end; ++pc) {
        const __m256i m = V::mask(pc->lo, pc->hi);
#pragma GCC unroll 4
        for (int r = 0; r < kMR; ++r)
          if (r < rows) V::store_masked(yg + r * L + pc->dest - pc->lo, m, acc[r][v]);
      }
    }
  }
}

// Tiles [t0, t1) of one image-group, every output channel of the group. Each output row is
// written in increasing order (so a whole-vector store's spill is overwritten by a later store,
// and never reaches past t1's outputs). Tiles go in chunks whose input rows stay in L2 while
// every channel block passes over them; a block's weights stay in L1 across the chunk, and its
// kMR output rows are written as a few sequential streams.
template <typename T>
void tiles(T* yg, const T* xp, const Plan<T>& p, const ConvShape& s, int64_t g, int64_t t0,
           int64_t t1) {
  const int64_t K = s.taps(), Og = s.og(), L = s.plane(), limit = p.tile_base[size_t(t1)];
  // ~64 KiB of input per chunk: Cg channels × (chunk / Wp + KH·dh) rows of Wp values.
  const int64_t rows = std::max<int64_t>(1, (int64_t{64} << 10) / int64_t(sizeof(T)) /
                                                 std::max<int64_t>(1, s.cg() * p.wp));
  const int64_t chunk = std::max<int64_t>(1, std::max<int64_t>(rows - s.kh * s.dh, 1) * p.wp / p.nr);
  for (int64_t c0 = t0; c0 < t1; c0 += chunk)
    for (int64_t ob = 0; ob < p.ob; ++ob)
      for (int64_t t = c0; t < std::min(t1, c0 + chunk); ++t)
        tile(yg + ob * kMR * L, xp + t * p.nr, p, p.wpack.data() + (g * p.ob + ob) * K * kMR,
             p.bpack.data() + (g * p.ob + ob) * kMR, K, std::min<int64_t>(kMR, Og - ob * kMR), L, t,
             limit);
}

// ---- Gradient w.r.t. the weight -------------------------------------------------------------
// dweight[o, k] = Σ_n Σ_e dyx[n, o, e]·xpad[n, off[k] + e]: dy laid out on the extended positions
// (zero on the Wp − OW columns past each row, so those positions add nothing) against the same
// shifted views of the padded image the forward reads. A register tile holds kGO output channels ×
// kGK taps of NL-lane partial sums over a run of positions, folded into dweight at the end of the
// run in a fixed order; so every element's sum depends on the shape alone, not on the threads.
constexpr int kGO = 4, kGK = 3;

template <typename T>
T hsum(typename Vec<T>::R v);
template <>
float hsum<float>(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
template <>
double hsum<double>(__m256d v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// dy of one image-group on the extended positions: (Og, E) with E a multiple of NL.
template <typename T>
void extend_dy(T* dyx, const T* dy, const ConvShape& s, int64_t wp, int64_t e_len) {
  for (int64_t o = 0; o < s.og(); ++o) {
    T* row = dyx + o * e_len;
    for (int64_t oh = 0; oh < s.oh; ++oh) {
      std::memcpy(row + oh * wp, dy + (o * s.oh + oh) * s.ow, sizeof(T) * s.ow);
      if (oh + 1 < s.oh) std::fill(row + oh * wp + s.ow, row + (oh + 1) * wp, T(0));
    }
    std::fill(row + (s.oh - 1) * wp + s.ow, row + e_len, T(0));
  }
}

// dweight rows [o0, o0 + kGO) (rows ≥ orows are skipped) × taps [k0, k0 + kGK) (≥ krows skipped)
// += Σ over positions [e0, e1) of one image.
template <typename T>
inline void weight_tile(T* dw, int64_t ldw, const T* dyx, int64_t e_len, const T* xp,
                        const int64_t* off, int64_t orows, int64_t krows, int64_t e0, int64_t e1) {
  using V = Vec<T>;
  using R = typename V::R;
  constexpr int NL = V::kLanes;
  R acc[kGO][kGK];
#pragma GCC unroll 4
  for (int a = 0; a < kGO; ++a)
#pragma GCC unroll 3
    for (int b = 0; b < kGK; ++b) acc[a][b] = V::zero();
  const T* xk[kGK];
  const T* dyo[kGO];
#pragma GCC unroll 3
  for (int b = 0; b < kGK; ++b) xk[b] = xp + off[std::min<int64_t>(b, krows - 1)];
#pragma GCC unroll 4
  for (int a = 0; a < kGO; ++a) dyo[a] = dyx + std::min<int64_t>(a, orows - 1) * e_len;
  for (int64_t e = e0; e < e1; e += NL) {
    R xv[kGK];
#pragma GCC unroll 3
    for (int b = 0; b < kGK; ++b) xv[b] = V::load(xk[b] + e);
#pragma GCC unroll 4
    for (int a = 0; a < kGO; ++a) {
      const R d = V::load(dyo[a] + e);
#pragma GCC unroll 3
      for (int b = 0; b < kGK; ++b) acc[a][b] = V::fma(d, xv[b], acc[a][b]);
    }
  }
#pragma GCC unroll 4
  for (int a = 0; a < kGO; ++a)
#pragma GCC unroll 3
    for (int b = 0; b < kGK; ++b)
      if (a < orows && b < krows) dw[a * ldw + b] += hsum<T>(acc[a][b]);
}

thread_local Workspace t_image, t_dy;

}  // namespace

template <typename T>
void conv2d_grad_weight_direct_avx2(T* dweight, const T* dy, const T* x, const ConvShape& s) {
  constexpr int NL = Vec<T>::kLanes;
  const Plan<T> p = make_plan<T>(nullptr, nullptr, s);
  const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), K = s.taps(), L = s.plane();
  std::fill(dweight, dweight + s.o * K, T(0));
  if (s.n == 0 || K == 0 || Og == 0) return;
  const int64_t e_len = ((s.oh - 1) * p.wp + s.ow + NL - 1) / NL * NL;
  const int64_t oblocks = (Og + kGO - 1) / kGO, kblocks = (K + kGK - 1) / kGK;
  // Owners of disjoint blocks of dweight: split the taps when there are enough, else the output
  // channels. The split is by the machine's thread count but changes no result bit.
  const int64_t want = std::max<int64_t>(1, (max_threads() + G - 1) / G);
  const int64_t ksplit = kblocks >= 2 * want ? want : 1;
  const int64_t osplit = ksplit > 1 ? 1 : std::min(oblocks, want);
  const int64_t items = G * ksplit * osplit;
  // Positions per run: the input rows a run reads (Cg channels × its rows) stay in L2 while the
  // channel and tap blocks pass over them.
  const int64_t run = std::max<int64_t>(NL, ((int64_t{128} << 10) / int64_t(sizeof(T)) /
                                             std::max<int64_t>(1, Cg) - s.kh * s.dh * p.wp) / NL * NL);
  const int nt = team_for(items, double(s.n) * Og * K * L / items);
  run_items(nt, items, [&](int64_t it, int) {
    const int64_t os = it % osplit, ks = it / osplit % ksplit, g = it / osplit / ksplit;
    const int64_t ob0 = oblocks * os / osplit, ob1 = oblocks * (os + 1) / osplit;
    const int64_t kb0 = kblocks * ks / ksplit, kb1 = kblocks * (ks + 1) / ksplit;
    T* xp = t_image.get<T>(size_t(p.image));
    T* dyx = t_dy.get<T>(size_t(Og * e_len));
    T* dwg = dweight + g * Og * K;
    for (int64_t n = 0; n < s.n; ++n) {
      pad_image(xp, x + (n * s.c + g * Cg) * s.h * s.w, s, p);
      extend_dy(dyx, dy + (n * s.o + g * Og) * L, s, p.wp, e_len);
      for (int64_t e0 = 0; e0 < e_len; e0 += run) {
        const int64_t e1 = std::min(e_len, e0 + run);
        for (int64_t ob = ob0; ob < ob1; ++ob)
          for (int64_t kb = kb0; kb < kb1; ++kb)
            weight_tile(dwg + ob * kGO * K + kb * kGK, K, dyx + ob * kGO * e_len, e_len, xp,
                        p.off.data() + kb * kGK, std::min<int64_t>(kGO, Og - ob * kGO),
                        std::min<int64_t>(kGK, K - kb * kGK), e0, e1);
      }
    }
  });
}

template <typename T>
void conv2d_forward_direct_avx2(T* y, const T* x, const T* weight, const T* bias,
                                const ConvShape& s) {
  const Plan<T> p = make_plan(weight, bias, s);
  const int64_t G = s.groups, Cg = s.cg(), Og = s.og(), L = s.plane(), ng = s.n * G;
  const double tile_macs = double(Og) * s.taps() * p.nr;
  const int nt = team_for(ng * p.tiles, tile_macs);
  auto image = [&](int64_t it) { return x + (it / G * s.c + it % G * Cg) * s.h * s.w; };
  auto out = [&](int64_t it) { return y + (it / G * s.o + it % G * Og) * L; };
  if (ng >= nt) {  // whole image-groups per thread
    run_items(nt, ng, [&](int64_t it, int) {
      T* xp = t_image.get<T>(size_t(p.image));
      pad_image(xp, image(it), s, p);
      tiles(out(it), xp, p, s, it % G, 0, p.tiles);
    });
    return;
  }
  // Fewer image-groups than threads: the team shares the tiles of each one.
  T* xp = t_image.get<T>(size_t(p.image));
  for (int64_t it = 0; it < ng; ++it) {
    pad_image(xp, image(it), s, p);
    const int64_t chunk = std::max<int64_t>(1, p.tiles / (4 * nt));
    const int64_t chunks = (p.tiles + chunk - 1) / chunk;
    run_items(std::min<int64_t>(nt, chunks), chunks, [&](int64_t c, int) {
      tiles(out(it), xp, p, s, it % G, c * chunk, std::min(p.tiles, (c + 1) * chunk));
    });
  }
}

template void conv2d_forward_direct_avx2<float>(float*, const float*, const float*, const float*,
                                                const ConvShape&);
template void conv2d_forward_direct_avx2<double>(double*, const double*, const double*,
                                                 const double*, const ConvShape&);
template void conv2d_grad_weight_direct_avx2<float>(float*, const float*, const float*,
                                                    const ConvShape&);
template void conv2d_grad_weight_direct_avx2<double>(double*, const double*, const double*,
                                                     const ConvShape&);

}  // namespace engine::cpu::detail
