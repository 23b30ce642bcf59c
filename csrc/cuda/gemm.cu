// The dense GEMM on the tile engine: each orientation of A and B (which of their strides is 1) and
// 16-byte or scalar loads are separate instantiations, chosen at launch from the strides and the
// alignment of the pointers.
#include <algorithm>
#include <type_traits>

#include "cuda/gemm.cuh"
#include "cuda/tile_gemm.cuh"

namespace engine::cuda {

bool tensor_cores_supported() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 8;
}

int multiprocessor_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return std::max(sms, 1);
}

namespace {

// C = act(alpha·acc + beta·C + bias[n]), C row-major with row stride c_rs
template <typename T>
struct GemmEpilogue {
  T* c;
  int64_t c_rs;
  T alpha, beta;
  const T* bias;
  Activation act;
  __device__ void operator()(int64_t m, int64_t n, T v) const {
    T* out = c + m * c_rs + n;
    v *= alpha;
    if (beta != T(0)) v += beta * *out;
    if (bias) v += bias[n];
    *out = activate(v, act);
  }
};

template <typename T, class Cfg, bool kAKContig, bool kBKContig, bool kVec>
struct DenseGemm {
  using OpA = DenseOperand<T, Cfg::BK, Cfg::BM, Cfg::kPad, Cfg::kThreads, kAKContig, kVec>;
  using OpB = DenseOperand<T, Cfg::BK, Cfg::BN, Cfg::kPad, Cfg::kThreads, kBKContig, kVec>;
  struct Slice {
    OpA a;
    OpB b;
    GemmEpilogue<T> epi;
    int64_t k_begin, k_end, M, N;
  };
  GemmArgs<T> g;

  __device__ Slice slice(int z) const {
    // A's (mn, k) = (m, k): strides (a_rs, a_cs); B's (mn, k) = (n, k): strides (b_cs, b_rs)
    return Slice{OpA{g.a + z * g.a_bs, g.a_rs, g.a_cs, g.m},
                 OpB{g.b + z * g.b_bs, g.b_cs, g.b_rs, g.n},
                 GemmEpilogue<T>{g.c + z * g.c_bs, g.c_rs, g.alpha, g.beta, g.bias, g.act},
                 0, g.k, g.m, g.n};
  }
};

constexpr int64_t kMaxGridYZ = 65535;

template <typename T, class Cfg, class MathT, bool kAKContig, bool kBKContig, bool kVec>
cudaError_t launch(const GemmArgs<T>& args, cudaStream_t stream) {
  using Problem = DenseGemm<T, Cfg, kAKContig, kBKContig, kVec>;
  const int64_t rows_per_launch = kMaxGridYZ * Cfg::BM;
  // NOTE: grid.y and grid.z stop at 65535, so very tall or very long batches go in chunks.
  for (int64_t b0 = 0; b0 < args.batch; b0 += kMaxGridYZ) {
    for (int64_t m0 = 0; m0 < args.m; m0 += rows_per_launch) {
      GemmArgs<T> g = args;
      g.batch = std::min(kMaxGridYZ, args.batch - b0);
      g.m = std::min(rows_per_launch, args.m - m0);
      g.a += b0 * args.a_bs + m0 * args.a_rs;
      g.b += b0 * args.b_bs;
      g.c += b0 * args.c_bs + m0 * args.c_rs;
      const dim3 grid(static_cast<unsigned>((g.n + Cfg::BN - 1) / Cfg::BN),
                      static_cast<unsigned>((g.m + Cfg::BM - 1) / Cfg::BM), static_cast<unsigned>(g.batch));
      tile_gemm_kernel<T, Cfg, MathT, Problem><<<grid, Cfg::kThreads, 0, stream>>>(Problem{g});
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
  }
  return cudaSuccess;
}

// 16-byte loads need the base 16-byte aligned and every stride other than the unit one a
// multiple of the vector length (so each line of the tile starts aligned).
template <typename T>
bool vector_ok(const T* p, int64_t batch_stride, int64_t line_stride) {
  constexpr int64_t vec = 16 / sizeof(T);
  return reinterpret_cast<uintptr_t>(p) % 16 == 0 && batch_stride % vec == 0 && line_stride % vec == 0;
}

template <typename T, class Cfg, class MathT>
cudaError_t dispatch(const GemmArgs<T>& g, cudaStream_t stream) {
  const bool a_k = g.a_cs == 1, b_k = g.b_rs == 1;
  const bool vec = vector_ok(g.a, g.a_bs, a_k ? g.a_rs : g.a_cs) && vector_ok(g.b, g.b_bs, b_k ? g.b_cs : g.b_rs);
#define ENGINE_GEMM_CASE(AK, BK)                                                         \
  if (a_k == AK && b_k == BK)                                                            \
    return vec ? launch<T, Cfg, MathT, AK, BK, true>(g, stream)                           \
               : launch<T, Cfg, MathT, AK, BK, false>(g, stream);
  ENGINE_GEMM_CASE(true, false)
  ENGINE_GEMM_CASE(true, true)
  ENGINE_GEMM_CASE(false, false)
  ENGINE_GEMM_CASE(false, true)
#undef ENGINE_GEMM_CASE
  return cudaErrorInvalidValue;
}

}  // namespace

template <typename T>
cudaError_t gemm(const GemmArgs<T>& args, cudaStream_t stream) {
  if (args.batch == 0 || args.m == 0 || args.n == 0) return cudaSuccess;
  if ((args.a_cs != 1 && args.a_rs != 1) || (args.b_cs != 1 && args.b_rs != 1)) return cudaErrorInvalidValue;
  if constexpr (std::is_same_v<T, float>) {
    if (args.math != Math::simt && tensor_cores_supported()) {
      if (args.math == Math::tf32) return dispatch<float, MmaConfig, MmaMath<Math::tf32>>(args, stream);
      return dispatch<float, MmaConfig, MmaMath<Math::bf16>>(args, stream);
    }
  }
  return dispatch<T, SimtConfig<T>, SimtMath<T, SimtConfig<T>>>(args, stream);
}

template cudaError_t gemm<float>(const GemmArgs<float>&, cudaStream_t);
template cudaError_t gemm<double>(const GemmArgs<double>&, cudaStream_t);

}  // namespace engine::cuda
