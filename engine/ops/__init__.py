"""All ops, as functions; the Tensor methods that call them are attached here.

Each family module keeps its Functions (forward + backward) next to the public functions built
on them.
"""
from engine.ops.attention import scaled_dot_product_attention
from engine.ops.conv import avg_pool2d, conv2d, max_pool2d
from engine.ops.elementwise import (Cast, ToDevice, abs, add, allclose, clamp, cos, div, eq, equal,
                                    exp, ge, gelu, gt, isfinite, isnan, le, log, logical_and,
                                    logical_not, logical_or, lt, masked_fill, maximum, minimum,
                                    mul, ne, neg, pow, relu, rsqrt, sigmoid, sign, silu, sin, sqrt,
                                    square, sub, tanh, where)
from engine.ops.linalg import bmm, linear, matmul
from engine.ops.nn_ops import (binary_cross_entropy_with_logits, cross_entropy, dropout,
                               embedding, layer_norm, log_softmax, mse_loss, nll_loss, softmax)
from engine.ops.reduce import (amax, argmax, argmin, logsumexp, max, mean, min, std, sum, var)
from engine.ops.shape import (broadcast_to, cat, chunk, clone, concat, concatenate, contiguous,
                              expand, expand_as, flatten, index, movedim, permute, reshape, split,
                              squeeze, stack, t, transpose, unbind, unsqueeze, view)

__all__ = [
    "scaled_dot_product_attention", "avg_pool2d", "conv2d", "max_pool2d", "abs", "add", "allclose",
    "clamp", "cos", "div", "eq", "equal", "exp", "ge", "gelu", "gt", "isfinite", "isnan", "le",
    "log", "logical_and", "logical_not", "logical_or", "lt", "masked_fill", "maximum", "minimum",
    "mul", "ne", "neg", "pow", "relu", "rsqrt", "sigmoid", "sign", "silu", "sin", "sqrt", "square", "sub",
    "tanh", "where", "bmm", "linear", "matmul", "binary_cross_entropy_with_logits",
    "cross_entropy", "dropout", "embedding", "layer_norm", "log_softmax", "mse_loss", "nll_loss",
    "softmax", "amax", "argmax", "argmin", "logsumexp", "max", "mean", "min", "std", "sum", "var",
    "broadcast_to", "cat", "chunk", "clone", "concat", "concatenate", "contiguous", "expand",
    "expand_as", "flatten", "movedim", "permute", "reshape", "split", "squeeze", "stack", "t",
    "transpose", "unbind", "unsqueeze", "view",
]

_METHODS = [
    abs, add, clamp, cos, div, eq, exp, ge, gt, isfinite, isnan, le, log, logical_and,
    logical_not, logical_or, lt, masked_fill, maximum, minimum, mul, ne, pow, relu, rsqrt, sigmoid,
    sign, sin, sqrt, square, sub, tanh, amax, argmax, argmin, logsumexp, max, mean, min, std, sum, var,
    chunk, clone, contiguous, expand, expand_as, flatten, movedim, permute, reshape, split,
    squeeze, t, transpose, unbind, unsqueeze, view, matmul, softmax, log_softmax,
]


def _attach_methods():
    from engine.tensor import Tensor

    for fn in _METHODS:
        setattr(Tensor, fn.__name__, fn)
    Tensor.neg = neg
    Tensor.clip = clamp
    Tensor.swapaxes = transpose
    Tensor.repeat = _repeat


def _repeat(self, *sizes):
    """Tile the tensor `sizes` times along each dim (PyTorch's Tensor.repeat)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) < self.ndim:
        raise RuntimeError(f"repeat: number of repeat dims ({len(sizes)}) can not be smaller than "
                           f"the number of tensor dims ({self.ndim})")
    x = self.reshape((1,) * (len(sizes) - self.ndim) + tuple(self.shape))
    # Insert a new axis before each dim, expand it to the repeat count, and merge the two.
    inter = []
    for n in x.shape:
        inter += [1, n]
    target = []
    for r, n in zip(sizes, x.shape):
        target += [r, n]
    out = x.reshape(inter).expand(target)
    return out.reshape(tuple(r * n for r, n in zip(sizes, x.shape)))


_attach_methods()
