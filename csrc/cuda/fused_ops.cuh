// Fused GPU ops that replace several CuPy launches each: row softmax / log-softmax, layer norm,
// cross-entropy and the Adam/AdamW parameter update, float32 and float64, with numpy_ref's formulas.
// Row-wise kernels take C-contiguous (rows, cols) matrices and give each row one warp.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

// y = softmax(x) over each row, or log_softmax when `log`, in the max-shifted form.
template <typename T>
cudaError_t softmax_forward(T* y, const T* x, int64_t rows, int64_t cols, bool log, cudaStream_t stream);
// dx from dy and the forward's y: softmax y∘(dy − Σ dy∘y); log_softmax dy − exp(y)·Σ dy.
template <typename T>
cudaError_t softmax_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols, bool log, cudaStream_t stream);

// y = (x − mean)·rstd·weight + bias per row (weight, bias may be null); mean, rstd (rows,).
template <typename T>
cudaError_t layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                               int64_t cols, double eps, cudaStream_t stream);
// dx per row; dweight, dbias (cols,) summed over rows in a fixed order (deterministic) when
// weight is not null.
template <typename T>
cudaError_t layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, const T* mean,
                                const T* rstd, int64_t rows, int64_t cols, cudaStream_t stream);

// losses[r] = lse[r] − logits[r, target[r]] (0 where target == ignore_index; NaN for a target
// outside [0, cols), which is never read out of bounds), lse the rows' log-sum-exp.
template <typename T>
cudaError_t cross_entropy_forward(T* losses, T* lse, const T* logits, const int64_t* target, int64_t rows,
                                  int64_t cols, int64_t ignore_index, cudaStream_t stream);
// dlogits = dlosses[r]·(softmax(logits) − onehot(target)), zero rows where ignored.
template <typename T>
cudaError_t cross_entropy_backward(T* dlogits, const T* dlosses, const T* logits, const int64_t* target,
                                   const T* lse, int64_t rows, int64_t cols, int64_t ignore_index, cudaStream_t stream);

// One Adam (decoupled = false) or AdamW step on n elements, in place on param, m, v (PyTorch's
// formulas: param −= lr·m̂ / (√v̂ + eps)).
template <typename T>
cudaError_t adam_update(T* param, const T* grad, T* m, T* v, int64_t n, int64_t step, double lr, double beta1,
                        double beta2, double eps, double weight_decay, bool decoupled, cudaStream_t stream);

}  // namespace engine::cuda
