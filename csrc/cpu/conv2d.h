// CPU conv2d over NCHW float32/float64 buffers: forward, gradient w.r.t. the input and w.r.t. the
// weight, with stride, zero padding, dilation and groups; no whole-batch im2col buffer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine::cpu {

// Shape legend (as engine/backend/numpy_ref.py):
//   x (N, C, H, W), weight (O, Cg, KH, KW), y (N, O, OH, OW); G groups, Cg = C/G, Og = O/G,
//   K = Cg·KH·KW taps per output, L = OH·OW output positions per plane.
//   y[n, o, oh, ow] = bias[o] + Σ_{c,i,j} weight[o, c, i, j]·xpad[n, g·Cg + c, oh·sh + i·dh, ow·sw + j·dw]
//   with g = o / Og and xpad the input with ph (pw) zero rows (columns) on each side.
struct ConvShape {
  int64_t n, c, h, w;        // input
  int64_t o, kh, kw;         // weight (O, C/groups, KH, KW)
  int64_t oh, ow;            // output plane
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t groups;

  int64_t cg() const { return c / groups; }
  int64_t og() const { return o / groups; }
  int64_t taps() const { return cg() * kh * kw; }  // K
  int64_t plane() const { return oh * ow; }        // L
};

// (H + 2·pad − dil·(K − 1) − 1) / stride + 1, floored; < 1 means the kernel does not fit.
inline int64_t conv_out_size(int64_t size, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  const int64_t span = size + 2 * pad - dil * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

// All buffers C-contiguous; the caller has checked the shapes (see bind_conv.cpp).
// y (OUT, N·O·OH·OW) = conv(x, weight) + bias; bias may be nullptr.
template <typename T>
void conv2d_forward(T* y, const T* x, const T* weight, const T* bias, const ConvShape& s);

// dx (OUT, N·C·H·W) = the gradient of Σ y·dy w.r.t. x.
template <typename T>
void conv2d_grad_input(T* dx, const T* dy, const T* weight, const ConvShape& s);

// dweight (OUT, O·Cg·KH·KW) = the gradient of Σ y·dy w.r.t. weight. Threads split the output
// (groups, channels, output channels), never the sum over images and positions, so the result
// is bitwise the same for every thread count.
template <typename T>
void conv2d_grad_weight(T* dweight, const T* dy, const T* x, const ConvShape& s);

// The paths of stride-1 convolutions, widest first: "avx512-direct", "avx2-direct" (the direct
// kernels of conv2d_direct.h) and "gemm-panels" (im2col panels + GEMM, which every other stride
// takes). The widest the CPU runs is used, or the one conv2d_use_path() chose (tests hold one
// against another).
std::vector<std::string> conv2d_paths();  // those this CPU runs
const char* conv2d_path();                // the one in use
// Chooses `path` (one of conv2d_paths()), or the widest again for "auto"; throws otherwise.
void conv2d_use_path(const std::string& path);

namespace detail {
// The direct kernels (conv2d_direct.h): stride 1, any padding, dilation and groups; bias may be
// nullptr. The weight gradients return false, having left dweight unspecified, where x holds an
// inf or a NaN (their sums would meet it where a correct one does not). The avx2 ones (conv2d_avx2.cpp) need cpu_has_avx2_fma(), the avx512 ones
// (conv2d_avx512.cpp) cpu_has_avx512().
template <typename T>
void conv2d_forward_direct_avx2(T* y, const T* x, const T* weight, const T* bias,
                                const ConvShape& s);
template <typename T>
bool conv2d_grad_weight_direct_avx2(T* dweight, const T* dy, const T* x, const ConvShape& s);
template <typename T>
void conv2d_forward_direct_avx512(T* y, const T* x, const T* weight, const T* bias,
                                  const ConvShape& s);
template <typename T>
bool conv2d_grad_weight_direct_avx512(T* dweight, const T* dy, const T* x, const ConvShape& s);
}  // namespace detail
}  // namespace engine::cpu
