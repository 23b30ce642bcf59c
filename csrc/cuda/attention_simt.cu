// Attention on the CUDA cores, for any head sizes and for float64: the general (slower) path.
//
// NOTE: float32 runs here on fp32 FMA, not TF32 tensor cores: the float32 result then matches the
// CPU kernel and numpy_ref to float32 rounding (the default "highest" precision of every other
// float32 GPU op); bf16 autocast is the fast path for training.
//
// Each block holds a tile of BR query rows (forward, dq) or BC keys (dk/dv) and streams the other
// side through shared memory in tiles, converted to the accumulation type A on load. Three phases
// per tile, each a loop over the tile's elements strided by the block's threads:
//   scores  S[r][j] = q_r·k_j·scale (+ mask)            one dot product per (row, key) pair
//   softmax per row: running max m, sum l, rescale α     (forward) or P, dS from the saved lse
//   update  O[r][c] = α·O[r][c] + Σ_j P[r][j]·V[j][c]    (or dQ, dK, dV likewise)
// Tiles shrink until they fit the device's shared memory, so any D works (slowly when large).
#include <algorithm>
#include <climits>

#include "cuda/attention_common.cuh"

namespace engine::cuda::attn {
namespace {

constexpr int kThreads = 128;

template <typename T, typename A>
struct SimtParams {
  const T* q;
  const T* k;
  const T* v;
  const T* dout;
  const A* lse;
  const A* delta;
  A* out;
  A* lse_out;
  A* dq;
  A* dk;
  A* dv;
  AttentionMask mask;
  int64_t h, tq, tk, d, dv_size;
  A scale;
  bool causal;
  int br, bc;  // query rows and keys per tile
};

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }
__device__ __forceinline__ float log_acc(float x) { return logf(x); }
__device__ __forceinline__ double log_acc(double x) { return log(x); }

// rows [r0, r0 + n) of a (rows_total, width) matrix into s with row pitch `pitch`, zeros past the end.
template <typename T, typename A>
__device__ void load_rows(A* s, const T* g, int64_t r0, int n, int64_t rows_total, int64_t width, int64_t pitch) {
  for (int64_t i = threadIdx.x; i < int64_t(n) * width; i += blockDim.x) {
    const int64_t r = i / width, c = i % width;
    s[r * pitch + c] = r0 + r < rows_total ? to_acc<A>(g[(r0 + r) * width + c]) : A(0);
  }
}

template <typename A>
__device__ __forceinline__ A dot(const A* x, const A* y, int64_t n) {
  A acc = 0;
  for (int64_t c = 0; c < n; ++c) acc += x[c] * y[c];
  return acc;
}

// The scaled, masked score of query qi and key kj, or -inf where they may not attend.
template <typename T, typename A>
__device__ __forceinline__ A score(const SimtParams<T, A>& p, int64_t bi, int64_t hi, int64_t qi, int64_t kj,
                                   const A* q_row, const A* k_row) {
  if (qi >= p.tq || kj >= p.tk || (p.causal && kj > qi)) return neg_inf<A>();
  return apply_mask(p.mask, bi, hi, qi, kj, dot(q_row, k_row, p.d) * p.scale);
}

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) simt_forward_kernel(SimtParams<T, A> p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int br = p.br, bc = p.bc;
  const int64_t d = p.d, dv = p.dv_size, kp = d + 1;  // odd K pitch: lanes reading different keys hit different banks
  A* q_s = reinterpret_cast<A*>(smem_raw);
  A* k_s = q_s + br * d;
  A* v_s = k_s + bc * kp;
  A* s_s = v_s + bc * dv;
  A* o_s = s_s + br * bc;
  A* m_s = o_s + br * dv;
  A* l_s = m_s + br;
  A* alpha_s = l_s + br;

  const int64_t tiles = (p.tq + br - 1) / br;
  const int64_t tile = tiles - 1 - int64_t(blockIdx.x) % tiles;  // the longest causal rows start first
  const int64_t bh = int64_t(blockIdx.x) / tiles, bi = bh / p.h, hi = bh % p.h;
  const int64_t q0 = tile * br;
  load_rows(q_s, p.q + bh * p.tq * d, q0, br, p.tq, d, d);
  for (int64_t i = threadIdx.x; i < int64_t(br) * dv; i += blockDim.x) o_s[i] = 0;
  for (int r = threadIdx.x; r < br; r += blockDim.x) m_s[r] = neg_inf<A>(), l_s[r] = 0;

  const int64_t kend = p.causal ? min(p.tk, q0 + br) : p.tk;
  for (int64_t k0 = 0; k0 < kend; k0 += bc) {
    __syncthreads();  // the previous tile's V and probabilities are no longer read
    load_rows(k_s, p.k + bh * p.tk * d, k0, bc, p.tk, d, kp);
    load_rows(v_s, p.v + bh * p.tk * dv, k0, bc, p.tk, dv, dv);
    __syncthreads();
    for (int i = threadIdx.x; i < br * bc; i += blockDim.x) {
      const int r = i / bc, j = i % bc;
      s_s[i] = score(p, bi, hi, q0 + r, k0 + j, q_s + r * d, k_s + j * kp);
    }
    __syncthreads();
    // Online softmax: m' = max(m, rowmax), α = exp(m − m'), l' = α·l + Σ exp(s − m'). A row that
    // has seen only -inf keeps m' = -inf and is shifted by 0, so its exponents are 0, not NaN.
    for (int r = threadIdx.x; r < br; r += blockDim.x) {
      A* s = s_s + r * bc;
      A mx = neg_inf<A>();
      for (int j = 0; j < bc; ++j) mx = fmax(mx, s[j]);
      const A m_new = fmax(m_s[r], mx);
      const A shift = m_new == neg_inf<A>() ? A(0) : m_new;
      const A alpha = exp_acc(m_s[r] - shift);
      A sum = 0;
      for (int j = 0; j < bc; ++j) sum += (s[j] = exp_acc(s[j] - shift));
      l_s[r] = alpha * l_s[r] + sum;
      m_s[r] = m_new;
      alpha_s[r] = alpha;
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < int64_t(br) * dv; i += blockDim.x) {
      const int64_t r = i / dv, c = i % dv;
      const A* prob = s_s + r * bc;
      A acc = alpha_s[r] * o_s[i];
      for (int j = 0; j < bc; ++j) acc += prob[j] * v_s[j * dv + c];
      o_s[i] = acc;
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < int64_t(br) * dv; i += blockDim.x) {
    const int64_t r = i / dv, qi = q0 + r;
    if (qi < p.tq) p.out[(bh * p.tq + qi) * dv + i % dv] = l_s[r] > 0 ? o_s[i] / l_s[r] : A(0);
  }
  for (int r = threadIdx.x; r < br; r += blockDim.x)
    if (q0 + r < p.tq) p.lse_out[bh * p.tq + q0 + r] = l_s[r] > 0 ? m_s[r] + log_acc(l_s[r]) : neg_inf<A>();
}

// The saved lse of a row, as the shift of its exponents: a fully masked row (lse = -inf) is
// shifted by 0, so exp(-inf - 0) = 0 there.
template <typename A>
__device__ __forceinline__ A lse_shift(A lse) { return lse == neg_inf<A>() ? A(0) : lse; }

// dQ for a tile of query rows: for each key tile, P = exp(S − lse), dP = dO·Vᵀ,
// dS = P ∘ (dP − delta), dQ += dS·K; finally dQ ·= scale.
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) simt_dq_kernel(SimtParams<T, A> p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int br = p.br, bc = p.bc;
  const int64_t d = p.d, dv = p.dv_size, kp = d + 1, vp = dv + 1;
  A* q_s = reinterpret_cast<A*>(smem_raw);
  A* do_s = q_s + br * d;
  A* k_s = do_s + br * dv;
  A* v_s = k_s + bc * kp;
  A* ds_s = v_s + bc * vp;
  A* dq_s = ds_s + br * bc;
  A* lse_s = dq_s + br * d;
  A* delta_s = lse_s + br;

  const int64_t tiles = (p.tq + br - 1) / br;
  const int64_t tile = tiles - 1 - int64_t(blockIdx.x) % tiles;
  const int64_t bh = int64_t(blockIdx.x) / tiles, bi = bh / p.h, hi = bh % p.h;
  const int64_t q0 = tile * br;
  load_rows(q_s, p.q + bh * p.tq * d, q0, br, p.tq, d, d);
  load_rows(do_s, p.dout + bh * p.tq * dv, q0, br, p.tq, dv, dv);
  for (int64_t i = threadIdx.x; i < int64_t(br) * d; i += blockDim.x) dq_s[i] = 0;
  for (int r = threadIdx.x; r < br; r += blockDim.x) {
    const bool in = q0 + r < p.tq;
    lse_s[r] = in ? lse_shift(p.lse[bh * p.tq + q0 + r]) : A(0);
    delta_s[r] = in ? p.delta[bh * p.tq + q0 + r] : A(0);
  }
  const int64_t kend = p.causal ? min(p.tk, q0 + br) : p.tk;
  for (int64_t k0 = 0; k0 < kend; k0 += bc) {
    __syncthreads();
    load_rows(k_s, p.k + bh * p.tk * d, k0, bc, p.tk, d, kp);
    load_rows(v_s, p.v + bh * p.tk * dv, k0, bc, p.tk, dv, vp);
    __syncthreads();
    for (int i = threadIdx.x; i < br * bc; i += blockDim.x) {
      const int r = i / bc, j = i % bc;
      const A s = score(p, bi, hi, q0 + r, k0 + j, q_s + r * d, k_s + j * kp);
      A ds = 0;
      if (s != neg_inf<A>()) {
        const A prob = exp_acc(s - lse_s[r]);
        ds = prob * (dot(do_s + r * dv, v_s + j * vp, dv) - delta_s[r]);
      }
      ds_s[i] = ds;
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < int64_t(br) * d; i += blockDim.x) {
      const int64_t r = i / d, c = i % d;
      A acc = dq_s[i];
      for (int j = 0; j < bc; ++j) acc += ds_s[r * bc + j] * k_s[j * kp + c];
      dq_s[i] = acc;
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < int64_t(br) * d; i += blockDim.x) {
    const int64_t qi = q0 + i / d;
    if (qi < p.tq) p.dq[(bh * p.tq + qi) * d + i % d] = dq_s[i] * p.scale;
  }
}

// dK, dV for a tile of keys: for each query tile, dV += Pᵀ·dO and dK += dSᵀ·Q; finally dK ·= scale.
// Under is_causal the query tiles start at the first row that can see the block's first key.
template <typename T, typename A>
__global__ void __launch_bounds__(kThreads) simt_dkdv_kernel(SimtParams<T, A> p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int br = p.br, bc = p.bc;
  const int64_t d = p.d, dv = p.dv_size, kp = d + 1, vp = dv + 1;
  A* k_s = reinterpret_cast<A*>(smem_raw);
  A* v_s = k_s + bc * kp;
  A* dk_s = v_s + bc * vp;
  A* dv_s = dk_s + bc * d;
  A* q_s = dv_s + bc * dv;
  A* do_s = q_s + br * d;
  A* p_s = do_s + br * dv;
  A* ds_s = p_s + br * bc;
  A* lse_s = ds_s + br * bc;
  A* delta_s = lse_s + br;

  const int64_t tiles = (p.tk + bc - 1) / bc;
  const int64_t bh = int64_t(blockIdx.x) / tiles, bi = bh / p.h, hi = bh % p.h;
  const int64_t k0 = (int64_t(blockIdx.x) % tiles) * bc;
  load_rows(k_s, p.k + bh * p.tk * d, k0, bc, p.tk, d, kp);
  load_rows(v_s, p.v + bh * p.tk * dv, k0, bc, p.tk, dv, vp);
  for (int64_t i = threadIdx.x; i < int64_t(bc) * d; i += blockDim.x) dk_s[i] = 0;
  for (int64_t i = threadIdx.x; i < int64_t(bc) * dv; i += blockDim.x) dv_s[i] = 0;

  for (int64_t q0 = p.causal ? k0 : 0; q0 < p.tq; q0 += br) {
    __syncthreads();
    load_rows(q_s, p.q + bh * p.tq * d, q0, br, p.tq, d, d);
    load_rows(do_s, p.dout + bh * p.tq * dv, q0, br, p.tq, dv, dv);
    for (int r = threadIdx.x; r < br; r += blockDim.x) {
      const bool in = q0 + r < p.tq;
      lse_s[r] = in ? lse_shift(p.lse[bh * p.tq + q0 + r]) : A(0);
      delta_s[r] = in ? p.delta[bh * p.tq + q0 + r] : A(0);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < br * bc; i += blockDim.x) {
      const int r = i / bc, j = i % bc;
      const A s = score(p, bi, hi, q0 + r, k0 + j, q_s + r * d, k_s + j * kp);
      A prob = 0, ds = 0;
      if (s != neg_inf<A>()) {
        prob = exp_acc(s - lse_s[r]);
        ds = prob * (dot(do_s + r * dv, v_s + j * vp, dv) - delta_s[r]);
      }
      p_s[i] = prob;
      ds_s[i] = ds;
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < int64_t(bc) * dv; i += blockDim.x) {
      const int64_t j = i / dv, c = i % dv;
      A acc = dv_s[i];
      for (int r = 0; r < br; ++r) acc += p_s[r * bc + j] * do_s[r * dv + c];
      dv_s[i] = acc;
    }
    for (int64_t i = threadIdx.x; i < int64_t(bc) * d; i += blockDim.x) {
      const int64_t j = i / d, c = i % d;
      A acc = dk_s[i];
      for (int r = 0; r < br; ++r) acc += ds_s[r * bc + j] * q_s[r * d + c];
      dk_s[i] = acc;
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < int64_t(bc) * d; i += blockDim.x) {
    const int64_t kj = k0 + i / d;
    if (kj < p.tk) p.dk[(bh * p.tk + kj) * d + i % d] = dk_s[i] * p.scale;
  }
  for (int64_t i = threadIdx.x; i < int64_t(bc) * dv; i += blockDim.x) {
    const int64_t kj = k0 + i / dv;
    if (kj < p.tk) p.dv[(bh * p.tk + kj) * dv + i % dv] = dv_s[i];
  }
}

// Shared-memory elements each kernel needs for a (br, bc) tile.
int64_t forward_elems(int64_t br, int64_t bc, int64_t d, int64_t dv) {
  return br * d + bc * (d + 1) + bc * dv + br * bc + br * dv + 3 * br;
}
int64_t dq_elems(int64_t br, int64_t bc, int64_t d, int64_t dv) {
  return br * d + br * dv + bc * (d + 1) + bc * (dv + 1) + br * bc + br * d + 2 * br;
}
int64_t dkdv_elems(int64_t br, int64_t bc, int64_t d, int64_t dv) {
  return bc * (d + 1) + bc * (dv + 1) + bc * d + bc * dv + br * d + br * dv + 2 * br * bc + 2 * br;
}

// The largest tile (from a fixed list) whose shared memory fits the device; {0, 0} if none does.
template <typename A, typename Elems>
void pick_tile(Elems elems, int64_t d, int64_t dv, int& br, int& bc, size_t& bytes) {
  static constexpr int kTiles[][2] = {{32, 64}, {16, 32}, {8, 32}, {4, 16}, {2, 8}, {1, 4}, {1, 1}};
  const size_t limit = max_shared_memory_per_block();
  for (const auto& t : kTiles) {
    bytes = size_t(elems(t[0], t[1], d, dv)) * sizeof(A);
    if (bytes <= limit) {
      br = t[0], bc = t[1];
      return;
    }
  }
  br = bc = 0;
}

template <typename T, typename A>
SimtParams<T, A> params(const AttentionArgs& a, const Buffers& buf) {
  SimtParams<T, A> p{};
  p.q = static_cast<const T*>(a.q), p.k = static_cast<const T*>(a.k), p.v = static_cast<const T*>(a.v);
  p.dout = static_cast<const T*>(buf.dout);
  p.lse = static_cast<const A*>(buf.lse), p.delta = static_cast<const A*>(buf.delta);
  p.out = static_cast<A*>(buf.o), p.lse_out = static_cast<A*>(buf.l);
  p.dq = static_cast<A*>(buf.dq), p.dk = static_cast<A*>(buf.dk), p.dv = static_cast<A*>(buf.dv);
  p.mask = a.mask;
  p.h = a.h, p.tq = a.tq, p.tk = a.tk, p.d = a.d, p.dv_size = a.dv;
  p.scale = A(a.scale);
  p.causal = a.causal;
  return p;
}

template <typename Kernel, typename P>
cudaError_t launch(Kernel kernel, P p, int64_t problems, int64_t rows, int tile_rows, size_t bytes,
                   cudaStream_t stream) {
  if (tile_rows == 0) return cudaErrorInvalidValue;  // no tile fits shared memory: the head size is too large
  const int64_t blocks = problems * ((rows + tile_rows - 1) / tile_rows);
  if (blocks == 0) return cudaSuccess;
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  cudaError_t err = allow_shared_memory(kernel, bytes);
  if (err != cudaSuccess) return err;
  kernel<<<int(blocks), kThreads, bytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

template <typename T, typename A>
cudaError_t simt_forward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream) {
  auto p = params<T, A>(a, buf);
  size_t bytes = 0;
  pick_tile<A>(forward_elems, a.d, a.dv, p.br, p.bc, bytes);
  return launch(simt_forward_kernel<T, A>, p, a.b * a.h, a.tq, p.br, bytes, stream);
}

template <typename T, typename A>
cudaError_t simt_backward(const AttentionArgs& a, const Buffers& buf, cudaStream_t stream) {
  auto p = params<T, A>(a, buf);
  size_t bytes = 0;
  pick_tile<A>(dkdv_elems, a.d, a.dv, p.br, p.bc, bytes);
  cudaError_t err = launch(simt_dkdv_kernel<T, A>, p, a.b * a.h, a.tk, p.bc, bytes, stream);
  if (err != cudaSuccess) return err;
  pick_tile<A>(dq_elems, a.d, a.dv, p.br, p.bc, bytes);
  return launch(simt_dq_kernel<T, A>, p, a.b * a.h, a.tq, p.br, bytes, stream);
}

template cudaError_t simt_forward<float, float>(const AttentionArgs&, const Buffers&, cudaStream_t);
template cudaError_t simt_forward<double, double>(const AttentionArgs&, const Buffers&, cudaStream_t);
template cudaError_t simt_forward<__nv_bfloat16, float>(const AttentionArgs&, const Buffers&, cudaStream_t);
template cudaError_t simt_backward<float, float>(const AttentionArgs&, const Buffers&, cudaStream_t);
template cudaError_t simt_backward<double, double>(const AttentionArgs&, const Buffers&, cudaStream_t);
template cudaError_t simt_backward<__nv_bfloat16, float>(const AttentionArgs&, const Buffers&, cudaStream_t);

}  // namespace engine::cuda::attn
