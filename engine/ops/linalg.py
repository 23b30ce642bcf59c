"""Matrix products: matmul with batch broadcasting, and linear (x·Wᵀ + b) for layers.

Shapes: M×K @ K×N -> M×N; leading (batch) dims broadcast as in NumPy. Both ops call the
backend's `matmul` kernel for the forward and for both gradients:
    C = A·B   =>   dA = dC·Bᵀ,   dB = Aᵀ·dC
"""
import math

import numpy as np

from engine.autograd import Function
from engine.ops._util import check_same_device, kernels, unbroadcast


def _product(a, b):
    """a @ b for arrays of ndim >= 2 with broadcast batch dims, through the matmul kernel."""
    k = kernels(a)
    if a.ndim == 2 and b.ndim == 2:
        return k.matmul(a, b)
    if b.ndim == 2:  # (..., M, K) @ (K, N): one big 2-D product
        return k.matmul(_rows(a), b).reshape(a.shape[:-1] + (b.shape[-1],))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    xp_a = _as_batch(a, batch)
    xp_b = _as_batch(b, batch)
    return k.matmul(xp_a, xp_b).reshape(batch + (a.shape[-2], b.shape[-1]))


def _as_batch(x, batch):
    """x broadcast to `batch` leading dims and flattened to 3-D (copies only if it must)."""
    from engine._array import array_module

    full = array_module(x).broadcast_to(x, batch + x.shape[-2:])
    return full.reshape((math.prod(batch),) + x.shape[-2:])


def _rows(x):
    """x (..., K) as a matrix (N, K). Explicit sizes, not -1: a reshape cannot infer a
    dimension when another one is 0."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _swap(x):
    return x.swapaxes(-1, -2)


class MatMul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return _product(a, b)

    def backward(self, grad):
        da = unbroadcast(_product(grad, _swap(self.b)), self.a.shape)
        db = unbroadcast(_product(_swap(self.a), grad), self.b.shape)
        return da, db


class Linear(Function):
    """y = x·Wᵀ + b over the last dim of x: x (..., K), W (M, K), b (M,)."""

    def forward(self, x, weight, bias=None):
        self.x2 = _rows(x)
        self.weight, self.has_bias, self.shape = weight, bias is not None, x.shape
        y = kernels(x).linear(self.x2, weight, bias)
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, grad):
        k = kernels(grad)
        g2 = _rows(grad)
        dx = k.matmul(g2, self.weight).reshape(self.shape)  # (N, M)·(M, K)
        dw = k.matmul(g2.T, self.x2)                        # (M, N)·(N, K)
        if self.has_bias:
            return dx, dw, g2.sum(axis=0)
        return dx, dw


def _shape_error(a, b, why):
    return RuntimeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                        f"multiplied ({why})")


def matmul(a, b):
    from engine.ops._util import as_tensor

    a = as_tensor(a, b) if not hasattr(a, "_ctx") else a
    b = as_tensor(b, a)
    check_same_device(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise _shape_error(a, b, "both arguments need at least 1 dimension")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        inner_b = b.shape[-2 if b.ndim > 1 else 0]
        raise _shape_error(a, b, f"inner dimensions {a.shape[-1]} and {inner_b} differ")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: expected both operands to have the same dtype, got {a.dtype} and {b.dtype}")
    if a.dtype.kind != "f":
        raise TypeError(f"matmul: only floating-point tensors are supported, got {a.dtype}")
    if a.ndim > 2 and b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise _shape_error(a, b, "batch dimensions do not broadcast") from None
    # 1-D operands are promoted to matrices and the added dim removed after, as in NumPy.
    if a.ndim == 1 and b.ndim == 1:
        return MatMul.apply(a.reshape(1, -1), b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:
        return MatMul.apply(a.unsqueeze(0), b).squeeze(-2)
    if b.ndim == 1:
        return MatMul.apply(a, b.unsqueeze(1)).squeeze(-1)
    return MatMul.apply(a, b)


def linear(x, weight, bias=None):
    check_linear(x, weight, bias)
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)


def check_linear(x, weight, bias):
    """Raise a clear error unless x (..., K) · weight (M, K)ᵀ + bias (M,) is well-formed."""
    check_same_device(x, weight, *([bias] if bias is not None else []))
    if weight.ndim != 2:
        raise RuntimeError(f"linear: weight must be 2-D (out_features, in_features), got shape "
                           f"{tuple(weight.shape)}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"linear: input shape {tuple(x.shape)} and weight shape "
                           f"{tuple(weight.shape)} cannot be multiplied (in_features "
                           f"{weight.shape[1]} != input's last dimension)")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise RuntimeError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"linear: input, weight and bias must share a dtype, got {x.dtype} and {weight.dtype}")
    if x.dtype.kind != "f":
        raise TypeError(f"linear: only floating-point tensors are supported, got {x.dtype}")


def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise RuntimeError(f"bmm: expected two 3-D tensors with the same batch size, got "
                           f"{tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)
