// The float32 attention's block products on Intel AMX tiles, in bfloat16 to float32 accuracy.
// Compiled with -mamx-tile -mamx-bf16 -mavx512f; attention.cpp calls into it only when
// cpu_has_amx_bf16() (which also asks the OS for the tile state).
//
// Every float32 x is cut into three bfloat16 parts, x = x0 + x1 + x2 exactly: x0 is x with its low
// 16 bits cleared (its top 8 significant bits), x1 the same of x - x0, x2 = x - x0 - x1 (at most 8
// significant bits left). A product a·b is Σ ai·bj; the six terms with i + j <= 2 are summed and
// the three below 2^-24·|a·b| dropped, so a product is good to a few float32 ulp. A tile
// instruction multiplies bfloat16 pairs exactly and adds in float32 (round to nearest even,
// subnormals as zero: a part below 2^-126 is lost, so numbers below about 2^-110 (1e-33) keep
// fewer bits, and float32 subnormals none; the softmax's probabilities are scaled up to keep
// clear of that, see attention.cpp). The six bfloat16 products of a float32 one run at ~2.7x an FMA's rate from
// L1 (measured on an Intel Xeon: 577 against 214 GFLOP/s a core).
//
// An operand of C += A·B, with k (the summed index) padded to a multiple of 32, kw = k/2 words of
// two bfloat16 each, and the 32 k of a run ordered so that word w holds k = w (low half) and
// k = w + 16 (high half), the same for both operands:
//   A, rows × k:  part p, row i, word w:     a[(p·rows + i)·kw + w]   (rows a multiple of 32)
//   B, k × cols:  part p, word w, column n:  b[(p·kw + w)·ld + n]
// A tile row of A is 32 k of one row, a tile row of B one word of 16 columns: the layouts AMX's
// bfloat16 products take. "rows" split A from an operand with k along its rows (K, Q), "columns"
// with k down its columns (V, P); the transposed ones are built through a 16×16 block transpose.
#include <immintrin.h>

#include <algorithm>

#include "cpu/attention.h"
#include "cpu/attention_simd.h"

namespace engine::cpu::detail {
namespace {

constexpr int64_t kTile = 16;  // rows of a tile, and float32 columns of an accumulator tile

__mmask16 first_lanes(int64_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
}

// Cuts pairs of float vectors into their three parts' words, word lane j holding lane j of `lo`
// and of `hi` in its low and high halves, and notes whether every value was finite (and, when
// kBounded, the largest magnitude).
template <bool kBounded = false>
class Splitter {
 public:
  void pair(__m512 lo, __m512 hi, __m512i words[kAmxParts]) {
    if constexpr (kBounded)
      max_abs_ = _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)), max_abs_);
    const __m512i top = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
#pragma GCC unroll 3
    for (int p = 0; p < kAmxParts; ++p) {
      const __m512i lo_top = _mm512_and_si512(_mm512_castps_si512(lo), top);
      const __m512i hi_top = _mm512_and_si512(_mm512_castps_si512(hi), top);
      words[p] = _mm512_or_si512(_mm512_srli_epi32(lo_top, 16), hi_top);
      lo = _mm512_sub_ps(lo, _mm512_castsi512_ps(lo_top));
      hi = _mm512_sub_ps(hi, _mm512_castsi512_ps(hi_top));
      // x - x0 is NaN exactly where x is not finite (inf - inf, or a NaN, which x0 may have
      // turned into an infinity by dropping its payload): 0·NaN leaves a NaN in the sums.
      if (p == 0) {
        nan_if_nonfinite_[0] = _mm512_fmadd_ps(lo, _mm512_setzero_ps(), nan_if_nonfinite_[0]);
        nan_if_nonfinite_[1] = _mm512_fmadd_ps(hi, _mm512_setzero_ps(), nan_if_nonfinite_[1]);
      }
    }
  }

  // The words of a run of (scale times) x[0, n), n <= 32, zero after: k = w and w + 16 in word w.
  void run(const float* x, int64_t n, __m512 scale, __m512i words[kAmxParts]) {
    pair(_mm512_mul_ps(_mm512_maskz_loadu_ps(first_lanes(n), x), scale),
         _mm512_mul_ps(_mm512_maskz_loadu_ps(first_lanes(n - 16), x + 16), scale), words);
  }

  // Whether every value split was finite: the parts of an infinity or a NaN do not add up to it.
  bool all_finite() const {
    const __m512 sum = _mm512_add_ps(nan_if_nonfinite_[0], nan_if_nonfinite_[1]);
    return _mm512_cmp_ps_mask(sum, sum, _CMP_UNORD_Q) == 0;
  }

  // Whether, besides, every magnitude was at most `bound`.
  bool all_within(float bound) const {
    static_assert(kBounded);
    return all_finite() && _mm512_reduce_max_ps(max_abs_) <= bound;
  }

 private:
  __m512 nan_if_nonfinite_[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};  // two chains
  __m512 max_abs_ = _mm512_setzero_ps();
};

int64_t words_of(int64_t k) { return (k + 31) / 32 * 16; }

// A from x (rows × k, row stride rs), zero in rows rows..rows_pad-1.
bool split_rows(const float* x, int64_t rs, int64_t rows, int64_t rows_pad, int64_t k,
                uint32_t* a) {
  const int64_t kw = words_of(k);
  const __m512 one = _mm512_set1_ps(1.0f);
  Splitter<> split;
  for (int64_t i = 0; i < rows_pad; ++i)
    for (int64_t c = 0; c < kw / 16; ++c) {
      __m512i w[kAmxParts];
      split.run(x + i * rs + 32 * c, i < rows ? k - 32 * c : 0, one, w);
#pragma GCC unroll 3
      for (int p = 0; p < kAmxParts; ++p)
        _mm512_storeu_si512(a + (p * rows_pad + i) * kw + 16 * c, w[p]);
    }
  return split.all_finite();
}

// The 16×16 words of each part in `block` transposed to dst + p·part_stride (row stride ld).
void store_parts_transposed(const uint32_t (&block)[kAmxParts][16][16], uint32_t* dst,
                            int64_t part_stride, int64_t ld) {
  for (int p = 0; p < kAmxParts; ++p)
    simd::transpose(reinterpret_cast<const float*>(block[p][0]), 16, 16, 16,
                    reinterpret_cast<float*>(dst + p * part_stride), ld);
}

// B from scale·xᵀ, x being cols × k (row stride rs): column n of B is row n of x, zero from row
// `rows` up to ld (a multiple of 16).
bool split_rows_transposed(const float* x, int64_t rs, int64_t rows, int64_t k, float scale,
                           int64_t ld, uint32_t* b) {
  const int64_t kw = words_of(k);
  const __m512 factor = _mm512_set1_ps(scale);
  Splitter<> split;
  alignas(64) uint32_t block[kAmxParts][16][16];
  for (int64_t n0 = 0; n0 < ld; n0 += 16)
    for (int64_t c = 0; c < kw / 16; ++c) {
      for (int64_t n = 0; n < 16; ++n) {
        __m512i w[kAmxParts];
        split.run(x + (n0 + n) * rs + 32 * c, n0 + n < rows ? k - 32 * c : 0, factor, w);
#pragma GCC unroll 3
        for (int p = 0; p < kAmxParts; ++p) _mm512_store_si512(block[p][n], w[p]);
      }
      store_parts_transposed(block, b + 16 * c * ld + n0, kw * ld, ld);
    }
  return split.all_finite();
}

// The words of scale times rows r and r + 16 of the 32-row run at x, columns [j, j + 16) (zero
// past `cols` and in rows at or past `rows`).
template <bool kBounded>
void split_row_pair(const float* x, int64_t rs, int64_t r, int64_t rows, int64_t j, int64_t cols,
                    __m512 scale, Splitter<kBounded>& split, __m512i words[kAmxParts]) {
  const __mmask16 lanes = first_lanes(cols - j);
  split.pair(_mm512_mul_ps(scale, _mm512_maskz_loadu_ps(r < rows ? lanes : 0, x + r * rs + j)),
             _mm512_mul_ps(scale,
                           _mm512_maskz_loadu_ps(r + 16 < rows ? lanes : 0, x + (r + 16) * rs + j)),
             words);
}

// B from scale·x (k × cols, k = rows, row stride rs; cols a multiple of 16), zero past k = rows.
bool split_columns(const float* x, int64_t rs, int64_t rows, int64_t cols, float scale, int64_t ld,
                   uint32_t* b) {
  const int64_t kw = words_of(rows);
  const __m512 factor = _mm512_set1_ps(scale);
  Splitter<> split;
  for (int64_t c = 0; c < kw / 16; ++c)
    for (int64_t w = 0; w < 16; ++w)
      for (int64_t j = 0; j < cols; j += 16) {
        __m512i words[kAmxParts];
        split_row_pair(x + 32 * c * rs, rs, w, rows - 32 * c, j, cols, factor, split, words);
#pragma GCC unroll 3
        for (int p = 0; p < kAmxParts; ++p)
          _mm512_storeu_si512(b + (p * kw + 16 * c + w) * ld + j, words[p]);
      }
  return split.all_finite();
}

// A from xᵀ, x being k × cols (k = rows, row stride rs): row j of A is column j of x, zero from
// column `cols` up to cols_pad (a multiple of 32).
bool split_columns_transposed(const float* x, int64_t rs, int64_t rows, int64_t cols,
                              int64_t cols_pad, float max_abs, uint32_t* a) {
  const int64_t kw = words_of(rows);
  const __m512 one = _mm512_set1_ps(1.0f);
  Splitter<true> split;
  alignas(64) uint32_t block[kAmxParts][16][16];
  for (int64_t c = 0; c < kw / 16; ++c)
    for (int64_t j0 = 0; j0 < cols_pad; j0 += 16) {
      for (int64_t w = 0; w < 16; ++w) {
        __m512i words[kAmxParts];
        split_row_pair(x + 32 * c * rs, rs, w, rows - 32 * c, j0, cols, one, split, words);
#pragma GCC unroll 3
        for (int p = 0; p < kAmxParts; ++p) _mm512_store_si512(block[p][w], words[p]);
      }
      store_parts_transposed(block, a + j0 * kw + 16 * c, cols_pad * kw, kw);
    }
  return split.all_within(max_abs);
}

// Tile registers: 0-3 the 2×2 accumulators of a 32×32 region of C, 4-5 two 16-row slices of a
// part of A, 6-7 two 16-column slices of a part of B. All are 16 rows of 64 bytes.
struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// NOTE: a static object: built on the stack, GCC 12 left bytes of it unwritten before the
// configuration load (which it does not see read all 64).
void begin() {
  alignas(64) static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) c.bytes_per_row[t] = 64, c.rows[t] = kTile;
    return c;
  }();
  _tile_loadconfig(&config);
}

void end() { _tile_release(); }

// The (A part, B part) products summed, ordered so that consecutive ones share a part: 7 loads
// of a tile pair for 6 products.
constexpr int kProducts = 6;
constexpr int kPartA[kProducts] = {2, 0, 1, 1, 0, 0}, kPartB[kProducts] = {0, 0, 0, 1, 1, 2};

void product(const uint32_t* a, int64_t rows, const uint32_t* b, int64_t ldb, int64_t cols,
             int64_t k, bool accumulate, int64_t rows_hidden_from, int64_t k_hidden_from,
             float* c, int64_t ldc) {
  const int64_t kw = words_of(k);
  const int64_t a_stride = kw * 4, b_stride = ldb * 4, c_stride = ldc * 4;
  for (int64_t jp = 0; jp < cols; jp += 2 * kTile)
    for (int64_t ip = 0; ip < rows; ip += 2 * kTile) {
      if (ip > rows_hidden_from + jp + 2 * kTile - 1) break;  // every later region is hidden too
      float* cp = c + ip * ldc + jp;
      if (accumulate) {
        _tile_loadd(0, cp, c_stride);
        _tile_loadd(1, cp + kTile, c_stride);
        _tile_loadd(2, cp + kTile * ldc, c_stride);
        _tile_loadd(3, cp + kTile * ldc + kTile, c_stride);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (int64_t ch = 0; ch < kw / 16; ++ch) {
        if (32 * ch > k_hidden_from + jp + 2 * kTile - 1) break;  // so is every later run of k
        for (int t = 0; t < kProducts; ++t) {
          if (t == 0 || kPartA[t] != kPartA[t - 1]) {
            const uint32_t* ap = a + (kPartA[t] * rows + ip) * kw + 16 * ch;
            _tile_loadd(4, ap, a_stride);
            _tile_loadd(5, ap + kTile * kw, a_stride);
          }
          if (t == 0 || kPartB[t] != kPartB[t - 1]) {
            const uint32_t* bp = b + (kPartB[t] * kw + 16 * ch) * ldb + jp;
            _tile_loadd(6, bp, b_stride);
            _tile_loadd(7, bp + kTile, b_stride);
          }
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, cp, c_stride);
      _tile_stored(1, cp + kTile, c_stride);
      _tile_stored(2, cp + kTile * ldc, c_stride);
      _tile_stored(3, cp + kTile * ldc + kTile, c_stride);
    }
}

void scale_columns(float* c, int64_t ldc, int64_t rows, int64_t cols, const float* factor) {
  for (int64_t j = 0; j < cols; j += 16) {
    const __m512 f = _mm512_loadu_ps(factor + j);
    for (int64_t i = 0; i < rows; ++i)
      _mm512_storeu_ps(c + i * ldc + j, _mm512_mul_ps(f, _mm512_loadu_ps(c + i * ldc + j)));
  }
}

}  // namespace

const AmxKernels* attention_amx() {
  static const AmxKernels kernels{&begin,         &end,
                                  &split_rows,    &split_rows_transposed,
                                  &split_columns, &split_columns_transposed,
                                  &product,       &scale_columns};
  return &kernels;
}

}  // namespace engine::cpu::detail
