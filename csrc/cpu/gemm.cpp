// GEMM driver, built the way BLIS builds it: five loops around a register microkernel, A and B
// packed into cache-sized panels, OpenMP over the M/N loops (never K), and runtime dispatch
// between the AVX-512 microkernels (gemm_avx512.cpp), the AVX2+FMA ones (gemm_avx2.cpp) and the
// portable ones below.
#include "cpu/gemm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "common/cpu_features.h"
#include "common/isa_choice.h"
#include "common/parallel.h"
#include "common/workspace.h"

namespace engine::cpu {
namespace {

using detail::Epilogue;
using detail::KernelInfo;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---- Cache blocking ------------------------------------------------------------------------
// NOTE: sized from this core's L1d and L2 (cpu_cache_sizes(); the sizes in parentheses are those
// of an Intel Xeon with AVX-512, 48 KiB and 2 MiB, with the 12×32 fp32 kernel):
//  KC: a kc×NR micro-panel of B stays in L1 while A micro-panels stream past it: two thirds of
//      L1d where that B micro-panel, one A micro-panel and the C tile fit L1 together, else half
//      (256·32·4 B = 32 KiB). Longer K blocks mean fewer passes of C through the epilogue: kc 256
//      instead of 192 measured 1.01-1.06x on eight fp32 shapes (1024³ 1.06x); in fp64, whose A
//      micro-panels are twice the bytes and do not fit beside it, 256 measured 5% slower and no
//      faster with a larger MC. (The AVX2 kernel there: 512 instead of 384, 1.00x; on a 32 KiB
//      L1, 341 instead of 256, not measured.)
//  MC: the mc×kc block of packed A stays in L2 and is reused by every B micro-panel: 9/32 of L2,
//      so B micro-panels and C lines pass without evicting it, and no more than 144 KiB
//      (144·256·4 B; on a 2 MiB L2, 288 KiB blocks measured 7% slower, 576 KiB 10%).
//  NC: the kc×nc panel of packed B stays in L3 and is shared by the cores: 4 MiB.
// K is cut into equal blocks no longer than KC (784 → 4×196, not 3×256 + 16; A read in place
// takes longer ones, see in_place_max_kc), and the blocks depend on the shape, the kernel and the
// caches alone, so every thread count sums each C element in the same order.
struct Blocking {
  int64_t kc, mc, nc;
};

template <typename T>
Blocking blocking(int mr, int nr) {
  constexpr int64_t kPackedABytes = 144 << 10, kPackedBBytes = 4 << 20, size = sizeof(T);
  const CacheSizes c = cpu_cache_sizes();
  const int64_t kc_large = c.l1d * 2 / 3 / (nr * size);
  const bool panels_fit_l1 = kc_large * (mr + nr) * size + mr * nr * size <= c.l1d;
  const int64_t kc = std::clamp<int64_t>(panels_fit_l1 ? kc_large : c.l1d / 2 / (nr * size),
                                         kGemmUnsplitK, 1024);
  const int64_t a_bytes = std::min(c.l2 * 9 / 32, kPackedABytes);
  return {kc, std::max<int64_t>(mr, a_bytes / (kc * size) / mr * mr),
          std::max<int64_t>(nr, kPackedBBytes / (kc * size) / nr * nr)};
}

// Below this many multiply-adds in all (batch·M·N·K) one thread does the whole product: waking
// a team costs a few microseconds, about what 2 threads save on a product of this size.
constexpr int64_t kSerialMacs = int64_t{1} << 16;

// Up to this many columns A is read in place instead of packed: packing costs about as much as
// a pass over A, and A is re-read only N/NR times.
constexpr int64_t kInPlaceMaxN = 128;
// With A read in place and M ≤ kInPlaceBPanels·MR, B's full micro-panels are read in place too
// (see make_plan).
constexpr int64_t kInPlaceBPanels = 4;
// With A read in place, each A micro-panel meets every B micro-panel while it is in L1 (the loops
// over them are swapped), so KC is bounded by packed B fitting half of L2 and the A micro-panel
// fitting 3/4 of L1, instead of by a B micro-panel fitting L1: at 784×64 fp32 one K block instead
// of four, which saves three passes of the C tiles through the epilogue (+8-10% measured).
// Never shorter than the packed path's KC (`packed_kc`).
template <typename T>
int64_t in_place_max_kc(int64_t n, int mr, int nr, int64_t packed_kc) {
  const CacheSizes c = cpu_cache_sizes();
  const int64_t b_bound = c.l2 / 2 / (round_up(n, nr) * int64_t(sizeof(T)));
  const int64_t a_bound = c.l1d * 3 / 4 / (mr * int64_t(sizeof(T)));
  return std::max(packed_kc, std::min(b_bound, a_bound));
}

// ---- Portable microkernels -----------------------------------------------------------------
template <typename T>
T activate(T x, Activation act) {
  if (act == Activation::relu) return x < T(0) ? T(0) : x;  // NaN passes through
  if (act == Activation::gelu) return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752)));
  return x;
}

// MR×NR accumulators in a local array the compiler keeps in SSE registers (6×8 fp32, 6×4 fp64:
// 12 of the 16 xmm registers).
template <typename T, int MR, int NR>
void micro_portable(int64_t kc, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs,
                    T* c, int64_t ldc, const Epilogue<T>& ep) {
  T acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p, a += a_cs, b += b_rs)
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i * a_rs];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      T& cij = c[i * ldc + j];
      T r = ep.alpha * acc[i][j];
      if (ep.beta != T(0)) r += ep.beta * cij;
      if (ep.bias) r += ep.bias[j];
      cij = activate(r, ep.act);
    }
}

IsaChoice g_isa("gemm_use_isa", {"portable", "avx2-fma", "avx512"});

template <typename T>
KernelInfo<T> select_kernel() {
  constexpr int kNR = 16 / sizeof(T) * 2;  // two SSE vectors per row
  switch (g_isa.get()) {
    case Isa::avx512:
      if constexpr (sizeof(T) == 4) return detail::avx512_kernel_f32();
      else return detail::avx512_kernel_f64();
    case Isa::avx2:
      if constexpr (sizeof(T) == 4) return detail::avx2_kernel_f32();
      else return detail::avx2_kernel_f64();
    default:
      return {&micro_portable<T, 6, kNR>, 6, kNR, &detail::pack_panels_strided<T>};
  }
}

template <typename T>
double fma_rate_portable() {
  using clock = std::chrono::steady_clock;
  constexpr int kChains = 16, kRounds = 1000;
  T acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = T(i);
  const T mul = T(0.999999), add = T(1e-6);
  const auto start = clock::now();
  double seconds = 0;
  int64_t rounds = 0;
  do {
    for (int r = 0; r < kRounds; ++r)
      for (T& x : acc) x = x * mul + add;
    rounds += kRounds;
    seconds = std::chrono::duration<double>(clock::now() - start).count();
  } while (seconds < 0.2);
  T sum = 0;
  for (T x : acc) sum += x;
  volatile T sink = sum;  // keeps the chains from being optimized away
  (void)sink;
  return 2.0 * kChains * static_cast<double>(rounds) / seconds;
}

// ---- Driver ------------------------------------------------------------------------------
template <typename T>
struct Plan {
  KernelInfo<T> ki;
  int64_t kc, kblocks, mc, nc;  // kc ≥ 1 and kblocks ≥ 1 even when K = 0 (C = beta·C + epilogue)
  bool pack_a;                  // else A is read in place (all but a partial last micro-panel)
  bool b_in_place;              // B's full micro-panels are read in place (with A in place)
  int64_t a_elems, b_elems;     // packed A per thread, packed B per thread alone
};

// One thread's share of C: rows m0..m1, and column group `col` of `cols` in every NC panel (each
// panel is split anew, so the groups stay even however many panels N spans). The `sharers`
// threads of a column group (this one is number `rank`) pack its B panels together and meet at
// a barrier before and after using them; a thread that packs alone never waits.
struct Part {
  int64_t m0, m1;
  int col, cols, rank, sharers;
};

// The columns j0..j1 of the NC panel jc..jc+nc that belong to pt's column group.
std::pair<int64_t, int64_t> part_columns(const Part& pt, int nr, int64_t jc, int64_t nc) {
  const int64_t tiles = ceil_div(nc, nr);
  return {jc + tiles * pt.col / pt.cols * nr,
          std::min(jc + nc, jc + tiles * (pt.col + 1) / pt.cols * nr)};
}

void sharers_barrier(const Part& pt) {
  if (pt.sharers > 1) {
#pragma omp barrier
  }
}

// A partial tile runs the smallest kernel that covers its rows, on C in place when it fits the
// kernel exactly, else on a stack tile whose valid part is copied back: edge elements get exactly
// the arithmetic of interior ones.
template <typename T>
void run_tile(const KernelInfo<T>& ki, int64_t kc, const T* a, int64_t a_rs, int64_t a_cs,
              const T* b, int64_t b_rs, T* c, int64_t ldc, int64_t m, int64_t n,
              const Epilogue<T>& ep) {
  int rows = static_cast<int>(m);
  while (rows < ki.mr && !ki.by_rows[rows]) ++rows;
  const detail::MicroKernel<T> fn = rows < ki.mr ? ki.by_rows[rows] : ki.fn;
  if (m == rows && n == ki.nr) return fn(kc, a, a_rs, a_cs, b, b_rs, c, ldc, ep);
  alignas(64) T tile[detail::kMaxMR * detail::kMaxNR] = {};
  alignas(64) T bias[detail::kMaxNR] = {};
  Epilogue<T> edge = ep;
  if (ep.beta != T(0))
    for (int64_t i = 0; i < m; ++i) std::copy(c + i * ldc, c + i * ldc + n, tile + i * ki.nr);
  if (ep.bias) edge.bias = std::copy(ep.bias, ep.bias + n, bias) - n;
  fn(kc, a, a_rs, a_cs, b, b_rs, tile, ki.nr, edge);
  for (int64_t i = 0; i < m; ++i) std::copy(tile + i * ki.nr, tile + i * ki.nr + n, c + i * ldc);
}

// The epilogue of the tiles at column jr, written into `at` (made once from `ep`): only the bias
// pointer moves.
// NOTE: not a fresh Epilogue per tile: GCC builds one with 4-byte stores and copies it with 8- and
// 16-byte loads, which cannot take their data from those stores, so each waits until the stores
// before it (the previous tile's C rows) have left the store buffer: 4.8% of a 128³ product.
template <typename T>
const Epilogue<T>& epilogue_at(const Epilogue<T>& ep, int64_t jr, Epilogue<T>& at) {
  at.bias = ep.bias ? ep.bias + jr : nullptr;
  return at;
}

// Packed B micro-panel q of a column group's place: with B read in place only the partial last
// micro-panel is packed, at the start of the place.
template <typename T, typename P>
P* packed_b_panel(const Plan<T>& pl, P* bpanels, int64_t q, int64_t kc) {
  return pl.b_in_place ? bpanels : bpanels + q * pl.ki.nr * kc;
}

// Loops 3, 2 and 1 for columns j0..j1 of one kc×nc panel of B: MC rows of A at a time (in L2,
// packed), then NR columns (one B micro-panel in L1), then MR rows (one A micro-panel streaming
// past); with A read in place, loops 1 and 2 swap.
// `bpanels` holds the packed micro-panels of columns j0.. one after another (with B read in place,
// only the partial last one, if any); `brows` is B's first row of this K block.
template <typename T>
void macro_kernel(const GemmArgs<T>& g, const Plan<T>& pl, const Part& pt, const T* A, T* C,
                  int64_t pc, int64_t kc, int64_t j0, int64_t j1, const T* brows,
                  const T* bpanels, T* apack, const Epilogue<T>& ep) {
  const int mr = pl.ki.mr, nr = pl.ki.nr;
  if (j0 >= j1) return;
  const bool b_in_l3 = int64_t(sizeof(T)) * (j1 - j0) * kc > cpu_cache_sizes().l2 / 2;
  Epilogue<T> at = ep;
  for (int64_t ic = pt.m0; ic < pt.m1; ic += pl.mc) {  // loop 3
    const int64_t mc = std::min(pl.mc, pt.m1 - ic);
    const T* ablk = A + ic * g.a_rs + pc * g.a_cs;
    if (!pl.pack_a) {
      // A read in place; a partial last micro-panel is packed, so the kernel never reads rows past
      // M. Loops 1 and 2 are swapped: the A micro-panel stays in L1 (see in_place_max_kc).
      if (mc % mr) pl.ki.pack(ablk + mc / mr * mr * g.a_rs, g.a_rs, g.a_cs, mc % mr, kc, mr, apack);
      for (int64_t ir = 0; ir < mc; ir += mr) {
        const int64_t m = std::min<int64_t>(mr, mc - ir);
        const bool packed = m < mr;
        const T* ap = packed ? apack : ablk + ir * g.a_rs;
        for (int64_t jr = j0; jr < j1; jr += nr) {
          const bool b_here = pl.b_in_place && jr + nr <= j1;
          run_tile(pl.ki, kc, ap, packed ? 1 : g.a_rs, packed ? mr : g.a_cs,
                   b_here ? brows + jr : packed_b_panel(pl, bpanels, (jr - j0) / nr, kc),
                   b_here ? g.b_rs : nr,
                   C + (ic + ir) * g.c_rs + jr, g.c_rs, m, std::min<int64_t>(nr, j1 - jr),
                   epilogue_at(ep, jr, at));
        }
      }
      continue;
    }
    pl.ki.pack(ablk, g.a_rs, g.a_cs, mc, kc, mr, apack);
    for (int64_t jr = j0; jr < j1; jr += nr) {  // loop 2
      const Epilogue<T>& e = epilogue_at(ep, jr, at);
      const T* bp = packed_b_panel(pl, bpanels, (jr - j0) / nr, kc);
      // The next B micro-panel, fetched towards L2 a slice per tile: a packed B too large for L2
      // lives in L3, and the first tile to read a panel would otherwise wait on it line by line.
      const char* next_b = reinterpret_cast<const char*>(bp + nr * kc);
      const int64_t b_bytes = b_in_l3 && jr + nr < j1 ? int64_t(sizeof(T)) * nr * kc : 0,
                    slice = round_up(ceil_div(b_bytes, ceil_div(mc, mr)), 64);
      for (int64_t ir = 0, off = 0; ir < mc; ir += mr, off += slice) {  // loop 1
        for (int64_t o = off; o < std::min(off + slice, b_bytes); o += 64)
          __builtin_prefetch(next_b + o, 0, 2);
        run_tile(pl.ki, kc, apack + ir * kc, 1, mr, bp, nr, C + (ic + ir) * g.c_rs + jr, g.c_rs,
                 std::min<int64_t>(mr, mc - ir), std::min<int64_t>(nr, j1 - jr), e);
      }
    }
  }
}

// One batch item, this thread's part of it (loops 5 and 4; the team shares packed B).
template <typename T>
void gemm_item(const GemmArgs<T>& g, const Plan<T>& pl, int64_t t, const Part& pt, T* bpack,
               T* apack) {
  const int nr = pl.ki.nr;
  const T* A = g.a + t * g.a_bs;
  const T* B = g.b + t * g.b_bs;
  T* C = g.c + t * g.c_bs;
  // The B micro-panels of this thread's column group.
  // NOTE: each group has a place of its own, the same in every NC panel and for every K block
  // (its most panels times the largest kc; with B read in place, its one partial panel, if any,
  // the only one packed): a group moving on to the next NC panel or K block
  // must never overwrite panels another group is still reading (the groups' column ranges shift
  // in a shorter last NC panel, and K blocks differ in length by one).
  const int64_t group_panels =
      pl.b_in_place ? 1 : ceil_div(ceil_div(std::min(pl.nc, g.n), nr), pt.cols);
  T* bpanels = bpack + pt.col * group_panels * nr * pl.kc;
  for (int64_t jc = 0; jc < g.n; jc += pl.nc) {  // loop 5
    const int64_t nc = std::min(pl.nc, g.n - jc);
    const auto [j0, j1] = part_columns(pt, nr, jc, nc);
    const int64_t panels = j1 > j0 ? ceil_div(j1 - j0, nr) : 0;
    for (int64_t kb = 0; kb < pl.kblocks; ++kb) {  // loop 4
      const int64_t pc = kb * pl.kc, kc = std::min(pl.kc, g.k - pc);
      // This thread's share of them: micro-panels q0..q1 (lanes of B are its columns, so the
      // strides swap roles against A's).
      // With B read in place only a partial last micro-panel is packed.
      const int64_t q0 = panels * pt.rank / pt.sharers, q1 = panels * (pt.rank + 1) / pt.sharers;
      const int64_t first = pl.b_in_place ? std::max(q0, (j1 - j0) / nr) : q0;
      if (q1 > first)
        pl.ki.pack(B + pc * g.b_rs + (j0 + first * nr) * g.b_cs, g.b_cs, g.b_rs,
                   std::min(j1 - j0, q1 * nr) - first * nr, kc, nr,
                   packed_b_panel(pl, bpanels, first, kc));
      sharers_barrier(pt);
      const bool last = kb + 1 == pl.kblocks;
      const Epilogue<T> ep{g.alpha, kb == 0 ? g.beta : T(1), last ? g.bias : nullptr,
                           last ? g.act : Activation::none};
      macro_kernel(g, pl, pt, A, C, pc, kc, j0, j1, B + pc * g.b_rs, bpanels, apack, ep);
      sharers_barrier(pt);  // everyone is done with packed B before it is refilled
    }
  }
}

template <typename T>
Plan<T> make_plan(const GemmArgs<T>& g) {
  Plan<T> pl;
  pl.ki = select_kernel<T>();
  const int mr = pl.ki.mr, nr = pl.ki.nr;
  pl.pack_a = g.n > kInPlaceMaxN;
  // NOTE: packing B pays off over the A micro-panels that reuse it. With at most kInPlaceBPanels
  // of them, B's rows read in place measured 1.05-1.35x (16 to 48 rows, 1 and 2 threads; the
  // AVX2 kernels 1.11-1.17x at 16 and 24 rows); with 6 to 11 (64 and 128 rows) 1.02-1.05x on 1
  // thread but 0.89-0.94x on 2.
  pl.b_in_place = !pl.pack_a && g.b_cs == 1 && g.m <= kInPlaceBPanels * mr;
  const Blocking bl = blocking<T>(mr, nr);
  const int64_t kc_max = pl.pack_a ? bl.kc : in_place_max_kc<T>(g.n, mr, nr, bl.kc);
  pl.kblocks = std::max<int64_t>(1, ceil_div(g.k, kc_max));
  pl.kc = std::max<int64_t>(1, ceil_div(g.k, pl.kblocks));
  pl.mc = bl.mc;
  pl.nc = bl.nc;
  // Allocate only what this shape needs; 64-byte multiples keep threads off each other's lines.
  const int64_t line = 64 / sizeof(T);
  pl.a_elems = round_up((pl.pack_a ? std::min(pl.mc, round_up(g.m, mr)) : mr) * pl.kc, line);
  pl.b_elems = round_up((pl.b_in_place ? nr : std::min(pl.nc, round_up(g.n, nr))) * pl.kc, line);
  return pl;
}

// The team's grid over C: tm row groups × tn column groups (tm·tn = team), picked so the
// busiest thread has the fewest tiles, and on a tie the fewest row groups. The tm threads of a
// column group share its B panels: they wait for each other at every K block, and each reads the
// panels the others packed from their cores' caches. Split by columns alone, a thread packs its
// own and never waits, at the price of packing all of A: with 2 threads (where splitting rows
// once broke ties for a packed A) fp32 256³ 1.25x, 384³ 1.13x, 1024³ 1.02x, fp64 1024³ 1.09x.
template <typename T>
Part grid_part(const GemmArgs<T>& g, const Plan<T>& pl, int tid, int team) {
  const int mr = pl.ki.mr, nr = pl.ki.nr;
  const int64_t tiles_m = ceil_div(g.m, mr);
  const auto group_tiles_n = [&](int tn) {  // a column group's tiles over all NC panels
    const int64_t full = g.n / pl.nc, rest = g.n % pl.nc;
    return full * ceil_div(pl.nc / nr, tn) + ceil_div(ceil_div(rest, nr), tn);
  };
  int tm = 1;
  int64_t best = -1;
  for (int d = 1; d <= team; ++d) {
    if (team % d) continue;
    const int64_t cost = ceil_div(tiles_m, d) * group_tiles_n(team / d);
    if (best < 0 || cost < best) best = cost, tm = d;
  }
  const int r = tid % tm;
  return {std::min(g.m, tiles_m * r / tm * mr), std::min(g.m, tiles_m * (r + 1) / tm * mr),
          tid / tm, team / tm, r, tm};
}

thread_local Workspace t_workspace;

}  // namespace

template <typename T>
void gemm(const GemmArgs<T>& g) {
  if (g.batch <= 0 || g.m <= 0 || g.n <= 0) return;
  const Plan<T> pl = make_plan(g);
  const int64_t tiles = ceil_div(g.m, pl.ki.mr) * ceil_div(g.n, pl.ki.nr);
  const int64_t macs = g.batch * g.m * g.n * std::max<int64_t>(g.k, 1);
  const int nt = macs < kSerialMacs || in_parallel()
                     ? 1
                     : static_cast<int>(std::min<int64_t>(max_threads(), g.batch * tiles));
  // Whole items per thread when the batch divides well (no barriers); otherwise the team
  // shares each item. Either way a C element's arithmetic does not depend on nt.
  const bool by_item = nt > 1 && g.batch >= nt && (g.batch % nt == 0 || g.batch >= 4 * nt);
  const int64_t per_thread = pl.a_elems + (by_item ? pl.b_elems : 0);
  // Packed B shared by the team: column groups round their places up, by under a panel each.
  const int64_t shared_b = by_item ? 0 : pl.b_elems + (nt - 1) * pl.ki.nr * pl.kc;
  T* ws = static_cast<T*>(t_workspace.get(sizeof(T) * (shared_b + nt * per_thread)));
  const Part whole{0, g.m, 0, 1, 0, 1};
  if (nt == 1) {
    for (int64_t t = 0; t < g.batch; ++t) gemm_item(g, pl, t, whole, ws, ws + pl.b_elems);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int tid = thread_id(), team = team_size();
    T* own = ws + shared_b + tid * per_thread;
    if (by_item) {
      for (int64_t t = g.batch * tid / team; t < g.batch * (tid + 1) / team; ++t)
        gemm_item(g, pl, t, whole, own + pl.a_elems, own);
    } else {
      const Part pt = grid_part(g, pl, tid, team);
      for (int64_t t = 0; t < g.batch; ++t) gemm_item(g, pl, t, pt, ws, own);
    }
  }
}

template void gemm<float>(const GemmArgs<float>&);
template void gemm<double>(const GemmArgs<double>&);

double fma_peak_gflops(bool f64, int threads) {
  double flops = 0;
#pragma omp parallel num_threads(threads) reduction(+ : flops)
  {
    if (cpu_has_avx512()) flops += detail::fma_rate_avx512(f64);
    else if (cpu_has_avx2_fma()) flops += detail::fma_rate_avx2(f64);
    else flops += f64 ? fma_rate_portable<double>() : fma_rate_portable<float>();
  }
  return flops * 1e-9;
}

std::vector<std::string> gemm_isas() { return g_isa.available(); }

const char* gemm_isa() { return g_isa.name(); }

void gemm_use_isa(const std::string& isa) { g_isa.use(isa); }

}  // namespace engine::cpu
