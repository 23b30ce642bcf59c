"""engine._C.attention_forward/backward (the flash-style CPU attention) and the native backend's
wrappers against the float64 numpy_ref: shapes across block edges, causality, bool and float masks
(broadcast), fully masked rows, zero-size dims, strided inputs, both ISAs, thread counts, every
error, and gradchecks of scaled_dot_product_attention through autograd."""
import numpy as np
import pytest

import engine
import engine.nn.functional as F
from engine import _C
from engine.backend import cpu, numpy_ref
from gradcheck import gradcheck, leaf
from kernel_sets import pinned_kernel_set
from tolerances import FLOAT64

EPS32 = np.finfo(np.float32).eps
# Rounding steps of one output beyond its sums: the scale, the exp, the max shift, the division.
SLACK = 16

SHAPES = [  # B, H, Tq, Tk, D, Dv
    (1, 1, 1, 1, 1, 1),
    (2, 3, 1, 5, 4, 4),        # one query
    (1, 2, 17, 17, 1, 3),      # D = 1
    (2, 2, 33, 47, 80, 80),    # D = 80: a partial 16-wide panel
    (1, 2, 129, 129, 64, 64),  # past one query block and one key block (96 each)
    (1, 1, 250, 77, 16, 24),   # Tq > Tk
    (1, 1, 77, 250, 16, 24),   # Tq < Tk
    (1, 1, 5, 300, 7, 9),
    (2, 4, 400, 380, 16, 24),  # on AMX with up to 6 threads, groups of query blocks
    (2, 4, 380, 700, 16, 24),
]


def inputs(rng, b, h, tq, tk, d, dv, dtype=np.float64):
    q, k = rng.standard_normal((b, h, tq, d)), rng.standard_normal((b, h, tk, d))
    v, dout = rng.standard_normal((b, h, tk, dv)), rng.standard_normal((b, h, tq, dv))
    return tuple(x.astype(dtype) for x in (q, k, v, dout))


def reference(q, k, v, dout, mask=None, is_causal=False, scale=None):
    """(out, lse, dq, dk, dv) from numpy_ref in float64."""
    q, k, v, dout = (x.astype(np.float64) for x in (q, k, v, dout))
    if mask is not None and mask.dtype != np.bool_:
        mask = mask.astype(np.float64)
    out, lse = numpy_ref.attention_forward(q, k, v, mask, is_causal, scale)
    return (out, lse) + numpy_ref.attention_backward(dout, q, k, v, out, lse, mask, is_causal, scale)


def native(q, k, v, dout, mask=None, is_causal=False, scale=None):
    out, lse = _C.attention_forward(q, k, v, mask, is_causal, scale)
    return (out, lse) + _C.attention_backward(dout, q, k, v, out, lse, mask, is_causal, scale)


def assert_attention_close(got, want, q, k, v):
    """float64: FLOAT64 tolerances. float32: each result is a sum of Tk (out, dk, dv: Tq) products
    of terms that themselves went through a D-long (Dv-long) dot product, so its error is bounded
    by (Tq + Tk + D + Dv + SLACK)·eps, relative to the result's magnitude times (1 + |scores|) for
    the exp's sensitivity to a score's error."""
    names = ("out", "lse", "dq", "dk", "dv")
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape and g.dtype == q.dtype, name
        fin = np.isfinite(w)
        assert np.array_equal(fin, np.isfinite(g)), f"{name}: non-finite values differ"
        assert np.array_equal(g[~fin], w[~fin]), name
        if q.dtype == np.float64:
            np.testing.assert_allclose(g[fin], w[fin], err_msg=name, **FLOAT64)
            continue
        b, h, tq, d = q.shape
        tk, dv = v.shape[2:]
        smax = float(np.abs(q).max(initial=0) * np.abs(k).max(initial=0) * d / np.sqrt(max(d, 1)))
        bound = (tq + tk + d + dv + SLACK) * EPS32 * (1 + smax) * max(np.abs(w[fin]).max(initial=0), 1)
        err = np.abs(g[fin].astype(np.float64) - w[fin])
        assert np.all(err <= bound), f"{name}: max error {err.max()} > {bound}"


@pytest.fixture(params=["avx512-amx", "avx512", "avx2-fma", "portable"])
def isa(request):
    """Runs the test with each kernel set this CPU runs."""
    yield from pinned_kernel_set(request.param, _C.attention_isas, _C.attention_use_isa,
                                 _C.attention_isa)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_float64_reference(isa, shape, is_causal, dtype):
    rng = np.random.default_rng(sum(shape))
    q, k, v, dout = inputs(rng, *shape, dtype)
    assert_attention_close(native(q, k, v, dout, is_causal=is_causal),
                           reference(q, k, v, dout, is_causal=is_causal), q, k, v)


def two_key_probabilities(x):
    """Per x (one batch item each), the float32 kernel's probabilities of two keys with scores 0
    and -x (exact: q = 1, k = (0, -x), scale 1), read out through V = the identity: an
    (x.size, 2) array, exactly (1, e^-x) / (1 + e^-x)."""
    q = np.ones((x.size, 1, 1, 1), np.float32)
    k = np.stack([np.zeros_like(x), -x], 1).reshape(x.size, 1, 2, 1)
    v = np.broadcast_to(np.eye(2, dtype=np.float32), (x.size, 1, 2, 2)).copy()
    out, _ = _C.attention_forward(q, k, v, None, False, 1.0)
    return out.reshape(x.size, 2)


def test_float32_probabilities_are_accurate_over_the_whole_exp_range(isa):
    """x in [0, 87]: each probability goes through one exp, one sum and one division, so a few
    ulp bound it however small it is."""
    x = np.linspace(0, 87, 4001, dtype=np.float32)
    e = np.exp(-x.astype(np.float64))
    want = np.stack([1 / (1 + e), e / (1 + e)], 1)
    rel = np.abs(two_key_probabilities(x) - want) / want
    assert rel.max() <= 6 * EPS32, f"max relative error {rel.max() / EPS32:.1f} eps"


def test_float32_probabilities_are_never_subnormal(isa):
    """Where e^-x falls below the smallest normal float (x > 87.34) the probability is 0, not
    subnormal: the P·V products would be orders of magnitude slower reading subnormals."""
    x = np.linspace(86.5, 88.5, 2001, dtype=np.float32)
    p_small = two_key_probabilities(x)[:, 1]
    tiny = np.finfo(np.float32).tiny
    assert np.all((p_small == 0) | (p_small >= tiny))
    want = np.exp(-x.astype(np.float64))
    normal = x <= 87.3
    np.testing.assert_allclose(p_small[normal], want[normal], rtol=6 * EPS32)


def test_float32_probabilities_far_below_the_maximum_are_exactly_zero(isa):
    """Exponents however far below the row's maximum give exactly 0, also where the exponent of 2
    built from them would wrap around; an unmasked NaN score makes its row NaN, as in the
    reference."""
    x = np.float32([88.5, 100, 264.9, 265.1, 442.3, 1e4, 1e30, 3.4e38])
    p = two_key_probabilities(x)
    assert np.all(p[:, 1] == 0) and np.all(p[:, 0] == 1)
    assert np.isnan(two_key_probabilities(np.float32([np.nan]))).all()


def test_custom_scale():
    q, k, v, dout = inputs(np.random.default_rng(0), 2, 2, 20, 30, 8, 8)
    assert_attention_close(native(q, k, v, dout, scale=0.3), reference(q, k, v, dout, scale=0.3), q, k, v)


MASK_SHAPES = [(), (70,), (1, 70), (2, 1, 1, 70), (1, 3, 100, 70), (100, 70), (2, 3, 100, 70)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("mask_shape", MASK_SHAPES)
def test_broadcast_masks(isa, mask_shape, kind, is_causal, dtype):
    rng = np.random.default_rng(len(mask_shape))
    q, k, v, dout = inputs(rng, 2, 3, 100, 70, 16, 8, dtype)
    if kind == "bool":
        mask = np.asarray(rng.random(mask_shape) > 0.3)
    else:
        mask = np.asarray(rng.standard_normal(mask_shape), dtype)
    assert_attention_close(native(q, k, v, dout, mask, is_causal),
                           reference(q, k, v, dout, mask, is_causal), q, k, v)


def test_mask_read_through_zero_strides():
    rng = np.random.default_rng(3)
    q, k, v, dout = inputs(rng, 2, 3, 40, 50, 8, 8)
    row = rng.random(50) > 0.5
    row[0] = True
    mask = np.broadcast_to(row, (2, 3, 40, 50))
    assert mask.strides[:3] == (0, 0, 0)
    got = native(q, k, v, dout, mask)
    assert_attention_close(got, reference(q, k, v, dout, mask), q, k, v)
    assert all(np.array_equal(a, b) for a, b in zip(got, native(q, k, v, dout, row)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_and_no_nan(isa, kind, dtype):
    rng = np.random.default_rng(4)
    q, k, v, dout = inputs(rng, 1, 2, 130, 60, 8, 8, dtype)
    allowed = rng.random((2, 130, 60)) > 0.5
    allowed[:, [0, 7, 97, 129]] = False  # rows in both query blocks, the last one included
    mask = allowed if kind == "bool" else np.where(allowed, 0.0, -np.inf).astype(dtype)
    for is_causal in (False, True):
        got = native(q, k, v, dout, mask, is_causal)
        out, lse, dq, dk, dv = got
        assert np.all(out[:, :, [0, 7, 97, 129]] == 0) and np.all(lse[:, :, [0, 7, 97, 129]] == -np.inf)
        assert np.all(dq[:, :, [0, 7, 97, 129]] == 0)
        assert not any(np.isnan(x).any() for x in got)
        assert_attention_close(got, reference(q, k, v, dout, mask, is_causal), q, k, v)


def test_nan_score_in_a_masked_position_does_not_leak(isa):
    rng = np.random.default_rng(5)
    q, k, v, dout = inputs(rng, 1, 1, 20, 30, 8, 8)
    k[0, 0, 11] = np.nan  # every score against key 11 is NaN
    mask = np.ones((20, 30), bool)
    mask[:, 11] = False
    out, lse = _C.attention_forward(q, k, v, mask)
    keep = np.arange(30) != 11
    want_out, want_lse = numpy_ref.attention_forward(q, k[:, :, keep], v[:, :, keep])
    np.testing.assert_allclose(out, want_out, **FLOAT64)
    np.testing.assert_allclose(lse, want_lse, **FLOAT64)
    dq, dk, dv = _C.attention_backward(dout, q, k, v, out, lse, mask)
    assert np.all(dk[0, 0, 11] == 0) and np.all(dv[0, 0, 11] == 0)
    assert not np.isnan(dv).any()


@pytest.mark.parametrize("nthreads", [1, 2])
def test_a_query_block_with_a_non_finite_value_changes_no_other_blocks_bits(isa, threads, nthreads):
    """Query blocks share each key block's work (on AMX, the split K and V of a group of them: 7
    blocks on 1 thread, 6 and 1 on 2); one that meets a non-finite value takes other kernels
    alone, so the rest keep their bits."""
    threads(nthreads)
    rng = np.random.default_rng(8)
    q, k, v, _ = inputs(rng, 1, 4, 600, 600, 32, 32, np.float32)
    block = np.arange(600) // 96  # the kernels' query and key blocks
    for is_causal in (False, True):
        want_out, want_lse = _C.attention_forward(q, k, v, None, is_causal)
        q_nan = q.copy()
        q_nan[:, 1, 200] = np.nan  # query block 2 of head 1
        out, lse = _C.attention_forward(q_nan, k, v, None, is_causal)
        assert np.isnan(out[:, 1, 200]).all() and np.isnan(lse[:, 1, 200]).all()
        same = np.ones(out.shape[:3], bool)
        same[:, 1, block == 2] = False
        assert np.array_equal(out[same], want_out[same])
        assert np.array_equal(lse[same], want_lse[same])
        np.testing.assert_allclose(out[~same & ~np.isnan(lse)], want_out[~same & ~np.isnan(lse)],
                                   rtol=1e-5, atol=1e-6)
        mask = np.zeros((600, 600), np.float32)
        mask[300, 10] = np.nan  # a NaN score for a query of block 3 (P is split on AMX)
        out, lse = _C.attention_forward(q, k, v, mask, is_causal)
        same = np.ones(out.shape[:3], bool)
        same[:, :, block == 3] = False
        assert np.array_equal(out[same], want_out[same])
        assert np.array_equal(lse[same], want_lse[same])
        if is_causal:  # an infinite key in block 4 reaches only the queries from block 4 on
            k_inf = k.copy()
            k_inf[:, 1, 400] = np.inf
            out, lse = _C.attention_forward(q, k_inf, v, None, True)
            same = np.ones(out.shape[:3], bool)
            same[:, 1, block >= 4] = False
            assert np.array_equal(out[same], want_out[same])
            assert np.array_equal(lse[same], want_lse[same])


@pytest.fixture
def amx():
    """Runs the test on the AMX kernel set, where the CPU has it."""
    yield from pinned_kernel_set("avx512-amx", _C.attention_isas, _C.attention_use_isa,
                                 _C.attention_isa)


def errors_of(kernel_set, q, k, v, is_causal):
    """Max |out - out64| and |lse - lse64| of the float32 forward on one kernel set."""
    _C.attention_use_isa(kernel_set)
    out, lse = _C.attention_forward(q, k, v, None, is_causal)
    want_out, want_lse = numpy_ref.attention_forward(*(x.astype(np.float64) for x in (q, k, v)),
                                                     None, is_causal)
    return np.abs(out - want_out).max(), np.abs(lse - want_lse).max()


@pytest.mark.parametrize("is_causal", [False, True])
def test_amx_products_are_as_accurate_as_the_fma_kernels(amx, threads, is_causal):
    """Operands that bfloat16 cannot hold (so each product needs all six part products), in
    groups of query blocks (1 thread): errors against float64 within 2x the FMA kernels'. With
    two parts a product would be good to ~2^-16, some 100x worse."""
    threads(1)
    rng = np.random.default_rng(9)
    q, k, v, _ = inputs(rng, 1, 2, 300, 300, 64, 64, np.float32)
    q *= 2.0  # scores of a few units, so the probabilities spread over several orders
    fma_out, fma_lse = errors_of("avx512", q, k, v, is_causal)
    amx_out, amx_lse = errors_of("avx512-amx", q, k, v, is_causal)
    assert amx_out <= 2 * fma_out and amx_lse <= 2 * fma_lse, (amx_out, fma_out, amx_lse, fma_lse)


def test_amx_leaves_values_beyond_2_to_64_to_the_fma_kernels(amx):
    """Probabilities are split times 2^32, so a V past 2^64 could overflow the sums: the
    blocks that see one take the AVX-512 kernels, bit for bit."""
    rng = np.random.default_rng(10)
    q, k, v, _ = inputs(rng, 1, 2, 200, 200, 32, 32, np.float32)
    v[0, 1, 150] = 1e30  # head 1 only
    got = _C.attention_forward(q, k, v)
    _C.attention_use_isa("avx512")
    want = _C.attention_forward(q, k, v)
    assert np.isfinite(got[0]).all()
    assert all(np.array_equal(g[:, 1], w[:, 1]) for g, w in zip(got, want))
    assert not np.array_equal(got[0][:, 0], want[0][:, 0])  # head 0 ran on AMX


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_size_dims(dtype):
    z = np.zeros
    for b, h, tq, tk, d, dv in [(0, 2, 3, 4, 5, 6), (2, 0, 3, 4, 5, 6), (2, 2, 0, 4, 5, 6),
                                (2, 2, 3, 0, 5, 6), (2, 2, 3, 4, 0, 6), (2, 2, 3, 4, 5, 0),
                                (2, 2, 3, 4, 0, 0)]:
        q, k, v = z((b, h, tq, d), dtype), z((b, h, tk, d), dtype), z((b, h, tk, dv), dtype)
        out, lse = _C.attention_forward(q, k, v, scale=0.5)
        assert out.shape == (b, h, tq, dv) and lse.shape == (b, h, tq)
        if tk == 0:  # no keys: every row is fully masked
            assert np.all(out == 0) and np.all(lse == -np.inf)
        else:
            want_out, want_lse = numpy_ref.attention_forward(q, k, v, scale=0.5)
            np.testing.assert_array_equal(out, want_out)
            np.testing.assert_allclose(lse, want_lse)
        grads = _C.attention_backward(z(out.shape, dtype), q, k, v, out, lse, scale=0.5)
        assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]
        assert all(np.all(g == 0) for g in grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_inputs_match_their_copies(isa, dtype):
    rng = np.random.default_rng(6)
    b, t, h, d = 2, 101, 3, 24
    x = rng.standard_normal((b, t, 3 * h, d)).astype(dtype)
    # Head-transposed views of one (B, T, 3H, D) projection, as multi-head attention makes them.
    q, k, v = (x[:, :, i * h:(i + 1) * h].transpose(0, 2, 1, 3) for i in range(3))
    dout = rng.standard_normal((b, h, t, d)).astype(dtype)[:, :, ::-1]  # negative row stride
    mask = (rng.random((1, t, t)) > 0.2)[:, ::-1]
    for is_causal in (False, True):
        got = native(q, k, v, dout, mask, is_causal)
        want = native(*(np.ascontiguousarray(a) for a in (q, k, v, dout, mask)), is_causal)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
        assert_attention_close(got, reference(q, k, v, dout, mask, is_causal), q, k, v)
    # Views the kernel cannot read in place (a non-unit last stride) are copied by the backend.
    k2 = rng.standard_normal((b, h, d, t)).astype(dtype).swapaxes(2, 3)
    out, lse = cpu.attention_forward(q, k2, v)
    got = (out, lse) + cpu.attention_backward(dout, q, k2, v, out, lse)
    assert all(np.array_equal(g, w) for g, w in zip(got, native(q, np.ascontiguousarray(k2), v, dout)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("shape", [
    (2, 3, 200, 150, 32, 40),  # a head per thread: one backward pass
    (1, 1, 300, 250, 32, 40),  # fewer heads than threads: key blocks, then query blocks
    (1, 2, 800, 800, 32, 40),  # on AMX, groups of 8 query blocks on 1 thread, of 2 on 2
])
def test_one_and_two_threads_give_the_same_bits(threads, shape, is_causal, dtype):
    rng = np.random.default_rng(7)
    q, k, v, dout = inputs(rng, *shape, dtype)
    mask = rng.standard_normal(shape[2:4]).astype(dtype)
    results = []
    for n in (1, 2):
        _C.set_num_threads(n)
        results.append(native(q, k, v, dout, mask, is_causal))
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_backend_wrappers_match_numpy_ref_signatures():
    rng = np.random.default_rng(8)
    q, k, v, dout = inputs(rng, 1, 2, 9, 11, 4, 5, np.float32)
    mask64 = rng.standard_normal((9, 11))  # a float64 mask on float32 inputs is cast, as numpy_ref adds it
    out, lse = cpu.attention_forward(q, k, v, mask=mask64, is_causal=True, scale=0.4)
    want = numpy_ref.attention_forward(q, k, v, mask=mask64, is_causal=True, scale=0.4)
    np.testing.assert_allclose(out, want[0], rtol=1e-5, atol=1e-6)
    grads = cpu.attention_backward(dout, q, k, v, out, lse, mask=mask64, is_causal=True, scale=0.4)
    want_grads = numpy_ref.attention_backward(dout, q, k, v, want[0], want[1], mask=mask64, is_causal=True,
                                              scale=0.4)
    for g, w in zip(grads, want_grads):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    # float16 has no native kernel: numpy_ref answers
    h16 = [x.astype(np.float16) for x in (q, k, v)]
    assert cpu.attention_forward(*h16)[0].dtype == np.float16


# ---- errors -------------------------------------------------------------------------------------
def test_errors_name_the_problem():
    z = np.zeros
    q, k, v = z((1, 2, 3, 4)), z((1, 2, 5, 4)), z((1, 2, 5, 6))
    fwd = _C.attention_forward
    with pytest.raises(ValueError, match=r"attention_forward: q must be 4-D \(B, H, Tq, D\), got shape \(2, 3, 4\)"):
        fwd(z((2, 3, 4)), k, v)
    with pytest.raises(ValueError, match=r"same batch and head dims, got q \(1, 2, 3, 4\), k \(1, 3, 5, 4\)"):
        fwd(q, z((1, 3, 5, 4)), v)
    with pytest.raises(ValueError, match=r"q and k must have the same head size D, got q \(1, 2, 3, 4\), k \(1, 2, 5, 3\)"):
        fwd(q, z((1, 2, 5, 3)), v)
    with pytest.raises(ValueError, match=r"k and v must have the same length Tk"):
        fwd(q, k, z((1, 2, 4, 6)))
    with pytest.raises(TypeError, match="q and v must have the same dtype, got float64 and float32"):
        fwd(q, k, v.astype(np.float32))
    with pytest.raises(TypeError, match="q must be float32 or float64, got int64"):
        fwd(q.astype(np.int64), k, v)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\) does not broadcast to \(1, 2, 3, 5\)"):
        fwd(q, k, v, z((3, 4), bool))
    with pytest.raises(ValueError, match=r"mask of shape \(1, 1, 1, 1, 5\) does not broadcast"):
        fwd(q, k, v, z((1, 1, 1, 1, 5), bool))
    with pytest.raises(TypeError, match="mask must be bool or float64 like q, got float32"):
        fwd(q, k, v, z((3, 5), np.float32))
    with pytest.raises(TypeError, match="mask must be bool or float64 like q, got int64"):
        fwd(q, k, v, z((3, 5), np.int64))
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="scale must be finite"):
            fwd(q, k, v, scale=bad)
    with pytest.raises(TypeError):
        fwd(q, k, v, scale="big")
    with pytest.raises(ValueError, match="head size D = 0 needs an explicit scale"):
        fwd(z((1, 2, 3, 0)), z((1, 2, 5, 0)), v)
    with pytest.raises(ValueError, match=r"needs a unit stride in its last dim"):
        fwd(q, z((1, 2, 4, 5)).swapaxes(2, 3), v)

    out, lse = fwd(q, k, v)
    bwd = _C.attention_backward
    with pytest.raises(ValueError, match=r"dout has shape \(1, 2, 3, 4\), expected \(1, 2, 3, 6\)"):
        bwd(z((1, 2, 3, 4)), q, k, v, out, lse)
    with pytest.raises(ValueError, match=r"lse must be 3-D \(B, H, Tq\), got shape \(1, 2, 3, 1\)"):
        bwd(out, q, k, v, out, lse[..., None])
    with pytest.raises(ValueError, match=r"lse has shape \(1, 2, 4\), expected \(1, 2, 3\)"):
        bwd(out, q, k, v, out, z((1, 2, 4)))
    with pytest.raises(TypeError, match="q and out must have the same dtype"):
        bwd(out, q, k, v, out.astype(np.float32), lse)


# ---- through autograd ---------------------------------------------------------------------------
@pytest.fixture
def native_backend():
    previous = engine.backend.current()
    engine.backend.use("native")
    yield
    engine.backend.use(previous)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(5, 5), (7, 3), (3, 7)])
def test_gradcheck_sdpa_native(native_backend, is_causal, tq, tk):
    q, k, v = leaf(2, 2, tq, 5, seed=1), leaf(2, 2, tk, 5, seed=2), leaf(2, 2, tk, 3, seed=3)
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=is_causal), q, k, v)


@pytest.mark.parametrize("is_causal", [False, True])
def test_gradcheck_sdpa_native_with_masks(native_backend, is_causal):
    rng = np.random.default_rng(9)
    q, k, v = leaf(1, 2, 6, 4, seed=1), leaf(1, 2, 6, 4, seed=2), leaf(1, 2, 6, 3, seed=3)
    allowed = rng.random((6, 6)) > 0.4
    allowed[:, 0] = True
    allowed[2] = False  # one fully masked row: zero gradient, no NaN
    for mask in (engine.tensor(allowed), engine.tensor(rng.standard_normal((2, 1, 6)), dtype=engine.float64)):
        assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal),
                         q, k, v)
