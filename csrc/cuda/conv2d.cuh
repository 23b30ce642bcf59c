// GPU conv2d (NCHW, implicit GEMM: the im2col matrix is gathered tile by tile, never stored)
// forward, grad input and grad weight, and max_pool2d forward/backward.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/math_mode.h"

namespace engine::cuda {

// x (N, C, H, W), weight (O, C/groups, KH, KW), y (N, O, OH, OW); all C-contiguous.
struct ConvShape {
  int64_t n, c, h, w, o, kh, kw, oh, ow;
  int64_t sh, sw, ph, pw, dh, dw, groups;
};

// y = conv(x, weight) + bias (bias (O,) or null)
template <typename T>
cudaError_t conv2d_forward(T* y, const T* x, const T* weight, const T* bias, const ConvShape& s, Math math,
                           cudaStream_t stream);
// dx = the gradient of conv2d_forward's input given dy; dx is overwritten
template <typename T>
cudaError_t conv2d_grad_input(T* dx, const T* dy, const T* weight, const ConvShape& s, Math math, cudaStream_t stream);
// dw = the gradient of conv2d_forward's weight given dy; dw is overwritten. The reduction over
// N·OH·OW is split across blocks when the output is small; the partial sums go to a workspace
// from cudaMallocAsync and are added in a fixed order (the result does not depend on timing).
template <typename T>
cudaError_t conv2d_grad_weight(T* dw, const T* dy, const T* x, const ConvShape& s, Math math, cudaStream_t stream);

// x (N, C, H, W) -> y, indices (N, C, OH, OW): numpy_ref.max_pool2d_forward's semantics (indices
// h·W + w in the input plane; running max from the first in-bounds element; a NaN is taken).
struct PoolShape {
  int64_t n, c, h, w, oh, ow;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};
template <typename T>
cudaError_t max_pool2d_forward(T* y, int64_t* indices, const T* x, const PoolShape& s, cudaStream_t stream);
// dx (planes, hw_in) = 0, then dy[p, i] added at dx[p, indices[p, i]]; indices outside
// [0, hw_in) are skipped (max_pool2d_forward never makes one).
template <typename T>
cudaError_t max_pool2d_backward(T* dx, const T* dy, const int64_t* indices, int64_t planes, int64_t hw_in,
                                int64_t hw_out, cudaStream_t stream);

}  // namespace engine::cuda
