// Device-side pieces both attention paths share: element conversion, the mask rule, and the
// per-row delta = rowsum(dO ∘ O) of the backward pass.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/attention.cuh"

namespace engine::cuda::attn {

template <typename A>
__device__ __forceinline__ A to_acc(float x) { return A(x); }
template <typename A>
__device__ __forceinline__ A to_acc(double x) { return A(x); }
template <typename A>
__device__ __forceinline__ A to_acc(__nv_bfloat16 x) { return A(__bfloat162float(x)); }

template <typename A>
__device__ __forceinline__ A neg_inf() { return -INFINITY; }

// Applies the mask at (bh, i, j) to the scaled score s: returns -inf where the element may not
// attend (a select, so a NaN score in a masked-out place never leaks), s + mask for an additive
// mask. i, j must be inside (Tq, Tk).
template <typename A>
__device__ __forceinline__ A apply_mask(const AttentionMask& m, int64_t b, int64_t h, int64_t i, int64_t j, A s) {
  const int64_t at = b * m.sb + h * m.sh + i * m.sq + j * m.sk;
  if (m.kind == MaskKind::boolean) return static_cast<const uint8_t*>(m.ptr)[at] ? s : neg_inf<A>();
  if (m.kind == MaskKind::additive) return s + static_cast<const A*>(m.ptr)[at];
  return s;
}

// delta[r] = Σ_c dout[r, c]·out[r, c] over rows of Dv values: one warp per row.
template <typename T, typename A>
__global__ void attention_delta_kernel(A* __restrict__ delta, const T* __restrict__ dout, const A* __restrict__ out,
                                       int64_t rows, int64_t dv) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    A sum = 0;
    for (int64_t c = lane; c < dv; c += 32) sum += to_acc<A>(dout[r * dv + c]) * out[r * dv + c];
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) delta[r] = sum;
  }
}

template <typename T, typename A>
cudaError_t launch_delta(A* delta, const T* dout, const A* out, int64_t rows, int64_t dv, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = (rows + kThreads / 32 - 1) / (kThreads / 32);
  attention_delta_kernel<T, A><<<int(blocks < 65535 * 4 ? blocks : 65535 * 4), kThreads, 0, stream>>>(
      delta, dout, out, rows, dv);
  return cudaGetLastError();
}

// Raises a kernel's dynamic shared-memory limit when it needs more than the default 48 KiB.
template <typename Kernel>
cudaError_t allow_shared_memory(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

// The largest dynamic shared memory one block of the current device may use.
inline size_t max_shared_memory_per_block() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    cudaGetLastError();
    return 48 * 1024;
  }
  return size_t(bytes);
}

}  // namespace engine::cuda::attn

namespace engine::cuda::attn {

// What a path's launcher receives: the arguments with typed pointers left to the path.
struct Buffers {
  const void* dout = nullptr;  // stored like q
  const void* out = nullptr;   // accumulation type
  const void* lse = nullptr;   // accumulation type
  const void* delta = nullptr; // accumulation type, rowsum(dout ∘ out)
  void* o = nullptr;           // forward: out
  void* l = nullptr;           // forward: lse
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
};

// The SIMT kernels: any head sizes, float32 (T = A = float), float64, or bf16 storage (T =
// __nv_bfloat16, A = float). forward writes o, l; backward (delta given) writes dq, dk, dv.
template <typename T, typename A>
cudaError_t simt_forward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream);
template <typename T, typename A>
cudaError_t simt_backward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream);

// The tensor-core kernels: bf16 storage, D == Dv == 32, 64 or 128, Tq, Tk >= 1, 16-byte aligned
// q, k, v, dout.
cudaError_t mma_forward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream);
cudaError_t mma_backward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream);

}  // namespace engine::cuda::attn
