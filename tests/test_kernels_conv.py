"""The native conv2d (forward, grad input, grad weight) and max_pool2d (forward, backward) kernels
against the float64 numpy_ref: odd shapes, strides, padding, dilation, groups, both code paths,
thread-count determinism, non-contiguous inputs, zero sizes, every error, and gradchecks."""
import numpy as np
import pytest

import engine
import engine.nn.functional as F
from engine import _C
from engine.backend import cpu as native
from engine.backend import numpy_ref as ref
from gradcheck import gradcheck
from kernel_sets import pinned_kernel_set

# Error bound of a float sum of k products (each product and sum rounds once):
# |got - exact| <= (k + SLACK)·eps·scale with scale the same sum over absolute values.
SLACK = 8
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}

# (N, C, H, W, O, KH, KW, stride, padding, dilation, groups)
CASES = [
    (2, 3, 5, 7, 4, 1, 1, (1, 1), (0, 0), (1, 1), 1),       # 1×1
    (2, 3, 9, 11, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1),      # 3×3, pad 1, H≠W
    (3, 4, 13, 10, 6, 5, 5, (2, 2), (2, 2), (1, 1), 1),     # 5×5, stride 2
    (2, 3, 17, 12, 8, 7, 7, (2, 2), (3, 3), (1, 1), 1),     # 7×7, stride 2, pad 3
    (2, 4, 12, 13, 6, 3, 3, (1, 1), (2, 2), (2, 2), 1),     # dilation 2
    (2, 2, 11, 14, 3, 3, 2, (1, 2), (1, 0), (1, 3), 1),     # mixed stride / dilation per axis
    (2, 4, 9, 8, 6, 3, 3, (1, 1), (1, 1), (1, 1), 2),       # groups 2
    (2, 6, 10, 9, 9, 3, 3, (1, 1), (0, 1), (1, 1), 3),      # groups 3, Og = 3
    (2, 5, 8, 8, 5, 3, 3, (1, 1), (1, 1), (1, 1), 5),       # depthwise
    (1, 1, 28, 28, 32, 3, 3, (1, 1), (0, 0), (1, 1), 1),    # MNIST layer 1, batch 1
    (3, 32, 13, 13, 64, 3, 3, (1, 1), (0, 0), (1, 1), 1),   # MNIST layer 2
    (2, 3, 7, 9, 5, 3, 3, (1, 1), (3, 3), (1, 1), 1),       # padding wider than the kernel
    (2, 3, 6, 5, 7, 6, 5, (1, 1), (0, 0), (1, 1), 1),       # kernel = input: one output
    (1, 2, 3, 2, 3, 3, 3, (1, 1), (1, 1), (1, 1), 1),       # planes narrower than a vector
    (2, 16, 31, 29, 20, 3, 3, (1, 1), (1, 1), (1, 1), 1),   # several tiles per image
    (1, 3, 4, 40, 6, 1, 3, (3, 1), (0, 1), (1, 1), 1),      # stride larger than the kernel
    (2, 3, 21, 37, 1, 3, 2, (1, 1), (2, 1), (2, 3), 1),     # one output channel, several tiles
    (2, 6, 19, 23, 6, 5, 3, (1, 1), (2, 0), (1, 2), 6),     # depthwise, dilated, several tiles
    (2, 5, 12, 17, 1, 3, 3, (1, 1), (1, 1), (1, 2), 1),     # one output channel from 4+ inputs
    (1, 6, 11, 9, 1, 5, 5, (1, 1), (2, 2), (1, 1), 1),      # ... 25 taps, in three tap groups
    (2, 1, 15, 13, 5, 5, 5, (1, 1), (3, 3), (2, 2), 1),     # one input channel, 5 outputs, dilated
    (3, 4, 3, 5, 1, 3, 3, (1, 1), (1, 1), (1, 1), 1),       # one output channel, plane < a tap-sum tile
    (2, 2, 10, 37, 12, 3, 3, (1, 1), (1, 2), (2, 1), 2),    # few taps (by rows), Og = 6, rows of 39
    (2, 8, 7, 9, 2, 3, 3, (1, 1), (1, 1), (1, 1), 2),       # one output channel from 4 inputs, groups 2
]


def case_id(case):
    n, c, h, w, o, kh, kw, s, p, d, g = case
    return f"{n}x{c}x{h}x{w}->{o}_k{kh}x{kw}_s{s[0]}{s[1]}_p{p[0]}{p[1]}_d{d[0]}{d[1]}_g{g}"


def make(case, dtype, rng, bias=True):
    n, c, h, w, o, kh, kw, s, p, d, g = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c // g, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    dy = rng.standard_normal((n, o, oh, ow)).astype(dtype)
    return x, wt, b, dy, (s, p, d, g)


def assert_sum_close(got, want, scale, k, dtype):
    """got within the rounding bound of a sum of k products whose absolute sum is scale."""
    assert got.shape == want.shape and got.dtype == dtype
    bound = (k + SLACK) * EPS[dtype] * scale + np.finfo(dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= bound), f"max error {err.max()} > bound {bound.flat[np.argmax(err - bound)]}"


def check_all(x, wt, b, dy, args):
    """Forward and both gradients of the native kernels against float64 numpy_ref."""
    s, p, d, g = args
    dtype = x.dtype.type
    f64 = [None if a is None else a.astype(np.float64) for a in (x, wt, b, dy)]
    x64, w64, b64, dy64 = f64
    o, cg, kh, kw = wt.shape
    n, oh, ow = dy.shape[0], dy.shape[2], dy.shape[3]

    want = ref.conv2d_forward(x64, w64, b64, s, p, d, g)
    scale = ref.conv2d_forward(np.abs(x64), np.abs(w64), None if b is None else np.abs(b64), s, p, d, g)
    assert_sum_close(native.conv2d_forward(x, wt, b, s, p, d, g), want, scale, cg * kh * kw + 1, dtype)

    want = ref.conv2d_grad_input(dy64, w64, x.shape, s, p, d, g)
    scale = ref.conv2d_grad_input(np.abs(dy64), np.abs(w64), x.shape, s, p, d, g)
    assert_sum_close(native.conv2d_grad_input(dy, wt, x.shape, s, p, d, g), want, scale,
                     (o // g) * kh * kw, dtype)

    want = ref.conv2d_grad_weight(dy64, x64, wt.shape, s, p, d, g)
    scale = ref.conv2d_grad_weight(np.abs(dy64), np.abs(x64), wt.shape, s, p, d, g)
    assert_sum_close(native.conv2d_grad_weight(dy, x, wt.shape, s, p, d, g), want, scale,
                     n * oh * ow, dtype)


@pytest.fixture(params=["avx512-direct", "avx2-direct", "gemm-panels"])
def path(request):
    """Runs the test on each direct kernel set this CPU runs and on the GEMM-panel path."""
    yield from pinned_kernel_set(request.param, _C.conv2d_paths, _C.conv2d_use_path,
                                 _C.conv2d_path)


# ---- conv2d values -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_matches_numpy_ref(case, dtype, path):
    rng = np.random.default_rng(sum(case[:7]))
    check_all(*make(case, dtype, rng))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [CASES[1], CASES[9]], ids=case_id)
def test_conv2d_without_bias(dtype, path, case):
    check_all(*make(case, dtype, np.random.default_rng(1), bias=False))


def test_conv2d_portable_gemm_microkernels(path):
    """The panel path also runs on the GEMM's portable microkernels (a CPU without AVX2)."""
    _C.gemm_use_isa("portable")
    try:
        for case in (CASES[2], CASES[7]):
            check_all(*make(case, np.float32, np.random.default_rng(2)))
    finally:
        _C.gemm_use_isa("auto")


@pytest.mark.parametrize("case", [
    (0, 3, 7, 9, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1),    # empty batch
    (2, 3, 7, 9, 0, 3, 3, (1, 1), (1, 1), (1, 1), 1),    # no output channels
    (2, 0, 7, 9, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1),    # no input channels: y = bias
    (2, 3, 0, 4, 5, 1, 3, (1, 1), (1, 1), (1, 1), 1),    # empty rows, padding gives outputs
], ids=case_id)
def test_conv2d_zero_sizes(case, path):
    x, wt, b, dy, args = make(case, np.float64, np.random.default_rng(3))
    check_all(x, wt, b, dy, args)


@pytest.mark.parametrize("case", [CASES[1], CASES[6], CASES[9], CASES[10], CASES[14], CASES[2],
                                  CASES[16], CASES[17], CASES[19], CASES[20], CASES[21], CASES[22],
                                  (1, 3, 40, 37, 5, 3, 3, (1, 1), (1, 1), (1, 1), 1)], ids=case_id)
def test_conv2d_same_bits_for_1_and_2_threads(case, path, threads):
    """Every output element is summed by one thread in a fixed order (the weight gradient splits
    its output, never the sum over images), so the thread count changes no bit."""
    x, wt, b, dy, (s, p, d, g) = make(case, np.float32, np.random.default_rng(4))
    results = []
    for n in (1, 2):
        _C.set_num_threads(n)
        results.append((native.conv2d_forward(x, wt, b, s, p, d, g),
                        native.conv2d_grad_input(dy, wt, x.shape, s, p, d, g),
                        native.conv2d_grad_weight(dy, x, wt.shape, s, p, d, g)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    # and the 2-thread results are right (a batch of 1 splits each plane between the threads)
    check_all(x, wt, b, dy, (s, p, d, g))


def test_conv2d_large_batch_same_bits_for_1_and_2_threads(threads):
    """A batch big enough that whole images go to each thread."""
    case = (16, 8, 12, 12, 12, 3, 3, (1, 1), (1, 1), (1, 1), 1)
    x, wt, b, dy, (s, p, d, g) = make(case, np.float32, np.random.default_rng(5))
    outs = []
    for n in (1, 2):
        _C.set_num_threads(n)
        outs.append(native.conv2d_grad_weight(dy, x, wt.shape, s, p, d, g))
        outs.append(native.conv2d_forward(x, wt, b, s, p, d, g))
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], outs[3])


def test_conv2d_non_contiguous_inputs(path):
    """Strided views go through the wrapper (which copies them) with the same results."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 9, 11, 3)).transpose(0, 3, 1, 2)[:, :, ::1, ::2]  # (2, 3, 9, 6)
    wt = rng.standard_normal((3, 3, 4, 5)).transpose(0, 1, 3, 2)                  # (3, 3, 5, 4)
    b = rng.standard_normal(6)[::2]
    args = ((1, 1), (1, 2), (1, 1), 1)
    y = native.conv2d_forward(x, wt, b, *args)
    dy = rng.standard_normal(y.shape[::-1]).T[::1]                                # F-ordered
    np.testing.assert_allclose(y, ref.conv2d_forward(x, wt, b, *args), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(native.conv2d_grad_input(dy, wt, x.shape, *args),
                               ref.conv2d_grad_input(dy, wt, x.shape, *args), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(native.conv2d_grad_weight(dy, x, wt.shape, *args),
                               ref.conv2d_grad_weight(dy, x, wt.shape, *args), rtol=1e-12, atol=1e-12)


def test_conv2d_float16_falls_back_to_numpy_ref():
    x, wt, b, dy, args = make(CASES[1], np.float16, np.random.default_rng(7))
    np.testing.assert_array_equal(native.conv2d_forward(x, wt, b, *args), ref.conv2d_forward(x, wt, b, *args))
    np.testing.assert_array_equal(native.conv2d_grad_weight(dy, x, wt.shape, *args),
                                  ref.conv2d_grad_weight(dy, x, wt.shape, *args))


def test_conv2d_nan_and_inf_propagate(path):
    x, wt, b, dy, args = make(CASES[1], np.float32, np.random.default_rng(8))
    x[0, 1, 4, 5], x[1, 2, 0, 0] = np.nan, np.inf
    got, want = native.conv2d_forward(x, wt, b, *args), ref.conv2d_forward(x, wt, b, *args)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


@pytest.mark.parametrize("case", [CASES[18], CASES[22]], ids=case_id)
def test_conv2d_inf_weight_meets_padding(path, case):
    """An inf weight times the zero padding is NaN at the border outputs, as in the reference
    (one output channel from 5 inputs: its tap sums; few taps: its rows)."""
    x, wt, b, dy, args = make(case, np.float32, np.random.default_rng(11))
    wt[0, 0, 0, 0] = np.inf
    got = native.conv2d_forward(x, wt, b, *args)
    with np.errstate(invalid="ignore"):  # inf·0 in the reference, as meant
        want = ref.conv2d_forward(x, wt, b, *args)
    assert np.isnan(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_grad_weight_inf_where_no_tap_reads_it(path, dtype):
    """x[.., 0, 3] of a 5×5 plane is read by taps (0, 1) and (0, 2) alone: the other taps' weight
    gradients stay finite (and equal the reference), however the kernel lays out its sums."""
    x = np.random.default_rng(9).standard_normal((2, 2, 5, 5)).astype(dtype)
    x[1, 0, 0, 3] = np.inf
    dy = np.random.default_rng(10).standard_normal((2, 3, 3, 3)).astype(dtype)
    args = ((1, 1), (0, 0), (1, 1), 1)
    got = native.conv2d_grad_weight(dy, x, (3, 2, 3, 3), *args)
    want = ref.conv2d_grad_weight(dy, x, (3, 2, 3, 3), *args)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5)


# ---- conv2d errors -------------------------------------------------------------------------------
def _x(shape=(2, 4, 8, 8), dtype=np.float32):
    return np.zeros(shape, dtype)


ARGS = ((1, 1), (0, 0), (1, 1), 1)


@pytest.mark.parametrize("call, error, match", [
    (lambda: _C.conv2d_forward(_x((4, 8, 8)), _x((3, 4, 3, 3)), None, *ARGS), ValueError,
     r"conv2d_forward: x must be 4-D, got shape \(4, 8, 8\)"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3)), None, *ARGS), ValueError, "weight must be 4-D"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3, 3), np.float64), None, *ARGS), TypeError,
     "x and weight must have the same dtype, got float32 and float64"),
    (lambda: _C.conv2d_forward(_x(dtype=np.int32), _x((3, 4, 3, 3), np.int32), None, *ARGS), TypeError,
     "x must be float32 or float64, got int32"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 3, 3, 3)), None, *ARGS), ValueError,
     r"input \(2, 4, 8, 8\) has 4 channels but weight \(3, 3, 3, 3\) expects 3"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 2, 3, 3)), None, (1, 1), (0, 0), (1, 1), 2), ValueError,
     r"groups=2 must divide the input channels \(4\) and the output channels \(3\)"),
    (lambda: _C.conv2d_forward(_x(), _x((4, 4, 3, 3)), None, (1, 1), (0, 0), (1, 1), 0), ValueError,
     "groups must be >= 1, got 0"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 9, 3)), None, *ARGS), ValueError,
     r"kernel \(9, 3\) with dilation \(1, 1\) is larger than the padded input \(8, 8\)"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3, 3)), None, (1, 1), (0, 0), (4, 1), 1), ValueError,
     r"kernel \(3, 3\) with dilation \(4, 1\) is larger than the padded input"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3, 3)), None, (0, 1), (0, 0), (1, 1), 1), ValueError,
     r"stride must be >= 1, got \(0, 1\)"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3, 3)), None, (1, 1), (0, -1), (1, 1), 1), ValueError,
     r"padding must be >= 0, got \(0, -1\)"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3, 3)), None, (1, 1), (0, 0), (1, 0), 1), ValueError,
     r"dilation must be >= 1, got \(1, 0\)"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3, 3)), _x((4,)), *ARGS), ValueError,
     r"bias has shape \(4,\), expected \(3,\)"),
    (lambda: _C.conv2d_forward(_x(), _x((3, 4, 3, 3)), _x((3,), np.float64), *ARGS), TypeError,
     "x and bias must have the same dtype"),
    (lambda: _C.conv2d_forward(_x().transpose(0, 1, 3, 2), _x((3, 4, 3, 3)), None, *ARGS), ValueError,
     "x must be C-contiguous"),
    (lambda: _C.conv2d_forward([[[[1.0]]]], _x((3, 4, 3, 3)), None, *ARGS), TypeError,
     "x must be a numpy.ndarray, got <class 'list'>"),
    (lambda: _C.conv2d_grad_input(_x((2, 3, 5, 5)), _x((3, 4, 3, 3)), (2, 4, 8, 8), *ARGS), ValueError,
     r"conv2d_grad_input: dy has shape \(2, 3, 5, 5\), expected \(2, 3, 6, 6\)"),
    (lambda: _C.conv2d_grad_input(_x((2, 3, 6, 6)), _x((3, 4, 3, 3)), (2, 4, -8, 8), *ARGS), ValueError,
     "input shape .* has a negative size"),
    (lambda: _C.conv2d_grad_weight(_x((2, 3, 6, 6)), _x(), (3, 2, 3, 3), *ARGS), ValueError,
     r"conv2d_grad_weight: input \(2, 4, 8, 8\) has 4 channels but weight \(3, 2, 3, 3\) expects 2"),
    (lambda: _C.conv2d_grad_weight(_x((2, 3, 6, 7)), _x(), (3, 4, 3, 3), *ARGS), ValueError,
     r"dy has shape \(2, 3, 6, 7\), expected \(2, 3, 6, 6\)"),
    (lambda: _C.conv2d_grad_weight(_x((2, 3, 6, 6), np.float64), _x(), (3, 4, 3, 3), *ARGS), TypeError,
     "dy and x must have the same dtype"),
])
def test_conv2d_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- max_pool2d ----------------------------------------------------------------------------------
POOLS = [  # (kernel, stride, padding, dilation)
    ((2, 2), (2, 2), (0, 0), (1, 1)),
    ((3, 3), (2, 2), (1, 1), (1, 1)),
    ((3, 2), (1, 2), (1, 1), (1, 1)),
    ((2, 3), (3, 1), (0, 1), (2, 1)),
    ((3, 3), (1, 1), (1, 1), (2, 2)),
    ((1, 1), (2, 3), (0, 0), (1, 1)),
]


def pool_id(pool):
    return "k{}{}_s{}{}_p{}{}_d{}{}".format(*pool[0], *pool[1], *pool[2], *pool[3])


def check_pool(x, pool, rng):
    y0, i0 = ref.max_pool2d_forward(x, *pool)
    y, i = native.max_pool2d_forward(x, *pool)
    assert y.dtype == x.dtype and i.dtype == np.int64
    np.testing.assert_array_equal(y, y0)  # NaN in the same places counts as equal
    np.testing.assert_array_equal(i, i0)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    # The scatter-add sums in the same order as numpy's add.at (output order within a plane).
    np.testing.assert_array_equal(native.max_pool2d_backward(dy, i, x.shape),
                                  ref.max_pool2d_backward(dy, i0, x.shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", POOLS, ids=pool_id)
def test_max_pool2d_matches_numpy_ref(pool, dtype):
    rng = np.random.default_rng(9)
    check_pool(rng.standard_normal((2, 3, 11, 10)).astype(dtype), pool, rng)


@pytest.mark.parametrize("pool", POOLS, ids=pool_id)
def test_max_pool2d_ties_nan_and_inf(pool):
    """Ties keep the first max in window order; NaN is taken (a later one over an earlier one);
    an all -inf window still reports its first in-bounds element."""
    rng = np.random.default_rng(10)
    x = rng.integers(-2, 3, (2, 3, 9, 8)).astype(np.float32)
    x[0, 0, 1:3, 1:4] = np.nan
    x[0, 1, 4, ::3] = np.nan
    x[1, 0] = -np.inf
    x[1, 1, ::2, ::2] = np.inf
    check_pool(x, pool, rng)


def test_max_pool2d_zero_batch_non_contiguous_and_threads(threads):
    rng = np.random.default_rng(11)
    check_pool(np.zeros((0, 3, 8, 8), np.float32), POOLS[1], rng)
    x = rng.standard_normal((3, 12, 13, 4)).transpose(0, 3, 1, 2)[:, :, ::2]
    check_pool(x, POOLS[2], rng)
    x = rng.standard_normal((8, 16, 20, 21)).astype(np.float32)
    results = []
    for n in (1, 2):
        _C.set_num_threads(n)
        y, i = native.max_pool2d_forward(x, *POOLS[1])
        results.append((y, i, native.max_pool2d_backward(np.ones_like(y), i, x.shape)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("call, error, match", [
    (lambda: _C.max_pool2d_forward(_x((4, 8, 8)), (2, 2), (2, 2), (0, 0)), ValueError,
     r"max_pool2d_forward: x must be 4-D"),
    (lambda: _C.max_pool2d_forward(_x(), (2, 2), (2, 2), (2, 0)), ValueError,
     r"padding \(2, 0\) must be at most half the kernel size \(2, 2\)"),
    (lambda: _C.max_pool2d_forward(_x(), (9, 2), (2, 2), (0, 0)), ValueError,
     r"kernel \(9, 2\) with dilation \(1, 1\) is larger than the padded input \(8, 8\)"),
    (lambda: _C.max_pool2d_forward(_x(), (2, 2), (0, 2), (0, 0)), ValueError, "stride must be >= 1"),
    (lambda: _C.max_pool2d_forward(_x(), (0, 2), (1, 2), (0, 0)), ValueError, "kernel must be >= 1"),
    (lambda: _C.max_pool2d_forward(_x(dtype=np.int64), (2, 2), (2, 2), (0, 0)), TypeError,
     "x must be float32 or float64"),
    (lambda: _C.max_pool2d_backward(_x((2, 4, 4, 4)), np.full((2, 4, 4, 4), 64), (2, 4, 8, 8)),
     ValueError, r"indices must lie in \[0, H\*W\) = \[0, 64\)"),
    (lambda: _C.max_pool2d_backward(_x((2, 4, 4, 4)), np.full((2, 4, 4, 4), -1), (2, 4, 8, 8)),
     ValueError, r"indices must lie in \[0, H\*W\)"),
    (lambda: _C.max_pool2d_backward(_x((2, 4, 4, 4)), np.zeros((2, 4, 4, 4), np.int32), (2, 4, 8, 8)),
     TypeError, "indices must be int64, got int32"),
    (lambda: _C.max_pool2d_backward(_x((2, 4, 4, 4)), np.zeros((2, 4, 4, 3), np.int64), (2, 4, 8, 8)),
     ValueError, r"dy and indices must have the same shape, got \(2, 4, 4, 4\) and \(2, 4, 4, 3\)"),
    (lambda: _C.max_pool2d_backward(_x((2, 4, 4, 4)), np.zeros((2, 4, 4, 4), np.int64), (3, 4, 8, 8)),
     ValueError, r"dy \(2, 4, 4, 4\) does not match input_shape \(3, 4, 8, 8\)"),
])
def test_max_pool2d_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- gradchecks through autograd on the native kernels --------------------------------------------
@pytest.fixture
def native_backend():
    previous = engine.backend.current()
    engine.backend.use("native")
    yield
    engine.backend.use(previous)


@pytest.mark.parametrize("case", [CASES[2], CASES[5], CASES[7], CASES[8], CASES[9], CASES[11]],
                         ids=case_id)
def test_conv2d_gradcheck_native(case, path, native_backend):
    n, c, h, w, o, kh, kw, s, p, d, g = case
    x = engine.randn(1, c, min(h, 9), min(w, 9), dtype="float64", requires_grad=True)
    wt = engine.randn(o, c // g, kh, kw, dtype="float64", requires_grad=True)
    b = engine.randn(o, dtype="float64", requires_grad=True)
    assert gradcheck(lambda x, wt, b: F.conv2d(x, wt, b, stride=s, padding=p, dilation=d, groups=g),
                     x, wt, b)


@pytest.mark.parametrize("pool", POOLS, ids=pool_id)
def test_max_pool2d_gradcheck_native(pool, native_backend):
    kernel, stride, padding, dilation = pool
    # distinct values keep every window's max unique, so finite differences see no ties
    x = engine.tensor(np.random.default_rng(12).permutation(2 * 2 * 9 * 10).reshape(2, 2, 9, 10) / 7.0,
                      dtype="float64", requires_grad=True)
    assert gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding, dilation), x)
