"""The fast kernels as plain functions on arrays: NumPy in, NumPy out (CuPy in, CuPy out).

    c = engine.kernels.matmul(a, b)          # instead of c = a @ b

Each function validates its arguments exactly as the matching engine op does (it calls that op
on Tensor views of the arrays, with autograd off), so errors read the same; inputs of any layout
are accepted and copied only where a kernel needs contiguous memory. `out=` receives the result.
"""
import math

import numpy as np

from engine import backend
from engine.autograd import no_grad
from engine.nn import functional as F
from engine.ops import linalg
from engine.ops.attention import prepare_attention
from engine.tensor import Tensor


def _t(a):
    if isinstance(a, Tensor):
        return a.detach()
    if isinstance(a, np.ndarray) or hasattr(a, "__cuda_array_interface__"):
        return Tensor._wrap(a)
    return Tensor._wrap(np.asarray(a))


def _finish(result, out):
    if out is None:
        return result
    if out.shape != result.shape or out.dtype != result.dtype:
        raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}; the result has shape "
                         f"{result.shape} and dtype {result.dtype}")
    out[...] = result
    return out


def matmul(a, b, out=None):
    """a @ b with NumPy's rules (1-D operands, broadcast batch dims)."""
    with no_grad():
        return _finish(linalg.matmul(_t(a), _t(b)).data, out)


def bmm(a, b, out=None):
    """(B, M, K) @ (B, K, N) -> (B, M, N)."""
    with no_grad():
        return _finish(linalg.bmm(_t(a), _t(b)).data, out)


def linear(x, weight, bias=None, activation=None, out=None):
    """activation(x @ weight.T + bias), activation None, "relu" or "gelu", fused in one kernel."""
    if activation not in (None, "relu", "gelu"):
        raise ValueError(f"linear: activation must be None, 'relu' or 'gelu', got {activation!r}")
    xt, wt = _t(x), _t(weight)
    bt = None if bias is None else _t(bias)
    linalg.check_linear(xt, wt, bt)
    x2 = xt.data.reshape(math.prod(xt.shape[:-1]), xt.shape[-1])
    y = backend.for_array(x2).linear(x2, wt.data, None if bt is None else bt.data, activation)
    return _finish(y.reshape(tuple(xt.shape[:-1]) + (wt.shape[0],)), out)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    """NCHW convolution: x (N, C, H, W), weight (O, C/groups, KH, KW) -> (N, O, OH, OW)."""
    with no_grad():
        return _finish(F.conv2d(_t(x), _t(weight), None if bias is None else _t(bias),
                                stride, padding, dilation, groups).data, out)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d_grad_input(grad_out, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """d(loss)/d(x) of conv2d, given d(loss)/d(y)."""
    k = backend.for_array(grad_out)
    return k.conv2d_grad_input(grad_out, weight, tuple(input_shape), _pair(stride), _pair(padding),
                               _pair(dilation), groups)


def conv2d_grad_weight(grad_out, x, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """d(loss)/d(weight) of conv2d, given d(loss)/d(y)."""
    k = backend.for_array(grad_out)
    return k.conv2d_grad_weight(grad_out, x, tuple(weight_shape), _pair(stride), _pair(padding),
                                _pair(dilation), groups)


def max_pool2d(x, kernel_size, stride=None, padding=0, out=None):
    with no_grad():
        return _finish(F.max_pool2d(_t(x), kernel_size, stride, padding).data, out)


def attention(q, k, v, mask=None, is_causal=False, scale=None, return_lse=False):
    """softmax(q·kᵀ·scale + mask)·v for (..., T, D) arrays; with return_lse, also the per-row
    log-sum-exp (as (B, H, Tq)) that attention_backward needs."""
    qt, kt, vt, mask4, scale, lead = prepare_attention(_t(q), _t(k), _t(v), mask, 0.0, is_causal, scale)
    out, lse = backend.for_array(qt.data).attention_forward(qt.data, kt.data, vt.data, mask=mask4,
                                                            is_causal=is_causal, scale=scale)
    out = out.reshape(lead + out.shape[-2:])
    return (out, lse) if return_lse else out


def attention_backward(grad_out, q, k, v, out, lse, mask=None, is_causal=False, scale=None):
    """(dq, dk, dv) of attention, recomputing the probabilities from lse."""
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    return backend.for_array(q).attention_backward(grad_out, q, k, v, out, lse, mask=mask,
                                                   is_causal=is_causal, scale=scale)


def softmax(x, axis=-1, log=False):
    with no_grad():
        fn = F.log_softmax if log else F.softmax
        return fn(_t(x), dim=axis).data


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalize over the last axis."""
    with no_grad():
        t = _t(x)
        return F.layer_norm(t, (t.shape[-1],), None if weight is None else _t(weight),
                            None if bias is None else _t(bias), eps).data


def cross_entropy(logits, target, ignore_index=-100, reduction="mean"):
    with no_grad():
        return F.cross_entropy(_t(logits), _t(target), ignore_index=ignore_index,
                               reduction=reduction).data
