// CPU attention, flash style: out = softmax(Q·Kᵀ·scale + mask)·V walked block by block with the
// online softmax (never a Tq×Tk matrix), saving the per-row log-sum-exp for the backward pass,
// which recomputes the probabilities from it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine::cpu {

// Shape legend: B batch, H heads, Tq queries, Tk keys, D query/key size, Dv value size.
// A (B, H, T, X) operand: element (b, h, t, x) lives at data[b·sb + h·sh + t·st + x], so the last
// dim is contiguous and the others may have any stride (a head-transposed view needs no copy).
template <typename T>
struct AttentionOperand {
  const T* data;
  int64_t sb, sh, st;
};

// An optional mask broadcastable to (B, H, Tq, Tk), read through its strides (0 on a broadcast
// dim, so it is never materialised). bool: true = may attend; float (T): added to the scores.
struct AttentionMask {
  const void* data = nullptr;  // nullptr: no mask
  bool is_bool = false;
  int64_t sb = 0, sh = 0, sq = 0, sk = 0;
};

template <typename T>
struct AttentionArgs {
  int64_t b, h, tq, tk, d, dv;
  T scale;
  bool causal;                // top-left aligned: query i sees keys j <= i
  AttentionMask mask;
  AttentionOperand<T> q, k, v;  // IN: (B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, Dv)
};

// out (B, H, Tq, Dv) and lse (B, H, Tq), both C-contiguous: OUT. A row that may attend to no key
// gets out = 0 and lse = -inf.
template <typename T>
void attention_forward(T* out, T* lse, const AttentionArgs<T>& a);

// dq (B, H, Tq, D), dk (B, H, Tk, D), dv (B, H, Tk, Dv), C-contiguous: OUT. dout and the forward's
// out are (B, H, Tq, Dv) operands; lse is read at lse.data[b·sb + h·sh + t·st] (its last dim).
// Bitwise identical for every thread count.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const AttentionOperand<T>& dout,
                        const AttentionArgs<T>& a, const AttentionOperand<T>& out,
                        const AttentionOperand<T>& lse);

// The kernel sets, widest first: "avx512-amx" (the float32 forward's block products on AMX tiles,
// the rest as "avx512"), "avx512", "avx2-fma", "portable". Attention uses the widest one the CPU
// runs, or the one attention_use_isa() chose (to test and time each on one machine).
std::vector<std::string> attention_isas();  // those this CPU runs
const char* attention_isa();                // the one in use
// Chooses `isa` (one of attention_isas()), or the widest again for "auto"; throws otherwise.
void attention_use_isa(const std::string& isa);

// ---- Internal: the contract between the driver (attention.cpp) and its ISA kernels ----------
namespace detail {

// Register tile of every block product: kAttnMR rows × nr columns, nr being two vectors of the
// kernels' instruction set (16 fp32 on AVX2 and in the portable kernels, 32 on AVX-512), a
// divisor of kAttnMaxNR.
constexpr int kAttnMR = 6;
template <typename T>
constexpr int kAttnNR = 64 / sizeof(T);  // AVX2 and portable
template <typename T>
constexpr int kAttnMaxNR = 128 / sizeof(T);

// Block products C (+)= A·B on AMX tiles, in bfloat16 parts to float32 accuracy
// (attention_amx.cpp, which lays out the split operands). The splits return whether every value
// was finite; where one is not, the parts are not to be used.
constexpr int kAmxParts = 3;  // bfloat16 parts of a float32
struct AmxKernels {
  void (*begin)();  // configures the calling thread's tiles; call before the products
  void (*end)();    // releases them
  // A (rows_pad × k) from x (rows × k, row stride rs).
  bool (*split_rows)(const float* x, int64_t rs, int64_t rows, int64_t rows_pad, int64_t k,
                     uint32_t* a);
  // B (k × ld) from scale·xᵀ, x (rows × k) giving its first `rows` columns.
  bool (*split_rows_transposed)(const float* x, int64_t rs, int64_t rows, int64_t k, float scale,
                                int64_t ld, uint32_t* b);
  // B (k × cols, row stride ld) from scale·x (k = rows, × cols).
  bool (*split_columns)(const float* x, int64_t rs, int64_t rows, int64_t cols, float scale,
                        int64_t ld, uint32_t* b);
  // A (cols_pad × k) from xᵀ, x (k = rows, × cols); false also where a magnitude tops max_abs.
  bool (*split_columns_transposed)(const float* x, int64_t rs, int64_t rows, int64_t cols,
                                   int64_t cols_pad, float max_abs, uint32_t* a);
  // c (rows × cols, multiples of 32) = A·B, plus c when accumulate. 32×32 regions whose every row
  // i is past every column j + rows_hidden_from are left alone, and in the others runs of 32 k
  // past every column j + k_hidden_from are skipped (causality: their products are zero).
  void (*product)(const uint32_t* a, int64_t rows, const uint32_t* b, int64_t ldb, int64_t cols,
                  int64_t k, bool accumulate, int64_t rows_hidden_from, int64_t k_hidden_from,
                  float* c, int64_t ldc);
  // c[i·ldc + j] *= factor[j] for i < rows, j < cols (a multiple of 16).
  void (*scale_columns)(float* c, int64_t ldc, int64_t rows, int64_t cols, const float* factor);
};

template <typename T>
struct AttentionKernels {
  int nr;  // the tile's columns
  // c[i·ldc + j] = alpha·Σ_{p<kc} a[i·a_rs + p·a_cs]·b[p·b_rs + j] + beta_i·c[i·ldc + j] over one
  // full MR×NR tile, with beta_i = row_beta[i] when row_beta is not nullptr, else beta; a zero
  // beta (not row_beta) never reads c.
  void (*tile)(int64_t kc, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs, T* c,
               int64_t ldc, T alpha, T beta, const T* row_beta);
  // s[p·ld + j] = exp(s[p·ld + j] - shift[j]) for p < rows, j < cols (cols a multiple of nr).
  // exp(-inf) is exactly 0.
  void (*exp_block)(T* s, int64_t ld, int64_t rows, int64_t cols, const T* shift);
  // One step of the online softmax over a score block s (rows × cols, keys × queries), for each
  // query column j: m' = max(m, max_p s[p][j]), shift = m' (0 while m' = -inf, so that a query
  // that has seen only hidden keys gets exp(-inf - 0) = 0, never NaN), alpha = exp(m - shift),
  // s = exp(s - shift), l = alpha·l + Σ_p s; m becomes m'.
  void (*softmax_block)(T* s, int64_t ld, int64_t rows, int64_t cols, T* m, T* l, T* alpha);
  // The softmax backward on a block: ds = p == 0 ? 0 : p·(ds - delta[j]) over rows × cols, a
  // select so that a zero probability (a hidden score) never lets a NaN or stale dP through.
  void (*dscores_block)(const T* p, T* ds, int64_t ld, int64_t rows, int64_t cols, const T* delta);
  // dst[c·ld + r] = src[r·rs + c] for r < rows, c < cols: rows of an operand transposed.
  void (*transpose)(const T* src, int64_t rs, int64_t rows, int64_t cols, T* dst, int64_t ld);
  // The float32 forward on AMX tiles, or nullptr.
  const AmxKernels* amx = nullptr;
};

// Defined in attention.cpp.
AttentionKernels<float> attention_portable_f32();
AttentionKernels<double> attention_portable_f64();
// Defined in attention_avx2.cpp; call only when cpu_has_avx2_fma().
AttentionKernels<float> attention_avx2_f32();
AttentionKernels<double> attention_avx2_f64();
// Defined in attention_avx512.cpp; call only when cpu_has_avx512().
AttentionKernels<float> attention_avx512_f32();
AttentionKernels<double> attention_avx512_f64();
// Defined in attention_amx.cpp; call only when cpu_has_amx_bf16().
const AmxKernels* attention_amx();

}  // namespace detail
}  // namespace engine::cpu
