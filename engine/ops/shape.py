"""Shape ops: views and copies that move elements without arithmetic.

reshape, permute, expand, index and cat are primitives; squeeze, unsqueeze, transpose, stack,
split and chunk are composed from them.
"""
import numpy as np

from engine._array import array_module
from engine.autograd import Function
from engine.ops._util import check_same_device, result_dtype, tensor_cls, wrap_dim


class Reshape(Function):
    saves_inputs = False

    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Permute(Function):
    saves_inputs = False

    def forward(self, a, dims):
        self.inverse = tuple(np.argsort(dims))
        return a.transpose(dims)

    def backward(self, grad):
        return grad.transpose(self.inverse)


class Expand(Function):
    saves_inputs = False

    def forward(self, a, shape):
        self.shape = a.shape
        return array_module(a).broadcast_to(a, shape)

    def backward(self, grad):
        from engine.ops._util import unbroadcast

        return unbroadcast(grad, self.shape)


class Copy(Function):
    """A C-contiguous copy (clone, and contiguous() of a strided view)."""

    saves_inputs = False

    def forward(self, a):
        return a.copy(order="C")

    def backward(self, grad):
        return grad


class Index(Function):
    """a[key] for basic (ints, slices, None, ...) and integer/bool-array keys."""

    saves_inputs = False

    def forward(self, a, key):
        self.shape, self.dtype, self.key = a.shape, a.dtype, key
        return a[key]

    def backward(self, grad):
        xp = array_module(grad)
        out = xp.zeros(self.shape, dtype=grad.dtype)
        if _is_basic(self.key):
            out[self.key] = grad  # each element selected at most once
        else:
            xp.add.at(out, self.key, grad)  # repeated indices accumulate
        return out


class Cat(Function):
    saves_inputs = False

    def forward(self, *arrays, dim):
        self.dim = dim
        self.splits = np.cumsum([a.shape[dim] for a in arrays])[:-1]
        return array_module(*arrays).concatenate(arrays, axis=dim)

    def backward(self, grad):
        return tuple(array_module(grad).split(grad, self.splits, axis=self.dim))


def _is_basic(key):
    parts = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (int, np.integer, slice)) or k is None or k is Ellipsis for k in parts)


# ---- public functions ---------------------------------------------------------------------
def _normalize_shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def reshape(a, *shape):
    shape = _normalize_shape(shape)
    if any(s < -1 for s in shape):
        raise RuntimeError(f"reshape: invalid size in shape '{list(shape)}' (sizes must be >= 0, "
                           "or -1 for one inferred dimension)")
    known = [s for s in shape if s != -1]
    n = 1
    for s in known:
        n *= s
    if shape.count(-1) > 1 or (shape.count(-1) == 0 and n != a.numel()) or \
            (shape.count(-1) == 1 and (n == 0 or a.numel() % n)):
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {a.numel()}")
    return Reshape.apply(a, shape=shape)


def view(a, *shape):
    return reshape(a, *shape)


def flatten(a, start_dim=0, end_dim=-1):
    if a.ndim == 0:
        return reshape(a, 1)
    s, e = wrap_dim(start_dim, a.ndim), wrap_dim(end_dim, a.ndim)
    shape = a.shape[:s] + (-1 if a.numel() else int(np.prod(a.shape[s:e + 1])),) + a.shape[e + 1:]
    return reshape(a, shape)


def permute(a, *dims):
    dims = _normalize_shape(dims)
    if len(dims) != a.ndim or sorted(wrap_dim(d, a.ndim) for d in dims) != list(range(a.ndim)):
        raise RuntimeError(f"permute: dims {list(dims)} are not a permutation of the "
                           f"{a.ndim} dims of a tensor of shape {tuple(a.shape)}")
    return Permute.apply(a, dims=tuple(wrap_dim(d, a.ndim) for d in dims))


def transpose(a, dim0, dim1):
    dims = list(range(a.ndim))
    d0, d1 = wrap_dim(dim0, a.ndim), wrap_dim(dim1, a.ndim)
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(a, dims=tuple(dims))


def t(a):
    if a.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, got {a.ndim}")
    return a if a.ndim < 2 else transpose(a, 0, 1)


def movedim(a, source, destination):
    src, dst = wrap_dim(source, a.ndim), wrap_dim(destination, a.ndim)
    order = [d for d in range(a.ndim) if d != src]
    order.insert(dst, src)
    return Permute.apply(a, dims=tuple(order))


def expand(a, *shape):
    shape = _normalize_shape(shape)
    if len(shape) < a.ndim:
        raise RuntimeError(f"expand: the number of sizes ({len(shape)}) must be >= the number of "
                           f"dimensions of the tensor ({a.ndim})")
    lead = len(shape) - a.ndim
    for i, s in enumerate(shape):
        if s < -1 or (s == -1 and i < lead):
            raise RuntimeError(f"expand: invalid size {s} at dimension {i} of target {list(shape)} "
                               f"for a tensor of shape {tuple(a.shape)} (-1 keeps an existing "
                               "dimension; new leading dimensions need a size >= 0)")
    full = tuple(a.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
    for i in range(a.ndim):
        if a.shape[i] != 1 and a.shape[i] != full[lead + i]:
            raise RuntimeError(f"expand: the expanded size ({full[lead + i]}) must match the "
                               f"existing size ({a.shape[i]}) at non-singleton dimension {lead + i}; "
                               f"target {list(shape)}, tensor {tuple(a.shape)}")
    return Expand.apply(a, shape=full)


def expand_as(a, other):
    return expand(a, other.shape)


def broadcast_to(a, shape):
    return expand(a, shape)


def contiguous(a):
    return a if a.data.flags.c_contiguous else Copy.apply(a)


def clone(a):
    return Copy.apply(a)


def squeeze(a, dim=None):
    if dim is None:
        return reshape(a, tuple(s for s in a.shape if s != 1))
    dims = {wrap_dim(d, a.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
    return reshape(a, tuple(s for i, s in enumerate(a.shape) if not (i in dims and s == 1)))


def unsqueeze(a, dim):
    d = wrap_dim(dim, a.ndim + 1)
    return reshape(a, a.shape[:d] + (1,) + a.shape[d:])


def index(a, key):
    key = _index_key(key, a)
    return Index.apply(a, key=key)


def _index_key(key, a):
    Tensor = tensor_cls()
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for k in parts:
        if isinstance(k, Tensor):
            k = k.data
        elif isinstance(k, list):
            k = np.asarray(k)
        if hasattr(k, "dtype") and getattr(k, "ndim", 0) >= 0 and not isinstance(k, (int, np.integer)):
            if k.dtype.kind not in "iub":
                raise IndexError(f"tensors used as indices must be integer or bool, got {k.dtype}")
            if array_module(k) is not array_module(a.data):
                raise RuntimeError(f"indices are on a different device than the indexed tensor ({a.device})")
        out.append(k)
    return tuple(out) if isinstance(key, tuple) else out[0]


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    check_same_device(*tensors)
    ref = tensors[0]
    d = wrap_dim(dim, ref.ndim)
    for t_ in tensors[1:]:
        if t_.ndim != ref.ndim or any(t_.shape[i] != ref.shape[i] for i in range(ref.ndim) if i != d):
            raise RuntimeError(f"cat: sizes of tensors must match except in dimension {d}; got "
                               f"{tuple(ref.shape)} and {tuple(t_.shape)}")
    dtype = result_dtype(*[t_.dtype for t_ in tensors])
    tensors = [t_ if t_.dtype == dtype else t_.to(dtype) for t_ in tensors]
    return Cat.apply(*tensors, dim=d)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for t_ in tensors[1:]:
        if t_.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{tuple(tensors[0].shape)} and {tuple(t_.shape)}")
    d = wrap_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t_, d) for t_ in tensors], dim=d)


def split(a, split_size_or_sections, dim=0):
    d = wrap_dim(dim, a.ndim)
    n = a.shape[d]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split: split_size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} do not add up to dimension {d} of size {n}")
    out, start = [], 0
    for s in sizes:
        key = (slice(None),) * d + (slice(start, start + s),)
        out.append(index(a, key))
        start += s
    return tuple(out)


def chunk(a, chunks, dim=0):
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = a.shape[wrap_dim(dim, a.ndim)]
    return split(a, max(1, -(-n // chunks)), dim)


def unbind(a, dim=0):
    d = wrap_dim(dim, a.ndim)
    return tuple(index(a, (slice(None),) * d + (i,)) for i in range(a.shape[d]))
