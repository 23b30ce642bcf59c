"""The GPU kernel set: numpy_ref's kernels run unchanged on CuPy arrays (CuPy's cuBLAS and
element-wise kernels); the hand-written CUDA kernels of engine._cuda replace matmul, linear,
conv2d, max_pool2d, attention, softmax, layer norm and cross-entropy (and the Adam update, which
engine.optim calls directly).

The wrappers keep numpy_ref's signatures: they adapt layouts (the GEMM reads any operand with a
unit stride in one of its last two dims in place; the convolution and pooling kernels take
C-contiguous arrays), allocate outputs with CuPy, and launch on CuPy's current stream with the
float32 precision chosen by engine.cuda.set_matmul_precision, or bf16 inside engine.autocast.
Other dtypes (float16) go to numpy_ref. The bindings validate everything again.

bf16 storage: CuPy has no bfloat16 dtype, so the bf16 copies of q, k, v and dout that the
attention kernel reads under autocast are uint16 arrays of bf16 bit patterns, made by _to_bf16 just
before the call and dropped after it; no Tensor ever holds one (see engine/amp.py).
"""
from engine import amp, cuda
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
    precision = "bf16" if amp.current() == "bf16" else cuda.get_matmul_precision()
    return dict(precision=precision, **_launch())


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


# ---- attention ------------------------------------------------------------------------------
def _to_bf16(x):
    """The bf16 bit patterns (uint16, C-contiguous, 16-byte aligned) of float32 x."""
    x = _cp.ascontiguousarray(x)
    out = _cp.empty(x.shape, dtype=_cp.uint16)
    _cuda.float_to_bf16(out, x, **_launch())
    return out


def _attention_inputs(arrays, mask):
    """(arrays as the kernel reads them, mask, the dtype of outputs), or None when the kernel does
    not apply (float16, mixed dtypes): float32/float64 C-contiguous, or bf16 bits under autocast."""
    if not _float(*arrays) or (mask is not None and mask.dtype.kind not in "bf"):
        return None
    dtype = arrays[0].dtype
    if amp.current() == "bf16" and dtype == _cp.float32:
        arrays = [_to_bf16(a) for a in arrays]
    else:
        arrays = [_c(a) for a in arrays]
    if mask is not None and mask.dtype.kind == "f":
        mask = mask.astype(dtype, copy=False)  # the kernel adds a float mask in the output dtype
    return arrays, mask, dtype


def attention_forward(q, k, v, mask=None, is_causal=False, scale=None):
    """softmax(q kᵀ·scale + mask) v -> out (B, NH, Tq, Dv), lse (B, NH, Tq); numpy_ref's rules."""
    prepared = _attention_inputs([q, k, v], mask)
    if prepared is None:
        return numpy_ref.attention_forward(q, k, v, mask, is_causal, scale)
    (q, k, v), mask, dtype = prepared
    b, nh, tq, _ = q.shape
    out = _cp.empty((b, nh, tq, v.shape[3]), dtype=dtype)
    lse = _cp.empty((b, nh, tq), dtype=dtype)
    _cuda.attention_forward(q, k, v, out, lse, mask=mask, is_causal=bool(is_causal), scale=scale, **_launch())
    return out, lse


def attention_backward(dout, q, k, v, out, lse, mask=None, is_causal=False, scale=None):
    """(dq, dk, dv) of attention_forward from dout and the forward's out and lse."""
    prepared = _attention_inputs([dout, q, k, v], mask)
    if prepared is None or out.dtype != q.dtype or lse.dtype != q.dtype:
        return numpy_ref.attention_backward(dout, q, k, v, out, lse, mask, is_causal, scale)
    (dout, q, k, v), mask, dtype = prepared
    dq = _cp.empty(q.shape, dtype=dtype)
    dk = _cp.empty(k.shape, dtype=dtype)
    dv = _cp.empty(v.shape, dtype=dtype)
    _cuda.attention_backward(dout, q, k, v, _c(out), _c(lse), dq, dk, dv, mask=mask, is_causal=bool(is_causal),
                             scale=scale, **_launch())
    return dq, dk, dv


# ---- softmax, layer norm, cross-entropy ------------------------------------------------------
def softmax_forward(x, log=False):
    if not _float(x) or x.ndim == 0 or x.size == 0:
        return numpy_ref.softmax_forward(x, log)
    x = _c(x)
    y = _cp.empty_like(x)
    _cuda.softmax_forward(y, x, log=bool(log), **_launch())
    return y


def softmax_backward(dy, y, log=False):
    if not _float(dy, y) or dy.ndim == 0 or dy.shape != y.shape:
        return numpy_ref.softmax_backward(dy, y, log)
    dy, y = _c(dy), _c(y)
    dx = _cp.empty_like(dy)
    _cuda.softmax_backward(dx, dy, y, log=bool(log), **_launch())
    return dx


def layer_norm_forward(x, weight, bias, eps):
    params = [a for a in (weight, bias) if a is not None]
    if not _float(x, *params) or x.ndim == 0:
        return numpy_ref.layer_norm_forward(x, weight, bias, eps)
    x = _c(x)
    y = _cp.empty_like(x)
    mean = _cp.empty(x.shape[:-1], dtype=x.dtype)
    rstd = _cp.empty(x.shape[:-1], dtype=x.dtype)
    _cuda.layer_norm_forward(y, mean, rstd, x, _c(weight), _c(bias), eps=float(eps), **_launch())
    return y, mean, rstd


def layer_norm_backward(dy, x, weight, mean, rstd):
    params = [weight] if weight is not None else []
    if not _float(dy, x, mean, rstd, *params) or x.ndim == 0 or dy.shape != x.shape:
        return numpy_ref.layer_norm_backward(dy, x, weight, mean, rstd)
    dy, x = _c(dy), _c(x)
    dx = _cp.empty_like(x)
    dw = db = None
    if weight is not None:
        dw = _cp.empty(x.shape[-1:], dtype=x.dtype)
        db = _cp.empty(x.shape[-1:], dtype=x.dtype)
    _cuda.layer_norm_backward(dx, dw, db, dy, x, _c(weight), _c(mean), _c(rstd), **_launch())
    return dx, dw, db


def _target(target):
    return _c(target.astype(_cp.int64, copy=False))


def cross_entropy_forward(logits, target, ignore_index=-100):
    if not _float(logits) or logits.ndim != 2 or target.dtype.kind not in "iu":
        return numpy_ref.cross_entropy_forward(logits, target, ignore_index)
    logits = _c(logits)
    n = logits.shape[0]
    losses = _cp.empty(n, dtype=logits.dtype)
    lse = _cp.empty(n, dtype=logits.dtype)
    _cuda.cross_entropy_forward(losses, lse, logits, _target(target), ignore_index=int(ignore_index), **_launch())
    return losses, lse


def cross_entropy_backward(dlosses, logits, target, lse, ignore_index=-100):
    if not _float(dlosses, logits, lse) or logits.ndim != 2 or target.dtype.kind not in "iu":
        return numpy_ref.cross_entropy_backward(dlosses, logits, target, lse, ignore_index)
    logits = _c(logits)
    dlogits = _cp.empty_like(logits)
    _cuda.cross_entropy_backward(dlogits, _c(dlosses), logits, _target(target), _c(lse),
                                 ignore_index=int(ignore_index), **_launch())
    return dlogits


# ---- optimizer update (called by engine.optim, not through the kernel set) ---------------------
def fused_update_takes(param, grad, *state):
    """Whether adam_update below serves these arrays: CuPy, one float dtype, C-contiguous, one shape."""
    arrays = (param, grad, *state)
    return (_cuda is not None and hasattr(_cuda, "adam_update") and _float(*arrays)
            and all(a.flags.c_contiguous and a.shape == param.shape for a in arrays))


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """engine.optim.updates.adam_update's contract, one fused kernel on the GPU."""
    _cuda.adam_update(param, grad, m, v, step=int(step), lr=float(lr), beta1=float(beta1), beta2=float(beta2),
                      eps=float(eps), weight_decay=float(weight_decay), decoupled=bool(decoupled), **_launch())


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
        "attention_forward": attention_forward,
        "attention_backward": attention_backward,
        "softmax_forward": softmax_forward,
        "softmax_backward": softmax_backward,
        "layer_norm_forward": layer_norm_forward,
        "layer_norm_backward": layer_norm_backward,
        "cross_entropy_forward": cross_entropy_forward,
        "cross_entropy_backward": cross_entropy_backward,
    }


KERNELS = KernelSet("cuda", _overrides(), override_source="cuda (_cuda)")
