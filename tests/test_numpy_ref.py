"""The NumPy reference kernels against naive loop implementations, closed forms and finite differences."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backend import numpy_ref as ref
from tolerances import FLOAT64, GRADCHECK_ATOL, GRADCHECK_EPS, GRADCHECK_RTOL, float32_reduction

# Tolerances: the shared ones from tests/tolerances.py, plus three of this file's own.
RTOL, ATOL = FLOAT64["rtol"], FLOAT64["atol"]  # float64 kernels against the naive loops
LAYOUT_RTOL, LAYOUT_ATOL = 1e-12, 1e-14  # the same kernel on a non-contiguous copy of its inputs
ERF_TOL = 1e-14  # _erf against math.erf, relative and absolute
F32 = float32_reduction(18)  # float32 against float64; the longest sum in kernel_cases has 18 terms

# Any warning (overflow, invalid value, divide by zero) is a failure.
pytestmark = pytest.mark.filterwarnings("error")


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def numerical_grad(f, x, eps=GRADCHECK_EPS):
    """Central differences of the scalar f(x) with respect to every element of x."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


def check_grad(analytic, f, x):
    np.testing.assert_allclose(analytic, numerical_grad(f, x), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def strided(a):
    """The values of a in a non-contiguous view (every other element of a larger buffer)."""
    buf = np.zeros(a.shape + (2,), a.dtype)
    buf[..., 0] = a
    return buf[..., 0]


def out_size(size, k, s, p, d=1):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# ----------------------------------------------------------------------------- naive loops

def naive_matmul(a, b):
    out = np.zeros((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = sum(a[i, t] * b[t, j] for t in range(a.shape[1]))
    return out


def naive_gelu(v, approximate="none"):
    if approximate == "tanh":
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def conv_taps(x_shape, w_shape, stride, padding, dilation, groups):
    """Every (n, o, oh, ow, c_in, c_w, i, j, h, w) with an in-bounds input pixel h, w."""
    n, c, hh, ww = x_shape
    o, cg, kh, kw = w_shape
    oh = out_size(hh, kh, stride[0], padding[0], dilation[0])
    ow = out_size(ww, kw, stride[1], padding[1], dilation[1])
    for ni, oi, a, b, ci, i, j in np.ndindex(n, o, oh, ow, cg, kh, kw):
        h = a * stride[0] + i * dilation[0] - padding[0]
        w = b * stride[1] + j * dilation[1] - padding[1]
        if 0 <= h < hh and 0 <= w < ww:
            yield ni, oi, a, b, oi // (o // groups) * cg + ci, ci, i, j, h, w


def naive_conv2d(x, weight, bias, stride, padding, dilation, groups):
    n, o = x.shape[0], weight.shape[0]
    oh = out_size(x.shape[2], weight.shape[2], stride[0], padding[0], dilation[0])
    ow = out_size(x.shape[3], weight.shape[3], stride[1], padding[1], dilation[1])
    y = np.zeros((n, o, oh, ow))
    taps = conv_taps(x.shape, weight.shape, stride, padding, dilation, groups)
    for ni, oi, a, b, c, ci, i, j, h, w in taps:
        y[ni, oi, a, b] += weight[oi, ci, i, j] * x[ni, c, h, w]
    if bias is not None:
        y += bias[:, None, None]
    return y


def naive_conv2d_grads(dy, x, weight, stride, padding, dilation, groups):
    dx, dw = np.zeros(x.shape), np.zeros(weight.shape)
    taps = conv_taps(x.shape, weight.shape, stride, padding, dilation, groups)
    for ni, oi, a, b, c, ci, i, j, h, w in taps:
        dx[ni, c, h, w] += weight[oi, ci, i, j] * dy[ni, oi, a, b]
        dw[oi, ci, i, j] += x[ni, c, h, w] * dy[ni, oi, a, b]
    return dx, dw


def naive_max_pool(x, kernel, stride, padding, dilation):
    """PyTorch's loop: scan the in-bounds window row by row, take v > max or NaN."""
    n, c, hh, ww = x.shape
    oh = out_size(hh, kernel[0], stride[0], padding[0], dilation[0])
    ow = out_size(ww, kernel[1], stride[1], padding[1], dilation[1])
    y, idx = np.zeros((n, c, oh, ow)), np.zeros((n, c, oh, ow), np.int64)
    for ni, ci, a, b in np.ndindex(n, c, oh, ow):
        best, arg = -math.inf, None
        for i, j in np.ndindex(*kernel):
            h = a * stride[0] + i * dilation[0] - padding[0]
            w = b * stride[1] + j * dilation[1] - padding[1]
            if 0 <= h < hh and 0 <= w < ww:
                v = x[ni, ci, h, w]
                if arg is None:
                    arg = h * ww + w
                if v > best or math.isnan(v):
                    best, arg = v, h * ww + w
        y[ni, ci, a, b], idx[ni, ci, a, b] = best, arg
    return y, idx


def naive_avg_pool(x, kernel, stride, padding, count_include_pad):
    n, c, hh, ww = x.shape
    oh = out_size(hh, kernel[0], stride[0], padding[0])
    ow = out_size(ww, kernel[1], stride[1], padding[1])
    y = np.zeros((n, c, oh, ow))
    for ni, ci, a, b in np.ndindex(n, c, oh, ow):
        total, count = 0.0, 0
        for i, j in np.ndindex(*kernel):
            h, w = a * stride[0] + i - padding[0], b * stride[1] + j - padding[1]
            if 0 <= h < hh and 0 <= w < ww:
                total += x[ni, ci, h, w]
                count += 1
        y[ni, ci, a, b] = total / (kernel[0] * kernel[1] if count_include_pad else count)
    return y


def naive_attention(q, k, v, mask=None, is_causal=False, scale=None):
    b, nh, tq, d = q.shape
    tk, dv = v.shape[2:]
    scale = 1 / math.sqrt(d) if scale is None else scale
    if mask is not None:
        mask = np.broadcast_to(mask, (b, nh, tq, tk))
    out, lse = np.zeros((b, nh, tq, dv)), np.full((b, nh, tq), -np.inf)
    for bi, hi, i in np.ndindex(b, nh, tq):
        scores = {}
        for j in range(tk):
            if (is_causal and j > i) or (mask is not None and mask.dtype == bool and not mask[bi, hi, i, j]):
                continue
            s = scale * sum(q[bi, hi, i, t] * k[bi, hi, j, t] for t in range(d))
            if mask is not None and mask.dtype != bool:
                s += mask[bi, hi, i, j]
            if s != -math.inf:
                scores[j] = s
        if scores:
            m = max(scores.values())
            total = sum(math.exp(s - m) for s in scores.values())
            lse[bi, hi, i] = m + math.log(total)
            for j, s in scores.items():
                out[bi, hi, i] += math.exp(s - m) / total * v[bi, hi, j]
    return out, lse


def naive_softmax(x, log=False):
    y = np.zeros(x.shape)
    for row in np.ndindex(x.shape[:-1]):
        m = max(x[row])
        total = sum(math.exp(v - m) for v in x[row])
        for j, v in enumerate(x[row]):
            y[row + (j,)] = v - m - math.log(total) if log else math.exp(v - m) / total
    return y


def naive_layer_norm(x, weight, bias, eps):
    y, mean, rstd = np.zeros(x.shape), np.zeros(x.shape[0]), np.zeros(x.shape[0])
    for n in range(x.shape[0]):
        mean[n] = sum(x[n]) / x.shape[1]
        rstd[n] = 1 / math.sqrt(sum((v - mean[n]) ** 2 for v in x[n]) / x.shape[1] + eps)
        for c in range(x.shape[1]):
            y[n, c] = (x[n, c] - mean[n]) * rstd[n] * weight[c] + bias[c]
    return y, mean, rstd


def naive_cross_entropy(logits, target, ignore_index=-100):
    losses = np.zeros(len(target))
    for n, t in enumerate(target):
        if t != ignore_index:
            m = max(logits[n])
            losses[n] = m + math.log(sum(math.exp(v - m) for v in logits[n])) - logits[n, t]
    return losses


# ----------------------------------------------------------------------------- matmul, linear

@pytest.mark.parametrize("m,k,p", [(1, 1, 1), (3, 5, 7), (7, 1, 2), (2, 13, 1)])
def test_matmul_matches_loops(m, k, p):
    a, b = rand(m, k), rand(k, p, seed=1)
    close(ref.matmul(a, b), naive_matmul(a, b))
    a3, b3 = rand(3, m, k), rand(3, k, p, seed=1)
    close(ref.matmul(a3, b3), np.stack([naive_matmul(a3[i], b3[i]) for i in range(3)]))


@settings(deadline=None, max_examples=40)
@given(m=st.integers(0, 5), k=st.integers(0, 5), p=st.integers(0, 5))
def test_matmul_any_size_including_zero(m, k, p):
    a, b = rand(m, k), rand(k, p, seed=1)
    y = ref.matmul(a, b)
    assert y.shape == (m, p)
    close(y, naive_matmul(a, b))


def test_matmul_with_empty_inner_dimension_gives_zeros():
    y = ref.matmul(np.ones((2, 4, 0)), np.ones((2, 0, 3)))
    assert y.shape == (2, 4, 3) and not y.any()


@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_loops(activation, with_bias):
    x, w, b = rand(5, 7), rand(3, 7, seed=1), rand(3, seed=2)
    expected = naive_matmul(x, w.T) + (b if with_bias else 0)
    if activation == "relu":
        expected = np.maximum(expected, 0)
    elif activation == "gelu":
        expected = np.vectorize(naive_gelu)(expected)
    close(ref.linear(x, w, b if with_bias else None, activation), expected)


def test_linear_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        ref.linear(rand(2, 3), rand(4, 3), None, "tanh")


# ----------------------------------------------------------------------------- conv2d

CONV_CASES = [  # x shape, weight shape, stride, padding, dilation, groups
    ((2, 3, 5, 7), (4, 3, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((1, 1, 7, 5), (2, 1, 1, 1), (2, 1), (1, 0), (1, 1), 1),
    ((2, 3, 7, 5), (5, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 3, 9, 6), (2, 3, 3, 3), (2, 2), (1, 1), (1, 1), 1),
    ((2, 1, 11, 13), (3, 1, 5, 5), (2, 2), (2, 2), (1, 1), 1),
    ((1, 3, 13, 11), (2, 3, 7, 7), (2, 2), (3, 3), (1, 1), 1),
    ((2, 3, 11, 9), (2, 3, 3, 3), (1, 2), (2, 1), (2, 2), 1),
    ((2, 4, 7, 6), (6, 2, 3, 3), (2, 1), (1, 1), (1, 1), 2),
    ((1, 6, 9, 8), (4, 3, 3, 2), (1, 2), (2, 0), (2, 3), 2),
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_forward_matches_loops(xs, ws, stride, padding, dilation, groups):
    x, w, b = rand(*xs), rand(*ws, seed=1), rand(ws[0], seed=2)
    close(ref.conv2d_forward(x, w, b, stride, padding, dilation, groups),
          naive_conv2d(x, w, b, stride, padding, dilation, groups))
    close(ref.conv2d_forward(x, w, None, stride, padding, dilation, groups),
          naive_conv2d(x, w, None, stride, padding, dilation, groups))


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_grads_match_loops(xs, ws, stride, padding, dilation, groups):
    x, w = rand(*xs), rand(*ws, seed=1)
    dy = rand(*naive_conv2d(x, w, None, stride, padding, dilation, groups).shape, seed=3)
    dx, dw = naive_conv2d_grads(dy, x, w, stride, padding, dilation, groups)
    close(ref.conv2d_grad_input(dy, w, xs, stride, padding, dilation, groups), dx)
    close(ref.conv2d_grad_weight(dy, x, ws, stride, padding, dilation, groups), dw)


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", [CONV_CASES[i] for i in (3, 6, 8)])
def test_conv2d_grads_match_finite_differences(xs, ws, stride, padding, dilation, groups):
    x, w = rand(*xs), rand(*ws, seed=1)
    dy = rand(*ref.conv2d_forward(x, w, None, stride, padding, dilation, groups).shape, seed=3)
    args = (stride, padding, dilation, groups)
    check_grad(ref.conv2d_grad_input(dy, w, xs, *args),
               lambda x_: np.sum(ref.conv2d_forward(x_, w, None, *args) * dy), x)
    check_grad(ref.conv2d_grad_weight(dy, x, ws, *args),
               lambda w_: np.sum(ref.conv2d_forward(x, w_, None, *args) * dy), w)


def test_conv2d_in_sample_blocks_equals_whole_batch(monkeypatch):
    x, w, b = rand(5, 3, 6, 7), rand(4, 3, 3, 3, seed=1), rand(4, seed=2)
    dy = rand(5, 4, 6, 7, seed=3)
    args = ((1, 1), (1, 1), (1, 1), 1)
    whole = ref.conv2d_forward(x, w, b, *args), ref.conv2d_grad_weight(dy, x, w.shape, *args)
    monkeypatch.setattr(ref, "_BLOCK_BYTES", 1)  # one sample per block
    close(ref.conv2d_forward(x, w, b, *args), whole[0])
    close(ref.conv2d_grad_weight(dy, x, w.shape, *args), whole[1])


def test_conv2d_with_empty_batch():
    args = ((1, 1), (1, 1), (1, 1), 1)
    x, w = np.zeros((0, 3, 5, 5)), rand(4, 3, 3, 3)
    assert ref.conv2d_forward(x, w, None, *args).shape == (0, 4, 5, 5)
    assert ref.conv2d_grad_input(np.zeros((0, 4, 5, 5)), w, x.shape, *args).shape == x.shape
    dw = ref.conv2d_grad_weight(np.zeros((0, 4, 5, 5)), x, w.shape, *args)
    assert dw.shape == w.shape and not dw.any()


# ----------------------------------------------------------------------------- pooling

POOL_CASES = [  # x shape, kernel, stride, padding, dilation
    ((2, 3, 6, 8), (2, 2), (2, 2), (0, 0), (1, 1)),
    ((1, 1, 7, 5), (3, 3), (2, 2), (1, 1), (1, 1)),
    ((2, 3, 9, 7), (3, 2), (1, 2), (1, 1), (2, 1)),
    ((1, 2, 11, 13), (5, 3), (3, 2), (2, 1), (1, 2)),
]


@pytest.mark.parametrize("xs,kernel,stride,padding,dilation", POOL_CASES)
def test_max_pool2d_forward_matches_loops(xs, kernel, stride, padding, dilation):
    x = rand(*xs)
    y, idx = ref.max_pool2d_forward(x, kernel, stride, padding, dilation)
    ey, eidx = naive_max_pool(x, kernel, stride, padding, dilation)
    close(y, ey)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, eidx)


def test_max_pool2d_ties_infinities_and_nan_follow_pytorch():
    x = np.zeros((1, 1, 5, 6))                     # ties everywhere: the first max of each window
    x[0, 0, 0] = -np.inf                          # a window of -inf only picks its first in-bounds element
    x[0, 0, 3, 4], x[0, 0, 4, 4] = np.nan, np.nan  # a NaN wins; a later NaN over an earlier one
    for case in [((3, 3), (2, 2), (1, 1), (1, 1)), ((2, 3), (1, 2), (1, 1), (2, 1))]:
        y, idx = ref.max_pool2d_forward(x, *case)
        ey, eidx = naive_max_pool(x, *case)
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(idx, eidx)
    y, idx = ref.max_pool2d_forward(np.full((1, 1, 2, 2), -np.inf), (2, 2), (1, 1), (1, 1))
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])
    x = np.full((1, 1, 4, 5), -np.inf)
    np.testing.assert_array_equal(ref.max_pool2d_forward(x, (2, 2), (1, 1), (1, 1), (2, 3))[1],
                                  naive_max_pool(x, (2, 2), (1, 1), (1, 1), (2, 3))[1])


@pytest.mark.parametrize("xs,kernel,stride,padding,dilation", POOL_CASES)
def test_max_pool2d_backward_scatters_and_matches_finite_differences(xs, kernel, stride, padding, dilation):
    x = rand(*xs)
    y, idx = ref.max_pool2d_forward(x, kernel, stride, padding, dilation)
    dy = rand(*y.shape, seed=1)
    dx = ref.max_pool2d_backward(dy, idx, xs)
    expected = np.zeros(xs)
    for n, c, a, b in np.ndindex(y.shape):
        expected[n, c].flat[idx[n, c, a, b]] += dy[n, c, a, b]
    close(dx, expected)
    args = (kernel, stride, padding, dilation)
    check_grad(dx, lambda x_: np.sum(ref.max_pool2d_forward(x_, *args)[0] * dy), x)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("xs,kernel,stride,padding", [c[:4] for c in POOL_CASES])
def test_avg_pool2d_matches_loops_and_finite_differences(xs, kernel, stride, padding, count_include_pad):
    x = rand(*xs)
    y = ref.avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)
    close(y, naive_avg_pool(x, kernel, stride, padding, count_include_pad))
    dy = rand(*y.shape, seed=1)
    args = (kernel, stride, padding, count_include_pad)
    check_grad(ref.avg_pool2d_backward(dy, xs, *args),
               lambda x_: np.sum(ref.avg_pool2d_forward(x_, *args) * dy), x)


def test_pools_with_empty_batch():
    x = np.zeros((0, 2, 5, 5))
    y, idx = ref.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    assert y.shape == idx.shape == (0, 2, 2, 2)
    assert ref.max_pool2d_backward(y, idx, x.shape).shape == x.shape
    assert ref.avg_pool2d_forward(x, (3, 3), (1, 1), (1, 1)).shape == x.shape
    assert ref.avg_pool2d_backward(np.zeros(x.shape), x.shape, (3, 3), (1, 1), (1, 1)).shape == x.shape


# ----------------------------------------------------------------------------- attention

ATTENTION_SHAPES = [  # B, NH, Tq, Tk, D, Dv
    (1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 4, 3), (1, 2, 7, 5, 1, 2), (2, 1, 17, 17, 8, 8)]


def attention_inputs(b, nh, tq, tk, d, dv, mask_kind):
    q, k, v = rand(b, nh, tq, d), rand(b, nh, tk, d, seed=1), rand(b, nh, tk, dv, seed=2)
    rng = np.random.default_rng(3)
    mask = None
    if mask_kind == "bool":
        mask = rng.random((b, 1, tq, tk)) < 0.7
        mask[..., 0, :] = False                      # a fully masked row
    elif mask_kind == "float":
        mask = rng.standard_normal((tq, tk))
        mask[rng.random((tq, tk)) < 0.3] = -np.inf
    return q, k, v, mask


MASK_KINDS = [(None, False), (None, True), ("bool", False), ("float", False), ("bool", True), ("float", True)]


@pytest.mark.parametrize("mask_kind,is_causal", MASK_KINDS)
@pytest.mark.parametrize("shape", ATTENTION_SHAPES)
def test_attention_forward_matches_loops(shape, mask_kind, is_causal):
    q, k, v, mask = attention_inputs(*shape, mask_kind)
    out, lse = ref.attention_forward(q, k, v, mask, is_causal)
    expected_out, expected_lse = naive_attention(q, k, v, mask, is_causal)
    close(out, expected_out)
    close(lse, expected_lse)


def test_attention_custom_scale():
    q, k, v, _ = attention_inputs(1, 2, 3, 4, 5, 2, None)
    for got, expected in zip(ref.attention_forward(q, k, v, scale=0.3), naive_attention(q, k, v, scale=0.3)):
        close(got, expected)


@pytest.mark.parametrize("mask_kind,is_causal", MASK_KINDS)
@pytest.mark.parametrize("shape", ATTENTION_SHAPES[:3])
def test_attention_backward_matches_finite_differences(shape, mask_kind, is_causal):
    q, k, v, mask = attention_inputs(*shape, mask_kind)
    out, lse = ref.attention_forward(q, k, v, mask, is_causal)
    dout = rand(*out.shape, seed=4)
    dq, dk, dv = ref.attention_backward(dout, q, k, v, out, lse, mask, is_causal)

    def loss(q_, k_, v_):
        return np.sum(ref.attention_forward(q_, k_, v_, mask, is_causal)[0] * dout)
    check_grad(dq, lambda q_: loss(q_, k, v), q)
    check_grad(dk, lambda k_: loss(q, k_, v), k)
    check_grad(dv, lambda v_: loss(q, k, v_), v)


@pytest.mark.parametrize("mask_kind,is_causal", MASK_KINDS)
def test_attention_in_blocks_equals_whole(monkeypatch, mask_kind, is_causal):
    q, k, v, mask = attention_inputs(3, 2, 129, 129, 4, 3, mask_kind)
    whole = ref.attention_forward(q, k, v, mask, is_causal)
    dout = rand(*whole[0].shape, seed=4)
    whole_grads = ref.attention_backward(dout, q, k, v, *whole, mask, is_causal)
    monkeypatch.setattr(ref, "_BLOCK_BYTES", 2 * 129 * 129 * 8)  # one batch of 2 heads, or fewer rows
    monkeypatch.setattr(ref, "_CAUSAL_ROWS", 17)
    blocked = ref.attention_forward(q, k, v, mask, is_causal)
    for got, expected in zip(blocked, whole):
        close(got, expected)
    for got, expected in zip(ref.attention_backward(dout, q, k, v, *blocked, mask, is_causal), whole_grads):
        close(got, expected)
    monkeypatch.setattr(ref, "_BLOCK_BYTES", 1)  # a single query row per block
    for got, expected in zip(ref.attention_forward(q, k, v, mask, is_causal), whole):
        close(got, expected)


def test_attention_at_129_matches_loops():
    q, k, v, _ = attention_inputs(1, 1, 129, 129, 3, 2, None)
    for is_causal in (False, True):
        for got, expected in zip(ref.attention_forward(q, k, v, None, is_causal),
                                 naive_attention(q, k, v, None, is_causal)):
            close(got, expected)


def test_attention_fully_masked_rows_give_zeros_without_nan_or_warnings():
    q, k, v, _ = attention_inputs(2, 2, 4, 6, 3, 5, None)
    mask = np.ones((4, 6), bool)
    mask[1] = False
    float_mask = np.where(mask, 0.0, -np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in (mask, float_mask):
            out, lse = ref.attention_forward(q, k, v, m)
            assert not np.isnan(out).any() and not np.isnan(lse).any()
            assert not out[:, :, 1].any() and np.all(lse[:, :, 1] == -np.inf)
            grads = ref.attention_backward(np.ones_like(out), q, k, v, out, lse, m)
            assert not any(np.isnan(g).any() for g in grads)
            assert not grads[0][:, :, 1].any()


def test_attention_nan_in_masked_out_position_does_not_leak():
    q, k, v, _ = attention_inputs(1, 2, 5, 6, 3, 2, None)
    mask = np.ones((5, 6), bool)
    mask[:, 2] = False
    k_nan = k.copy()
    k_nan[:, :, 2] = np.nan  # every score of key 2 is NaN, and key 2 is masked out
    for got, expected in zip(ref.attention_forward(q, k_nan, v, mask), naive_attention(q, k, v, mask)):
        close(got, expected)
    nan_mask = np.triu(np.full((5, 6), np.nan), 1)  # NaN only where causality masks anyway
    out, lse = ref.attention_forward(q, k, v, nan_mask, is_causal=True)
    for got, expected in zip((out, lse), naive_attention(q, k, v, None, True)):
        close(got, expected)
    dout = rand(*out.shape, seed=4)
    for got, expected in zip(ref.attention_backward(dout, q, k, v, out, lse, nan_mask, True),
                             ref.attention_backward(dout, q, k, v, out, lse, None, True)):
        close(got, expected)


def test_attention_with_empty_batch_or_queries():
    for b, tq in [(0, 3), (2, 0)]:
        q, k, v = np.zeros((b, 2, tq, 4)), np.zeros((b, 2, 5, 4)), np.zeros((b, 2, 5, 3))
        out, lse = ref.attention_forward(q, k, v, is_causal=True)
        assert out.shape == (b, 2, tq, 3) and lse.shape == (b, 2, tq)
        dq, dk, dv = ref.attention_backward(out, q, k, v, out, lse)
        assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape


# ----------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 5, 13)])
def test_softmax_matches_loops_and_finite_differences(shape, log):
    x = rand(*shape)
    y = ref.softmax_forward(x, log)
    close(y, naive_softmax(x, log))
    dy = rand(*shape, seed=1)
    check_grad(ref.softmax_backward(dy, y, log), lambda x_: np.sum(ref.softmax_forward(x_, log) * dy), x)


def test_softmax_of_large_logits():
    x = np.array([1000.0, 1000.0, -1000.0])
    np.testing.assert_array_equal(ref.softmax_forward(x), [0.5, 0.5, 0.0])
    close(ref.softmax_forward(x, log=True), [-math.log(2), -math.log(2), -2000 - math.log(2)])


@settings(deadline=None, max_examples=40)
@given(shift=st.floats(-1e3, 1e3), seed=st.integers(0, 100))
def test_softmax_is_shift_invariant(shift, seed):
    x = rand(4, 9, seed=seed)
    close(ref.softmax_forward(x + shift), ref.softmax_forward(x))
    close(ref.softmax_forward(x + shift, log=True), ref.softmax_forward(x, log=True))


def test_softmax_with_no_rows():
    assert ref.softmax_forward(np.zeros((0, 5))).shape == (0, 5)


# ----------------------------------------------------------------------------- layer norm

def test_layer_norm_matches_loops():
    x, w, b = rand(5, 7), rand(7, seed=1), rand(7, seed=2)
    for got, expected in zip(ref.layer_norm_forward(x, w, b, 1e-5), naive_layer_norm(x, w, b, 1e-5)):
        close(got, expected)
    y, _, _ = ref.layer_norm_forward(x, None, None, 1e-5)
    close(y, naive_layer_norm(x, np.ones(7), np.zeros(7), 1e-5)[0])


def test_layer_norm_of_constant_row_returns_bias():
    b = rand(6, seed=2)
    y, mean, rstd = ref.layer_norm_forward(np.full((3, 6), 0.1), rand(6, seed=1), b, 1e-5)
    close(y, np.broadcast_to(b, (3, 6)))
    close(rstd, np.full(3, 1 / math.sqrt(1e-5)))


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_backward_matches_finite_differences(affine):
    x, w, b, dy = rand(4, 7), rand(7, seed=1), rand(7, seed=2), rand(4, 7, seed=3)
    w, b = (w, b) if affine else (None, None)
    _, mean, rstd = ref.layer_norm_forward(x, w, b, 1e-5)
    dx, dw, db = ref.layer_norm_backward(dy, x, w, mean, rstd)
    check_grad(dx, lambda x_: np.sum(ref.layer_norm_forward(x_, w, b, 1e-5)[0] * dy), x)
    if affine:
        check_grad(dw, lambda w_: np.sum(ref.layer_norm_forward(x, w_, b, 1e-5)[0] * dy), w)
        check_grad(db, lambda b_: np.sum(ref.layer_norm_forward(x, w, b_, 1e-5)[0] * dy), b)
    else:
        assert dw is None and db is None


def test_layer_norm_with_no_rows():
    y, mean, rstd = ref.layer_norm_forward(np.zeros((0, 4)), np.ones(4), np.zeros(4), 1e-5)
    assert y.shape == (0, 4) and mean.shape == rstd.shape == (0,)
    dx, dw, db = ref.layer_norm_backward(y, y, np.ones(4), mean, rstd)
    assert dx.shape == (0, 4) and not dw.any() and not db.any()


# ----------------------------------------------------------------------------- cross-entropy

def test_cross_entropy_matches_loops_and_skips_ignored_rows():
    logits, target = rand(6, 5), np.array([0, 4, -100, 2, 1, -100])
    losses, lse = ref.cross_entropy_forward(logits, target)
    close(losses, naive_cross_entropy(logits, target))
    assert losses[2] == losses[5] == 0
    close(lse, [math.log(sum(math.exp(v) for v in row)) for row in logits])
    losses, _ = ref.cross_entropy_forward(logits, np.array([0, 4, 3, 2, 1, 3]), ignore_index=3)
    close(losses, naive_cross_entropy(logits, [0, 4, 3, 2, 1, 3], ignore_index=3))


def test_cross_entropy_is_finite_at_large_logits():
    logits = np.array([[1e4, 1e4, 1e4 - 1], [-1e4, 1e4, 0.0]])
    losses, lse = ref.cross_entropy_forward(logits, np.array([0, 0]))
    close(losses, [math.log(2 + math.exp(-1)), 2e4])
    dlogits = ref.cross_entropy_backward(np.ones(2), logits, np.array([0, 0]), lse)
    assert np.isfinite(dlogits).all()


def test_cross_entropy_backward_matches_finite_differences():
    logits, target, dl = rand(6, 5), np.array([0, 4, -100, 2, 1, 4]), rand(6, seed=1)
    _, lse = ref.cross_entropy_forward(logits, target)
    dlogits = ref.cross_entropy_backward(dl, logits, target, lse)
    check_grad(dlogits, lambda z: np.sum(ref.cross_entropy_forward(z, target)[0] * dl), logits)
    assert not dlogits[2].any()


def test_cross_entropy_with_no_rows():
    losses, lse = ref.cross_entropy_forward(np.zeros((0, 3)), np.zeros(0, np.int64))
    assert losses.shape == lse.shape == (0,)
    assert ref.cross_entropy_backward(losses, np.zeros((0, 3)), np.zeros(0, np.int64), lse).shape == (0, 3)


# ----------------------------------------------------------------------------- GELU, erf

def test_erf_matches_math_erf():
    grid = np.concatenate([np.linspace(-7, 7, 200001), np.geomspace(1e-300, 30, 20001),
                           [0.0, 0.46875, 4.0, 26.5, 27.0, 1e10, 1e300, np.inf]])
    grid = np.concatenate([grid, -grid])
    got, expected = ref._erf(grid), np.array([math.erf(v) for v in grid])
    assert np.all(np.abs(got - expected) <= ERF_TOL * np.maximum(np.abs(expected), 1.0)), "absolute"
    assert np.all(np.abs(got - expected) <= ERF_TOL * np.abs(expected)), "relative"
    assert np.isnan(ref._erf(np.array([np.nan]))).all()
    assert ref._erf(np.float32([0.5])).dtype == np.float32


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_formula_and_finite_differences(approximate):
    x = np.concatenate([rand(50) * 3, [0.0, -8.0, 8.0, 1e-8]])
    close(ref.gelu_forward(x, approximate), [naive_gelu(v, approximate) for v in x])
    dy = rand(*x.shape, seed=1)
    check_grad(ref.gelu_backward(dy, x, approximate),
               lambda x_: np.sum(ref.gelu_forward(x_, approximate) * dy), x)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        ref.gelu_forward(rand(3), "erf")


# ----------------------------------------------------------------------------- embedding, dropout

def test_embedding_backward_sums_repeated_indices():
    indices, dy = np.array([[1, 4, 1], [0, 1, 6]]), rand(2, 3, 5)
    expected = np.zeros((7, 5))
    for i in np.ndindex(indices.shape):
        expected[indices[i]] += dy[i]
    close(ref.embedding_backward(dy, indices, 7), expected)
    dw = ref.embedding_backward(np.zeros((0, 5)), np.zeros(0, np.int64), 7)
    assert dw.shape == (7, 5) and not dw.any()


def test_dropout_mask_values_rate_and_reproducibility():
    rng = np.random.default_rng
    np.testing.assert_array_equal(ref.dropout_mask((3, 4), 0.0, rng(0), np.float32), np.ones((3, 4)))
    np.testing.assert_array_equal(ref.dropout_mask((3, 4), 1.0, rng(0), np.float32), np.zeros((3, 4)))
    m = ref.dropout_mask((200, 500), 0.3, rng(0), np.float32)
    assert m.dtype == np.float32 and m.shape == (200, 500)
    assert set(np.unique(m)) == {np.float32(0), np.float32(1 / 0.7)}
    assert abs(np.mean(m == 0) - 0.3) < 0.01
    np.testing.assert_array_equal(m, ref.dropout_mask((200, 500), 0.3, rng(0), np.float32))


# ----------------------------------------------------------------------------- layouts and dtypes

def kernel_cases():
    """name -> (function, float64 array arguments) for every kernel."""
    r = rand
    conv = ((2, 1), (1, 1), (1, 2), 2)
    x, w = r(2, 4, 7, 6), r(6, 2, 3, 3, seed=1)
    dy_conv = r(*ref.conv2d_forward(x, w, None, *conv).shape, seed=2)
    pool = ((3, 2), (2, 1), (1, 1))
    _, idx = ref.max_pool2d_forward(x, *pool)
    q, k, v, mask = attention_inputs(2, 3, 5, 7, 4, 3, "bool")
    out, lse = ref.attention_forward(q, k, v, mask, True)
    ln_x, ln_w, ln_b = r(4, 6), r(6, seed=1), r(6, seed=2)
    _, mean, rstd = ref.layer_norm_forward(ln_x, ln_w, ln_b, 1e-5)
    logits, target = r(5, 4), np.array([0, 3, -100, 1, 2])
    _, ce_lse = ref.cross_entropy_forward(logits, target)
    return {
        "matmul": (ref.matmul, (r(2, 3, 5), r(2, 5, 4, seed=1))),
        "linear": (lambda a, b, c: ref.linear(a, b, c, "gelu"), (r(3, 5), r(4, 5, seed=1), r(4, seed=2))),
        "conv2d_forward": (lambda a, b, c: ref.conv2d_forward(a, b, c, *conv), (x, w, r(6, seed=3))),
        "conv2d_grad_input": (lambda a, b: ref.conv2d_grad_input(a, b, x.shape, *conv), (dy_conv, w)),
        "conv2d_grad_weight": (lambda a, b: ref.conv2d_grad_weight(a, b, w.shape, *conv), (dy_conv, x)),
        "max_pool2d_forward": (lambda a: ref.max_pool2d_forward(a, *pool), (x,)),
        "max_pool2d_backward": (lambda a: ref.max_pool2d_backward(a, idx, x.shape), (r(*idx.shape),)),
        "avg_pool2d_forward": (lambda a: ref.avg_pool2d_forward(a, *pool, False), (x,)),
        "avg_pool2d_backward": (lambda a: ref.avg_pool2d_backward(a, x.shape, *pool, False),
                                (r(*idx.shape),)),
        "attention_forward": (lambda a, b, c: ref.attention_forward(a, b, c, mask, True), (q, k, v)),
        "attention_backward": (lambda *a: ref.attention_backward(*a, mask, True),
                               (r(*out.shape), q, k, v, out, lse)),
        "softmax_forward": (lambda a: ref.softmax_forward(a, True), (r(3, 7),)),
        "softmax_backward": (ref.softmax_backward, (r(3, 7), ref.softmax_forward(r(3, 7, seed=1)))),
        "layer_norm_forward": (lambda a, b, c: ref.layer_norm_forward(a, b, c, 1e-5), (ln_x, ln_w, ln_b)),
        "layer_norm_backward": (ref.layer_norm_backward, (r(4, 6, seed=3), ln_x, ln_w, mean, rstd)),
        "cross_entropy_forward": (lambda a: ref.cross_entropy_forward(a, target), (logits,)),
        "cross_entropy_backward": (lambda a, b, c: ref.cross_entropy_backward(a, b, target, c),
                                   (r(5), logits, ce_lse)),
        "gelu_forward": (ref.gelu_forward, (r(4, 5) * 3,)),
        "gelu_backward": (lambda a, b: ref.gelu_backward(a, b, "tanh"), (r(4, 5), r(4, 5, seed=1) * 3)),
        "embedding_backward": (lambda a: ref.embedding_backward(a, np.array([[1, 4, 1], [0, 1, 6]]), 7),
                               (r(2, 3, 5),)),
    }


def results(value):
    return value if isinstance(value, tuple) else (value,)


CASES = kernel_cases()


@pytest.mark.parametrize("layout", [strided, np.asfortranarray])
@pytest.mark.parametrize("name", sorted(CASES))
def test_any_layout_gives_the_same_result_and_inputs_are_untouched(name, layout):
    fn, args = CASES[name]
    expected = results(fn(*args))
    views = [layout(a) for a in args]
    assert any(not v.flags.c_contiguous for v in views)
    copies = [v.copy() for v in views]
    for got, want in zip(results(fn(*views)), expected):
        close(got, want, rtol=LAYOUT_RTOL, atol=LAYOUT_ATOL)
    for v, c in zip(views, copies):
        np.testing.assert_array_equal(v, c)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_in_float32_out(name):
    fn, args = CASES[name]
    for got, want in zip(results(fn(*[a.astype(np.float32) for a in args])), results(fn(*args))):
        assert got.dtype == (np.int64 if want.dtype == np.int64 else np.float32)
        np.testing.assert_allclose(got, want, **F32)
