"""Reductions: sum and max are primitives with their own backward; mean, var, min and
logsumexp are composed from them."""
import builtins
from collections import namedtuple

from engine._array import array_module
from engine.autograd import Function
from engine.ops._util import tensor_cls, wrap_dim, wrap_dims
from engine.ops.elementwise import isfinite, where

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _keep_axes(grad, shape, axes, keepdim):
    """`grad` of a reduction, reshaped so it broadcasts against the input of `shape`."""
    if keepdim or not axes:
        return grad
    return grad.reshape([1 if i in axes else n for i, n in enumerate(shape)])


class Sum(Function):
    saves_inputs = False

    def forward(self, a, axes, keepdim):
        self.shape, self.axes, self.keepdim = a.shape, axes, keepdim
        return a.sum(axis=axes, keepdims=keepdim)

    def backward(self, grad):
        # Every input element contributed once to its sum, so it receives the sum's gradient.
        g = _keep_axes(grad, self.shape, self.axes, self.keepdim)
        return array_module(grad).broadcast_to(g, self.shape).copy()


class Max(Function):
    """max over `axes` (all of them when reducing the whole tensor)."""

    def forward(self, a, axes, keepdim):
        if a.size == 0 and any(a.shape[i] == 0 for i in axes):
            raise RuntimeError(f"max(): cannot reduce an empty dimension (shape {a.shape})")
        self.a, self.axes, self.keepdim = a, axes, keepdim
        self.out = a.max(axis=axes, keepdims=True)
        return self.out if keepdim else self.out.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    def backward(self, grad):
        # Ties share the gradient evenly (the subgradient PyTorch uses for max over all elements).
        hit = (self.a == self.out).astype(grad.dtype)
        hit /= hit.sum(axis=self.axes, keepdims=True)
        return _keep_axes(grad, self.a.shape, self.axes, self.keepdim) * hit


class MaxDim(Function):
    """max along one dim, returning values; the gradient goes to the first maximum (its index)."""

    def forward(self, a, dim, keepdim):
        if a.shape[dim] == 0:
            raise RuntimeError(f"max(): cannot reduce dimension {dim} of size 0 (shape {a.shape})")
        xp = array_module(a)
        self.shape, self.dim, self.keepdim = a.shape, dim, keepdim
        self.indices = xp.expand_dims(a.argmax(axis=dim), dim)
        values = xp.take_along_axis(a, self.indices, axis=dim)
        return values if keepdim else values.squeeze(dim)

    def backward(self, grad):
        xp = array_module(grad)
        g = grad if self.keepdim else xp.expand_dims(grad, self.dim)
        out = xp.zeros(self.shape, dtype=grad.dtype)
        xp.put_along_axis(out, self.indices, g, axis=self.dim)
        return out


def sum(a, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        a = a.to(dtype)
    return Sum.apply(a, axes=wrap_dims(dim, a.ndim), keepdim=keepdim)


def mean(a, dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        a = a.to(dtype)
    axes = wrap_dims(dim, a.ndim)
    count = 1
    for i in axes:
        count *= a.shape[i]
    # NOTE: mean of an empty selection is NaN, as in NumPy and PyTorch.
    return Sum.apply(a, axes=axes, keepdim=keepdim) / (count if count else float("nan"))


def var(a, dim=None, keepdim=False, unbiased=True, correction=None):
    axes = wrap_dims(dim, a.ndim)
    count = 1
    for i in axes:
        count *= a.shape[i]
    ddof = correction if correction is not None else int(bool(unbiased))
    centered = a - mean(a, dim=axes, keepdim=True)
    return sum(centered * centered, dim=axes, keepdim=keepdim) / builtins.max(count - ddof, 0)


def std(a, dim=None, keepdim=False, unbiased=True, correction=None):
    return var(a, dim, keepdim, unbiased, correction).sqrt()


def _require_nonempty(op, a, axes):
    """max-like reductions have no identity: refuse an empty reduced dimension by name."""
    for i in axes:
        if a.shape[i] == 0:
            what = "an empty dimension" if len(axes) == a.ndim or len(axes) > 1 else f"dimension {i} of size 0"
            raise RuntimeError(f"{op}(): cannot reduce {what} (shape {tuple(a.shape)})")


def _max_like(a, dim, keepdim, sign):
    x = a if sign > 0 else -a
    _require_nonempty("max" if sign > 0 else "min", a, wrap_dims(dim, a.ndim))
    if dim is None:
        out = Max.apply(x, axes=tuple(range(a.ndim)), keepdim=False)
        return out if sign > 0 else -out
    d = wrap_dim(dim, a.ndim)
    values = MaxDim.apply(x, dim=d, keepdim=keepdim)
    indices = array_module(x.data).argmax(x.data, axis=d)
    if keepdim:
        indices = indices.reshape(values.shape)
    return ValuesIndices(values if sign > 0 else -values, tensor_cls()._wrap(indices))


def max(a, dim=None, keepdim=False):
    """max(a) -> Tensor; max(a, dim) -> (values, indices), as in PyTorch."""
    return _max_like(a, dim, keepdim, +1)


def min(a, dim=None, keepdim=False):
    return _max_like(a, dim, keepdim, -1)


def amax(a, dim=None, keepdim=False):
    axes = wrap_dims(dim, a.ndim)
    _require_nonempty("amax", a, axes)
    return Max.apply(a, axes=axes, keepdim=keepdim)


def _arg_max_like(a, dim, keepdim, op):
    xp = array_module(a.data)
    if dim is None:
        if a.numel() == 0:
            raise RuntimeError(f"{op}(): cannot reduce an empty tensor (shape {tuple(a.shape)})")
        return tensor_cls()._wrap(xp.asarray(a.data.argmax()))
    d = wrap_dim(dim, a.ndim)
    _require_nonempty(op, a, (d,))
    idx = a.data.argmax(axis=d)
    return tensor_cls()._wrap(xp.expand_dims(idx, d) if keepdim else idx)


def argmax(a, dim=None, keepdim=False):
    return _arg_max_like(a, dim, keepdim, "argmax")


def argmin(a, dim=None, keepdim=False):
    return _arg_max_like(-a.detach(), dim, keepdim, "argmin")


def logsumexp(a, dim, keepdim=False):
    if any(a.shape[i] == 0 for i in wrap_dims(dim, a.ndim)):
        # the log of an empty sum is -inf (as PyTorch); the sum keeps the graph for the gradient
        return sum(a, dim=dim, keepdim=keepdim) - float("inf")
    m = amax(a, dim=dim, keepdim=True).detach()
    # Shift by the max, except where it is ±inf: a row of -inf has logsumexp -inf (not
    # (-inf) - (-inf) = NaN), and a row holding +inf has logsumexp +inf.
    m = where(isfinite(m), m, 0.0)
    out = (a - m).exp().sum(dim=dim, keepdim=True).log() + m
    return out if keepdim else out.squeeze(dim)
