"""A NumPy mirror of csrc/cuda/attention_mma.cu's index arithmetic, checked against numpy_ref.

The tensor-core attention kernels cannot run without a GPU; what can be checked here is that their
fragment maps and loops compute attention. This mirror runs each kernel's per-warp algorithm with
the 32 lanes as a NumPy axis, using the same formulas as the CUDA code for every fragment load
(load_a, load_b_nk, ldmatrix.x4.trans in load_b_kn_x2), the mma.m16n8k16 register layouts of the
PTX ISA, c_to_a, the quad shuffles, the online softmax, the causal tile bounds, tile_needs_mask
and the tiles of the dK/dV and dQ kernels. Arithmetic is float64 with no bf16 rounding, so the
result must equal numpy_ref to float64 rounding: an index error shows as a large difference.

    python scripts/mma_attention_mirror.py        # prints the worst relative error per case
"""
import sys

import numpy as np

sys.path.insert(0, ".")
from engine.backend import numpy_ref  # noqa: E402

LANES = np.arange(32)
G, T = LANES // 4, LANES % 4
ROWS, KEYS = 64, 64  # kRows, kKeys


def load_a(s, r0, k0):
    """(32, 4, 2): a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)."""
    r, c = r0 + G, k0 + 2 * T
    return np.stack([np.stack([s[rr, cc], s[rr, cc + 1]], -1) for rr, cc in
                     ((r, c), (r + 8, c), (r, c + 8), (r + 8, c + 8))], 1)


def load_b_nk(s, n0, k0):
    r, c = n0 + G, k0 + 2 * T
    return np.stack([np.stack([s[r, c], s[r, c + 1]], -1), np.stack([s[r, c + 8], s[r, c + 9]], -1)], 1)


def load_b_kn_x2(s, k0, n0):
    """ldmatrix.x4.trans: lane L gives the address of row k0 + L % 16, column n0 + 8·(L / 16); matrix m
    holds the rows whose addresses come from lanes 8m..8m+7; .trans hands lane (g, t) the elements
    (2t, g) and (2t + 1, g) of each matrix (as stored)."""
    regs = []
    for m in range(4):
        vals = []
        for i in range(2):
            addr_lane = 8 * m + 2 * T + i  # the lane that supplied stored row 2t + i of matrix m
            vals.append(s[k0 + addr_lane % 16, n0 + (addr_lane // 16) * 8 + G])
        regs.append(np.stack(vals, -1))
    return np.stack(regs, 1)  # (32, 4, 2): b[0..1] for n-tile n0, b[2..3] for n0 + 8


def mma(c, a, b):
    """c (32, 4) += A (16×16) @ B (16×8) with the m16n8k16 fragment layouts."""
    A, B = np.zeros((16, 16)), np.zeros((16, 8))
    for i in range(2):
        A[G, 2 * T + i], A[G + 8, 2 * T + i] = a[:, 0, i], a[:, 1, i]
        A[G, 2 * T + 8 + i], A[G + 8, 2 * T + 8 + i] = a[:, 2, i], a[:, 3, i]
        B[2 * T + i, G], B[2 * T + 8 + i, G] = b[:, 0, i], b[:, 1, i]
    C = A @ B
    c += np.stack([C[G, 2 * T], C[G, 2 * T + 1], C[G + 8, 2 * T], C[G + 8, 2 * T + 1]], 1)


def c_to_a(c0, c1):
    return np.stack([np.stack([c0[:, 0], c0[:, 1]], -1), np.stack([c0[:, 2], c0[:, 3]], -1),
                     np.stack([c1[:, 0], c1[:, 1]], -1), np.stack([c1[:, 2], c1[:, 3]], -1)], 1)


def quad(x, op):
    """The value of op over each quad of lanes (shuffle xor 1, then 2), on every lane."""
    y = op(x, x[LANES ^ 1])
    return op(y, y[LANES ^ 2])


def tile(m, r0, rows, d):
    """Rows [r0, r0 + rows) of m, zero past the end (cp.async zero fill)."""
    out = np.zeros((rows, d))
    n = max(0, min(rows, m.shape[0] - r0))
    out[:n] = m[r0:r0 + n]
    return out


def needs_mask(q0, rows, k0, keys, tq, tk, causal):
    return k0 + keys > tk or q0 + rows > tq or (causal and k0 + keys - 1 > q0)


def score(x, qi, kj, tq, tk, causal, scale_log2, edge):
    if not edge:
        return x * scale_log2
    bad = (kj >= tk) | (qi >= tq) | ((kj > qi) if causal else False)
    return np.where(bad, -np.inf, x * scale_log2)


def forward(q, k, v, causal, scale):
    tq, d = q.shape
    tk = k.shape[0]
    sl2 = scale / np.log(2)
    out, lse = np.zeros((tq, d)), np.zeros(tq)
    for q0 in range(0, tq, ROWS):
        qs = tile(q, q0, ROWS, d)
        kend = min(tk, q0 + ROWS) if causal else tk
        for w in range(4):
            qa = [load_a(qs, w * 16, kk * 16) for kk in range(d // 16)]
            o = np.zeros((d // 8, 32, 4))
            m, l = np.full((2, 32), -np.inf), np.zeros((2, 32))
            rows = [q0 + w * 16 + G, q0 + w * 16 + G + 8]
            for k0 in range(0, kend, KEYS):
                ks, vs = tile(k, k0, KEYS, d), tile(v, k0, KEYS, d)
                s = np.zeros((8, 32, 4))
                for kk in range(d // 16):
                    for n in range(8):
                        mma(s[n], qa[kk], load_b_nk(ks, n * 8, kk * 16))
                edge = needs_mask(q0 + w * 16, 16, k0, KEYS, tq, tk, causal)
                mx = np.full((2, 32), -np.inf)
                for n in range(8):
                    for e in range(4):
                        s[n][:, e] = score(s[n][:, e], rows[e // 2], k0 + n * 8 + 2 * T + e % 2, tq, tk, causal,
                                           sl2, edge)
                        mx[e // 2] = np.fmax(mx[e // 2], s[n][:, e])
                shift, alpha = np.zeros((2, 32)), np.zeros((2, 32))
                for r in range(2):
                    mx[r] = quad(mx[r], np.fmax)
                    m_new = np.fmax(m[r], mx[r])
                    shift[r] = np.where(m_new == -np.inf, 0, m_new)
                    alpha[r] = np.exp2(m[r] - shift[r])
                    m[r], l[r] = m_new, l[r] * alpha[r]
                for n in range(8):
                    for e in range(4):
                        s[n][:, e] = np.exp2(s[n][:, e] - shift[e // 2])
                        l[e // 2] += s[n][:, e]
                o[:, :, 0:2] *= alpha[0][None, :, None]
                o[:, :, 2:4] *= alpha[1][None, :, None]
                for kk in range(KEYS // 16):
                    a = c_to_a(s[2 * kk], s[2 * kk + 1])
                    for dn in range(0, d // 8, 2):
                        b = load_b_kn_x2(vs, kk * 16, dn * 8)
                        mma(o[dn], a, b[:, 0:2])
                        mma(o[dn + 1], a, b[:, 2:4])
            for r in range(2):
                l[r] = quad(l[r], np.add)
                for lane in range(32):
                    qi = rows[r][lane]
                    if qi >= tq:
                        continue
                    inv = 1 / l[r][lane] if l[r][lane] > 0 else 0
                    for dn in range(d // 8):
                        out[qi, dn * 8 + 2 * T[lane]:dn * 8 + 2 * T[lane] + 2] = o[dn, lane, 2 * r:2 * r + 2] * inv
                    lse[qi] = (m[r][lane] + np.log2(l[r][lane])) * np.log(2) if l[r][lane] > 0 else -np.inf
    return out, lse


def backward(q, k, v, dout, out, lse, causal, scale, bq):
    tq, d = q.shape
    tk = k.shape[0]
    sl2 = scale / np.log(2)
    delta = (dout * out).sum(-1)
    lse2 = np.where(lse == -np.inf, 0, lse / np.log(2))
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    # dK, dV: a block per 64 keys, each warp 16 keys, query tiles of bq rows
    for k0 in range(0, tk, ROWS):
        ks, vs = tile(k, k0, ROWS, d), tile(v, k0, ROWS, d)
        qbeg = (k0 // bq) * bq if causal else 0
        for w in range(4):
            keys = [k0 + w * 16 + G, k0 + w * 16 + G + 8]
            gk, gv = np.zeros((d // 8, 32, 4)), np.zeros((d // 8, 32, 4))
            for q0 in range(qbeg, tq, bq):
                qs, dos = tile(q, q0, bq, d), tile(dout, q0, bq, d)
                l2s = np.array([lse2[q0 + i] if q0 + i < tq else 0 for i in range(bq)])
                dls = np.array([delta[q0 + i] if q0 + i < tq else 0 for i in range(bq)])
                s, dp = np.zeros((bq // 8, 32, 4)), np.zeros((bq // 8, 32, 4))
                for kk in range(d // 16):
                    ka, va = load_a(ks, w * 16, kk * 16), load_a(vs, w * 16, kk * 16)
                    for n in range(bq // 8):
                        mma(s[n], ka, load_b_nk(qs, n * 8, kk * 16))
                        mma(dp[n], va, load_b_nk(dos, n * 8, kk * 16))
                edge = needs_mask(q0, bq, k0 + w * 16, 16, tq, tk, causal)
                for n in range(bq // 8):
                    for e in range(4):
                        r = n * 8 + 2 * T + e % 2
                        x = score(s[n][:, e], q0 + r, keys[e // 2], tq, tk, causal, sl2, edge)
                        prob = np.where(x == -np.inf, 0, np.exp2(x - l2s[r]))
                        s[n][:, e], dp[n][:, e] = prob, prob * (dp[n][:, e] - dls[r])
                for kk in range(bq // 16):
                    pa, sa = c_to_a(s[2 * kk], s[2 * kk + 1]), c_to_a(dp[2 * kk], dp[2 * kk + 1])
                    for dn in range(0, d // 8, 2):
                        b = load_b_kn_x2(dos, kk * 16, dn * 8)
                        mma(gv[dn], pa, b[:, 0:2])
                        mma(gv[dn + 1], pa, b[:, 2:4])
                        b = load_b_kn_x2(qs, kk * 16, dn * 8)
                        mma(gk[dn], sa, b[:, 0:2])
                        mma(gk[dn + 1], sa, b[:, 2:4])
            for r in range(2):
                for lane in range(32):
                    kj = keys[r][lane]
                    if kj < tk:
                        for dn in range(d // 8):
                            cols = slice(dn * 8 + 2 * T[lane], dn * 8 + 2 * T[lane] + 2)
                            dk[kj, cols] = gk[dn, lane, 2 * r:2 * r + 2] * scale
                            dv[kj, cols] = gv[dn, lane, 2 * r:2 * r + 2]
    # dQ: a block per 64 query rows, each warp 16 rows, key tiles of 64
    for q0 in range(0, tq, ROWS):
        qs, dos = tile(q, q0, ROWS, d), tile(dout, q0, ROWS, d)
        kend = min(tk, q0 + ROWS) if causal else tk
        for w in range(4):
            rows = [q0 + w * 16 + G, q0 + w * 16 + G + 8]
            rl2 = [np.array([lse2[i] if i < tq else 0 for i in rr]) for rr in rows]
            rdl = [np.array([delta[i] if i < tq else 0 for i in rr]) for rr in rows]
            gq = np.zeros((d // 8, 32, 4))
            for k0 in range(0, kend, KEYS):
                ks, vs = tile(k, k0, KEYS, d), tile(v, k0, KEYS, d)
                s, dp = np.zeros((8, 32, 4)), np.zeros((8, 32, 4))
                for kk in range(d // 16):
                    qa, da = load_a(qs, w * 16, kk * 16), load_a(dos, w * 16, kk * 16)
                    for n in range(8):
                        mma(s[n], qa, load_b_nk(ks, n * 8, kk * 16))
                        mma(dp[n], da, load_b_nk(vs, n * 8, kk * 16))
                edge = needs_mask(q0 + w * 16, 16, k0, KEYS, tq, tk, causal)
                for n in range(8):
                    for e in range(4):
                        x = score(s[n][:, e], rows[e // 2], k0 + n * 8 + 2 * T + e % 2, tq, tk, causal, sl2, edge)
                        prob = np.where(x == -np.inf, 0, np.exp2(x - rl2[e // 2]))
                        s[n][:, e] = prob * (dp[n][:, e] - rdl[e // 2])
                for kk in range(KEYS // 16):
                    a = c_to_a(s[2 * kk], s[2 * kk + 1])
                    for dn in range(0, d // 8, 2):
                        b = load_b_kn_x2(ks, kk * 16, dn * 8)
                        mma(gq[dn], a, b[:, 0:2])
                        mma(gq[dn + 1], a, b[:, 2:4])
            for r in range(2):
                for lane in range(32):
                    qi = rows[r][lane]
                    if qi < tq:
                        for dn in range(d // 8):
                            dq[qi, dn * 8 + 2 * T[lane]:dn * 8 + 2 * T[lane] + 2] = gq[dn, lane, 2 * r:2 * r + 2] * scale
    return dq, dk, dv


def main():
    rng = np.random.default_rng(0)
    worst = 0.0
    for tq, tk, d, causal in [(70, 70, 32, False), (70, 130, 64, True), (130, 65, 32, True), (64, 64, 128, False),
                              (33, 100, 128, True)]:
        q, k, v, dout = (rng.standard_normal(shape) for shape in ((tq, d), (tk, d), (tk, d), (tq, d)))
        scale = d ** -0.5
        out, lse = forward(q, k, v, causal, scale)
        want_out, want_lse = numpy_ref.attention_forward(*(x[None, None] for x in (q, k, v)), None, causal, scale)
        grads = backward(q, k, v, dout, out, lse, causal, scale, 32 if d > 64 else 64)
        want = numpy_ref.attention_backward(*(x[None, None] for x in (dout, q, k, v, out)), lse[None, None], None,
                                            causal, scale)
        errs = [np.abs(a - b[0, 0]).max() / np.abs(b).max() for a, b in
                zip((out, lse, *grads), (want_out, want_lse, *want))]
        worst = max(worst, *errs)
        print(f"Tq={tq} Tk={tk} D={d} causal={causal}: max rel err out {errs[0]:.1e} lse {errs[1]:.1e} "
              f"dq {errs[2]:.1e} dk {errs[3]:.1e} dv {errs[4]:.1e}")
    print("OK" if worst < 1e-12 else "MISMATCH")
    return 0 if worst < 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
