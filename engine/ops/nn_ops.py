"""Neural-network ops with fused kernels: softmax, log-softmax, layer norm, cross-entropy,
dropout and embedding; plus losses composed from primitives (mse, bce with logits, nll)."""
import numpy as np

from engine import random
from engine._array import array_module
from engine.autograd import Function
from engine.device import move
from engine.ops._util import check_same_device, kernels, require_float, tensor_cls, wrap_dim
from engine.ops.elementwise import abs as _abs
from engine.ops.elementwise import exp, log, relu, where


def _rows(a, dim):
    """(a with `dim` moved last and flattened to rows, a function undoing that)."""
    last = dim >= a.ndim - 1  # a 0-d tensor is one row of one element
    moved = a if last else array_module(a).moveaxis(a, dim, -1)
    shape = moved.shape
    # Explicit sizes, not -1: a reshape cannot infer a dimension when another one is 0.
    rows = moved.reshape(int(np.prod(shape[:-1])), shape[-1]) if a.ndim else moved.reshape(1, 1)

    def restore(r):
        out = r.reshape(shape)
        return out if last else array_module(out).moveaxis(out, -1, dim)

    return rows, restore


class Softmax(Function):
    saves_inputs = False

    def forward(self, a, dim, log_space):
        self.dim, self.log_space = dim, log_space
        rows, restore = _rows(a, dim)
        # NOTE: an empty input never reaches the kernels (a row of no elements has no max).
        self.y = kernels(a).softmax_forward(rows, log=log_space) if rows.size else rows.copy()
        return restore(self.y)

    def backward(self, grad):
        rows, restore = _rows(grad, self.dim)
        return restore(kernels(grad).softmax_backward(rows, self.y, log=self.log_space))


class LayerNorm(Function):
    """Normalizes over the trailing `len(normalized_shape)` dims; x is viewed as (N, C)."""

    def forward(self, x, weight=None, bias=None, normalized_ndim=1, eps=1e-5):
        c = int(np.prod(x.shape[x.ndim - normalized_ndim:]))
        # Explicit sizes, not -1: a reshape cannot infer a dimension when another one is 0.
        n = int(np.prod(x.shape[:x.ndim - normalized_ndim]))
        self.x2, self.shape = x.reshape(n, c), x.shape
        self.w_shape = None if weight is None else weight.shape
        self.weight = None if weight is None else weight.reshape(-1)
        b = None if bias is None else bias.reshape(-1)
        y, self.mean, self.rstd = kernels(x).layer_norm_forward(self.x2, self.weight, b, eps)
        self.has_bias = bias is not None
        return y.reshape(x.shape)

    def backward(self, grad):
        dx, dw, db = kernels(grad).layer_norm_backward(
            grad.reshape(self.x2.shape), self.x2, self.weight, self.mean, self.rstd)
        out = (dx.reshape(self.shape),)
        if self.w_shape is not None:
            out += (dw.reshape(self.w_shape),)
            if self.has_bias:
                out += (db.reshape(self.w_shape),)
        return out


class CrossEntropy(Function):
    """Per-sample loss lse(logits) − logits[target] from class indices; reduced by the caller."""

    def forward(self, logits, target, ignore_index):
        self.logits, self.target, self.ignore_index = logits, target, ignore_index
        losses, self.lse = kernels(logits).cross_entropy_forward(logits, target, ignore_index)
        return losses

    def backward(self, grad):
        return kernels(grad).cross_entropy_backward(grad, self.logits, self.target, self.lse,
                                                    self.ignore_index)


class Dropout(Function):
    saves_inputs = False

    def forward(self, a, p):
        mask = kernels(a).dropout_mask(a.shape, p, random.generator(), a.dtype)
        self.mask = move(mask, tensor_cls()._wrap(a).device)
        return a * self.mask

    def backward(self, grad):
        return grad * self.mask


class Embedding(Function):
    saves_inputs = False

    def forward(self, weight, indices, padding_idx=None):
        self.indices, self.num, self.padding_idx = indices, weight.shape[0], padding_idx
        return weight[indices]

    def backward(self, grad):
        dw = kernels(grad).embedding_backward(grad, self.indices, self.num)
        if self.padding_idx is not None:
            dw[self.padding_idx] = 0  # the padding row is never trained
        return dw


# ---- public functions ---------------------------------------------------------------------
def softmax(a, dim=-1, dtype=None):
    if dtype is not None:
        a = a.to(dtype)
    require_float(a, "softmax")
    return Softmax.apply(a, dim=wrap_dim(dim, a.ndim), log_space=False)


def log_softmax(a, dim=-1, dtype=None):
    if dtype is not None:
        a = a.to(dtype)
    require_float(a, "log_softmax")
    return Softmax.apply(a, dim=wrap_dim(dim, a.ndim), log_space=True)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    n = len(normalized_shape)
    if n == 0 or tuple(x.shape[x.ndim - n:]) != normalized_shape or x.ndim < n:
        raise ValueError(f"layer_norm: normalized_shape {list(normalized_shape)} does not match the "
                         f"trailing dims of the input of shape {tuple(x.shape)}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != normalized_shape:
            raise ValueError(f"layer_norm: {name} must have shape {normalized_shape}, got {tuple(p.shape)}")
    if bias is not None and weight is None:
        raise ValueError("layer_norm: bias without weight is not supported")
    require_float(x, "layer_norm")
    check_same_device(x, *[p for p in (weight, bias) if p is not None])
    args = [x] + [p for p in (weight, bias) if p is not None]
    return LayerNorm.apply(*args, normalized_ndim=n, eps=eps)


def _reduce(losses, reduction, count, op):
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.sum() / count
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross-entropy from logits (N, C) or (N, C, d1, ...) and class indices (N) or (N, d1, ...)."""
    op = "cross_entropy"
    if weight is not None or label_smoothing:
        raise NotImplementedError(f"{op}: class weights and label_smoothing are not supported")
    Tensor = tensor_cls()
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    require_float(input, op)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got {t.dtype} "
                        "(probability targets are not supported)")
    if input.ndim < 1 or (input.ndim == 1 and t.ndim != 0) or (input.ndim > 1 and (
            t.shape != tuple(input.shape[:1]) + tuple(input.shape[2:]))):
        raise ValueError(f"{op}: expected target of shape {tuple(input.shape[:1]) + tuple(input.shape[2:])} "
                         f"for input of shape {tuple(input.shape)}, got {t.shape}")
    n_classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    valid = t != ignore_index
    if bool(((t < 0) | (t >= n_classes))[valid].any()):
        bad = t[valid][((t < 0) | (t >= n_classes))[valid]][0]
        raise IndexError(f"{op}: target {int(bad)} is out of bounds for {n_classes} classes")
    logits = input if input.ndim == 2 else (
        input.reshape(1, -1) if input.ndim == 1 else input.movedim(1, -1).reshape(-1, n_classes))
    t_rows = t.reshape(-1).astype(np.int64, copy=False)
    if isinstance(target, Tensor) and target.device != input.device:
        raise RuntimeError(f"{op}: input is on {input.device} but target is on {target.device}")
    losses = CrossEntropy.apply(logits, move(t_rows, input.device), ignore_index=ignore_index)
    if reduction == "none":
        return losses.reshape(t.shape)
    count = int(valid.sum())
    # NOTE: like PyTorch, the mean over zero non-ignored targets is NaN (0/0).
    return _reduce(losses, reduction, count if count else float("nan"), op)


def nll_loss(input, target, ignore_index=-100, reduction="mean"):
    Tensor = tensor_cls()
    t = target.data if isinstance(target, Tensor) else array_module(input.data).asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got {t.dtype}")
    if input.ndim != 2 or t.shape != (input.shape[0],):
        raise ValueError(f"nll_loss: expected input (N, C) and target (N,), got {tuple(input.shape)} "
                         f"and {t.shape}")
    valid = t != ignore_index
    # NOTE: a negative target would index from the end without this check
    out_of_range = ((t < 0) | (t >= input.shape[1])) & valid
    if bool(out_of_range.any()):
        raise IndexError(f"nll_loss: target {int(t[out_of_range][0])} is out of bounds for "
                         f"{input.shape[1]} classes")
    safe = array_module(t).where(valid, t, 0)
    picked = input[array_module(t).arange(t.shape[0]), safe]
    # a select, not a multiply by the mask: with every target ignored the mean's gradient is
    # NaN (0/0), and NaN·0 would carry it into the ignored rows, whose gradient is 0
    losses = where(valid, -picked, 0.0)
    return _reduce(losses, reduction, int(valid.sum()) or float("nan"), "nll_loss")


def mse_loss(input, target, reduction="mean"):
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"mse_loss: input shape {tuple(input.shape)} and target shape "
                         f"{tuple(target.shape)} differ")
    diff = input - target
    return _reduce(diff * diff, reduction, input.numel(), "mse_loss")


def binary_cross_entropy_with_logits(input, target, reduction="mean", pos_weight=None):
    if pos_weight is not None:
        raise NotImplementedError("binary_cross_entropy_with_logits: pos_weight is not supported")
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"binary_cross_entropy_with_logits: input shape {tuple(input.shape)} and "
                         f"target shape {tuple(target.shape)} differ")
    # max(x, 0) − x·y + log(1 + e^−|x|): the stable form, finite for any logit.
    losses = relu(input) - input * target + log(1 + exp(-_abs(input)))
    return _reduce(losses, reduction, input.numel(), "binary_cross_entropy_with_logits")


def dropout(a, p=0.5, training=True, inplace=False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return a
    return Dropout.apply(a, p=p)


def embedding(input, weight, padding_idx=None):
    Tensor = tensor_cls()
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, dim), got {tuple(weight.shape)}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= weight.shape[0]):
        raise IndexError(f"embedding: index out of range for {weight.shape[0]} embeddings "
                         f"(min {int(idx.min())}, max {int(idx.max())})")
    if isinstance(input, Tensor) and input.device != weight.device:
        raise RuntimeError(f"embedding: indices on {input.device} but weight on {weight.device}")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    return Embedding.apply(weight, indices=move(idx, weight.device), padding_idx=padding_idx)
