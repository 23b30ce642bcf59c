"""engine._C.matmul (the BLIS-style CPU GEMM) against a float64 NumPy reference: shapes, layouts,
batches, the bias + activation epilogue, alpha/beta, thread-count determinism and every error."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import _C
from kernel_sets import pinned_kernel_set

# Error bound of a float GEMM: each of the K products and sums rounds once (FMA or not), so
# |C - C_exact| <= (K + SLACK)·eps·scale with scale = |alpha|·(|A|@|B|) + |beta·C0| + |bias|;
# SLACK covers alpha/beta/bias roundings, and the activation (GELU's slope is below 1.13).
SLACK = 8
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
ACTIVATIONS = ["none", "relu", "gelu"]
_erf = np.vectorize(math.erf)


def activate(x, activation):
    if activation == "relu":
        return np.maximum(x, 0)
    if activation == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    return x


def reference(a, b, alpha=1.0, beta=0.0, c0=None, bias=None, activation="none"):
    """(value, error scale) of act(alpha·a@b + beta·c0 + bias), computed in float64."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    value, scale = alpha * np.matmul(a64, b64), abs(alpha) * np.matmul(np.abs(a64), np.abs(b64))
    if beta != 0:
        value, scale = value + beta * c0, scale + abs(beta * c0.astype(np.float64))
    if bias is not None:
        value, scale = value + bias, scale + np.abs(bias)
    return activate(value, activation), scale


def assert_gemm_close(got, a, b, **kw):
    want, scale = reference(a, b, **kw)
    assert got.shape == want.shape and got.dtype == a.dtype
    bound = (a.shape[-1] + SLACK) * EPS[a.dtype.type] * scale + np.finfo(a.dtype).tiny
    err = np.abs(got - want)
    assert np.all(err <= bound), f"max error {err.max()} > bound {bound.flat[np.argmax(err - bound)]}"


def operand(rng, shape, dtype, transposed=False):
    """A random array of `shape`; transposed=True gives a transposed view of a contiguous one."""
    if not transposed:
        return rng.standard_normal(shape).astype(dtype)
    return rng.standard_normal(shape[:-2] + shape[-2:][::-1]).astype(dtype).swapaxes(-1, -2)


@pytest.fixture(params=["avx512", "avx2-fma", "portable"])
def isa(request):
    """Runs the test with each microkernel set this CPU runs."""
    yield from pinned_kernel_set(request.param, _C.gemm_isas, _C.gemm_use_isa, _C.gemm_isa)


SHAPES = [  # M, K, N
    (1, 1, 1), (97, 131, 61), (6, 16, 16), (7, 17, 17), (5, 0, 7), (0, 3, 4), (4, 3, 0),
    (2000, 3, 5), (5, 3, 2000), (128, 784, 64), (300, 700, 513), (13, 20, 4100),
    (12, 5, 32), (25, 9, 65),  # the AVX-512 tile (12×32) exactly, and one more row and column
    (10, 33, 48), (8, 40, 200), (40, 300, 513),  # last micro-panels of 4 or 8 rows, on C in place
    (20, 1600, 100), (5, 800, 70),  # few rows: B read in place, over several K blocks
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_matches_float64_reference(isa, m, k, n, ta, tb, dtype):
    rng = np.random.default_rng(m * 7 + k * 3 + n)
    a, b = operand(rng, (m, k), dtype, ta), operand(rng, (k, n), dtype, tb)
    got = _C.matmul(a, b)
    assert got.flags.c_contiguous
    assert_gemm_close(got, a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [64, 100, 200])
def test_leading_rows_alone_are_bitwise_those_of_the_whole_product(isa, n, dtype):
    """Fewer rows take other kernels (a last micro-panel of fewer rows, B read in place rather
    than packed), each with the same arithmetic per element of C."""
    rng = np.random.default_rng(n)
    a, b = operand(rng, (60, 300), dtype), operand(rng, (300, n), dtype)
    whole = _C.matmul(a, b)
    for m in range(1, 26):
        assert np.array_equal(_C.matmul(a[:m], b), whole[:m]), f"{m} rows"


def test_k_zero_gives_zeros_and_empty_shapes_give_empty_results():
    z = np.zeros
    assert np.array_equal(_C.matmul(z((3, 0), np.float32), z((0, 4), np.float32)), z((3, 4)))
    assert _C.matmul(z((0, 5)), z((5, 4))).shape == (0, 4)
    assert _C.matmul(z((3, 5)), z((5, 0))).shape == (3, 0)
    assert _C.matmul(z((0, 3, 5)), z((5, 4))).shape == (0, 3, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_shape,b_shape", [
    ((5, 7, 9), (5, 9, 11)),   # batched
    ((5, 7, 9), (9, 11)),      # b shared by every item (batch stride 0)
    ((7, 9), (5, 9, 11)),      # a shared
    ((3, 40, 300), (3, 300, 50)),  # fewer items than... a batch the team shares item by item
    ((8, 40, 300), (8, 300, 50)),  # whole items per thread
])
def test_batched_matmul_with_and_without_broadcast(isa, a_shape, b_shape, dtype):
    rng = np.random.default_rng(len(a_shape) * 10 + len(b_shape))
    a, b = operand(rng, a_shape, dtype), operand(rng, b_shape, dtype)
    assert_gemm_close(_C.matmul(a, b), a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_views_match_their_copies(isa, dtype):
    rng = np.random.default_rng(1)
    big_a = rng.standard_normal((10, 11, 23)).astype(dtype)
    big_b = rng.standard_normal((10, 19, 23)).astype(dtype)
    wide_b = rng.standard_normal((23, 80)).astype(dtype)
    views = [
        (big_a[::2], big_b[::2].swapaxes(1, 2)[:, :, 3:15]),      # sliced batch, transposed b
        (big_a[1::3, 2:9].swapaxes(1, 2), big_b[1::3, :7, 5:17]),  # transposed a, padded rows
        (big_a[0, ::-1], big_b[0].T[:, 2:9]),                      # negative row stride
        (np.broadcast_to(big_a[0, 0], (6, 23)), big_b[0].T),       # zero row stride
        (big_a[0], wide_b[:, 3:72]),  # few rows of A: b's rows read in place, longer than its own
    ]
    for a, b in views:
        got = _C.matmul(a, b)
        assert_gemm_close(got, a, b)
        assert np.array_equal(got, _C.matmul(a.copy(), b.copy()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def strided_operand(rng, shape, dtype, transposed, step):
    """A (rows, cols) view with unit stride on one axis and `step` times the dense stride on the
    other, taken from a bigger (transposed) array."""
    rows, cols = shape
    big = operand(rng, (rows * step, cols * step), dtype, transposed)
    return big[:rows, ::step] if transposed else big[::step, :cols]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [1, 3])
def test_packed_panels_from_every_layout(isa, dtype, step):
    """N > 128 packs A as well as B, so both panel packers (contiguous lanes, contiguous K) see
    every transpose, padded strides, K not a multiple of the vector width and partial panels."""
    rng = np.random.default_rng(step)
    m, k, n = 61, 203, 151
    for ta in (False, True):
        for tb in (False, True):
            a = strided_operand(rng, (m, k), dtype, ta, step)
            b = strided_operand(rng, (k, n), dtype, tb, step)
            got = _C.matmul(a, b)
            assert_gemm_close(got, a, b)
            assert np.array_equal(got, _C.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_bias_and_activation_epilogue(isa, activation, with_bias, dtype):
    rng = np.random.default_rng(2)
    for m, k, n in [(1, 1, 1), (37, 300, 45), (128, 784, 64), (4, 0, 5)]:
        a, b = operand(rng, (m, k), dtype), operand(rng, (k, n), dtype, transposed=True)
        bias = rng.standard_normal(n).astype(dtype) if with_bias else None
        got = _C.matmul(a, b, bias=bias, activation=activation)
        assert_gemm_close(got, a, b, bias=bias, activation=activation)


def test_activations_keep_nan_and_handle_extremes():
    a = np.array([[np.nan], [-1e4], [1e4], [-5.0], [0.0]], np.float32)
    b = np.ones((1, 16), np.float32)
    relu = _C.matmul(a, b, activation="relu")[:, 0]
    gelu = _C.matmul(a, b, activation="gelu")[:, 0]
    assert np.isnan(relu[0]) and np.isnan(gelu[0])
    assert relu[1:].tolist() == [0, 1e4, 0, 0]
    np.testing.assert_allclose(gelu[1:], [0, 1e4, -5 * 0.5 * math.erfc(5 / math.sqrt(2)), 0],
                               atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_alpha_beta_accumulate_into_out(isa, dtype):
    rng = np.random.default_rng(3)
    for m, k, n, batch in [(37, 300, 45, ()), (9, 5, 20, (3,)), (6, 0, 5, ()), (8, 5, 32, ()),
                           (16, 300, 64, ())]:
        a, b = operand(rng, batch + (m, k), dtype), operand(rng, (k, n), dtype)
        c0 = rng.standard_normal(batch + (m, n)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        out = c0.copy()
        got = _C.matmul(a, b, out, alpha=-1.5, beta=0.5, bias=bias, activation="relu")
        assert got is out
        assert_gemm_close(out, a, b, alpha=-1.5, beta=0.5, c0=c0, bias=bias, activation="relu")


def test_beta_zero_never_reads_out():
    a, b = np.ones((7, 3)), np.ones((3, 18))
    out = np.full((7, 18), np.nan)
    _C.matmul(a, b, out)
    assert np.array_equal(out, np.full((7, 18), 3.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_shape,b_shape,tb", [
    ((300, 700), (700, 513), False),     # rows split, packed B shared by the team
    ((5, 300), (300, 2000), True),       # too few rows: columns split
    ((5, 300), (300, 9000), False),      # each of several NC panels split by columns
    ((64, 784), (784, 64), False),       # A read in place: columns split, B packed alone
    ((3, 40, 300), (3, 300, 50), False),  # the team shares each batch item
    ((8, 40, 300), (300, 50), True),     # whole items per thread
])
def test_one_and_two_threads_give_identical_bits(threads, a_shape, b_shape, tb, dtype):
    rng = np.random.default_rng(4)
    a, b = operand(rng, a_shape, dtype), operand(rng, b_shape, dtype, tb)
    bias = rng.standard_normal(b.shape[-1]).astype(dtype)
    results = []
    for n in (1, 2):
        _C.set_num_threads(n)
        results.append(_C.matmul(a, b, bias=bias, activation="gelu"))
    assert np.array_equal(results[0], results[1])


@pytest.mark.parametrize("m,k,n", [(2, 1600, 64), (6, 257, 128), (12, 1600, 32), (4, 1600, 9000),
                                   (48, 1000, 20), (48, 1000, 32)])  # rows split, B in place
def test_threads_packing_their_own_panels_never_race(threads, m, k, n):
    """Split by columns, threads pack their B panels without barriers, block after K block
    (K here cuts into blocks of unequal length): many 2-thread runs all equal the 1-thread bits."""
    rng = np.random.default_rng(m + k + n)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    threads(1)
    want = _C.matmul(a, b)
    threads(2)
    for _ in range(100):
        assert np.array_equal(_C.matmul(a, b), want)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 40), k=st.integers(0, 40), n=st.integers(0, 40),
       ta=st.booleans(), tb=st.booleans(), f64=st.booleans(), seed=st.integers(0, 2**16))
def test_random_shapes_and_layouts_match_reference(m, k, n, ta, tb, f64, seed):
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (m, k), dtype, ta), operand(rng, (k, n), dtype, tb)
    assert_gemm_close(_C.matmul(a, b), a, b)


def test_fma_peak_probe_reports_a_positive_rate():
    assert _C.fma_peak_gflops() > 0
    assert _C.fma_peak_gflops("float64", threads=1) > 0
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        _C.fma_peak_gflops(threads=0)
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        _C.fma_peak_gflops("int32")


# ---- errors: each raises the documented exception with the shapes or dtypes in the message
f32 = np.float32


def z(*shape, dtype=f32):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("args,kwargs,exc,message", [
    ((z(3), z(3, 4)), {}, ValueError, r"a must be 2-D or 3-D, got shape \(3,\)"),
    ((z(3, 4), z(1, 2, 4, 5)), {}, ValueError, r"b must be 2-D or 3-D, got shape \(1, 2, 4, 5\)"),
    ((z(2, 3), z(4, 5)), {}, ValueError,
     r"matmul: a \(2, 3\) and b \(4, 5\): inner dimensions 3 and 4 differ"),
    ((z(2, 3, 4), z(5, 4, 6)), {}, ValueError,
     r"a \(2, 3, 4\) and b \(5, 4, 6\): batch sizes 2 and 5 differ"),
    ((z(2, 3), z(3, 4, dtype=np.float64)), {}, TypeError,
     "a and b must have the same dtype, got float32 and float64"),
    ((z(2, 3, dtype=np.int64), z(3, 4, dtype=np.int64)), {}, TypeError,
     "a must be float32 or float64, got int64"),
    ((z(4, 6)[:, ::2], z(3, 4)), {}, ValueError,
     r"a \(4, 3\) with byte strides \(24, 8\) has no unit stride .* contiguous"),
    ((z(2, 3), z(6, 8)[::2, ::2]), {}, ValueError, r"b \(3, 4\) .* has no unit stride"),
    ((z(2, 3), z(3, 4)), {"bias": z(5)}, ValueError, r"bias has shape \(5,\), expected \(4,\)"),
    ((z(2, 3), z(3, 4)), {"bias": z(1, 4)}, ValueError, r"bias has shape \(1, 4\)"),
    ((z(2, 3), z(3, 4)), {"bias": z(4, dtype=np.float64)}, TypeError,
     "bias must be float32 like a and b, got float64"),
    ((z(2, 3), z(3, 4)), {"bias": z(8)[::2]}, ValueError, "bias must be C-contiguous"),
    ((z(2, 3), z(3, 4)), {"bias": [0.0] * 4}, TypeError, "bias must be a numpy.ndarray"),
    ((z(2, 3), z(3, 4)), {"activation": "tanh"}, ValueError,
     "activation must be 'none', 'relu' or 'gelu', got 'tanh'"),
    ((z(2, 3), z(3, 4)), {"beta": 0.5}, ValueError, "beta=0.5.* needs out="),
    ((z(2, 3), z(3, 4), z(2, 5)), {}, ValueError,
     r"out has shape \(2, 5\), expected \(2, 4\) for a \(2, 3\) and b \(3, 4\)"),
    ((z(2, 2, 3), z(3, 4), z(2, 4)), {}, ValueError, r"out has shape \(2, 4\), expected \(2, 2, 4\)"),
    ((z(2, 3), z(3, 4), z(2, 4, dtype=np.float64)), {}, TypeError,
     "out must be float32 like a and b, got float64"),
    ((z(2, 3), z(3, 4), z(4, 2).T), {}, ValueError, "out must be C-contiguous"),
    ((z(2, 3), z(3, 4), [[0.0] * 4] * 2), {}, TypeError, "out must be a numpy.ndarray, got"),
])
def test_invalid_arguments_raise_with_shapes_and_dtypes(args, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        _C.matmul(*args, **kwargs)


def test_read_only_out_is_refused():
    out = z(2, 4)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        _C.matmul(z(2, 3), z(3, 4), out)


def test_out_sharing_memory_with_an_input_is_refused():
    buf = z(4, 4)
    with pytest.raises(ValueError, match=r"out \(4, 4\) shares memory with a \(4, 4\)"):
        _C.matmul(buf, z(4, 4), buf)
    with pytest.raises(ValueError, match=r"out \(2, 4\) shares memory with b \(4, 4\)"):
        _C.matmul(z(2, 4), buf, buf[2:])
    with pytest.raises(ValueError, match=r"shares memory with bias \(4,\)"):
        _C.matmul(z(4, 4), z(4, 4), buf, bias=buf[3])


def test_misaligned_strides_are_refused():
    raw = np.zeros(4 * 3 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(4, 3)
    with pytest.raises(ValueError, match=r"a \(4, 3\) is not aligned"):
        _C.matmul(raw, z(3, 2))
    odd = np.lib.stride_tricks.as_strided(z(20), shape=(3, 2), strides=(6, 4))
    with pytest.raises(ValueError, match=r"byte strides \(6, 4\) that are not multiples of its itemsize 4"):
        _C.matmul(odd, z(2, 2))
