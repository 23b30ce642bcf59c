// CPU attention driver, flash style: for each (batch, head, block of queries) the keys and values
// are walked in blocks with the online softmax, so only a score block per thread ever exists; the
// backward recomputes each block's probabilities from the saved log-sum-exp. Block products run
// on an MR×NR register tile (attention_avx512.cpp, attention_avx2.cpp, or the portable one below).
//
// Layout of a score block: keys are rows and queries columns (Sᵀ, ld = kBlockQ), so per-query
// quantities (running max, sum, lse, rowsum(dO∘O)) are vectors along a row, and the products
// read K, V, Q, dO in place (a zero-padded copy only at ragged edges) plus one transposed copy of
// the query block: Sᵀ = K·Qᵀ, O += P·V with A(i, p) = Sᵀ[p][i], dV += Pᵀ·dO, ...
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "common/cpu_features.h"
#include "common/isa_choice.h"
#include "common/parallel.h"
#include "common/workspace.h"

namespace engine::cpu {
namespace {

using detail::AttentionKernels;
constexpr int MR = detail::kAttnMR;

// ---- Blocking ------------------------------------------------------------------------------
// NOTE: sized for AMD Zen 3 (32 KiB L1d, 512 KiB L2 per core) at D = Dv = 64 in float32:
//  kBlockQ = 96 queries: the Qᵀ block (D×96, 24 KiB) and the output accumulator (96×Dv, 24 KiB)
//      stay in L2 while all key blocks pass; a multiple of MR and of every NR (up to 32 fp32, 16
//      fp64), so no tile straddles a block edge.
//  kBlockK = 96 keys: the reduction length of the P·V tiles, long enough that their epilogue
//      (reading and writing the 6×16 accumulator) costs a few percent; the score block (96×96,
//      36 KiB) lives between L1 and L2, while the tiles that fill it keep their 16-query panel
//      of Qᵀ (4 KiB) in L1 and stream K past it. A multiple of MR.
constexpr int64_t kBlockQ = 96, kBlockK = 96;
static_assert(kBlockQ % 32 == 0 && kBlockK % 32 == 0, "blocks hold whole 32×32 AMX regions");
static_assert(kBlockQ % MR == 0 && kBlockQ % detail::kAttnMaxNR<float> == 0 &&
                  kBlockQ % detail::kAttnMaxNR<double> == 0 && kBlockK % MR == 0,
              "blocks hold whole tiles");

// Below this many scores (B·H·Tq·Tk) one thread does everything: waking a team costs a few
// microseconds, about what a second thread saves on a problem this small.
constexpr int64_t kSerialScores = int64_t{1} << 14;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

template <typename T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// ---- Portable kernels ----------------------------------------------------------------------
template <typename T>
void tile_portable(int64_t kc, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs,
                   T* c, int64_t ldc, T alpha, T beta, const T* row_beta) {
  constexpr int NR = detail::kAttnNR<T>;
  T acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p, a += a_cs, b += b_rs)
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i * a_rs];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  for (int i = 0; i < MR; ++i) {
    const T bi = row_beta ? row_beta[i] : beta;
    for (int j = 0; j < NR; ++j) {
      T r = alpha * acc[i][j];
      if (row_beta || beta != T(0)) r += bi * c[i * ldc + j];
      c[i * ldc + j] = r;
    }
  }
}

// exp(x), with 0 for results below the smallest normal number, as the SIMD kernels give them: a
// subnormal probability would slow every product that reads it by orders of magnitude.
template <typename T>
T exp_normal(T x) {
  const T e = std::exp(x);
  return e < std::numeric_limits<T>::min() ? T(0) : e;
}

template <typename T>
void exp_block_portable(T* s, int64_t ld, int64_t rows, int64_t cols, const T* shift) {
  for (int64_t p = 0; p < rows; ++p)
    for (int64_t j = 0; j < cols; ++j) s[p * ld + j] = exp_normal(s[p * ld + j] - shift[j]);
}

template <typename T>
void softmax_block_portable(T* s, int64_t ld, int64_t rows, int64_t cols, T* m, T* l, T* alpha) {
  for (int64_t j = 0; j < cols; ++j) alpha[j] = m[j];  // the old max, for now
  for (int64_t p = 0; p < rows; ++p)
    for (int64_t j = 0; j < cols; ++j) m[j] = std::max(m[j], s[p * ld + j]);
  T shift[detail::kAttnNR<T>];
  for (int64_t j0 = 0; j0 < cols; j0 += detail::kAttnNR<T>) {
    for (int j = 0; j < detail::kAttnNR<T>; ++j) {
      const T mx = m[j0 + j];
      shift[j] = mx == kNegInf<T> ? T(0) : mx;
      alpha[j0 + j] = exp_normal(alpha[j0 + j] - shift[j]);
      l[j0 + j] *= alpha[j0 + j];
    }
    for (int64_t p = 0; p < rows; ++p)
      for (int j = 0; j < detail::kAttnNR<T>; ++j) {
        T& x = s[p * ld + j0 + j];
        x = exp_normal(x - shift[j]);
        l[j0 + j] += x;
      }
  }
}

template <typename T>
void dscores_block_portable(const T* p, T* ds, int64_t ld, int64_t rows, int64_t cols,
                            const T* delta) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const T pj = p[r * ld + j];
      T& d = ds[r * ld + j];
      d = pj == T(0) ? T(0) : pj * (d - delta[j]);
    }
}

template <typename T>
void transpose_portable(const T* src, int64_t rs, int64_t rows, int64_t cols, T* dst, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = src[r * rs + c];
}

template <typename T>
AttentionKernels<T> portable_kernels() {
  return {detail::kAttnNR<T>,         &tile_portable<T>,          &exp_block_portable<T>,
          &softmax_block_portable<T>, &dscores_block_portable<T>, &transpose_portable<T>};
}

#ifdef ENGINE_HAVE_AMX
IsaChoice g_isa("attention_use_isa", {"portable", "avx2-fma", "avx512", "avx512-amx"});
#else
IsaChoice g_isa("attention_use_isa", {"portable", "avx2-fma", "avx512"});
#endif

template <typename T>
AttentionKernels<T> select_kernels() {
  switch (g_isa.get()) {
#ifdef ENGINE_HAVE_AMX
    case Isa::avx512_amx: {
      AttentionKernels<T> kn;
      if constexpr (sizeof(T) == 4) {
        kn = detail::attention_avx512_f32();
        kn.amx = detail::attention_amx();
      } else {
        kn = detail::attention_avx512_f64();
      }
      return kn;
    }
#endif
    case Isa::avx512:
      if constexpr (sizeof(T) == 4) return detail::attention_avx512_f32();
      else return detail::attention_avx512_f64();
    case Isa::avx2:
      if constexpr (sizeof(T) == 4) return detail::attention_avx2_f32();
      else return detail::attention_avx2_f64();
    default:
      return portable_kernels<T>();
  }
}

// An m×n corner (m <= MR, n <= NR) of a tile whose C lives in the caller's array: the full-size
// kernel runs on a stack tile, so edge elements get exactly the arithmetic of interior ones.
template <typename T>
void tile_into(const AttentionKernels<T>& kn, int64_t kc, const T* a, int64_t a_rs, int64_t a_cs,
               const T* b, int64_t b_rs, T* c, int64_t ldc, int64_t m, int64_t n, T alpha, T beta) {
  const int NR = kn.nr;
  if (m == MR && n == NR)
    return kn.tile(kc, a, a_rs, a_cs, b, b_rs, c, ldc, alpha, beta, nullptr);
  alignas(64) T t[MR * detail::kAttnMaxNR<T>] = {};
  if (beta != T(0))
    for (int64_t i = 0; i < m; ++i) std::copy(c + i * ldc, c + i * ldc + n, t + i * NR);
  kn.tile(kc, a, a_rs, a_cs, b, b_rs, t, NR, alpha, beta, nullptr);
  for (int64_t i = 0; i < m; ++i) std::copy(t + i * NR, t + i * NR + n, c + i * ldc);
}

// Per calling thread, grown on demand and kept: one set of block buffers per thread of the team.
thread_local Workspace t_workspace;

// Carves consecutive 64-byte aligned buffers out of one block of memory (or only counts them).
template <typename T>
class Carver {
 public:
  explicit Carver(T* base) : base_(base) {}
  T* take(int64_t n) {
    T* p = base_ ? base_ + used_ : nullptr;
    used_ += round_up(std::max<int64_t>(n, 1), 64 / sizeof(T));
    return p;
  }
  int64_t used() const { return used_; }

 private:
  T* base_;
  int64_t used_ = 0;
};

// ---- Masks ---------------------------------------------------------------------------------
// Hides or shifts the scores of one block: Sᵀ[p][j] is key k0+p against query q0+j. A bool mask
// hides with -inf (a select, so a NaN score that is masked out never leaks), a float mask is
// added, and causality hides keys after the query. Causal hiding covers all `cols` columns, so
// score tiles skipped as wholly hidden need no other fill.
template <typename T>
void apply_masks(const AttentionArgs<T>& a, int64_t b, int64_t h, int64_t q0, int64_t qb,
                 int64_t k0, int64_t kb, int64_t cols, T* s) {
  const AttentionMask& m = a.mask;
  if (m.data) {
    const int64_t base = b * m.sb + h * m.sh + q0 * m.sq;
    for (int64_t p = 0; p < kb; ++p) {
      T* sp = s + p * kBlockQ;
      const int64_t off = base + (k0 + p) * m.sk;
      if (m.is_bool) {
        const uint8_t* row = static_cast<const uint8_t*>(m.data) + off;
        for (int64_t j = 0; j < qb; ++j)
          if (!row[j * m.sq]) sp[j] = kNegInf<T>;
      } else {
        const T* row = static_cast<const T*>(m.data) + off;
        for (int64_t j = 0; j < qb; ++j) sp[j] += row[j * m.sq];
      }
    }
  }
  if (a.causal)
    for (int64_t p = 0; p < kb; ++p)
      std::fill(s + p * kBlockQ, s + p * kBlockQ + std::clamp<int64_t>(k0 + p - q0, 0, cols),
                kNegInf<T>);
}

// Sᵀ = alpha·A·Bᵀ for a score-shaped block: A (keys × kc, rows ld_a, zero past kb up to MR),
// Bᵀ (kc × kBlockQ, row stride kBlockQ). Tiles wholly above the causal diagonal are skipped.
template <typename T>
void score_tiles(const AttentionKernels<T>& kn, const AttentionArgs<T>& a, int64_t q0, int64_t k0,
                 int64_t kb, int64_t cols, int64_t kc, const T* am, int64_t ld_a, const T* bt,
                 T alpha, T* s) {
  const int NR = kn.nr;
  for (int64_t jp = 0; jp < cols; jp += NR)
    for (int64_t ip = 0; ip < kb; ip += MR) {
      if (a.causal && k0 + ip > q0 + jp + NR - 1) break;  // every later key tile is hidden too
      kn.tile(kc, am + ip * ld_a, ld_a, 1, bt + jp, kBlockQ, s + ip * kBlockQ + jp, kBlockQ, alpha,
              T(0), nullptr);
    }
}

// Row `t` of a (B, H, T, X) operand.
template <typename T>
const T* row_of(const AttentionOperand<T>& x, int64_t b, int64_t h, int64_t t) {
  return x.data + b * x.sb + h * x.sh + t * x.st;
}

// Rows [t0, t0 + n) of an operand copied to dst (row stride ld >= x), zero in columns x..ld-1
// and in rows n..n_pad-1.
template <typename T>
void copy_rows(const AttentionOperand<T>& src, int64_t b, int64_t h, int64_t t0, int64_t n,
               int64_t n_pad, int64_t x, int64_t ld, T* dst) {
  for (int64_t r = 0; r < n_pad; ++r) {
    T* d = dst + r * ld;
    if (r < n) std::copy(row_of(src, b, h, t0 + r), row_of(src, b, h, t0 + r) + x, d);
    std::fill(d + (r < n ? x : 0), d + ld, T(0));
  }
}

// Rows [t0, t0 + n) of an operand (x columns) for the block products, with their row stride in
// *ld: in place when every tile reads only those rows and columns, else a zero-padded copy in buf.
// As an A operand tiles read whole MR-row slices (n a multiple of MR); as a B operand whole
// NR-column panels (x a multiple of NR, the tiles' width).
template <typename T>
const T* block_rows(const AttentionOperand<T>& src, int64_t b, int64_t h, int64_t t0, int64_t n,
                    int64_t x, bool as_a, bool as_b, int NR, T* buf, int64_t* ld) {
  if ((!as_a || n % MR == 0) && (!as_b || x % NR == 0)) {
    *ld = src.st;
    return row_of(src, b, h, t0);
  }
  *ld = as_b ? round_up(x, NR) : x;
  copy_rows(src, b, h, t0, n, as_a ? round_up(n, MR) : n, x, *ld, buf);
  return buf;
}

// Asks for rows [t0, t0 + n) of an operand (x columns) to be brought towards L2, one prefetch per
// cache line: the next key block's K and V are fetched a slice per row of P·V tiles, so the
// score tiles do not wait on the first touch of every row, when a head's K and V outgrow half of
// L2 and do not stay there from one query block to the next (512 KiB at T = 1024: on a 512 KiB
// L2, not on a 2 MiB one, where the prefetches cost 1.6% of the time and saved nothing).
template <typename T>
void prefetch_rows(const AttentionOperand<T>& src, int64_t b, int64_t h, int64_t t0, int64_t n,
                   int64_t x) {
  constexpr int64_t kLine = 64;
  for (int64_t t = t0; t < t0 + n; ++t) {
    const char* row = reinterpret_cast<const char*>(row_of(src, b, h, t));
    for (int64_t byte = 0; byte < x * int64_t(sizeof(T)); byte += kLine)
      __builtin_prefetch(row + byte, 0, 2);
  }
}

// The transpose of rows [t0, t0 + n): dst[x·kBlockQ + r], zero for r in n..kBlockQ-1.
template <typename T>
void copy_rows_transposed(const AttentionKernels<T>& kn, const AttentionOperand<T>& src, int64_t b,
                          int64_t h, int64_t t0, int64_t n, int64_t x, T* dst) {
  kn.transpose(row_of(src, b, h, t0), src.st, n, x, dst, kBlockQ);
  for (int64_t c = 0; c < x; ++c) std::fill(dst + c * kBlockQ + n, dst + (c + 1) * kBlockQ, T(0));
}

// ---- Forward -------------------------------------------------------------------------------
template <typename T>
struct ForwardBuffers {
  T *qt, *k, *v, *s, *o, *m, *l, *alpha;

  static int64_t carve(Carver<T>& c, const AttentionArgs<T>& a, int nr, ForwardBuffers* w) {
    const int64_t dvp = round_up(a.dv, nr);
    ForwardBuffers x{c.take(a.d * kBlockQ), c.take(kBlockK * a.d), c.take(kBlockK * dvp),
                     c.take(kBlockK * kBlockQ), c.take(kBlockQ * dvp), c.take(kBlockQ),
                     c.take(kBlockQ), c.take(kBlockQ)};
    if (w) *w = x;
    return c.used();
  }
};

// Rows [q0, q0 + qb) of head (b, h) of out and lse from the softmax's unnormalised o (o_scale·o,
// row stride ldo; it may be those rows of out themselves), its maxima m and sums l.
template <typename T>
void write_rows(T* out, T* lse, const AttentionArgs<T>& a, int64_t b, int64_t h, int64_t q0,
                int64_t qb, const T* o, int64_t ldo, T o_scale, const T* m, const T* l) {
  T* orow = out + ((b * a.h + h) * a.tq + q0) * a.dv;
  T* lrow = lse + (b * a.h + h) * a.tq + q0;
  for (int64_t i = 0; i < qb; ++i) {
    T* dst = orow + i * a.dv;
    if (l[i] == T(0)) {  // no visible key: out = 0, lse = -inf
      std::fill(dst, dst + a.dv, T(0));
      lrow[i] = kNegInf<T>;
    } else {
      const T inv = o_scale / l[i];
      for (int64_t c = 0; c < a.dv; ++c) dst[c] = o[i * ldo + c] * inv;
      lrow[i] = m[i] + std::log(l[i]);
    }
  }
}

// One block of queries [q0, q0 + qb) of head (b, h): the online softmax over key blocks.
template <typename T>
void forward_block(T* out, T* lse, const AttentionArgs<T>& a, const AttentionKernels<T>& kn,
                   int64_t b, int64_t h, int64_t q0, const ForwardBuffers<T>& w) {
  const int NR = kn.nr;
  const int64_t qb = std::min(kBlockQ, a.tq - q0), cols = round_up(qb, NR);
  const int64_t dvp = round_up(a.dv, NR);
  copy_rows_transposed(kn, a.q, b, h, q0, qb, a.d, w.qt);
  std::fill(w.o, w.o + kBlockQ * dvp, T(0));
  std::fill(w.m, w.m + kBlockQ, kNegInf<T>);
  std::fill(w.l, w.l + kBlockQ, T(0));

  const int64_t kend = a.causal ? std::min(a.tk, q0 + qb) : a.tk;
  const bool kv_beyond_l2 =
      kend * (a.d + a.dv) * int64_t(sizeof(T)) > int64_t(cpu_cache_sizes().l2) / 2;
  for (int64_t k0 = 0; k0 < kend; k0 += kBlockK) {
    const int64_t kb = std::min(kBlockK, kend - k0);
    int64_t ldk, ldv;
    const T* k = block_rows(a.k, b, h, k0, kb, a.d, true, false, NR, w.k, &ldk);
    const T* v = block_rows(a.v, b, h, k0, kb, a.dv, false, true, NR, w.v, &ldv);
    // Sᵀ = scale·K·Qᵀ, then the masks, then the online softmax step:
    // m' = max(m, block max), P = exp(S - m'), l' = l·exp(m - m') + Σ P.
    score_tiles(kn, a, q0, k0, kb, cols, a.d, k, ldk, w.qt, a.scale, w.s);
    apply_masks(a, b, h, q0, qb, k0, kb, cols, w.s);
    kn.softmax_block(w.s, kBlockQ, kb, cols, w.m, w.l, w.alpha);
    // O' = O·exp(m - m') + P·V, A(i, p) = Sᵀ[p][i]; under causality query i stops at key i
    // (a tile with no visible key still rescales its rows). Each row of tiles also prefetches a
    // slice of the next key block.
    const int64_t next = k0 + kBlockK, next_rows = std::clamp<int64_t>(kend - next, 0, kBlockK);
    const int64_t slice = ceil_div(next_rows, ceil_div(qb, MR));
    for (int64_t i0 = 0; i0 < qb; i0 += MR) {
      if (kv_beyond_l2) {
        const int64_t first = std::min(next_rows, i0 / MR * slice);
        const int64_t count = std::min(slice, next_rows - first);
        prefetch_rows(a.k, b, h, next + first, count, a.d);
        prefetch_rows(a.v, b, h, next + first, count, a.dv);
      }
      const int64_t kc = a.causal ? std::clamp<int64_t>(q0 + i0 + MR - k0, 0, kb) : kb;
      for (int64_t jv = 0; jv < dvp; jv += NR)
        kn.tile(kc, w.s + i0, 1, kBlockQ, v + jv, ldv, w.o + i0 * dvp + jv, dvp, T(1), T(1),
                w.alpha + i0);
    }
  }

  write_rows(out, lse, a, b, h, q0, qb, w.o, dvp, T(1), w.m, w.l);
}

// ---- Forward on AMX tiles (float32) -------------------------------------------------------
// forward_block's walk with its two block products on AMX: Sᵀ = K·(scale·Q)ᵀ, and the output
// kept transposed, Oᵀ' = Oᵀ·diag(alpha) + Vᵀ·(2^32·P)ᵀ, so that P as the softmax leaves it (keys
// × queries) is a B operand without a transpose. A group of query blocks walks the keys
// together: splitting a key block's K and V costs about what its two products save on tiles, so
// they are split once for the whole group (B8 H8 T1024 on an Intel Xeon, 1 thread: 1.02x the
// FMA kernels with a split per query block, 1.20x with groups of 4, 1.23x with groups of 8).
// NOTE: P is split times 2^32 (exactly; the output is scaled back) so that the bfloat16 parts of
// even the smallest probability are normal numbers, which the tiles do not flush to zero: each
// probability then counts to a few ulp, however small. That holds the output below 2^32·|V|·Tk,
// so a V with a magnitude above 2^64 takes forward_block instead.
constexpr float kProbScale = 4294967296.0f, kMaxAbsV = 18446744073709551616.0f;

// At most 8 query blocks a group, and no more than keep its per-block state (split Qᵀ and Oᵀ,
// 60 KiB at D = Dv = 64) within 512 KiB, a quarter of the L2 of the CPUs that have AMX.
int64_t amx_group_blocks(const AttentionArgs<float>& a) {
  const int64_t per_block = (detail::kAmxParts * round_up(a.d, 32) / 2 + round_up(a.dv, 32)) *
                            kBlockQ * int64_t(sizeof(float));
  return std::clamp<int64_t>((int64_t{512} << 10) / std::max<int64_t>(per_block, 1), 1, 8);
}

struct AmxForwardBuffers {
  uint32_t *keys, *values, *probs;
  uint32_t* queries;  // per query block of the group: split scale·Qᵀ
  float *ot, *m, *l;  // per query block: Oᵀ (round_up(Dv, 32) × kBlockQ), running max and sum
  int64_t query_words, ot_size;

  static int64_t carve(Carver<float>& c, const AttentionArgs<float>& a, int64_t group,
                       AmxForwardBuffers* w) {
    constexpr int64_t parts = detail::kAmxParts;
    const int64_t dw = round_up(a.d, 32) / 2, dv32 = round_up(a.dv, 32);
    auto words = [&](int64_t n) { return reinterpret_cast<uint32_t*>(c.take(n)); };
    AmxForwardBuffers x{words(parts * kBlockK * dw), words(parts * dv32 * kBlockK / 2),
                        words(parts * kBlockK / 2 * kBlockQ), words(group * parts * dw * kBlockQ),
                        c.take(group * dv32 * kBlockQ), c.take(group * kBlockQ),
                        c.take(group * kBlockQ), parts * dw * kBlockQ, dv32 * kBlockQ};
    if (w) *w = x;
    return c.used();
  }
};

// A thread's buffers for the forward, carved from c (or only counted, c over nullptr): the AMX
// ones, for groups of `group` query blocks, only where kn has AMX. Returns c.used().
template <typename T>
int64_t carve_forward(Carver<T>& c, const AttentionArgs<T>& a, const AttentionKernels<T>& kn,
                      int64_t group, ForwardBuffers<T>* w, AmxForwardBuffers* amx_w) {
  ForwardBuffers<T>::carve(c, a, kn.nr, w);
  if constexpr (sizeof(T) == 4)
    if (kn.amx) AmxForwardBuffers::carve(c, a, group, amx_w);
  return c.used();
}

// Query blocks [q0, q0 + n·kBlockQ) ∩ [0, Tq) of head (b, h), n at most the group w holds.
// Returns a bit per block, set where a value that block reads (its Q, its P, the K and V of a key
// block it sees) is not finite, as its bfloat16 parts would not add up to it, or a V tops
// kMaxAbsV: those blocks' out and lse are left to forward_block, and every other block's are
// what it gives alone.
// NOTE: as query blocks start at multiples of kBlockK, a block that sees a key block sees all of
// its keys up to the group's last one, so the group's split V and every block's P agree on them.
static_assert(kBlockQ % kBlockK == 0, "a query block sees whole key blocks");
uint32_t forward_group_amx(float* out, float* lse, const AttentionArgs<float>& a,
                           const AttentionKernels<float>& kn, int64_t b, int64_t h, int64_t q0,
                           int64_t n, const ForwardBuffers<float>& f, const AmxForwardBuffers& w) {
  constexpr int64_t kNothingHidden = std::numeric_limits<int64_t>::max() / 4;
  const detail::AmxKernels& amx = *kn.amx;
  const int64_t dv32 = round_up(a.dv, 32);
  auto start = [&](int64_t g) { return q0 + g * kBlockQ; };
  auto queries = [&](int64_t g) { return std::min(kBlockQ, a.tq - start(g)); };
  auto key_end = [&](int64_t g) {
    return a.causal ? std::min(a.tk, start(g) + queries(g)) : a.tk;
  };
  uint32_t failed = 0;
  amx.begin();
  for (int64_t g = 0; g < n; ++g) {
    if (!amx.split_rows_transposed(row_of(a.q, b, h, start(g)), a.q.st, queries(g), a.d, a.scale,
                                   kBlockQ, w.queries + g * w.query_words))
      failed |= 1u << g;
    std::fill(w.ot + g * w.ot_size, w.ot + (g + 1) * w.ot_size, 0.0f);
    std::fill(w.m + g * kBlockQ, w.m + (g + 1) * kBlockQ, kNegInf<float>);
    std::fill(w.l + g * kBlockQ, w.l + (g + 1) * kBlockQ, 0.0f);
  }
  for (int64_t k0 = 0; k0 < key_end(n - 1); k0 += kBlockK) {
    const int64_t keys = std::min(kBlockK, key_end(n - 1) - k0), rows_pad = round_up(keys, 32);
    // under causality the group's first blocks see fewer keys
    auto sees_block = [&](int64_t g) { return k0 < key_end(g); };
    if (!amx.split_rows(row_of(a.k, b, h, k0), a.k.st, keys, rows_pad, a.d, w.keys) ||
        !amx.split_columns_transposed(row_of(a.v, b, h, k0), a.v.st, keys, a.dv, dv32, kMaxAbsV,
                                      w.values)) {
      for (int64_t g = 0; g < n; ++g)
        if (sees_block(g)) failed |= 1u << g;
      break;  // the blocks that see no more keys are done
    }
    for (int64_t g = 0; g < n; ++g) {
      if (!sees_block(g) || (failed >> g & 1)) continue;
      const int64_t qb = queries(g), cols = round_up(qb, 32);
      float *ot = w.ot + g * w.ot_size, *m = w.m + g * kBlockQ, *l = w.l + g * kBlockQ;
      // keys past query j + (start(g) - k0) are hidden from it under causality
      const int64_t hidden_from = a.causal ? start(g) - k0 : kNothingHidden;
      amx.product(w.keys, rows_pad, w.queries + g * w.query_words, kBlockQ, cols, a.d, false,
                  hidden_from, kNothingHidden, f.s, kBlockQ);
      apply_masks(a, b, h, start(g), qb, k0, keys, cols, f.s);
      kn.softmax_block(f.s, kBlockQ, keys, cols, m, l, f.alpha);
      if (!amx.split_columns(f.s, kBlockQ, keys, cols, kProbScale, kBlockQ, w.probs)) {
        failed |= 1u << g;
        continue;
      }
      amx.scale_columns(ot, kBlockQ, a.dv, cols, f.alpha);
      amx.product(w.values, dv32, w.probs, kBlockQ, cols, keys, true, kNothingHidden, hidden_from,
                  ot, kBlockQ);
    }
  }
  amx.end();
  for (int64_t g = 0; g < n; ++g) {
    if (failed >> g & 1) continue;
    float* orow = out + ((b * a.h + h) * a.tq + start(g)) * a.dv;
    kn.transpose(w.ot + g * w.ot_size, kBlockQ, a.dv, queries(g), orow, a.dv);
    write_rows(out, lse, a, b, h, start(g), queries(g), orow, a.dv, 1.0f / kProbScale,
               w.m + g * kBlockQ, w.l + g * kBlockQ);
  }
  return failed;
}

// How many threads a problem of `scores` scores with `items` independent work items gets.
int team_for(int64_t scores, int64_t items) {
  if (in_parallel() || scores < kSerialScores) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(max_threads(), items)));
}

// ---- Backward ------------------------------------------------------------------------------
template <typename T>
struct BackwardBuffers {
  T *qt, *dot, *q, *dout, *k, *v, *s, *ds, *dq, *shift, *delta;

  static int64_t carve(Carver<T>& c, const AttentionArgs<T>& a, int nr, BackwardBuffers* w) {
    const int64_t dp = round_up(a.d, nr), dvp = round_up(a.dv, nr);
    BackwardBuffers x{c.take(a.d * kBlockQ),   c.take(a.dv * kBlockQ),  c.take(kBlockQ * dp),
                      c.take(kBlockQ * dvp),   c.take(kBlockK * dp),    c.take(kBlockK * a.dv),
                      c.take(kBlockK * kBlockQ), c.take(kBlockK * kBlockQ), c.take(kBlockQ * dp),
                      c.take(kBlockQ),         c.take(kBlockQ)};
    if (w) *w = x;
    return c.used();
  }
};

// Everything one block of queries [q0, q0 + qb) contributes to the gradients, key block by key
// block: in the forward pass S = scale·Q·Kᵀ (+ mask) and O = softmax(S)·V, so now
//   P = exp(S - lse), dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP - rowsum(dO∘O)),
//   dQ += scale·dS·K, dK += scale·dSᵀ·Q.
// Only keys [k_lo, k_hi) are walked; dk and dv (this head's rows, accumulated: zero them first)
// are updated when want_dkdv, and dq (this head's rows) is written whole when want_dq, which
// needs every key (k_lo = 0, k_hi = Tk). Either way each block's arithmetic is the same.
template <typename T>
void backward_block(T* dq, T* dk, T* dv, const AttentionOperand<T>& dout,
                    const AttentionArgs<T>& a, const AttentionOperand<T>& out,
                    const AttentionOperand<T>& lse, const AttentionKernels<T>& kn, int64_t b,
                    int64_t h, int64_t q0, int64_t k_lo, int64_t k_hi, bool want_dkdv,
                    bool want_dq, const BackwardBuffers<T>& w) {
  const int NR = kn.nr;
  const int64_t qb = std::min(kBlockQ, a.tq - q0), cols = round_up(qb, NR);
  const int64_t d = a.d, dvn = a.dv, dp = round_up(d, NR), dvp = round_up(dvn, NR);
  copy_rows_transposed(kn, a.q, b, h, q0, qb, d, w.qt);
  copy_rows_transposed(kn, dout, b, h, q0, qb, dvn, w.dot);
  int64_t ldq, ldo;
  const T* qrows = block_rows(a.q, b, h, q0, qb, d, false, true, NR, w.q, &ldq);
  const T* dorows = block_rows(dout, b, h, q0, qb, dvn, false, true, NR, w.dout, &ldo);
  std::fill(w.dq, w.dq + kBlockQ * dp, T(0));
  for (int64_t j = 0; j < cols; ++j) {
    T lj = T(0), delta = T(0);
    if (j < qb) {
      lj = *row_of(lse, b, h, q0 + j);
      const T *o = row_of(out, b, h, q0 + j), *g = row_of(dout, b, h, q0 + j);
      for (int64_t c = 0; c < dvn; ++c) delta += o[c] * g[c];
    }
    // A row that saw no key has lse = -inf and only hidden scores: exp(-inf - 0) = 0.
    w.shift[j] = lj == kNegInf<T> ? T(0) : lj;
    w.delta[j] = delta;
  }

  const int64_t kend = std::min(k_hi, a.causal ? std::min(a.tk, q0 + qb) : a.tk);
  for (int64_t k0 = k_lo; k0 < kend; k0 += kBlockK) {
    const int64_t kb = std::min(kBlockK, kend - k0);
    int64_t ldk, ldv;
    const T* k = block_rows(a.k, b, h, k0, kb, d, true, true, NR, w.k, &ldk);
    const T* v = block_rows(a.v, b, h, k0, kb, dvn, true, false, NR, w.v, &ldv);
    // Pᵀ, recomputed from lse.
    score_tiles(kn, a, q0, k0, kb, cols, d, k, ldk, w.qt, a.scale, w.s);
    apply_masks(a, b, h, q0, qb, k0, kb, cols, w.s);
    kn.exp_block(w.s, kBlockQ, kb, cols, w.shift);
    // dPᵀ = V·dOᵀ, then dSᵀ in place. NOTE: dS is 0 wherever P is, by a select: a skipped
    // (hidden) tile of dP holds stale values, and a hidden NaN must not leak.
    score_tiles(kn, a, q0, k0, kb, cols, dvn, v, ldv, w.dot, T(1), w.ds);
    kn.dscores_block(w.s, w.ds, kBlockQ, kb, cols, w.delta);
    // dV += Pᵀ·dO and dK += scale·dSᵀ·Q, A(i, p) = Sᵀ[i][p]; under causality key i is seen
    // only from query i on, so the sum over queries starts there.
    T* dkb = dk + k0 * d;
    T* dvb = dv + k0 * dvn;
    for (int64_t ip = 0; want_dkdv && ip < kb; ip += MR) {
      const int64_t start = a.causal ? std::clamp<int64_t>(k0 + ip - q0, 0, qb) : 0;
      const int64_t kc = qb - start, m = std::min<int64_t>(MR, kb - ip);
      if (kc == 0) continue;
      for (int64_t jv = 0; jv < dvn; jv += NR)
        tile_into(kn, kc, w.s + ip * kBlockQ + start, kBlockQ, 1, dorows + start * ldo + jv, ldo,
                  dvb + ip * dvn + jv, dvn, m, std::min<int64_t>(NR, dvn - jv), T(1), T(1));
      for (int64_t jd = 0; jd < d; jd += NR)
        tile_into(kn, kc, w.ds + ip * kBlockQ + start, kBlockQ, 1, qrows + start * ldq + jd, ldq,
                  dkb + ip * d + jd, d, m, std::min<int64_t>(NR, d - jd), a.scale, T(1));
    }
    // dQ += scale·dS·K, A(i, p) = dSᵀ[p][i]; under causality query i stops at key i.
    for (int64_t i0 = 0; want_dq && i0 < qb; i0 += MR) {
      const int64_t kc = a.causal ? std::clamp<int64_t>(q0 + i0 + MR - k0, 0, kb) : kb;
      for (int64_t jd = 0; jd < dp; jd += NR)
        kn.tile(kc, w.ds + i0, 1, kBlockQ, k + jd, ldk, w.dq + i0 * dp + jd, dp, a.scale, T(1),
                nullptr);
    }
  }
  if (want_dq)
    for (int64_t i = 0; i < qb; ++i)
      std::copy(w.dq + i * dp, w.dq + i * dp + d, dq + (q0 + i) * d);
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const AttentionArgs<T>& a) {
  const int64_t heads = a.b * a.h;
  if (heads == 0 || a.tq == 0) return;
  const AttentionKernels<T> kn = select_kernels<T>();
  const int64_t qblocks = ceil_div(a.tq, kBlockQ);
  const int nt = team_for(heads * a.tq * a.tk, heads * qblocks);
  // A work item is a query block, or on AMX a group of them, no larger than leaves four items a
  // thread (to even out their loads).
  int64_t per_item = 1;
  if constexpr (sizeof(T) == 4)
    if (kn.amx) per_item = amx_group_blocks(a);
  while (per_item > 1 && heads * ceil_div(qblocks, per_item) < 4 * nt) --per_item;
  const int64_t groups = ceil_div(qblocks, per_item), items = heads * groups;
  Carver<T> count(nullptr);
  const int64_t per_thread = carve_forward<T>(count, a, kn, per_item, nullptr, nullptr);
  T* ws = static_cast<T*>(t_workspace.get(sizeof(T) * per_thread * nt));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Carver<T> c(ws + per_thread * thread_id());
    ForwardBuffers<T> w;
    AmxForwardBuffers amx_w{};
    carve_forward(c, a, kn, per_item, &w, &amx_w);
    // Head after head, so that a head's K and V are reused from cache by its query blocks; within
    // a head the last query blocks first: under causality they see the most keys, so the cheap
    // ones are left to even out the threads' loads at the end.
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t bh = it / groups, first = (groups - 1 - it % groups) * per_item;
      const int64_t n = std::min(per_item, qblocks - first);
      uint32_t left = (1u << n) - 1;  // the blocks forward_block is to do
      if constexpr (sizeof(T) == 4)
        if (kn.amx)
          left = forward_group_amx(out, lse, a, kn, bh / a.h, bh % a.h, first * kBlockQ, n, w,
                                   amx_w);
      for (int64_t g = n - 1; g >= 0; --g)
        if (left >> g & 1)
          forward_block(out, lse, a, kn, bh / a.h, bh % a.h, (first + g) * kBlockQ, w);
    }
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const AttentionOperand<T>& dout,
                        const AttentionArgs<T>& a, const AttentionOperand<T>& out,
                        const AttentionOperand<T>& lse) {
  const int64_t heads = a.b * a.h;
  if (heads == 0) return;
  std::fill(dk, dk + heads * a.tk * a.d, T(0));
  std::fill(dv, dv + heads * a.tk * a.dv, T(0));
  if (a.tq == 0) return;
  const AttentionKernels<T> kn = select_kernels<T>();
  const int64_t qblocks = ceil_div(a.tq, kBlockQ), kblocks = ceil_div(a.tk, kBlockK);
  // With at least a head per thread, a head is one thread's and gets one pass. With fewer heads
  // than threads, the key gradients are split by key block (each over all its query blocks) and
  // dQ by query block (over all key blocks) in a second pass that recomputes the probabilities.
  // Either way every gradient row sums its blocks in one fixed order with the same arithmetic,
  // so the result does not depend on the thread count, and no two threads write one row.
  const int nt = team_for(heads * a.tq * a.tk, std::max(heads, qblocks * heads));
  const bool by_head = heads >= nt;
  Carver<T> count(nullptr);
  const int64_t per_thread = BackwardBuffers<T>::carve(count, a, kn.nr, nullptr);
  T* ws = static_cast<T*>(t_workspace.get(sizeof(T) * per_thread * nt));
  auto head_dq = [&](int64_t bh) { return dq + bh * a.tq * a.d; };
  auto head_dk = [&](int64_t bh) { return dk + bh * a.tk * a.d; };
  auto head_dv = [&](int64_t bh) { return dv + bh * a.tk * a.dv; };
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Carver<T> c(ws + per_thread * thread_id());
    BackwardBuffers<T> w;
    BackwardBuffers<T>::carve(c, a, kn.nr, &w);
    if (by_head) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t bh = 0; bh < heads; ++bh)
        for (int64_t qi = 0; qi < qblocks; ++qi)
          backward_block(head_dq(bh), head_dk(bh), head_dv(bh), dout, a, out, lse, kn, bh / a.h,
                         bh % a.h, qi * kBlockQ, 0, a.tk, true, true, w);
    } else {
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < heads * kblocks; ++it) {
        const int64_t bh = it / kblocks, k0 = it % kblocks * kBlockK;
        // under causality the query blocks that end before k0 see none of its keys
        for (int64_t qi = a.causal ? k0 / kBlockQ : 0; qi < qblocks; ++qi)
          backward_block(head_dq(bh), head_dk(bh), head_dv(bh), dout, a, out, lse, kn, bh / a.h,
                         bh % a.h, qi * kBlockQ, k0, k0 + kBlockK, true, false, w);
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < heads * qblocks; ++it)
        backward_block(head_dq(it / qblocks), head_dk(it / qblocks), head_dv(it / qblocks), dout, a,
                       out, lse, kn, it / qblocks / a.h, it / qblocks % a.h,
                       it % qblocks * kBlockQ, 0, a.tk, false, true, w);
    }
  }
}

template void attention_forward<float>(float*, float*, const AttentionArgs<float>&);
template void attention_forward<double>(double*, double*, const AttentionArgs<double>&);
template void attention_backward<float>(float*, float*, float*, const AttentionOperand<float>&,
                                        const AttentionArgs<float>&, const AttentionOperand<float>&,
                                        const AttentionOperand<float>&);
template void attention_backward<double>(double*, double*, double*, const AttentionOperand<double>&,
                                         const AttentionArgs<double>&,
                                         const AttentionOperand<double>&,
                                         const AttentionOperand<double>&);

namespace detail {
AttentionKernels<float> attention_portable_f32() { return portable_kernels<float>(); }
AttentionKernels<double> attention_portable_f64() { return portable_kernels<double>(); }
}  // namespace detail

std::vector<std::string> attention_isas() { return g_isa.available(); }

const char* attention_isa() { return g_isa.name(); }

void attention_use_isa(const std::string& isa) { g_isa.use(isa); }

}  // namespace engine::cpu
