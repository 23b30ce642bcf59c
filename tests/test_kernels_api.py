"""engine.kernels, the NumPy-in/NumPy-out face of the kernels: every function against the float64
NumPy reference on non-contiguous inputs, under both CPU kernel sets, returning plain arrays."""
import numpy as np
import pytest

from engine import kernels
from engine.backend import numpy_ref

RTOL, ATOL = 1e-4, 1e-4  # float32 results against float64 references on O(1) data


def f32(rng, *shape, transposed=False):
    """A float32 array of `shape`; transposed gives a view with swapped last two strides."""
    if transposed:
        return rng.standard_normal(shape[:-2] + shape[-2:][::-1]).astype(np.float32).swapaxes(-1, -2)
    return rng.standard_normal(shape).astype(np.float32)


def f64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def close(got, want):
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_matmul_and_bmm_take_views_and_fill_out(backend):
    rng = np.random.default_rng(0)
    a, b = f32(rng, 3, 17, 9, transposed=True), f32(rng, 3, 9, 5)
    close(kernels.bmm(a, b), np.matmul(*f64(a, b)))
    out = np.empty((17, 5), np.float32)
    assert kernels.matmul(a[1], b[2], out=out) is out
    close(out, np.matmul(*f64(a[1], b[2])))
    close(kernels.matmul(a[0][::2], b[0]), np.matmul(*f64(a[0][::2], b[0])))  # a row-strided view


@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
def test_linear_applies_bias_and_activation(backend, activation):
    rng = np.random.default_rng(1)
    x, w, bias = f32(rng, 2, 7, 13), f32(rng, 11, 13), f32(rng, 11)
    close(kernels.linear(x, w, bias, activation), numpy_ref.linear(*f64(x.reshape(14, 13), w, bias),
                                                                   activation).reshape(2, 7, 11))


def test_conv2d_and_its_gradients(backend):
    rng = np.random.default_rng(2)
    x, w, bias = f32(rng, 2, 3, 9, 8), f32(rng, 4, 3, 3, 3), f32(rng, 4)
    args = ((2, 1), (1, 0), (1, 1), 1)
    y = kernels.conv2d(x[:, :, ::-1], w, bias, stride=(2, 1), padding=(1, 0))
    close(y, numpy_ref.conv2d_forward(*f64(x[:, :, ::-1], w, bias), *args))
    dy = f32(rng, *y.shape)
    close(kernels.conv2d_grad_input(dy, w, x.shape, (2, 1), (1, 0)),
          numpy_ref.conv2d_grad_input(*f64(dy, w), x.shape, *args))
    close(kernels.conv2d_grad_weight(dy, x, w.shape, (2, 1), (1, 0)),
          numpy_ref.conv2d_grad_weight(*f64(dy, x), w.shape, *args))


def test_max_pool2d(backend):
    x = f32(np.random.default_rng(3), 2, 3, 7, 6)
    close(kernels.max_pool2d(x, 3, 2, 1), numpy_ref.max_pool2d_forward(*f64(x), (3, 3), (2, 2), (1, 1))[0])


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_forward_and_backward(backend, is_causal):
    rng = np.random.default_rng(4)
    q, k, v = f32(rng, 2, 3, 7, 5), f32(rng, 2, 3, 9, 5, transposed=False), f32(rng, 2, 3, 9, 4)
    mask = rng.random((7, 9)) > 0.2
    mask[:, 0] = True  # every query sees a key
    out, lse = kernels.attention(q, k, v, mask=mask, is_causal=is_causal, return_lse=True)
    want, want_lse = numpy_ref.attention_forward(*f64(q, k, v), mask=mask, is_causal=is_causal)
    close(out, want)
    close(lse, want_lse)
    dout = f32(rng, *out.shape)
    got = kernels.attention_backward(dout, q, k, v, out, lse, mask=mask, is_causal=is_causal)
    for g, w in zip(got, numpy_ref.attention_backward(*f64(dout, q, k, v, want, want_lse), mask=mask,
                                                      is_causal=is_causal)):
        close(g, w)


def test_softmax_layer_norm_cross_entropy(backend):
    rng = np.random.default_rng(5)
    x = f32(rng, 6, 10, transposed=True)  # (6, 10) view of a (10, 6) array
    close(kernels.softmax(x), numpy_ref.softmax_forward(*f64(x)))
    close(kernels.softmax(x, log=True), numpy_ref.softmax_forward(*f64(x), log=True))
    weight, bias = f32(rng, 10), f32(rng, 10)
    close(kernels.layer_norm(x, weight, bias), numpy_ref.layer_norm_forward(*f64(x, weight, bias), 1e-5)[0])
    target = np.array([0, 3, 9, -100, 2, 5])
    losses, _ = numpy_ref.cross_entropy_forward(*f64(x), target)
    got = kernels.cross_entropy(x, target)
    assert got.shape == ()
    np.testing.assert_allclose(got, losses[target != -100].mean(), rtol=RTOL)


def test_errors_read_like_the_ops():
    with pytest.raises(RuntimeError, match=r"shapes \(2, 3\) and \(4, 5\) cannot be multiplied"):
        kernels.matmul(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="activation must be None, 'relu' or 'gelu'"):
        kernels.linear(np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), activation="tanh")
    with pytest.raises(ValueError, match="out has shape"):
        kernels.matmul(np.ones((2, 3), np.float32), np.ones((3, 5), np.float32), out=np.empty((5, 2), np.float32))
