// Host-side names shared by the CUDA kernels and their bindings: how a matrix product multiplies
// (SIMT FMA or tensor cores) and which activation its epilogue applies.
#pragma once

namespace engine::cuda {

// simt: fp32/fp64 FMA. tf32 / bf16: tensor cores (mma.sync) with the float32 operands rounded to
// TF32 (10-bit mantissa) or bf16 (7-bit mantissa) and fp32 accumulation; float32 only, sm_80+.
enum class Math { simt, tf32, bf16 };
enum class Activation { none = 0, relu = 1, gelu = 2 };

// Whether the current device has the mma.sync TF32/bf16 instructions (sm_80 and newer); on an
// older device the tensor-core modes run as simt.
bool tensor_cores_supported();
// Number of multiprocessors of the current device (to size split-K).
int multiprocessor_count();

}  // namespace engine::cuda
