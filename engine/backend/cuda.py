"""The GPU kernel set: numpy_ref's kernels run unchanged on CuPy arrays (CuPy's cuBLAS and
element-wise kernels); the hand-written CUDA kernels of engine._cuda replace matmul, linear,
conv2d and max_pool2d.

The wrappers keep numpy_ref's signatures: they adapt layouts (the GEMM reads any operand with a
unit stride in one of its last two dims in place; the convolution and pooling kernels take
C-contiguous arrays), allocate outputs with CuPy, and launch on CuPy's current stream with the
float32 precision chosen by engine.cuda.set_matmul_precision. Other dtypes (float16) go to
numpy_ref. The bindings validate everything again.
"""
from engine import cuda
from engine._array import cupy
from engine.backend import numpy_ref
from engine.backend.kernel_set import KernelSet

_cuda = cuda._cuda
_cp = cupy()


def _float(*arrays):
    """Whether the _cuda kernels take these arrays: all float32 or all float64."""
    dtype = arrays[0].dtype
    return dtype.kind == "f" and dtype.itemsize in (4, 8) and all(a.dtype == dtype for a in arrays)


def _gemm_operand(a):
    """a itself when the GEMM can read it in place (a unit stride in one of its last two dims:
    C-contiguous or a transposed view), else a C-contiguous copy."""
    item = a.itemsize
    rows, cols = a.shape[-2:]
    if cols == 1 or rows == 1 or a.strides[-1] == item or a.strides[-2] == item:
        return a
    return _cp.ascontiguousarray(a)


def _c(a):
    return None if a is None else _cp.ascontiguousarray(a)


def _launch():
    return dict(stream=cuda.current_stream_ptr())


def _precision():
    return dict(precision=cuda.get_matmul_precision(), **_launch())


def _product_shape(a, b):
    if a.ndim == 3 or b.ndim == 3:
        batch = a.shape[0] if a.ndim == 3 else b.shape[0]
        return (batch, a.shape[-2], b.shape[-1])
    return (a.shape[0], b.shape[1])


def matmul(a, b):
    """a @ b: (M, K) @ (K, P) -> (M, P), or batched (B, M, K) @ (B, K, P) -> (B, M, P)."""
    if not _float(a, b) or a.ndim not in (2, 3) or b.ndim not in (2, 3):
        return numpy_ref.matmul(a, b)
    a, b = _gemm_operand(a), _gemm_operand(b)
    out = _cp.empty(_product_shape(a, b), dtype=a.dtype)
    _cuda.matmul(a, b, out, **_precision())
    return out


def linear(x, weight, bias=None, activation=None):
    """act(x @ weight.T + bias): x (N, K), weight (M, K), bias (M,) or None -> (N, M)."""
    if not _float(x, weight, *([bias] if bias is not None else [])) or x.ndim != 2:
        return numpy_ref.linear(x, weight, bias, activation)
    x, wt = _gemm_operand(x), _gemm_operand(weight.T)
    out = _cp.empty((x.shape[0], wt.shape[1]), dtype=x.dtype)
    _cuda.matmul(x, wt, out, bias=_c(bias), activation=activation or "none", **_precision())
    return out


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups=1):
    if not _float(x, weight, *([bias] if bias is not None else [])):
        return numpy_ref.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    x, weight = _c(x), _c(weight)
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = numpy_ref._out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = numpy_ref._out_size(w, kw, stride[1], padding[1], dilation[1])
    y = _cp.empty((n, o, oh, ow), dtype=x.dtype)
    _cuda.conv2d_forward(y, x, weight, _c(bias), tuple(stride), tuple(padding), tuple(dilation), groups,
                         **_precision())
    return y


def conv2d_grad_input(dy, weight, input_shape, stride, padding, dilation, groups=1):
    if not _float(dy, weight):
        return numpy_ref.conv2d_grad_input(dy, weight, input_shape, stride, padding, dilation, groups)
    dx = _cp.empty(tuple(input_shape), dtype=dy.dtype)
    _cuda.conv2d_grad_input(dx, _c(dy), _c(weight), tuple(stride), tuple(padding), tuple(dilation), groups,
                            **_precision())
    return dx


def conv2d_grad_weight(dy, x, weight_shape, stride, padding, dilation, groups=1):
    if not _float(dy, x):
        return numpy_ref.conv2d_grad_weight(dy, x, weight_shape, stride, padding, dilation, groups)
    dw = _cp.empty(tuple(weight_shape), dtype=dy.dtype)
    _cuda.conv2d_grad_weight(dw, _c(dy), _c(x), tuple(stride), tuple(padding), tuple(dilation), groups,
                             **_precision())
    return dw


def max_pool2d_forward(x, kernel, stride, padding, dilation=(1, 1)):
    if not _float(x):
        return numpy_ref.max_pool2d_forward(x, kernel, stride, padding, dilation)
    x = _c(x)
    n, c, h, w = x.shape
    oh = numpy_ref._out_size(h, kernel[0], stride[0], padding[0], dilation[0])
    ow = numpy_ref._out_size(w, kernel[1], stride[1], padding[1], dilation[1])
    y = _cp.empty((n, c, oh, ow), dtype=x.dtype)
    indices = _cp.empty((n, c, oh, ow), dtype=_cp.int64)
    _cuda.max_pool2d_forward(y, indices, x, tuple(kernel), tuple(stride), tuple(padding), tuple(dilation),
                             **_launch())
    return y, indices


def max_pool2d_backward(dy, indices, input_shape):
    if not _float(dy) or indices.dtype != _cp.int64:
        return numpy_ref.max_pool2d_backward(dy, indices, input_shape)
    dx = _cp.empty(tuple(input_shape), dtype=dy.dtype)
    _cuda.max_pool2d_backward(dx, _c(dy), _c(indices), **_launch())
    return dx


def _overrides():
    if _cuda is None or _cp is None or not hasattr(_cuda, "matmul"):
        return {}
    return {
        "matmul": matmul,
        "linear": linear,
        "conv2d_forward": conv2d_forward,
        "conv2d_grad_input": conv2d_grad_input,
        "conv2d_grad_weight": conv2d_grad_weight,
        "max_pool2d_forward": max_pool2d_forward,
        "max_pool2d_backward": max_pool2d_backward,
    }


KERNELS = KernelSet("cuda", _overrides(), override_source="cuda (_cuda)")
