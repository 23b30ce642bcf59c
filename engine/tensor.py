"""Tensor: an n-dimensional array (NumPy on the CPU, CuPy on the GPU) that records the ops
applied to it, so `backward()` can compute gradients.

The methods here are thin: each forwards to an op in engine/ops, where forward and backward live.
"""
import numpy as np

from engine import autograd, dtypes
from engine._array import array_module, is_gpu_array
from engine.device import device as Device
from engine.device import device_of, move


class Tensor:
    __slots__ = ("data", "requires_grad", "grad", "_ctx", "_version", "_retains_grad", "__weakref__")
    # Make NumPy defer to our reflected operators (ndarray + Tensor -> Tensor.__radd__).
    __array_priority__ = 1000

    def __init__(self, data, dtype=None, requires_grad=False, device=None):
        t = tensor(data, dtype=dtype, requires_grad=requires_grad, device=device)
        self.data, self.requires_grad, self.grad = t.data, t.requires_grad, None
        self._ctx, self._version, self._retains_grad = None, 0, False

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        """A Tensor over `array` (no copy, no checks): the fast path the ops use."""
        if isinstance(array, np.generic):
            # NOTE: NumPy returns a scalar, not a 0-d array, from full reductions and from
            # arithmetic on 0-d arrays; a scalar is immutable and has no buffer to share.
            array = np.asarray(array)
        t = object.__new__(cls)
        t.data, t.requires_grad, t.grad = array, requires_grad, None
        t._ctx, t._version, t._retains_grad = None, 0, False
        return t

    # ---- facts -------------------------------------------------------------------------
    @property
    def shape(self):
        return Size(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return device_of(self.data)

    @property
    def is_cuda(self):
        return is_gpu_array(self.data)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def size(self, dim=None):
        return self.shape if dim is None else self.data.shape[_wrap_dim(dim, self.ndim)]

    def dim(self):
        return self.data.ndim

    def numel(self):
        return int(self.data.size)

    def element_size(self):
        return self.data.itemsize

    def is_contiguous(self):
        return bool(self.data.flags.c_contiguous)

    def is_floating_point(self):
        return dtypes.is_floating(self.dtype)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        # As PyTorch: the dtype is shown unless it is the default float, int64 or bool.
        shown = self.dtype not in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool)
        extra = f", dtype=engine.{self.dtype}" if shown else ""
        if self.is_cuda:
            extra += f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn=<{type(self._ctx).__name__}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ---- conversion ---------------------------------------------------------------------
    def numpy(self):
        """The data as a NumPy array (shares memory on the CPU; a copy from the GPU)."""
        return self.data.get() if self.is_cuda else self.data

    def __array__(self, dtype=None, copy=None):
        """NumPy's protocol: copy=True must return a new array (np.array(t) relies on it),
        copy=False must not copy, None copies only to change the dtype."""
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError(f"__array__: converting {a.dtype} to {np.dtype(dtype)} needs a copy, "
                                 "but copy=False was given")
            return a.astype(dtype)
        return a.copy() if copy else a

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to a Python "
                             f"scalar, got shape {tuple(self.shape)}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"bool() of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.item())

    def __index__(self):
        if self.data.size != 1 or not np.issubdtype(self.dtype, np.integer):
            raise TypeError("only integer tensors of one element can be used as an index")
        return int(self.item())

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False):
        """to(device), to(dtype), to(device, dtype), to(other_tensor): as in PyTorch."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (str, Device)):
                device = a
            else:
                dtype = a
        out = self
        if device is not None and Device(device) != self.device:
            out = ops.ToDevice.apply(out, device=Device(device))
        if dtype is not None and dtypes.to_dtype(dtype) != out.dtype:
            out = ops.Cast.apply(out, dtype=dtypes.to_dtype(dtype))
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else Device("cuda", device) if isinstance(device, int) else device)

    def type(self, dtype):
        return self.to(dtype)

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool)

    # ---- autograd -----------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False):
        """Accumulate the gradient of this tensor into `.grad` of every leaf it depends on."""
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn "
                               "(no input of the ops that made it had requires_grad=True)")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward(): grad can be implicitly created only for scalar "
                                   f"outputs; this tensor has shape {tuple(self.shape)}, so pass "
                                   "a gradient of that shape")
            grad = array_module(self.data).ones_like(self.data)
        else:
            grad = gradient.data if isinstance(gradient, Tensor) else gradient
            grad = array_module(self.data).asarray(grad, dtype=self.dtype)
            if grad.shape != self.data.shape:
                raise RuntimeError(f"backward(): gradient shape {grad.shape} does not match the "
                                   f"tensor's shape {tuple(self.shape)}")
        autograd.backward(self, grad, retain_graph=retain_graph)

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def detach_(self):
        self._ctx, self.requires_grad = None, False
        return self

    def requires_grad_(self, requires_grad=True):
        if requires_grad and not dtypes.is_floating(self.dtype):
            raise RuntimeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use detach()")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        """Keep `.grad` on this non-leaf tensor after backward."""
        self._retains_grad = True
        return self

    # ---- in-place updates (optimizers, initialisation, masking) -------------------------
    def _check_inplace(self, *sources):
        """In-place updates are not recorded in the graph, so with grad mode on they may touch
        neither a tensor that requires grad nor take values from one."""
        if not autograd.is_grad_enabled():
            return
        if self.requires_grad and self.is_leaf:
            raise RuntimeError("a leaf tensor that requires grad is being used in an in-place "
                               "operation; wrap it in engine.no_grad()")
        if self.requires_grad or any(getattr(s, "requires_grad", False) for s in sources):
            raise RuntimeError(f"in-place operation on a tensor of shape {tuple(self.shape)} that is "
                               "part of an autograd graph: in-place updates are not recorded, so the "
                               "gradient would be wrong; use the out-of-place form (x = x + y), or "
                               "engine.no_grad() when no gradient is wanted")

    def _assign(self, array, *sources):
        """Write `array` (computed from `sources`) into this tensor's storage and bump its version."""
        self._check_inplace(*sources)
        xp = array_module(self.data)
        self.data[...] = xp.asarray(array) if not isinstance(array, (int, float)) else array
        self._version += 1
        return self

    def _other(self, other):
        return other.data if isinstance(other, Tensor) else other

    def copy_(self, src):
        src_array = src.data if isinstance(src, Tensor) else src
        xp = array_module(self.data)
        src_array = move(src_array, self.device) if xp is not np else np.asarray(src_array)
        src_array = xp.broadcast_to(src_array, self.data.shape)
        return self._assign(src_array.astype(self.dtype, copy=False), src)

    def zero_(self):
        return self._assign(0)

    def fill_(self, value):
        return self._assign(self._other(value), value)

    def add_(self, other, alpha=1):
        return self._assign(self.data + alpha * self._other(other), other)

    def sub_(self, other, alpha=1):
        return self._assign(self.data - alpha * self._other(other), other)

    def mul_(self, other):
        return self._assign(self.data * self._other(other), other)

    def div_(self, other):
        return self._assign(self.data / self._other(other), other)

    def clamp_(self, min=None, max=None):
        return self._assign(array_module(self.data).clip(self.data, min, max))

    def uniform_(self, a=0.0, b=1.0):
        from engine.random import generator

        return self._assign(move(generator().uniform(a, b, self.data.shape), self.device))

    def normal_(self, mean=0.0, std=1.0):
        from engine.random import generator

        return self._assign(move(generator().normal(mean, std, self.data.shape), self.device))

    def masked_fill_(self, mask, value):
        mask = mask.data if isinstance(mask, Tensor) else mask
        if getattr(mask, "dtype", None) != np.bool_:
            raise TypeError(f"masked_fill_: mask must be a bool tensor, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        xp = array_module(self.data)
        return self._assign(xp.where(mask, xp.asarray(self._other(value), dtype=self.dtype), self.data), value)

    def __setitem__(self, key, value):
        self._check_inplace(value)
        self.data[_index_key(key)] = self._other(value)
        self._version += 1

    # ---- operators ----------------------------------------------------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.div(other, self)

    def __pow__(self, other):
        return ops.pow(self, other)

    def __rpow__(self, other):
        return ops.pow(other, self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __neg__(self):
        return ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return ops.abs(self)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def __eq__(self, other):
        return ops.eq(self, other)

    def __ne__(self, other):
        return ops.ne(self, other)

    def __lt__(self, other):
        return ops.lt(self, other)

    def __le__(self, other):
        return ops.le(self, other)

    def __gt__(self, other):
        return ops.gt(self, other)

    def __ge__(self, other):
        return ops.ge(self, other)

    def __invert__(self):
        return ops.logical_not(self)

    def __and__(self, other):
        return ops.logical_and(self, other)

    def __or__(self, other):
        return ops.logical_or(self, other)

    __hash__ = object.__hash__

    def __getitem__(self, key):
        return ops.index(self, key)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    @property
    def T(self):
        return ops.permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self):
        return ops.transpose(self, -2, -1)


class Size(tuple):
    """A shape, as PyTorch's torch.Size: a tuple with numel()."""

    def numel(self):
        n = 1
        for d in self:
            n *= d
        return n

    def __repr__(self):
        return f"engine.Size({list(self)})"


def _wrap_dim(dim, ndim):
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"dimension {dim} out of range for a tensor of {ndim} dimensions")
    return dim % max(ndim, 1)


def _index_key(key):
    """An indexing key with Tensors replaced by their arrays."""
    if isinstance(key, tuple):
        return tuple(k.data if isinstance(k, Tensor) else k for k in key)
    return key.data if isinstance(key, Tensor) else key


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new leaf tensor holding a copy of `data` (nested lists, scalars, arrays, Tensors).

    Floating data defaults to float32 (PyTorch's default), integers to int64, bools to bool.
    """
    dtype = dtypes.to_dtype(dtype)
    if isinstance(data, Tensor):
        array = data.data.copy()
    elif is_gpu_array(data):
        array = data.copy()
    else:
        array = np.array(data)
        if array.dtype == object or array.dtype.kind in "USVO":
            raise TypeError(f"tensor(): cannot make a tensor from data of type {array.dtype} "
                            "(expected numbers, nested lists of numbers, or an array)")
        if dtype is None and array.dtype.kind == "f":
            # Python floats take the default dtype; NumPy arrays and scalars keep theirs.
            from_numpy = isinstance(data, (np.ndarray, np.generic))
            dtype = dtypes.get_default_dtype() if array.dtype == np.float64 and not from_numpy else array.dtype
        if array.dtype.kind == "c":
            raise TypeError("tensor(): complex tensors are not supported")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if device is not None:
        array = move(array, device)
    if requires_grad and not dtypes.is_floating(array.dtype):
        raise RuntimeError(f"only floating-point tensors can require gradients, got {array.dtype}")
    return Tensor._wrap(array, requires_grad=requires_grad)


from engine import ops  # noqa: E402  (ops build on Tensor; imported last to break the cycle)
