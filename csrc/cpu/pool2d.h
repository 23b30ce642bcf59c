// CPU max_pool2d over NCHW float32/float64 buffers: forward with argmax indices, and backward.
#pragma once
#include <cstdint>

namespace engine::cpu {

// x (N, C, H, W) -> y, indices (N, C, OH, OW); windows of kh×kw with stride, -inf padding and
// dilation. indices hold h·W + w of each max in the unpadded input plane. As numpy_ref's
// max_pool2d_forward (and PyTorch): the running max starts at -inf with the index of the window's
// first in-bounds element, an element is taken when it is greater or NaN, so ties keep the first
// max in row-major window order and a later NaN replaces an earlier one.
struct PoolShape {
  int64_t n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
};

template <typename T>
void max_pool2d_forward(T* y, int64_t* indices, const T* x, const PoolShape& s);

// dx (N, C, H, W) = 0, then dx[n, c].flat[indices[n, c, oh, ow]] += dy[n, c, oh, ow].
// Returns false (dx then unspecified) when an index lies outside [0, H·W).
template <typename T>
bool max_pool2d_backward(T* dx, const T* dy, const int64_t* indices, const PoolShape& s);

}  // namespace engine::cpu
