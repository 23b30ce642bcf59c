// Attention entry points: pick the tensor-core or the SIMT path, compute the backward's per-row
// delta in a workspace, and the float32 <-> bf16 conversions autocast uses.
#include <cuda_bf16.h>

#include "cuda/attention.cuh"
#include "cuda/attention_common.cuh"
#include "cuda/math_mode.h"

namespace engine::cuda {

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
// The tensor-core kernels store float pairs (8-byte stores) into their outputs.
bool aligned8(const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; }

template <typename T, typename A>
cudaError_t backward_with(const AttentionArgs& a, attn::Buffers buf, bool mma, cudaStream_t stream) {
  const int64_t rows = a.b * a.h * a.tq;
  A* delta = nullptr;
  if (rows > 0) {
    cudaError_t err = cudaMallocAsync(reinterpret_cast<void**>(&delta), rows * sizeof(A), stream);
    if (err != cudaSuccess) return err;
  }
  cudaError_t err = attn::launch_delta(delta, static_cast<const T*>(buf.dout), static_cast<const A*>(buf.out), rows,
                                       a.dv, stream);
  buf.delta = delta;
  if (err == cudaSuccess) err = mma ? attn::mma_backward(a, buf, stream) : attn::simt_backward<T, A>(a, buf, stream);
  if (delta) {
    const cudaError_t freed = cudaFreeAsync(delta, stream);
    if (err == cudaSuccess) err = freed;
  }
  return err;
}

}  // namespace

bool attention_uses_tensor_cores(const AttentionArgs& a) {
  return a.elem == AttnElem::bf16 && !a.force_simt && a.d == a.dv && (a.d == 32 || a.d == 64 || a.d == 128) &&
         a.tq > 0 && a.tk > 0 && aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && tensor_cores_supported();
}

cudaError_t attention_forward(const AttentionArgs& a, void* out, void* lse, cudaStream_t stream) {
  if (a.b * a.h * a.tq == 0) return cudaSuccess;
  attn::Buffers buf;
  buf.o = out, buf.l = lse;
  switch (a.elem) {
    case AttnElem::f32: return attn::simt_forward<float, float>(a, buf, stream);
    case AttnElem::f64: return attn::simt_forward<double, double>(a, buf, stream);
    case AttnElem::bf16:
      return attention_uses_tensor_cores(a) && aligned8(out) ? attn::mma_forward(a, buf, stream)
                                                             : attn::simt_forward<__nv_bfloat16, float>(a, buf, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t attention_backward(const AttentionArgs& a, const void* dout, const void* out, const void* lse, void* dq,
                               void* dk, void* dv, cudaStream_t stream) {
  if (a.b * a.h == 0) return cudaSuccess;
  attn::Buffers buf;
  buf.dout = dout, buf.out = out, buf.lse = lse, buf.dq = dq, buf.dk = dk, buf.dv = dv;
  switch (a.elem) {
    case AttnElem::f32: return backward_with<float, float>(a, buf, false, stream);
    case AttnElem::f64: return backward_with<double, double>(a, buf, false, stream);
    case AttnElem::bf16: {
      const bool mma =
          attention_uses_tensor_cores(a) && aligned16(dout) && aligned8(dq) && aligned8(dk) && aligned8(dv);
      return backward_with<__nv_bfloat16, float>(a, buf, mma, stream);
    }
  }
  return cudaErrorInvalidValue;
}

namespace {

__global__ void float_to_bf16_kernel(uint16_t* out, const float* in, int64_t n) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
}

__global__ void bf16_to_float_kernel(float* out, const uint16_t* in, int64_t n) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = __bfloat162float(__ushort_as_bfloat16(in[i]));
}

int grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return int(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

cudaError_t float_to_bf16(uint16_t* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  float_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, in, n);
  return cudaGetLastError();
}

cudaError_t bf16_to_float(float* out, const uint16_t* in, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  bf16_to_float_kernel<<<grid_for(n, 256), 256, 0, stream>>>(out, in, n);
  return cudaGetLastError();
}

}  // namespace engine::cuda
