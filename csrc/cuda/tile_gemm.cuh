// The tiled GEMM engine every CUDA matrix kernel is built on: C tile (BM × BN) = Σ_k A(m, k)·B(k, n)
// with shared-memory tiles double-buffered through registers, and two kinds of math on the
// tiles: SIMT FMA with 2-D register blocking (fp32, fp64) or tensor-core mma.sync (TF32 or bf16
// operands, fp32 accumulation).
//
// A kernel is a Problem: per blockIdx.z (batch item, group, split of K) it gives an A operand, a
// B operand, an epilogue and a K range. Operands load a tile from global memory into registers
// (load) and write it to shared memory as S[k][mn] (store): the layout the math reads, whatever
// the layout in global memory. So dense matrices (any transpose), im2col gathers for convolution
// and their gradients all share one main loop.
//
// Shape legend: M × N output tile of BM × BN; K reduced in steps of BK; "mn" is m for A and n for B.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/math_mode.h"

namespace engine::cuda {

// ---------------------------------------------------------------------------------------------
// Tile configurations
// ---------------------------------------------------------------------------------------------
// SIMT: 256 threads in a 16 × 16 grid, each owning a TM × TN block of C split in two halves per
// axis (rows ty·TM/2 + i and BM/2 + ty·TM/2 + i), so a warp's shared-memory reads of one k are a
// broadcast (A) and 16 distinct consecutive words (B): no bank conflicts.
template <typename T>
struct SimtConfig;
template <>
struct SimtConfig<float> {
  static constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8, kThreads = 256, kPad = 4, kMinBlocks = 1;
};
template <>
struct SimtConfig<double> {
  static constexpr int BM = 64, BN = 64, BK = 8, TM = 4, TN = 4, kThreads = 256, kPad = 2, kMinBlocks = 2;
};

// Tensor cores: 256 threads = 8 warps as 2 (M) × 4 (N), each warp a 64 × 32 tile of
// m16n8 mma tiles (4 × 4). NOTE: the row pitch BM + 8 puts the fragment reads S[k = t][mn = g]
// (t = lane % 4, g = lane / 4) in 32 distinct banks: (8·t + g) mod 32.
struct MmaConfig {
  static constexpr int BM = 128, BN = 128, BK = 16, kThreads = 256, kPad = 8, kMinBlocks = 1;
  static constexpr int kWarpsM = 2, kWarpsN = 4, WM = BM / kWarpsM, WN = BN / kWarpsN;
  static constexpr int kTilesM = WM / 16, kTilesN = WN / 8;
};

// ---------------------------------------------------------------------------------------------
// Epilogue math shared by every kernel
// ---------------------------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ T activate(T v, Activation act) {
  if (act == Activation::relu) return v < T(0) ? T(0) : v;  // NOTE: NaN passes through, as np.maximum
  if (act == Activation::gelu) return T(0.5) * v * (T(1) + erf(v * T(0.70710678118654752440)));
  return v;
}

// ---------------------------------------------------------------------------------------------
// Thread maps for loading a BK × BMN tile: which (k, mn) element each thread handles.
// MN-major: consecutive threads take consecutive mn (coalesced when memory runs along mn, and
// conflict-free shared stores); K-major: consecutive threads take consecutive k.
// ---------------------------------------------------------------------------------------------
template <int BK, int BMN, int kThreads, bool kKMajor>
struct ElementMap {
  static constexpr int kPerThread = BK * BMN / kThreads;
  static_assert(BK * BMN % kThreads == 0, "tile must divide among the threads");
  __device__ static int k(int tid, int e) {
    if constexpr (kKMajor) return tid % BK;
    else return tid / BMN + e * (kThreads / BMN);
  }
  __device__ static int mn(int tid, int e) {
    if constexpr (kKMajor) return tid / BK + e * (kThreads / BK);
    else return tid % BMN;
  }
};

// Writes a thread's loaded elements into S[k][mn] (pitch BMN + pad).
template <typename T, int BMN, int kPad, class Map>
__device__ __forceinline__ void store_elements(const T (&r)[Map::kPerThread], T* s) {
#pragma unroll
  for (int e = 0; e < Map::kPerThread; ++e)
    s[Map::k(threadIdx.x, e) * (BMN + kPad) + Map::mn(threadIdx.x, e)] = r[e];
}

// ---------------------------------------------------------------------------------------------
// Dense operand: element (mn, k) at ptr[mn·s_mn + k·s_k] with one of the strides 1. kKContig:
// s_k == 1 (A row-major, or B transposed); else s_mn == 1. kVec: 16-byte loads along the unit
// stride (the caller checked the base pointer and the other stride are multiples of 16 bytes);
// a vector that crosses the edge of the matrix falls back to checked scalar loads.
// ---------------------------------------------------------------------------------------------
template <typename T, int BK, int BMN, int kPad, int kThreads, bool kKContig, bool kVec>
struct DenseOperand {
  static constexpr int kVecLen = kVec ? 16 / int(sizeof(T)) : 1;
  // Vectors of the tile: along k (kKContig) or along mn.
  static constexpr int kVecsPerLine = (kKContig ? BK : BMN) / kVecLen;
  static constexpr int kLoads = BK * BMN / kVecLen / kThreads;
  static_assert(BK * BMN % (kVecLen * kThreads) == 0, "tile must divide among the threads");
  struct alignas(16) Vec {
    T v[kVecLen];
  };
  struct Regs {
    Vec r[kLoads];
  };

  const T* ptr;
  int64_t s_mn, s_k;
  int64_t mn_size;

  __device__ void line_and_offset(int l, int& line, int& off) const {
    const int idx = threadIdx.x + l * kThreads;
    line = idx / kVecsPerLine;
    off = (idx % kVecsPerLine) * kVecLen;
  }

  __device__ void load(int64_t k0, int64_t k_end, int64_t mn0, Regs& regs) const {
#pragma unroll
    for (int l = 0; l < kLoads; ++l) {
      int line, off;
      line_and_offset(l, line, off);
      // kKContig: line is mn, off is k; else line is k, off is mn
      const int64_t mn = mn0 + (kKContig ? line : off);
      const int64_t k = k0 + (kKContig ? off : line);
      const T* p = ptr + mn * s_mn + k * s_k;
      const bool whole = kKContig ? (mn < mn_size && k + kVecLen <= k_end)
                                  : (k < k_end && mn + kVecLen <= mn_size);
      if (kVec && whole) {
        regs.r[l] = *reinterpret_cast<const Vec*>(p);
      } else {
#pragma unroll
        for (int j = 0; j < kVecLen; ++j) {
          const bool in = kKContig ? (mn < mn_size && k + j < k_end) : (k < k_end && mn + j < mn_size);
          regs.r[l].v[j] = in ? p[j] : T(0);
        }
      }
    }
  }

  __device__ void store(const Regs& regs, T* s) const {
#pragma unroll
    for (int l = 0; l < kLoads; ++l) {
      int line, off;
      line_and_offset(l, line, off);
#pragma unroll
      for (int j = 0; j < kVecLen; ++j) {
        if (kKContig) s[(off + j) * (BMN + kPad) + line] = regs.r[l].v[j];
        else s[line * (BMN + kPad) + off + j] = regs.r[l].v[j];
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// SIMT math: each thread a TM × TN block of C in registers, outer products over k.
// ---------------------------------------------------------------------------------------------
template <typename T, class Cfg>
struct SimtMath {
  static constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  static constexpr int kThreadsN = BN / TN;
  static_assert((BM / TM) * (BN / TN) == Cfg::kThreads, "one thread per TM x TN block");
  struct Acc {
    T c[TM][TN];
  };

  __device__ static int row(int i) {
    const int ty = threadIdx.x / kThreadsN;
    return i < TM / 2 ? ty * (TM / 2) + i : BM / 2 + ty * (TM / 2) + (i - TM / 2);
  }
  __device__ static int col(int j) {
    const int tx = threadIdx.x % kThreadsN;
    return j < TN / 2 ? tx * (TN / 2) + j : BN / 2 + tx * (TN / 2) + (j - TN / 2);
  }

  __device__ static void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc.c[i][j] = T(0);
  }

  __device__ static void compute(const T* as, const T* bs, Acc& acc) {
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      T a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = as[kk * (BM + Cfg::kPad) + row(i)];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = bs[kk * (BN + Cfg::kPad) + col(j)];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc.c[i][j] = fma(a[i], b[j], acc.c[i][j]);
    }
  }

  // epi(m, n, value) for every element of the tile inside the M × N matrix
  template <class Epi>
  __device__ static void finish(const Acc& acc, int64_t m0, int64_t n0, int64_t M, int64_t N, const Epi& epi) {
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t m = m0 + row(i);
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t n = n0 + col(j);
        if (n < N) epi(m, n, acc.c[i][j]);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Tensor-core math: mma.sync m16n8k8 (TF32) or m16n8k16 (bf16) with fp32 accumulators.
// Shared memory holds fp32; operands are rounded to TF32 (round to nearest, ties away) or bf16
// (round to nearest even) as the fragments are built.
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k8/k16"), g = lane / 4, t = lane % 4:
//   TF32 A (16 × 8):  a0 (g, t)  a1 (g + 8, t)  a2 (g, t + 4)  a3 (g + 8, t + 4)
//   TF32 B (8 × 8):   b0 (k = t, n = g)  b1 (k = t + 4, n = g)
//   bf16 A (16 × 16): a0 (g, 2t..2t+1)  a1 (g + 8, 2t..)  a2 (g, 2t+8..)  a3 (g + 8, 2t+8..)
//   bf16 B (16 × 8):  b0 (k = 2t..2t+1, n = g)  b1 (k = 2t+8..2t+9, n = g)
//   C (16 × 8):       c0 (g, 2t)  c1 (g, 2t + 1)  c2 (g + 8, 2t)  c3 (g + 8, 2t + 1)
// The lower k of a bf16 pair goes in the low half of the 32-bit register.
// ---------------------------------------------------------------------------------------------
template <Math kMath>
struct MmaMath {
  using Cfg = MmaConfig;
  static constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK;
  static constexpr int kStepK = kMath == Math::tf32 ? 8 : 16;
  static constexpr int LA = BM + Cfg::kPad, LB = BN + Cfg::kPad;
  struct Acc {
    float c[Cfg::kTilesM][Cfg::kTilesN][4];
  };

  __device__ static int warp_m() { return (threadIdx.x / 32) / Cfg::kWarpsN * Cfg::WM; }
  __device__ static int warp_n() { return (threadIdx.x / 32) % Cfg::kWarpsN * Cfg::WN; }

  __device__ static void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < Cfg::kTilesM; ++i)
#pragma unroll
      for (int j = 0; j < Cfg::kTilesN; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc.c[i][j][r] = 0.f;
  }

  __device__ static uint32_t tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
  }
  __device__ static uint32_t bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
    return *reinterpret_cast<const uint32_t*>(&v);
  }

  __device__ static void compute(const float* as, const float* bs, Acc& acc) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int wm = warp_m(), wn = warp_n();
#pragma unroll
    for (int k0 = 0; k0 < BK; k0 += kStepK) {
      uint32_t a[Cfg::kTilesM][4], b[Cfg::kTilesN][2];
#pragma unroll
      for (int i = 0; i < Cfg::kTilesM; ++i) {
        const float* p = as + wm + i * 16 + g;  // S[k][m]: element (m, k) at p[k·LA]
        if constexpr (kMath == Math::tf32) {
          a[i][0] = tf32(p[(k0 + t) * LA]);
          a[i][1] = tf32(p[(k0 + t) * LA + 8]);
          a[i][2] = tf32(p[(k0 + t + 4) * LA]);
          a[i][3] = tf32(p[(k0 + t + 4) * LA + 8]);
        } else {
          a[i][0] = bf16x2(p[(k0 + 2 * t) * LA], p[(k0 + 2 * t + 1) * LA]);
          a[i][1] = bf16x2(p[(k0 + 2 * t) * LA + 8], p[(k0 + 2 * t + 1) * LA + 8]);
          a[i][2] = bf16x2(p[(k0 + 2 * t + 8) * LA], p[(k0 + 2 * t + 9) * LA]);
          a[i][3] = bf16x2(p[(k0 + 2 * t + 8) * LA + 8], p[(k0 + 2 * t + 9) * LA + 8]);
        }
      }
#pragma unroll
      for (int j = 0; j < Cfg::kTilesN; ++j) {
        const float* p = bs + wn + j * 8 + g;  // S[k][n]: element (k, n) at p[k·LB]
        if constexpr (kMath == Math::tf32) {
          b[j][0] = tf32(p[(k0 + t) * LB]);
          b[j][1] = tf32(p[(k0 + t + 4) * LB]);
        } else {
          b[j][0] = bf16x2(p[(k0 + 2 * t) * LB], p[(k0 + 2 * t + 1) * LB]);
          b[j][1] = bf16x2(p[(k0 + 2 * t + 8) * LB], p[(k0 + 2 * t + 9) * LB]);
        }
      }
#pragma unroll
      for (int i = 0; i < Cfg::kTilesM; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::kTilesN; ++j) {
          float* c = acc.c[i][j];
          if constexpr (kMath == Math::tf32)
            asm volatile(
                "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
          else
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
        }
    }
#else
    // The host never launches a tensor-core kernel on a device older than sm_80 (see
    // tensor_cores_supported); this branch only keeps older targets compiling.
    (void)as, (void)bs, (void)acc;
    __trap();
#endif
  }

  template <class Epi>
  __device__ static void finish(const Acc& acc, int64_t m0, int64_t n0, int64_t M, int64_t N, const Epi& epi) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < Cfg::kTilesM; ++i)
#pragma unroll
      for (int j = 0; j < Cfg::kTilesN; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int64_t m = m0 + warp_m() + i * 16 + g + (r >= 2 ? 8 : 0);
          const int64_t n = n0 + warp_n() + j * 8 + 2 * t + (r & 1);
          if (m < M && n < N) epi(m, n, acc.c[i][j][r]);
        }
  }
};

// The math for element type T and a requested Math (fp64 is always SIMT).
template <typename T, Math kMath>
struct MathFor {
  using type = MmaMath<kMath>;
  using Cfg = MmaConfig;
};
template <typename T>
struct MathFor<T, Math::simt> {
  using type = SimtMath<T, SimtConfig<T>>;
  using Cfg = SimtConfig<T>;
};

// ---------------------------------------------------------------------------------------------
// The kernel: grid (ceil(N / BN), ceil(M / BM), slices). p.slice(z) gives {a, b, epi, k_begin,
// k_end, M, N}; a and b have load(k0, k_end, mn0, regs) and store(regs, smem).
//
// Double buffering: while the math works on one shared buffer, the next tile is already in
// flight from global memory into registers; it is written to the other buffer after the math, so
// one barrier per K step suffices (every thread finished reading a buffer before any thread
// overwrites it one step later).
// ---------------------------------------------------------------------------------------------
template <typename T, class Cfg, class MathT, class Problem>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks) tile_gemm_kernel(const Problem p) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK;
  __shared__ __align__(16) T as[2][BK * (BM + Cfg::kPad)];
  __shared__ __align__(16) T bs[2][BK * (BN + Cfg::kPad)];

  const auto s = p.slice(blockIdx.z);
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  if (m0 >= s.M || n0 >= s.N) return;

  typename MathT::Acc acc;
  MathT::zero(acc);
  typename decltype(s.a)::Regs ra;
  typename decltype(s.b)::Regs rb;

  if (s.k_begin < s.k_end) {
    s.a.load(s.k_begin, s.k_end, m0, ra);
    s.b.load(s.k_begin, s.k_end, n0, rb);
    s.a.store(ra, as[0]);
    s.b.store(rb, bs[0]);
    __syncthreads();
    int buf = 0;
    for (int64_t k = s.k_begin; k < s.k_end; k += BK) {
      const bool more = k + BK < s.k_end;
      if (more) {
        s.a.load(k + BK, s.k_end, m0, ra);
        s.b.load(k + BK, s.k_end, n0, rb);
      }
      MathT::compute(as[buf], bs[buf], acc);
      if (more) {
        s.a.store(ra, as[buf ^ 1]);
        s.b.store(rb, bs[buf ^ 1]);
      }
      __syncthreads();
      buf ^= 1;
    }
  }
  MathT::finish(acc, m0, n0, s.M, s.N, s.epi);
}

}  // namespace engine::cuda
