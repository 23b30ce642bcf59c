// Fused GPU ops: one warp per row for the row-wise ones (lanes stride the row, shuffles reduce),
// a grid-stride loop for the Adam update. Layer norm's weight gradients sum rows in fixed-size
// chunks into a workspace, then the chunks in order, so results do not depend on scheduling.
#include <climits>
#include <cmath>

#include "cuda/fused_ops.cuh"

namespace engine::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}
template <typename T>
__device__ __forceinline__ T warp_max(T x) {
  for (int off = 16; off > 0; off /= 2) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }
__device__ __forceinline__ float log_t(float x) { return logf(x); }
__device__ __forceinline__ double log_t(double x) { return log(x); }

// Grid for one warp per row, capped; the kernels loop over rows with a grid stride.
int row_grid(int64_t rows) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return int(blocks < 65535 * 4 ? blocks : 65535 * 4);
}

#define FOR_EACH_ROW(r)                                                                                         \
  for (int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; r < rows;                           \
       r += int64_t(gridDim.x) * kWarpsPerBlock)

// The row's log-sum-exp, max-shifted: every exponent <= 0, finite for logits near 1e4.
template <typename T>
__device__ __forceinline__ T row_lse(const T* x, int64_t cols, int lane, T* max_out) {
  T m = -INFINITY;
  for (int64_t c = lane; c < cols; c += 32) m = fmax(m, x[c]);
  m = warp_max(m);
  T s = 0;
  for (int64_t c = lane; c < cols; c += 32) s += exp_t(x[c] - m);
  s = warp_sum(s);
  if (max_out) *max_out = m;
  return m + log_t(s);
}

template <typename T>
__global__ void softmax_forward_kernel(T* y, const T* x, int64_t rows, int64_t cols, bool log) {
  const int lane = threadIdx.x % 32;
  FOR_EACH_ROW(r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m;
    const T lse = row_lse(xr, cols, lane, &m);
    for (int64_t c = lane; c < cols; c += 32) yr[c] = log ? xr[c] - lse : exp_t(xr[c] - lse);
  }
}

template <typename T>
__global__ void softmax_backward_kernel(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols, bool log) {
  const int lane = threadIdx.x % 32;
  FOR_EACH_ROW(r) {
    const T *dyr = dy + r * cols, *yr = y + r * cols;
    T* dxr = dx + r * cols;
    T s = 0;
    for (int64_t c = lane; c < cols; c += 32) s += log ? dyr[c] : dyr[c] * yr[c];
    s = warp_sum(s);
    for (int64_t c = lane; c < cols; c += 32) dxr[c] = log ? dyr[c] - exp_t(yr[c]) * s : yr[c] * (dyr[c] - s);
  }
}

template <typename T>
__global__ void layer_norm_forward_kernel(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t rows,
                                          int64_t cols, T eps) {
  const int lane = threadIdx.x % 32;
  FOR_EACH_ROW(r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    // Two passes (mean, then the mean of squared deviations): no cancellation for rows far from 0.
    T s = 0;
    for (int64_t c = lane; c < cols; c += 32) s += xr[c];
    const T mu = warp_sum(s) / T(cols);
    T ss = 0;
    for (int64_t c = lane; c < cols; c += 32) ss += (xr[c] - mu) * (xr[c] - mu);
    const T rs = T(1) / sqrt(warp_sum(ss) / T(cols) + eps);
    for (int64_t c = lane; c < cols; c += 32) {
      T v = (xr[c] - mu) * rs;
      if (w) v *= w[c];
      if (b) v += b[c];
      yr[c] = v;
    }
    if (lane == 0) mean[r] = mu, rstd[r] = rs;
  }
}

// dx = rstd·(g − mean(g) − xhat·mean(g∘xhat)) with xhat = (x − mean)·rstd, g = dy·weight.
template <typename T>
__global__ void layer_norm_dx_kernel(T* dx, const T* dy, const T* x, const T* w, const T* mean, const T* rstd,
                                     int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % 32;
  FOR_EACH_ROW(r) {
    const T *dyr = dy + r * cols, *xr = x + r * cols;
    const T mu = mean[r], rs = rstd[r];
    T sg = 0, sgx = 0;
    for (int64_t c = lane; c < cols; c += 32) {
      const T g = w ? dyr[c] * w[c] : dyr[c];
      sg += g;
      sgx += g * (xr[c] - mu) * rs;
    }
    const T mg = warp_sum(sg) / T(cols), mgx = warp_sum(sgx) / T(cols);
    for (int64_t c = lane; c < cols; c += 32) {
      const T g = w ? dyr[c] * w[c] : dyr[c];
      dx[r * cols + c] = rs * (g - mg - (xr[c] - mu) * rs * mgx);
    }
  }
}

constexpr int kChunkRows = 256;  // rows one block sums for the weight gradients

// partial[chunk][c] = Σ over the chunk's rows of dy·xhat (dweight) and dy (dbias). Block (32, 8):
// x picks the column, y strides the chunk's rows; the 8 partial sums are added in a fixed order.
template <typename T>
__global__ void layer_norm_param_partial_kernel(T* pw, T* pb, const T* dy, const T* x, const T* mean, const T* rstd,
                                                int64_t rows, int64_t cols) {
  __shared__ T sw[8][33], sb[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * kChunkRows;
  T aw = 0, ab = 0;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < rows && r < r0 + kChunkRows; r += 8) {
      const T g = dy[r * cols + c];
      aw += g * (x[r * cols + c] - mean[r]) * rstd[r];
      ab += g;
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    for (int i = 1; i < 8; ++i) aw += sw[i][threadIdx.x], ab += sb[i][threadIdx.x];
    pw[int64_t(blockIdx.y) * cols + c] = aw;
    pb[int64_t(blockIdx.y) * cols + c] = ab;
  }
}

template <typename T>
__global__ void sum_chunks_kernel(T* dw, T* db, const T* pw, const T* pb, int64_t chunks, int64_t cols) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  T aw = 0, ab = 0;
  for (int64_t i = 0; i < chunks; ++i) aw += pw[i * cols + c], ab += pb[i * cols + c];
  dw[c] = aw;
  db[c] = ab;
}

template <typename T>
__global__ void cross_entropy_forward_kernel(T* losses, T* lse, const T* logits, const int64_t* target, int64_t rows,
                                             int64_t cols, int64_t ignore_index) {
  const int lane = threadIdx.x % 32;
  FOR_EACH_ROW(r) {
    const T* xr = logits + r * cols;
    const T l = row_lse<T>(xr, cols, lane, nullptr);
    if (lane == 0) {
      const int64_t t = target[r];
      lse[r] = l;
      losses[r] = t == ignore_index ? T(0) : (t >= 0 && t < cols) ? l - xr[t] : T(NAN);
    }
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T* dlogits, const T* dlosses, const T* logits, const int64_t* target,
                                              const T* lse, int64_t rows, int64_t cols, int64_t ignore_index) {
  const int lane = threadIdx.x % 32;
  FOR_EACH_ROW(r) {
    const int64_t t = target[r];
    const T scale = t == ignore_index ? T(0) : dlosses[r];
    const T l = lse[r];
    for (int64_t c = lane; c < cols; c += 32)
      dlogits[r * cols + c] = t == ignore_index ? T(0) : scale * (exp_t(logits[r * cols + c] - l) - T(c == t));
  }
}

template <typename T>
__global__ void adam_kernel(T* param, const T* grad, T* m, T* v, int64_t n, T lr, T beta1, T beta2, T eps, T wd,
                            bool decoupled, T bias1, T bias2) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    T p = param[i], g = grad[i];
    if (wd != T(0)) {
      if (decoupled) p *= T(1) - lr * wd;
      else g += wd * p;
    }
    const T mi = beta1 * m[i] + (T(1) - beta1) * g;
    const T vi = beta2 * v[i] + (T(1) - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - (lr / bias1) * mi / (sqrt(vi / bias2) + eps);
  }
}

}  // namespace

template <typename T>
cudaError_t softmax_forward(T* y, const T* x, int64_t rows, int64_t cols, bool log, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  softmax_forward_kernel<T><<<row_grid(rows), kThreads, 0, stream>>>(y, x, rows, cols, log);
  return cudaGetLastError();
}

template <typename T>
cudaError_t softmax_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols, bool log, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  softmax_backward_kernel<T><<<row_grid(rows), kThreads, 0, stream>>>(dx, dy, y, rows, cols, log);
  return cudaGetLastError();
}

template <typename T>
cudaError_t layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                               int64_t cols, double eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  layer_norm_forward_kernel<T><<<row_grid(rows), kThreads, 0, stream>>>(y, mean, rstd, x, weight, bias, rows, cols,
                                                                       T(eps));
  return cudaGetLastError();
}

template <typename T>
cudaError_t layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, const T* mean,
                                const T* rstd, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows > 0 && cols > 0) {
    layer_norm_dx_kernel<T><<<row_grid(rows), kThreads, 0, stream>>>(dx, dy, x, weight, mean, rstd, rows, cols);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (!weight || cols == 0) return cudaSuccess;
  if (rows == 0) {
    cudaError_t err = cudaMemsetAsync(dweight, 0, cols * sizeof(T), stream);
    return err == cudaSuccess ? cudaMemsetAsync(dbias, 0, cols * sizeof(T), stream) : err;
  }
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  if (chunks > 65535) return cudaErrorInvalidConfiguration;
  T* ws = nullptr;
  cudaError_t err = cudaMallocAsync(reinterpret_cast<void**>(&ws), 2 * chunks * cols * sizeof(T), stream);
  if (err != cudaSuccess) return err;
  const int64_t col_blocks = (cols + 31) / 32;
  if (col_blocks > INT_MAX) err = cudaErrorInvalidConfiguration;
  if (err == cudaSuccess) {
    layer_norm_param_partial_kernel<T><<<dim3(unsigned(col_blocks), unsigned(chunks)), dim3(32, 8), 0, stream>>>(
        ws, ws + chunks * cols, dy, x, mean, rstd, rows, cols);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) {
    sum_chunks_kernel<T><<<unsigned((cols + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        dweight, dbias, ws, ws + chunks * cols, chunks, cols);
    err = cudaGetLastError();
  }
  const cudaError_t freed = cudaFreeAsync(ws, stream);
  return err == cudaSuccess ? freed : err;
}

template <typename T>
cudaError_t cross_entropy_forward(T* losses, T* lse, const T* logits, const int64_t* target, int64_t rows,
                                  int64_t cols, int64_t ignore_index, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  cross_entropy_forward_kernel<T><<<row_grid(rows), kThreads, 0, stream>>>(losses, lse, logits, target, rows, cols,
                                                                          ignore_index);
  return cudaGetLastError();
}

template <typename T>
cudaError_t cross_entropy_backward(T* dlogits, const T* dlosses, const T* logits, const int64_t* target,
                                   const T* lse, int64_t rows, int64_t cols, int64_t ignore_index, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  cross_entropy_backward_kernel<T><<<row_grid(rows), kThreads, 0, stream>>>(dlogits, dlosses, logits, target, lse,
                                                                           rows, cols, ignore_index);
  return cudaGetLastError();
}

template <typename T>
cudaError_t adam_update(T* param, const T* grad, T* m, T* v, int64_t n, int64_t step, double lr, double beta1,
                        double beta2, double eps, double weight_decay, bool decoupled, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  // Bias corrections in double on the host: β^step for large step would lose digits in float.
  const double bias1 = 1.0 - std::pow(beta1, double(step)), bias2 = 1.0 - std::pow(beta2, double(step));
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  adam_kernel<T><<<int(blocks < 65535 * 8 ? blocks : 65535 * 8), kThreads, 0, stream>>>(
      param, grad, m, v, n, T(lr), T(beta1), T(beta2), T(eps), T(weight_decay), decoupled, T(bias1), T(bias2));
  return cudaGetLastError();
}

#define INSTANTIATE(T)                                                                                              \
  template cudaError_t softmax_forward<T>(T*, const T*, int64_t, int64_t, bool, cudaStream_t);                     \
  template cudaError_t softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, bool, cudaStream_t);          \
  template cudaError_t layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double,   \
                                             cudaStream_t);                                                         \
  template cudaError_t layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,        \
                                              int64_t, int64_t, cudaStream_t);                                      \
  template cudaError_t cross_entropy_forward<T>(T*, T*, const T*, const int64_t*, int64_t, int64_t, int64_t,       \
                                                cudaStream_t);                                                      \
  template cudaError_t cross_entropy_backward<T>(T*, const T*, const T*, const int64_t*, const T*, int64_t,        \
                                                 int64_t, int64_t, cudaStream_t);                                   \
  template cudaError_t adam_update<T>(T*, const T*, T*, T*, int64_t, int64_t, double, double, double, double,      \
                                      double, bool, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace engine::cuda
