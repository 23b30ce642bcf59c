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
from engine.ops import conv, linalg
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


def _conv2d_grad_args(op, grad_out, x_shape, weight_shape, dtypes, stride, padding, dilation, groups):
    """The gradient kernels get no forward to have checked their arguments, so they are checked
    here as conv2d checks its own; returns (stride, padding, dilation) as pairs."""
    stride, dilation = conv._pair(stride, "stride", op, 1), conv._pair(dilation, "dilation", op, 1)
    padding = conv._pair(padding, "padding", op, 0)
    x_shape, weight_shape = tuple(int(n) for n in x_shape), tuple(int(n) for n in weight_shape)
    if len(x_shape) != 4 or min(x_shape, default=0) < 0:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x_shape}")
    if len(weight_shape) != 4 or min(weight_shape) < 0 or min(weight_shape[2:]) < 1:
        raise ValueError(f"{op}: expected a 4-D weight (O, C/groups, KH, KW) with a kernel of at least "
                         f"1x1, got shape {weight_shape}")
    if not isinstance(groups, int) or groups < 1 or x_shape[1] % groups or weight_shape[0] % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({x_shape[1]}) and the "
                         f"output channels ({weight_shape[0]})")
    if weight_shape[1] * groups != x_shape[1]:
        raise ValueError(f"{op}: input {x_shape} has {x_shape[1]} channels but weight {weight_shape} "
                         f"expects {weight_shape[1] * groups} (weight.shape[1] * groups)")
    if len(set(dtypes)) != 1 or np.dtype(dtypes[0]).kind != "f":
        raise TypeError(f"{op}: grad_out, input and weight must share one floating dtype, got "
                        f"{', '.join(str(np.dtype(d)) for d in dtypes)}")
    out_hw = tuple(conv._out_size(x_shape[2 + i], weight_shape[2 + i], stride[i], padding[i], dilation[i])
                   for i in (0, 1))
    if min(out_hw) < 1:
        raise ValueError(f"{op}: kernel {weight_shape[2:]} (dilation {dilation}) is larger than the padded "
                         f"input {x_shape[2] + 2 * padding[0]}x{x_shape[3] + 2 * padding[1]}")
    expected = (x_shape[0], weight_shape[0]) + out_hw
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"{op}: grad_out has shape {tuple(grad_out.shape)}, expected {expected} for "
                         f"input {x_shape} and weight {weight_shape}")
    return stride, padding, dilation


def conv2d_grad_input(grad_out, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """d(loss)/d(x) of conv2d, given d(loss)/d(y)."""
    stride, padding, dilation = _conv2d_grad_args("conv2d_grad_input", grad_out, input_shape, weight.shape,
                                                  (grad_out.dtype, weight.dtype), stride, padding,
                                                  dilation, groups)
    k = backend.for_array(grad_out)
    return k.conv2d_grad_input(grad_out, weight, tuple(int(n) for n in input_shape), stride, padding,
                               dilation, groups)


def conv2d_grad_weight(grad_out, x, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """d(loss)/d(weight) of conv2d, given d(loss)/d(y)."""
    stride, padding, dilation = _conv2d_grad_args("conv2d_grad_weight", grad_out, x.shape, weight_shape,
                                                  (grad_out.dtype, x.dtype), stride, padding, dilation,
                                                  groups)
    k = backend.for_array(grad_out)
    return k.conv2d_grad_weight(grad_out, x, tuple(int(n) for n in weight_shape), stride, padding,
                                dilation, groups)


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


def _check_attention_backward(grad_out, q, k, v, out, lse, mask):
    """The backward kernel gets no forward to have checked its arguments: check them here."""
    op = "attention_backward"
    if any(a.ndim != 4 for a in (q, k, v, grad_out, out)):
        raise ValueError(f"{op}: q, k, v, grad_out and out must be 4-D (B, H, T, D), got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, {tuple(grad_out.shape)}, "
                         f"{tuple(out.shape)}")
    b, h, tq, d = q.shape
    tk, dv = k.shape[2], v.shape[3]
    expected = {"k": (b, h, tk, d), "v": (b, h, tk, dv), "grad_out": (b, h, tq, dv),
                "out": (b, h, tq, dv), "lse": (b, h, tq)}
    for name, a in (("k", k), ("v", v), ("grad_out", grad_out), ("out", out), ("lse", lse)):
        if tuple(a.shape) != expected[name]:
            raise ValueError(f"{op}: {name} has shape {tuple(a.shape)}, expected {expected[name]} "
                             f"for q {tuple(q.shape)}")
    dtypes = {np.dtype(a.dtype) for a in (grad_out, q, k, v, out, lse)}
    if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
        raise TypeError(f"{op}: grad_out, q, k, v, out and lse must share one floating dtype, got "
                        f"{sorted(str(t) for t in dtypes)}")
    if mask is not None:
        if mask.dtype.kind not in "bf":
            raise TypeError(f"{op}: mask must be bool or floating, got {mask.dtype}")
        try:
            np.broadcast_shapes(mask.shape, (b, h, tq, tk))
        except ValueError:
            raise ValueError(f"{op}: mask of shape {tuple(mask.shape)} does not broadcast to "
                             f"{(b, h, tq, tk)}") from None


def attention_backward(grad_out, q, k, v, out, lse, mask=None, is_causal=False, scale=None):
    """(dq, dk, dv) of attention for (B, H, T, D) arrays, recomputing the probabilities from lse."""
    _check_attention_backward(grad_out, q, k, v, out, lse, mask)
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
