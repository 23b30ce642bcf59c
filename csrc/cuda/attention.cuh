// GPU scaled dot-product attention, flash style: softmax(Q·Kᵀ·scale + mask)·V computed tile by tile
// with an online softmax, never materializing the Tq×Tk scores; the forward saves the per-row
// log-sum-exp, the backward recomputes the probabilities from it.
//
// Shapes (numpy_ref.attention_forward's): q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv),
// out (B, H, Tq, Dv), lse (B, H, Tq); all C-contiguous. Storage: float32, float64, or bf16 (bit
// patterns in uint16 arrays) for q, k, v and dout; out, lse, dq, dk, dv are in the accumulation
// type (float64 for float64 inputs, float32 otherwise).
//
// Paths: bf16 with D == Dv in {32, 64, 128} on sm_80+ runs on tensor cores (attention_mma.cu);
// every other case runs the SIMT kernels (attention_simt.cu), which take any head size.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

enum class AttnElem { f32, f64, bf16 };
enum class MaskKind { none, boolean, additive };

// mask[b, h, i, j] at ptr + b·sb + h·sh + i·sq + j·sk (element strides; 0 broadcasts a dim).
// boolean: one byte per element, nonzero = may attend. additive: the accumulation type, added to
// the scaled scores.
struct AttentionMask {
  MaskKind kind = MaskKind::none;
  const void* ptr = nullptr;
  int64_t sb = 0, sh = 0, sq = 0, sk = 0;
};

struct AttentionArgs {
  AttnElem elem = AttnElem::f32;
  int64_t b = 0, h = 0, tq = 0, tk = 0, d = 0, dv = 0;
  double scale = 1.0;
  bool causal = false;  // top-left aligned: query i sees keys j <= i
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  AttentionMask mask;
  bool force_simt = false;  // tests compare the tensor-core kernels with the SIMT ones
};

// out (B, H, Tq, Dv) and lse (B, H, Tq). A row that may attend nowhere gets out = 0, lse = -inf.
cudaError_t attention_forward(const AttentionArgs& a, void* out, void* lse, cudaStream_t stream);

// dq, dk, dv from dout (stored like q), and the forward's out and lse. Deterministic: no atomics;
// dk/dv and dq are computed by two kernels that each recompute the probabilities.
cudaError_t attention_backward(const AttentionArgs& a, const void* dout, const void* out, const void* lse, void* dq,
                               void* dk, void* dv, cudaStream_t stream);

// Whether the tensor-core kernels serve these arguments (for tests and the benchmark's labels).
bool attention_uses_tensor_cores(const AttentionArgs& a);

// Conversions between float32 and bf16 bit patterns (round to nearest even; NaN stays NaN).
cudaError_t float_to_bf16(uint16_t* out, const float* in, int64_t n, cudaStream_t stream);
cudaError_t bf16_to_float(float* out, const uint16_t* in, int64_t n, cudaStream_t stream);

}  // namespace engine::cuda
