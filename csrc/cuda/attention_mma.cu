// Attention on tensor cores (flash-attention-2 layout): bf16 operands, mma.sync m16n8k16 with fp32
// accumulators, head size D = Dv in {32, 64, 128} as a template parameter.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4), used throughout:
//   A (16×16, row major)  a0: (g, 2t..2t+1)  a1: (g+8, 2t..2t+1)  a2: (g, 2t+8..)  a3: (g+8, 2t+8..)
//   B (16×8, k × n)       b0: (k 2t..2t+1, n g)   b1: (k 2t+8..2t+9, n g)
//   C (16×8, fp32)        c0, c1: (g, 2t..2t+1)   c2, c3: (g+8, 2t..2t+1)
// Two adjacent C tiles (columns 0..7, 8..15) rounded to bf16 are exactly an A fragment with k = those
// 16 columns, so probabilities go from the S = Q·Kᵀ accumulators into P·V without shared memory.
//
// Tiles are bf16 in shared memory with rows padded by 8 elements (16 bytes): a row pitch of
// D/2 + 4 words puts the 8 rows one fragment load touches in different banks. Global tiles are
// copied with cp.async (16 bytes per thread, rows past the end zero-filled), two stages deep, so
// the next tile loads while this one is multiplied.
//
// Kernels (4 warps, each owning 16 rows of the block's tile):
//   forward  per 64 query rows; keys in tiles of 64; online softmax on the S accumulators in
//            exp2 form (scores pre-multiplied by scale·log2 e); out and lse in fp32.
//   dq       per 64 query rows; keys in tiles of 64: S, dP = dO·Vᵀ, dS = P∘(dP − delta), dQ += dS·K.
//   dkdv     per 64 keys; query rows in tiles of BQ: Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO, dK += dSᵀ·Q.
// Splitting the backward this way recomputes S once more than FA2's single pass but needs no
// atomics: the result is deterministic.
#include <climits>
#include <cstring>

#include "cuda/attention_common.cuh"

namespace engine::cuda::attn {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // rows of a block's own tile (query rows, or keys for dkdv)
constexpr int kKeys = 64;           // keys per streamed tile (forward, dq)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct MmaParams {
  const uint16_t* q;
  const uint16_t* k;
  const uint16_t* v;
  const uint16_t* dout;
  const float* lse;
  const float* delta;
  float* out;
  float* lse_out;
  float* dq;
  float* dk;
  float* dv;
  AttentionMask mask;
  int64_t h, tq, tk;
  float scale;       // softmax scale
  float scale_log2;  // scale·log2(e): scores in exp2 units
  bool causal;
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

// rows [r0, r0 + Rows) of a (rows_total, D) bf16 matrix into shared memory with pitch D + 8.
template <int Rows, int D>
__device__ __forceinline__ void load_tile(uint16_t* s, const uint16_t* g, int64_t r0, int64_t rows_total) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < Rows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    const bool valid = r0 + r < rows_total;
    cp_async16(s + r * (D + 8) + c, valid ? g + (r0 + r) * D + c : g, valid);
  }
}

__device__ __forceinline__ uint32_t ld32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// A fragment of rows r0.., columns k0.. of a row-major shared tile (k contiguous).
template <int Pitch>
__device__ __forceinline__ void load_a(uint32_t a[4], const uint16_t* s, int r0, int k0, int lane) {
  const uint16_t* p = s + (r0 + lane / 4) * Pitch + k0 + 2 * (lane % 4);
  a[0] = ld32(p);
  a[1] = ld32(p + 8 * Pitch);
  a[2] = ld32(p + 8);
  a[3] = ld32(p + 8 * Pitch + 8);
}

// B fragment (k0.., n0..) from a shared tile that stores Bᵀ: row n holds B's column n (k contiguous).
template <int Pitch>
__device__ __forceinline__ void load_b_nk(uint32_t b[2], const uint16_t* s, int n0, int k0, int lane) {
  const uint16_t* p = s + (n0 + lane / 4) * Pitch + k0 + 2 * (lane % 4);
  b[0] = ld32(p);
  b[1] = ld32(p + 8);
}

// B fragments of two n-tiles (n0.., n0+8..) from a shared tile that stores B row-major (row k,
// n contiguous), transposed on the way by ldmatrix: b[0..1] for n0, b[2..3] for n0 + 8.
template <int Pitch>
__device__ __forceinline__ void load_b_kn_x2(uint32_t b[4], const uint16_t* s, int k0, int n0, int lane) {
  const uint16_t* p = s + (k0 + lane % 16) * Pitch + n0 + (lane / 16) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Two floats as a bf16 pair, the first in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t r;
  memcpy(&r, &v, sizeof r);
  return r;
}

// The A fragment for k-step kk (columns 16kk..16kk+15) from C accumulators c[2kk], c[2kk+1].
__device__ __forceinline__ void c_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// The score of query qi and key kj in exp2 units, x = raw q·k product; -inf where they may not
// attend. qi < tq is the caller's to ensure before a mask is read.
__device__ __forceinline__ float masked_score(const MmaParams& p, int64_t bi, int64_t hi, int64_t qi, int64_t kj,
                                              float x) {
  if (kj >= p.tk || qi >= p.tq || (p.causal && kj > qi)) return -INFINITY;
  x *= p.scale_log2;
  if (p.mask.kind != MaskKind::none) {
    const int64_t at = bi * p.mask.sb + hi * p.mask.sh + qi * p.mask.sq + kj * p.mask.sk;
    if (p.mask.kind == MaskKind::boolean) {
      if (!static_cast<const uint8_t*>(p.mask.ptr)[at]) return -INFINITY;
    } else {
      x += static_cast<const float*>(p.mask.ptr)[at] * kLog2e;
    }
  }
  return x;
}

// Whether a tile of query rows [q0, q0 + rows) × keys [k0, k0 + keys) needs the element-wise
// rule of masked_score: a mask, keys or rows past the end, or keys after some row under is_causal.
// Interior tiles (most of a long sequence) only scale their scores.
__device__ __forceinline__ bool tile_needs_mask(const MmaParams& p, int64_t q0, int rows, int64_t k0, int keys) {
  return p.mask.kind != MaskKind::none || k0 + keys > p.tk || q0 + rows > p.tq || (p.causal && k0 + keys - 1 > q0);
}

// lse (natural log) as the exp2 shift of a row's recomputed probabilities; 0 for a fully masked row.
__device__ __forceinline__ float lse_log2(float lse) { return lse == -INFINITY ? 0.f : lse * kLog2e; }

template <int D>
__global__ void __launch_bounds__(kThreads) mma_forward_kernel(MmaParams p) {
  constexpr int P = D + 8, KD = D / 16, ND = D / 8, NC = kKeys / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* k_s = q_s + kRows * P;        // two stages
  uint16_t* v_s = k_s + 2 * kKeys * P;    // two stages
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, t = lane % 4;

  const int64_t tiles = (p.tq + kRows - 1) / kRows;
  const int64_t tile = tiles - 1 - int64_t(blockIdx.x) % tiles;  // the longest causal rows start first
  const int64_t bh = int64_t(blockIdx.x) / tiles, bi = bh / p.h, hi = bh % p.h;
  const int64_t q0 = tile * kRows;
  const uint16_t* k = p.k + bh * p.tk * D;
  const uint16_t* v = p.v + bh * p.tk * D;
  const int64_t kend = p.causal ? min(p.tk, q0 + kRows) : p.tk;
  const int ntiles = int((kend + kKeys - 1) / kKeys);
  const int64_t row[2] = {q0 + warp * 16 + lane / 4, q0 + warp * 16 + lane / 4 + 8};

  load_tile<kRows, D>(q_s, p.q + bh * p.tq * D, q0, p.tq);
  load_tile<kKeys, D>(k_s, k, 0, p.tk);
  load_tile<kKeys, D>(v_s, v, 0, p.tk);
  cp_async_commit();

  uint32_t qa[KD][4];
  float o[ND][4];
  for (int dn = 0; dn < ND; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  for (int it = 0; it < ntiles; ++it) {
    const int64_t k0 = int64_t(it) * kKeys;
    const int stage = it % 2;
    if (it + 1 < ntiles) {
      load_tile<kKeys, D>(k_s + (1 - stage) * kKeys * P, k, k0 + kKeys, p.tk);
      load_tile<kKeys, D>(v_s + (1 - stage) * kKeys * P, v, k0 + kKeys, p.tk);
    }
    cp_async_commit();  // possibly empty: keeps "all but the newest group" meaning this tile
    cp_async_wait<1>();
    __syncthreads();
    if (it == 0)
      for (int kk = 0; kk < KD; ++kk) load_a<P>(qa[kk], q_s, warp * 16, kk * 16, lane);
    const uint16_t* ks = k_s + stage * kKeys * P;
    const uint16_t* vs = v_s + stage * kKeys * P;

    float s[NC][4];
    for (int n = 0; n < NC; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk)
#pragma unroll
      for (int n = 0; n < NC; ++n) {
        uint32_t b[2];
        load_b_nk<P>(b, ks, n * 8, kk * 16, lane);
        mma(s[n], qa[kk], b);
      }

    // Online softmax over this tile, per row (each row's 64 scores sit in the 4 lanes of a quad):
    // m' = max(m, rowmax), α = 2^(m − m'), l' = α·l + Σ 2^(s − m'). A row with nothing visible yet
    // keeps m' = -inf and is shifted by 0, so its terms are 2^-inf = 0, never NaN.
    float mx[2] = {-INFINITY, -INFINITY};
    const bool edge = tile_needs_mask(p, q0 + warp * 16, 16, k0, kKeys);
#pragma unroll
    for (int n = 0; n < NC; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = edge ? masked_score(p, bi, hi, row[e / 2], k0 + n * 8 + 2 * t + e % 2, s[n][e])
                       : s[n][e] * p.scale_log2;
        mx[e / 2] = fmaxf(mx[e / 2], s[n][e]);
      }
    float shift[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m[r], mx[r]);
      shift[r] = m_new == -INFINITY ? 0.f : m_new;
      alpha[r] = exp2f(m[r] - shift[r]);
      m[r] = m_new;
      l[r] *= alpha[r];  // this lane's share of the row sum; the quad is summed at the end
    }
#pragma unroll
    for (int n = 0; n < NC; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = exp2f(s[n][e] - shift[e / 2]);
        l[e / 2] += s[n][e];
      }
#pragma unroll
    for (int dn = 0; dn < ND; ++dn) {
      o[dn][0] *= alpha[0], o[dn][1] *= alpha[0];
      o[dn][2] *= alpha[1], o[dn][3] *= alpha[1];
    }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t a[4];
      c_to_a(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int dn = 0; dn < ND; dn += 2) {
        uint32_t b[4];
        load_b_kn_x2<P>(b, vs, kk * 16, dn * 8, lane);
        mma(o[dn], a, b);
        mma(o[dn + 1], a, b + 2);
      }
    }
    __syncthreads();  // every warp is done with this stage before the next iteration refills it
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if (row[r] >= p.tq) continue;
    // l >= 1 on a row that attends anywhere (its max contributes 2^0); l = 0 on a fully masked one.
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    float* out = p.out + (bh * p.tq + row[r]) * D + 2 * t;
#pragma unroll
    for (int dn = 0; dn < ND; ++dn)
      *reinterpret_cast<float2*>(out + dn * 8) = make_float2(o[dn][2 * r] * inv, o[dn][2 * r + 1] * inv);
    if (t == 0) p.lse_out[bh * p.tq + row[r]] = l[r] > 0.f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) mma_dq_kernel(MmaParams p) {
  constexpr int P = D + 8, KD = D / 16, ND = D / 8, NC = kKeys / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* do_s = q_s + kRows * P;
  uint16_t* k_s = do_s + kRows * P;      // two stages
  uint16_t* v_s = k_s + 2 * kKeys * P;   // two stages
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, t = lane % 4;

  const int64_t tiles = (p.tq + kRows - 1) / kRows;
  const int64_t tile = tiles - 1 - int64_t(blockIdx.x) % tiles;
  const int64_t bh = int64_t(blockIdx.x) / tiles, bi = bh / p.h, hi = bh % p.h;
  const int64_t q0 = tile * kRows;
  const uint16_t* k = p.k + bh * p.tk * D;
  const uint16_t* v = p.v + bh * p.tk * D;
  const int64_t kend = p.causal ? min(p.tk, q0 + kRows) : p.tk;
  const int ntiles = int((kend + kKeys - 1) / kKeys);
  const int64_t row[2] = {q0 + warp * 16 + lane / 4, q0 + warp * 16 + lane / 4 + 8};
  float lse2[2], delta[2];
  for (int r = 0; r < 2; ++r) {
    const bool in = row[r] < p.tq;
    lse2[r] = in ? lse_log2(p.lse[bh * p.tq + row[r]]) : 0.f;
    delta[r] = in ? p.delta[bh * p.tq + row[r]] : 0.f;
  }

  load_tile<kRows, D>(q_s, p.q + bh * p.tq * D, q0, p.tq);
  load_tile<kRows, D>(do_s, p.dout + bh * p.tq * D, q0, p.tq);
  load_tile<kKeys, D>(k_s, k, 0, p.tk);
  load_tile<kKeys, D>(v_s, v, 0, p.tk);
  cp_async_commit();

  float dq[ND][4];
  for (int dn = 0; dn < ND; ++dn) dq[dn][0] = dq[dn][1] = dq[dn][2] = dq[dn][3] = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    const int64_t k0 = int64_t(it) * kKeys;
    const int stage = it % 2;
    if (it + 1 < ntiles) {
      load_tile<kKeys, D>(k_s + (1 - stage) * kKeys * P, k, k0 + kKeys, p.tk);
      load_tile<kKeys, D>(v_s + (1 - stage) * kKeys * P, v, k0 + kKeys, p.tk);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint16_t* ks = k_s + stage * kKeys * P;
    const uint16_t* vs = v_s + stage * kKeys * P;

    float s[NC][4], dp[NC][4];
    for (int n = 0; n < NC; ++n)
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t qa[4], da[4];
      load_a<P>(qa, q_s, warp * 16, kk * 16, lane);
      load_a<P>(da, do_s, warp * 16, kk * 16, lane);
#pragma unroll
      for (int n = 0; n < NC; ++n) {
        uint32_t b[2];
        load_b_nk<P>(b, ks, n * 8, kk * 16, lane);
        mma(s[n], qa, b);
        load_b_nk<P>(b, vs, n * 8, kk * 16, lane);
        mma(dp[n], da, b);
      }
    }
    // P = 2^(s − lse·log2 e) recomputes the forward's probabilities; dS = P ∘ (dP − delta).
    const bool edge = tile_needs_mask(p, q0 + warp * 16, 16, k0, kKeys);
#pragma unroll
    for (int n = 0; n < NC; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float x = edge ? masked_score(p, bi, hi, row[e / 2], k0 + n * 8 + 2 * t + e % 2, s[n][e])
                             : s[n][e] * p.scale_log2;
        const float prob = x == -INFINITY ? 0.f : exp2f(x - lse2[e / 2]);
        s[n][e] = prob * (dp[n][e] - delta[e / 2]);
      }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t a[4];
      c_to_a(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int dn = 0; dn < ND; dn += 2) {
        uint32_t b[4];
        load_b_kn_x2<P>(b, ks, kk * 16, dn * 8, lane);
        mma(dq[dn], a, b);
        mma(dq[dn + 1], a, b + 2);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (row[r] >= p.tq) continue;
    float* out = p.dq + (bh * p.tq + row[r]) * D + 2 * t;
#pragma unroll
    for (int dn = 0; dn < ND; ++dn)
      *reinterpret_cast<float2*>(out + dn * 8) = make_float2(dq[dn][2 * r] * p.scale, dq[dn][2 * r + 1] * p.scale);
  }
}

// NOTE: BQ (query rows per streamed tile) is 32 at D = 128 so the Sᵀ and dPᵀ accumulators
// (BQ/2 registers each) plus dK and dV (D/2 each) stay within 255 registers without spilling.
template <int D, int BQ>
__global__ void __launch_bounds__(kThreads) mma_dkdv_kernel(MmaParams p) {
  constexpr int P = D + 8, KD = D / 16, ND = D / 8, NQ = BQ / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint16_t* k_s = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* v_s = k_s + kRows * P;
  uint16_t* q_s = v_s + kRows * P;       // two stages
  uint16_t* do_s = q_s + 2 * BQ * P;     // two stages
  float* lse_s = reinterpret_cast<float*>(do_s + 2 * BQ * P);  // two stages, exp2 units
  float* delta_s = lse_s + 2 * BQ;                             // two stages
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, t = lane % 4;

  const int64_t tiles = (p.tk + kRows - 1) / kRows;
  const int64_t bh = int64_t(blockIdx.x) / tiles, bi = bh / p.h, hi = bh % p.h;
  const int64_t k0 = (int64_t(blockIdx.x) % tiles) * kRows;
  const uint16_t* q = p.q + bh * p.tq * D;
  const uint16_t* dout = p.dout + bh * p.tq * D;
  // Under is_causal, query rows before k0 see none of this block's keys.
  const int64_t qbeg = p.causal ? (k0 / BQ) * BQ : 0;
  const int ntiles = p.tq > qbeg ? int((p.tq - qbeg + BQ - 1) / BQ) : 0;
  const int64_t key[2] = {k0 + warp * 16 + lane / 4, k0 + warp * 16 + lane / 4 + 8};

  // lse and delta of query rows [q0, q0 + BQ) into a stage (plain loads: the barrier after the
  // cp.async wait publishes them too).
  auto load_row_stats = [&](int stage, int64_t q0) {
    for (int i = threadIdx.x; i < BQ; i += kThreads) {
      const bool in = q0 + i < p.tq;
      lse_s[stage * BQ + i] = in ? lse_log2(p.lse[bh * p.tq + q0 + i]) : 0.f;
      delta_s[stage * BQ + i] = in ? p.delta[bh * p.tq + q0 + i] : 0.f;
    }
  };

  load_tile<kRows, D>(k_s, p.k + bh * p.tk * D, k0, p.tk);
  load_tile<kRows, D>(v_s, p.v + bh * p.tk * D, k0, p.tk);
  if (ntiles > 0) {
    load_tile<BQ, D>(q_s, q, qbeg, p.tq);
    load_tile<BQ, D>(do_s, dout, qbeg, p.tq);
    load_row_stats(0, qbeg);
  }
  cp_async_commit();

  float dk[ND][4], dv[ND][4];
  for (int dn = 0; dn < ND; ++dn)
    for (int e = 0; e < 4; ++e) dk[dn][e] = dv[dn][e] = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    const int64_t q0 = qbeg + int64_t(it) * BQ;
    const int stage = it % 2;
    if (it + 1 < ntiles) {
      load_tile<BQ, D>(q_s + (1 - stage) * BQ * P, q, q0 + BQ, p.tq);
      load_tile<BQ, D>(do_s + (1 - stage) * BQ * P, dout, q0 + BQ, p.tq);
      load_row_stats(1 - stage, q0 + BQ);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint16_t* qs = q_s + stage * BQ * P;
    const uint16_t* dos = do_s + stage * BQ * P;
    const float* lse2 = lse_s + stage * BQ;
    const float* dl = delta_s + stage * BQ;

    // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ for this warp's 16 keys × BQ query rows.
    float s[NQ][4], dp[NQ][4];
    for (int n = 0; n < NQ; ++n)
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t ka[4], va[4];
      load_a<P>(ka, k_s, warp * 16, kk * 16, lane);
      load_a<P>(va, v_s, warp * 16, kk * 16, lane);
#pragma unroll
      for (int n = 0; n < NQ; ++n) {
        uint32_t b[2];
        load_b_nk<P>(b, qs, n * 8, kk * 16, lane);
        mma(s[n], ka, b);
        load_b_nk<P>(b, dos, n * 8, kk * 16, lane);
        mma(dp[n], va, b);
      }
    }
    // Element (key[e/2], query row q0 + 8n + 2t + e%2): Pᵀ into s, dSᵀ into dp.
    const bool edge = tile_needs_mask(p, q0, BQ, k0 + warp * 16, 16);
#pragma unroll
    for (int n = 0; n < NQ; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = n * 8 + 2 * t + e % 2;
        const float x = edge ? masked_score(p, bi, hi, q0 + r, key[e / 2], s[n][e]) : s[n][e] * p.scale_log2;
        const float prob = x == -INFINITY ? 0.f : exp2f(x - lse2[r]);
        s[n][e] = prob;
        dp[n][e] = prob * (dp[n][e] - dl[r]);
      }
    // dV += Pᵀ·dO and dK += dSᵀ·Q, the k dimension being this tile's query rows.
#pragma unroll
    for (int kk = 0; kk < BQ / 16; ++kk) {
      uint32_t pa[4], sa[4];
      c_to_a(pa, s[2 * kk], s[2 * kk + 1]);
      c_to_a(sa, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int dn = 0; dn < ND; dn += 2) {
        uint32_t b[4];
        load_b_kn_x2<P>(b, dos, kk * 16, dn * 8, lane);
        mma(dv[dn], pa, b);
        mma(dv[dn + 1], pa, b + 2);
        load_b_kn_x2<P>(b, qs, kk * 16, dn * 8, lane);
        mma(dk[dn], sa, b);
        mma(dk[dn + 1], sa, b + 2);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= p.tk) continue;
    float* dk_row = p.dk + (bh * p.tk + key[r]) * D + 2 * t;
    float* dv_row = p.dv + (bh * p.tk + key[r]) * D + 2 * t;
#pragma unroll
    for (int dn = 0; dn < ND; ++dn) {
      *reinterpret_cast<float2*>(dk_row + dn * 8) = make_float2(dk[dn][2 * r] * p.scale, dk[dn][2 * r + 1] * p.scale);
      *reinterpret_cast<float2*>(dv_row + dn * 8) = make_float2(dv[dn][2 * r], dv[dn][2 * r + 1]);
    }
  }
}

MmaParams params(const AttentionArgs& a, const Buffers& buf) {
  MmaParams p{};
  p.q = static_cast<const uint16_t*>(a.q), p.k = static_cast<const uint16_t*>(a.k);
  p.v = static_cast<const uint16_t*>(a.v), p.dout = static_cast<const uint16_t*>(buf.dout);
  p.lse = static_cast<const float*>(buf.lse), p.delta = static_cast<const float*>(buf.delta);
  p.out = static_cast<float*>(buf.o), p.lse_out = static_cast<float*>(buf.l);
  p.dq = static_cast<float*>(buf.dq), p.dk = static_cast<float*>(buf.dk), p.dv = static_cast<float*>(buf.dv);
  p.mask = a.mask;
  p.h = a.h, p.tq = a.tq, p.tk = a.tk;
  p.scale = float(a.scale);
  p.scale_log2 = float(a.scale * 1.4426950408889634);
  p.causal = a.causal;
  return p;
}

template <typename Kernel>
cudaError_t launch(Kernel kernel, const MmaParams& p, int64_t problems, int64_t rows, size_t bytes,
                   cudaStream_t stream) {
  const int64_t blocks = problems * ((rows + kRows - 1) / kRows);
  if (blocks == 0) return cudaSuccess;
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  cudaError_t err = allow_shared_memory(kernel, bytes);
  if (err != cudaSuccess) return err;
  kernel<<<int(blocks), kThreads, bytes, stream>>>(p);
  return cudaGetLastError();
}

template <int D>
cudaError_t forward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream) {
  constexpr size_t bytes = size_t(kRows + 4 * kKeys) * (D + 8) * sizeof(uint16_t);
  return launch(mma_forward_kernel<D>, params(a, buf), a.b * a.h, a.tq, bytes, stream);
}

template <int D>
cudaError_t backward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream) {
  constexpr int BQ = D > 64 ? 32 : 64;
  const MmaParams p = params(a, buf);
  constexpr size_t dkdv_bytes = size_t(2 * kRows + 4 * BQ) * (D + 8) * sizeof(uint16_t) + 4 * BQ * sizeof(float);
  cudaError_t err = launch(mma_dkdv_kernel<D, BQ>, p, a.b * a.h, a.tk, dkdv_bytes, stream);
  if (err != cudaSuccess) return err;
  constexpr size_t dq_bytes = size_t(2 * kRows + 4 * kKeys) * (D + 8) * sizeof(uint16_t);
  return launch(mma_dq_kernel<D>, p, a.b * a.h, a.tq, dq_bytes, stream);
}

}  // namespace

cudaError_t mma_forward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream) {
  switch (a.d) {
    case 32: return forward<32>(a, buf, stream);
    case 64: return forward<64>(a, buf, stream);
    case 128: return forward<128>(a, buf, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t mma_backward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream) {
  switch (a.d) {
    case 32: return backward<32>(a, buf, stream);
    case 64: return backward<64>(a, buf, stream);
    case 128: return backward<128>(a, buf, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace engine::cuda::attn
