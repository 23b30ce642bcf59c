// CPU GEMM on strided float32/float64 matrices, C = alpha·op(A)·op(B) + beta·C, batched, with a
// fused bias + activation epilogue; plus the FMA peak probe that benchmarks divide by.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine::cpu {

enum class Activation { none, relu, gelu };  // gelu is the exact 0.5·x·(1 + erf(x/√2))

// Shape legend: batch items of A (M×K) times B (K×N) into C (M×N).
// Element (i, j) of batch item t of X lives at x[t·x_bs + i·x_rs + j·x_cs]; strides count elements
// and may be 0 or negative, so a transposed view is just swapped strides (op = transpose).
// C has unit column stride. The epilogue runs after alpha/beta: + bias[j], then the activation.
template <typename T>
struct GemmArgs {
  T* c;                      // OUT (and IN when beta != 0; beta == 0 never reads C, like BLAS)
  int64_t c_bs, c_rs;
  const T* a;                // IN
  int64_t a_bs, a_rs, a_cs;
  const T* b;                // IN
  int64_t b_bs, b_rs, b_cs;
  int64_t batch, m, n, k;
  T alpha = 1, beta = 0;
  const T* bias = nullptr;   // N contiguous values, or nullptr
  Activation act = Activation::none;
};

// Bitwise identical for every thread count: threads split M/N/batch, never K.
template <typename T>
void gemm(const GemmArgs<T>& g);

// gemm() sums a K this short in one block whatever M and N are, so a caller that cuts a longer
// reduction into tiles of at most this many steps gets the same bits however it splits M and N.
constexpr int64_t kGemmUnsplitK = 128;

// Measured FMA throughput of `threads` threads in GFLOP/s (2 flops per FMA lane), ~0.2 s.
double fma_peak_gflops(bool f64, int threads);

// The microkernel sets, widest first: "avx512", "avx2-fma", "portable". gemm() uses the widest
// one the CPU runs, or the one gemm_use_isa() chose (to test and time each on one machine).
std::vector<std::string> gemm_isas();  // those this CPU runs
const char* gemm_isa();                // the one gemm() uses now
// Chooses `isa` (one of gemm_isas()), or the widest again for "auto"; throws otherwise.
void gemm_use_isa(const std::string& isa);

// ---- Internal: the contract between the driver (gemm.cpp) and the microkernels --------------
namespace detail {

// How a microkernel stores its tile: c = alpha·acc + beta·c (beta == 0: c is not read), then
// + bias[j] and the activation. The driver passes beta = 1 and no bias/activation for every K
// block but the first / last one.
template <typename T>
struct Epilogue {
  T alpha, beta;
  const T* bias;  // NR values for this tile's columns, or nullptr
  Activation act;
};

// One MR×NR tile: acc = Σ_p A(i, p)·b[p·b_rs + j] over p < kc, where A(i, p) = a[i·a_rs + p·a_cs]
// (a packed panel has a_rs = 1, a_cs = MR) and b is a packed B micro-panel (b_rs = NR) or B's
// rows in place. Full tiles only.
template <typename T>
using MicroKernel = void (*)(int64_t kc, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                             int64_t b_rs, T* c, int64_t ldc, const Epilogue<T>& ep);

// Packs micro-panels of `width` lanes × kc steps, stored step after step (out[p·width + l]) so
// the microkernel reads each front to back: lane l, step p of the source is
// src[l·lane_stride + p·k_stride]; panel q holds lanes q·width.. and a partial last panel is
// zero-filled. An A panel's lanes are MR rows of A, a B panel's are NR columns of B.
template <typename T>
using Packer = void (*)(const T* src, int64_t lane_stride, int64_t k_stride, int64_t lanes,
                        int64_t kc, int width, T* out);

// The portable packer, one element at a time.
template <typename T>
void pack_panels_strided(const T* src, int64_t lane_stride, int64_t k_stride, int64_t lanes,
                         int64_t kc, int width, T* out) {
  for (int64_t l0 = 0; l0 < lanes; l0 += width, out += width * kc) {
    const int64_t n = lanes - l0 < width ? lanes - l0 : width;
    for (int64_t l = 0; l < width; ++l) {
      const T* lane = src + (l0 + l) * lane_stride;
      for (int64_t p = 0; p < kc; ++p) out[p * width + l] = l < n ? lane[p * k_stride] : T(0);
    }
  }
}

constexpr int kMaxMR = 12, kMaxNR = 32;  // bound every kernel's tile (edge tiles live on the stack)

template <typename T>
struct KernelInfo {
  MicroKernel<T> fn;
  int mr, nr;
  Packer<T> pack;
  // Kernels of fewer rows (by_rows[r] has r, null where there is none) for a last micro-panel of
  // m < mr rows, which takes the first at or above m: 4 rows of a 12-row tile cost a third of
  // one, not all of it.
  MicroKernel<T> by_rows[kMaxMR] = {};
};

// Defined in gemm_avx2.cpp; call only when cpu_has_avx2_fma().
KernelInfo<float> avx2_kernel_f32();
KernelInfo<double> avx2_kernel_f64();
Packer<float> avx2_packer_f32();  // gemm_pack_avx2.cpp
Packer<double> avx2_packer_f64();
double fma_rate_avx2(bool f64);  // FLOP/s of the calling thread

// Defined in gemm_avx512.cpp; call only when cpu_has_avx512().
KernelInfo<float> avx512_kernel_f32();
KernelInfo<double> avx512_kernel_f64();
double fma_rate_avx512(bool f64);

}  // namespace detail
}  // namespace engine::cpu
