// conv2d as implicit GEMMs on the tile engine, and max pooling.
//
// Shape legend (per group g): Cg = C / G input channels, Og = O / G output channels,
// R = Cg·KH·KW (one im2col row per (c, i, j)), L = OH·OW, and a "column" is one output pixel
// (n, oh, ow) or input pixel (n, h, w).
//   forward:     Y_g (Og × N·L)   = W_g (Og × R)        · im2col(X)_g (R × N·L)
//   grad input:  dX_g (Cg × N·HW) = W_gᵀ (Cg × Og·KH·KW) · col2im gather of dY (Og·KH·KW × N·HW)
//   grad weight: dW_g (Og × R)   = dY_g (Og × N·L)     · im2col(X)_gᵀ (N·L × R)
// The gathers decode their column (or row) once per tile per thread; the per-element decode of
// (c, i, j) costs two integer divisions.
#include <algorithm>
#include <type_traits>
#include <cmath>
#include <limits>

#include "cuda/conv2d.cuh"
#include "cuda/tile_gemm.cuh"

namespace engine::cuda {
namespace {

// The convolution sizes as 32-bit ints for the index arithmetic (the host checked they fit);
// addresses are formed in 64 bits.
struct ConvDims {
  int n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw;
  int cg, og, khkw;
  __host__ __device__ int hw() const { return h * w; }
  __host__ __device__ int l() const { return oh * ow; }
  __host__ __device__ int r() const { return cg * khkw; }
};

ConvDims dims_of(const ConvShape& s) {
  auto i = [](int64_t v) { return static_cast<int>(v); };
  return ConvDims{i(s.n), i(s.c), i(s.h), i(s.w), i(s.o), i(s.kh), i(s.kw), i(s.oh), i(s.ow), i(s.sh), i(s.sw),
                  i(s.ph), i(s.pw), i(s.dh), i(s.dw), i(s.c / s.groups), i(s.o / s.groups), i(s.kh * s.kw)};
}

// Every product the kernels form in 32 bits must fit: columns N·L and N·H·W, rows R and Og·KH·KW.
bool fits_int32(const ConvShape& s) {
  constexpr int64_t lim = std::numeric_limits<int32_t>::max();
  const int64_t cols = std::max(s.n * s.oh * s.ow, s.n * s.h * s.w);
  const int64_t rows = std::max(s.c / std::max<int64_t>(s.groups, 1), s.o / std::max<int64_t>(s.groups, 1)) * s.kh * s.kw;
  return cols < lim && rows < lim && s.c * s.h * s.w < lim && s.o * s.oh * s.ow < lim && s.h + 2 * s.ph < lim &&
         s.w + 2 * s.pw < lim;
}

// ---------------------------------------------------------------------------- forward operands
// B = im2col(x): element (k = (c, i, j), column = (n, oh, ow)). Threads run along columns.
template <typename T, class Cfg>
struct Im2colColumns {
  using Map = ElementMap<Cfg::BK, Cfg::BN, Cfg::kThreads, false>;
  struct Regs {
    T r[Map::kPerThread];
  };
  const T* x;  // this group's first channel of sample 0
  ConvDims d;
  int cols;

  __device__ void load(int64_t k0, int64_t k_end, int64_t mn0, Regs& regs) const {
    const int col = static_cast<int>(mn0) + Map::mn(threadIdx.x, 0);
    const int nb = col / d.l(), l = col - nb * d.l(), oh = l / d.ow, ow = l - oh * d.ow;
    const T* base = x + int64_t(nb) * d.c * d.hw();
    const int h0 = oh * d.sh - d.ph, w0 = ow * d.sw - d.pw;
#pragma unroll
    for (int e = 0; e < Map::kPerThread; ++e) {
      const int r = static_cast<int>(k0) + Map::k(threadIdx.x, e);
      T v = T(0);
      if (col < cols && r < k_end) {
        const int c = r / d.khkw, ij = r - c * d.khkw, i = ij / d.kw, j = ij - i * d.kw;
        const int h = h0 + i * d.dh, w = w0 + j * d.dw;
        if (h >= 0 && h < d.h && w >= 0 && w < d.w) v = base[(int64_t(c) * d.h + h) * d.w + w];
      }
      regs.r[e] = v;
    }
  }
  __device__ void store(const Regs& regs, T* s) const { store_elements<T, Cfg::BN, Cfg::kPad, Map>(regs.r, s); }
};

template <typename T>
struct ConvForwardEpilogue {
  T* y;  // this group's first output channel of sample 0
  const T* bias;  // this group's first bias, or null
  ConvDims d;
  __device__ void operator()(int64_t o, int64_t col, T v) const {
    const int nb = static_cast<int>(col) / d.l(), l = static_cast<int>(col) - nb * d.l();
    y[(int64_t(nb) * d.o + o) * d.l() + l] = bias ? v + bias[o] : v;
  }
};

template <typename T, class Cfg, bool kVec>
struct ConvForward {
  using OpA = DenseOperand<T, Cfg::BK, Cfg::BM, Cfg::kPad, Cfg::kThreads, true, kVec>;
  using OpB = Im2colColumns<T, Cfg>;
  struct Slice {
    OpA a;
    OpB b;
    ConvForwardEpilogue<T> epi;
    int64_t k_begin, k_end, M, N;
  };
  T* y;
  const T *x, *w, *bias;
  ConvDims d;

  __device__ Slice slice(int g) const {
    const int cols = d.n * d.l();
    return Slice{OpA{w + int64_t(g) * d.og * d.r(), d.r(), 1, d.og},
                 OpB{x + int64_t(g) * d.cg * d.hw(), d, cols},
                 ConvForwardEpilogue<T>{y + int64_t(g) * d.og * d.l(), bias ? bias + g * d.og : nullptr, d},
                 0, d.r(), d.og, cols};
  }
};

// ------------------------------------------------------------------------- grad input operands
// A = W_gᵀ: element (mn = c, k = (o, i, j)) = w[g·Og + o, c, i, j]. Threads run along k (the
// weight's contiguous (i, j)).
template <typename T, class Cfg>
struct WeightTransposed {
  using Map = ElementMap<Cfg::BK, Cfg::BM, Cfg::kThreads, true>;
  struct Regs {
    T r[Map::kPerThread];
  };
  const T* w;  // this group's first filter
  ConvDims d;

  __device__ void load(int64_t k0, int64_t k_end, int64_t mn0, Regs& regs) const {
    const int r = static_cast<int>(k0) + Map::k(threadIdx.x, 0);
    const int o = r / d.khkw, ij = r - o * d.khkw;
    const T* base = w + int64_t(o) * d.cg * d.khkw + ij;
#pragma unroll
    for (int e = 0; e < Map::kPerThread; ++e) {
      const int c = static_cast<int>(mn0) + Map::mn(threadIdx.x, e);
      regs.r[e] = (r < k_end && c < d.cg) ? base[int64_t(c) * d.khkw] : T(0);
    }
  }
  __device__ void store(const Regs& regs, T* s) const { store_elements<T, Cfg::BM, Cfg::kPad, Map>(regs.r, s); }
};

// B: element (k = (o, i, j), column = (n, h, w)) = dy[n, g·Og + o, oh, ow] where the forward pass
// read x[n, ·, h, w] through kernel offset (i, j) at output (oh, ow): h = oh·sh − ph + i·dh, so
// oh = (h + ph − i·dh) / sh when that divides exactly and lands inside the output.
template <typename T, class Cfg>
struct GradOutputByInputPixel {
  using Map = ElementMap<Cfg::BK, Cfg::BN, Cfg::kThreads, false>;
  struct Regs {
    T r[Map::kPerThread];
  };
  const T* dy;  // this group's first output channel of sample 0
  ConvDims d;
  int cols;

  __device__ void load(int64_t k0, int64_t k_end, int64_t mn0, Regs& regs) const {
    const int col = static_cast<int>(mn0) + Map::mn(threadIdx.x, 0);
    const int nb = col / d.hw(), hw = col - nb * d.hw(), h = hw / d.w, w = hw - h * d.w;
    const T* base = dy + int64_t(nb) * d.o * d.l();
    const int hp = h + d.ph, wp = w + d.pw;
#pragma unroll
    for (int e = 0; e < Map::kPerThread; ++e) {
      const int r = static_cast<int>(k0) + Map::k(threadIdx.x, e);
      T v = T(0);
      if (col < cols && r < k_end) {
        const int o = r / d.khkw, ij = r - o * d.khkw, i = ij / d.kw, j = ij - i * d.kw;
        const int th = hp - i * d.dh, tw = wp - j * d.dw;
        if (th >= 0 && tw >= 0) {
          const int oh = th / d.sh, ow = tw / d.sw;
          if (oh * d.sh == th && ow * d.sw == tw && oh < d.oh && ow < d.ow)
            v = base[(int64_t(o) * d.oh + oh) * d.ow + ow];
        }
      }
      regs.r[e] = v;
    }
  }
  __device__ void store(const Regs& regs, T* s) const { store_elements<T, Cfg::BN, Cfg::kPad, Map>(regs.r, s); }
};

template <typename T>
struct ConvGradInputEpilogue {
  T* dx;  // this group's first input channel of sample 0
  ConvDims d;
  __device__ void operator()(int64_t c, int64_t col, T v) const {
    const int nb = static_cast<int>(col) / d.hw(), hw = static_cast<int>(col) - nb * d.hw();
    dx[(int64_t(nb) * d.c + c) * d.hw() + hw] = v;
  }
};

template <typename T, class Cfg>
struct ConvGradInput {
  using OpA = WeightTransposed<T, Cfg>;
  using OpB = GradOutputByInputPixel<T, Cfg>;
  struct Slice {
    OpA a;
    OpB b;
    ConvGradInputEpilogue<T> epi;
    int64_t k_begin, k_end, M, N;
  };
  T* dx;
  const T *dy, *w;
  ConvDims d;

  __device__ Slice slice(int g) const {
    const int cols = d.n * d.hw();
    return Slice{OpA{w + int64_t(g) * d.og * d.r(), d},
                 OpB{dy + int64_t(g) * d.og * d.l(), d, cols},
                 ConvGradInputEpilogue<T>{dx + int64_t(g) * d.cg * d.hw(), d},
                 0, int64_t(d.og) * d.khkw, d.cg, cols};
  }
};

// ------------------------------------------------------------------------ grad weight operands
// A = dY_g: element (mn = o, k = (n, oh, ow)) = dy[n, g·Og + o, oh, ow]. Threads run along k.
template <typename T, class Cfg>
struct GradOutputRows {
  using Map = ElementMap<Cfg::BK, Cfg::BM, Cfg::kThreads, true>;
  struct Regs {
    T r[Map::kPerThread];
  };
  const T* dy;  // this group's first output channel of sample 0
  ConvDims d;

  __device__ void load(int64_t k0, int64_t k_end, int64_t mn0, Regs& regs) const {
    const int kk = static_cast<int>(k0) + Map::k(threadIdx.x, 0);
    const int nb = kk / d.l(), l = kk - nb * d.l();
    const T* base = dy + int64_t(nb) * d.o * d.l() + l;
#pragma unroll
    for (int e = 0; e < Map::kPerThread; ++e) {
      const int o = static_cast<int>(mn0) + Map::mn(threadIdx.x, e);
      regs.r[e] = (kk < k_end && o < d.og) ? base[int64_t(o) * d.l()] : T(0);
    }
  }
  __device__ void store(const Regs& regs, T* s) const { store_elements<T, Cfg::BM, Cfg::kPad, Map>(regs.r, s); }
};

// B = im2col(X)_gᵀ: element (k = (n, oh, ow), mn = (c, i, j)). Threads run along k (pixels).
template <typename T, class Cfg>
struct Im2colRows {
  using Map = ElementMap<Cfg::BK, Cfg::BN, Cfg::kThreads, true>;
  struct Regs {
    T r[Map::kPerThread];
  };
  const T* x;  // this group's first channel of sample 0
  ConvDims d;

  __device__ void load(int64_t k0, int64_t k_end, int64_t mn0, Regs& regs) const {
    const int kk = static_cast<int>(k0) + Map::k(threadIdx.x, 0);
    const int nb = kk / d.l(), l = kk - nb * d.l(), oh = l / d.ow, ow = l - oh * d.ow;
    const T* base = x + int64_t(nb) * d.c * d.hw();
    const int h0 = oh * d.sh - d.ph, w0 = ow * d.sw - d.pw;
#pragma unroll
    for (int e = 0; e < Map::kPerThread; ++e) {
      const int r = static_cast<int>(mn0) + Map::mn(threadIdx.x, e);
      T v = T(0);
      if (kk < k_end && r < d.r()) {
        const int c = r / d.khkw, ij = r - c * d.khkw, i = ij / d.kw, j = ij - i * d.kw;
        const int h = h0 + i * d.dh, w = w0 + j * d.dw;
        if (h >= 0 && h < d.h && w >= 0 && w < d.w) v = base[(int64_t(c) * d.h + h) * d.w + w];
      }
      regs.r[e] = v;
    }
  }
  __device__ void store(const Regs& regs, T* s) const { store_elements<T, Cfg::BN, Cfg::kPad, Map>(regs.r, s); }
};

template <typename T>
struct RowMajorStore {
  T* out;
  int64_t ld;
  __device__ void operator()(int64_t m, int64_t n, T v) const { out[m * ld + n] = v; }
};

template <typename T, class Cfg>
struct ConvGradWeight {
  using OpA = GradOutputRows<T, Cfg>;
  using OpB = Im2colRows<T, Cfg>;
  struct Slice {
    OpA a;
    OpB b;
    RowMajorStore<T> epi;
    int64_t k_begin, k_end, M, N;
  };
  T* out;  // dw, or the workspace (splits, O, R) when splits > 1
  const T *dy, *x;
  ConvDims d;
  int splits;
  int64_t chunk;  // pixels per split, a multiple of BK

  __device__ Slice slice(int z) const {
    const int g = z / splits, sp = z % splits;
    const int64_t total = int64_t(d.n) * d.l();
    return Slice{OpA{dy + int64_t(g) * d.og * d.l(), d}, OpB{x + int64_t(g) * d.cg * d.hw(), d},
                 RowMajorStore<T>{out + (int64_t(sp) * d.o + int64_t(g) * d.og) * d.r(), d.r()},
                 sp * chunk, (sp + 1) * chunk < total ? (sp + 1) * chunk : total, d.og, d.r()};
  }
};

// dw[i] = Σ_s ws[s, i], in order of s
template <typename T>
__global__ void sum_splits_kernel(T* dw, const T* ws, int splits, int64_t size) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < size; i += stride) {
    T acc = ws[i];
    for (int s = 1; s < splits; ++s) acc += ws[s * size + i];
    dw[i] = acc;
  }
}

int grid_for(int64_t n, int threads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535LL * 16));
}

template <typename T, class Cfg, class MathT, class Problem>
cudaError_t launch(const Problem& p, int64_t m, int64_t n, int64_t z, cudaStream_t stream) {
  if (m == 0 || n == 0 || z == 0) return cudaSuccess;
  if (z > 65535 || (m + Cfg::BM - 1) / Cfg::BM > 65535) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>((n + Cfg::BN - 1) / Cfg::BN), static_cast<unsigned>((m + Cfg::BM - 1) / Cfg::BM),
                  static_cast<unsigned>(z));
  tile_gemm_kernel<T, Cfg, MathT, Problem><<<grid, Cfg::kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

// The tile configuration and math a kernel runs with, as a type for generic lambdas.
template <class Config, class MathKind>
struct Kind {
  using Cfg = Config;
  using MathT = MathKind;
};

// fn(Kind<Cfg, MathT>{}) for the math asked for: tensor cores only for float on sm_80+, SIMT
// otherwise.
template <typename T, class Fn>
cudaError_t with_math(Math math, Fn&& fn) {
  if constexpr (std::is_same_v<T, float>) {
    if (math != Math::simt && tensor_cores_supported()) {
      if (math == Math::tf32) return fn(Kind<MmaConfig, MmaMath<Math::tf32>>{});
      return fn(Kind<MmaConfig, MmaMath<Math::bf16>>{});
    }
  }
  return fn(Kind<SimtConfig<T>, SimtMath<T, SimtConfig<T>>>{});
}

// ---------------------------------------------------------------------------- max pooling
struct PoolDims {
  int64_t h, w, oh, ow;
  int kh, kw, sh, sw, ph, pw, dh, dw;
};

// The first in-bounds row (or column) of a window starting at `start`: start + a multiple of the
// dilation (Python's modulo, as numpy_ref._first_in_bounds).
__device__ int64_t first_in_bounds(int64_t start, int dilation) {
  if (start >= 0) return start;
  const int64_t r = start % dilation;
  return r < 0 ? r + dilation : r;
}

template <typename T>
__global__ void max_pool2d_forward_kernel(T* y, int64_t* indices, const T* x, PoolDims p, int64_t total) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t ow = idx % p.ow, t = idx / p.ow, oh = t % p.oh, plane = t / p.oh;
    const T* xp = x + plane * p.h * p.w;
    const int64_t h0 = oh * p.sh - p.ph, w0 = ow * p.sw - p.pw;
    T best = -INFINITY;
    int64_t best_at = first_in_bounds(h0, p.dh) * p.w + first_in_bounds(w0, p.dw);
    for (int i = 0; i < p.kh; ++i) {
      const int64_t h = h0 + int64_t(i) * p.dh;
      if (h < 0 || h >= p.h) continue;  // padding is -inf: never taken
      for (int j = 0; j < p.kw; ++j) {
        const int64_t w = w0 + int64_t(j) * p.dw;
        if (w < 0 || w >= p.w) continue;
        const T v = xp[h * p.w + w];
        // NOTE: ties keep the first max; a NaN is taken, also over an earlier NaN (numpy_ref)
        if (v > best || isnan(v)) {
          best = v;
          best_at = h * p.w + w;
        }
      }
    }
    y[idx] = best;
    indices[idx] = best_at;
  }
}

template <typename T>
__global__ void max_pool2d_backward_kernel(T* dx, const T* dy, const int64_t* indices, int64_t hw_in,
                                           int64_t hw_out, int64_t total) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t at = indices[idx];
    // NOTE: overlapping windows (stride < kernel) can send several gradients to one input; the
    // atomic adds make their order, and so the last bits of the sum, vary between runs.
    if (at >= 0 && at < hw_in) atomicAdd(dx + (idx / hw_out) * hw_in + at, dy[idx]);
  }
}

}  // namespace

template <typename T>
cudaError_t conv2d_forward(T* y, const T* x, const T* weight, const T* bias, const ConvShape& s, Math math,
                           cudaStream_t stream) {
  if (!fits_int32(s)) return cudaErrorInvalidValue;
  const ConvDims d = dims_of(s);
  return with_math<T>(math, [&](auto kind) {
    using Cfg = typename decltype(kind)::Cfg;
    using MathT = typename decltype(kind)::MathT;
    constexpr int vec = 16 / sizeof(T);
    const bool vec_ok = reinterpret_cast<uintptr_t>(weight) % 16 == 0 && d.r() % vec == 0;
    if (vec_ok)
      return launch<T, Cfg, MathT>(ConvForward<T, Cfg, true>{y, x, weight, bias, d}, d.og, int64_t(d.n) * d.l(),
                                   s.groups, stream);
    return launch<T, Cfg, MathT>(ConvForward<T, Cfg, false>{y, x, weight, bias, d}, d.og, int64_t(d.n) * d.l(),
                                 s.groups, stream);
  });
}

template <typename T>
cudaError_t conv2d_grad_input(T* dx, const T* dy, const T* weight, const ConvShape& s, Math math, cudaStream_t stream) {
  if (!fits_int32(s)) return cudaErrorInvalidValue;
  const ConvDims d = dims_of(s);
  return with_math<T>(math, [&](auto kind) {
    using Cfg = typename decltype(kind)::Cfg;
    using MathT = typename decltype(kind)::MathT;
    return launch<T, Cfg, MathT>(ConvGradInput<T, Cfg>{dx, dy, weight, d}, d.cg, int64_t(d.n) * d.hw(), s.groups,
                                 stream);
  });
}

template <typename T>
cudaError_t conv2d_grad_weight(T* dw, const T* dy, const T* x, const ConvShape& s, Math math, cudaStream_t stream) {
  if (!fits_int32(s)) return cudaErrorInvalidValue;
  const ConvDims d = dims_of(s);
  const int64_t size = int64_t(d.o) * d.r();
  if (size == 0) return cudaSuccess;
  const int64_t pixels = int64_t(d.n) * d.l();
  if (pixels == 0) return cudaMemsetAsync(dw, 0, size * sizeof(T), stream);
  return with_math<T>(math, [&](auto kind) {
    using Cfg = typename decltype(kind)::Cfg;
    using MathT = typename decltype(kind)::MathT;
    // Split the N·L reduction until the grid has about two blocks per multiprocessor, keeping
    // at least 32 K steps per split so each block's loop amortises its prologue and epilogue.
    const int64_t tiles = ((d.og + Cfg::BM - 1) / Cfg::BM) * ((d.r() + Cfg::BN - 1) / Cfg::BN) * s.groups;
    const int64_t min_chunk = 32 * Cfg::BK;
    int64_t splits = std::max<int64_t>(1, 2 * multiprocessor_count() / std::max<int64_t>(tiles, 1));
    splits = std::min({splits, (pixels + min_chunk - 1) / min_chunk, 65535 / s.groups, int64_t(256)});
    splits = std::max<int64_t>(splits, 1);
    int64_t chunk = (pixels + splits - 1) / splits;
    chunk = (chunk + Cfg::BK - 1) / Cfg::BK * Cfg::BK;
    splits = (pixels + chunk - 1) / chunk;
    if (splits == 1)
      return launch<T, Cfg, MathT>(ConvGradWeight<T, Cfg>{dw, dy, x, d, 1, chunk}, d.og, d.r(), s.groups, stream);
    T* ws = nullptr;
    cudaError_t err = cudaMallocAsync(reinterpret_cast<void**>(&ws), splits * size * sizeof(T), stream);
    if (err != cudaSuccess) return err;
    err = launch<T, Cfg, MathT>(ConvGradWeight<T, Cfg>{ws, dy, x, d, static_cast<int>(splits), chunk}, d.og, d.r(),
                                s.groups * splits, stream);
    if (err == cudaSuccess) {
      sum_splits_kernel<T><<<grid_for(size, 256), 256, 0, stream>>>(dw, ws, static_cast<int>(splits), size);
      err = cudaGetLastError();
    }
    const cudaError_t freed = cudaFreeAsync(ws, stream);
    return err != cudaSuccess ? err : freed;
  });
}

template <typename T>
cudaError_t max_pool2d_forward(T* y, int64_t* indices, const T* x, const PoolShape& s, cudaStream_t stream) {
  const int64_t total = s.n * s.c * s.oh * s.ow;
  if (total == 0) return cudaSuccess;
  auto i = [](int64_t v) { return static_cast<int>(v); };
  const PoolDims p{s.h, s.w, s.oh, s.ow, i(s.kh), i(s.kw), i(s.sh), i(s.sw), i(s.ph), i(s.pw), i(s.dh), i(s.dw)};
  max_pool2d_forward_kernel<T><<<grid_for(total, 256), 256, 0, stream>>>(y, indices, x, p, total);
  return cudaGetLastError();
}

template <typename T>
cudaError_t max_pool2d_backward(T* dx, const T* dy, const int64_t* indices, int64_t planes, int64_t hw_in,
                                int64_t hw_out, cudaStream_t stream) {
  if (planes * hw_in == 0) return cudaSuccess;
  cudaError_t err = cudaMemsetAsync(dx, 0, planes * hw_in * sizeof(T), stream);
  if (err != cudaSuccess || planes * hw_out == 0) return err;
  const int64_t total = planes * hw_out;
  max_pool2d_backward_kernel<T><<<grid_for(total, 256), 256, 0, stream>>>(dx, dy, indices, hw_in, hw_out, total);
  return cudaGetLastError();
}

#define ENGINE_CONV_INSTANTIATE(T)                                                                              \
  template cudaError_t conv2d_forward<T>(T*, const T*, const T*, const T*, const ConvShape&, Math, cudaStream_t); \
  template cudaError_t conv2d_grad_input<T>(T*, const T*, const T*, const ConvShape&, Math, cudaStream_t);      \
  template cudaError_t conv2d_grad_weight<T>(T*, const T*, const T*, const ConvShape&, Math, cudaStream_t);     \
  template cudaError_t max_pool2d_forward<T>(T*, int64_t*, const T*, const PoolShape&, cudaStream_t);           \
  template cudaError_t max_pool2d_backward<T>(T*, const T*, const int64_t*, int64_t, int64_t, int64_t, cudaStream_t);
ENGINE_CONV_INSTANTIATE(float)
ENGINE_CONV_INSTANTIATE(double)
#undef ENGINE_CONV_INSTANTIATE

}  // namespace engine::cuda
