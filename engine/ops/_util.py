"""Helpers shared by the op families: operand coercion, broadcasting gradients, kernel lookup."""
import numpy as np

from engine import backend, dtypes
from engine._array import array_module, is_gpu_array
from engine.device import device_of


def tensor_cls():
    from engine.tensor import Tensor

    return Tensor


def as_tensor(value, like):
    """`value` as a Tensor on `like`'s device. Python scalars take `like`'s dtype when it is
    floating (PyTorch's rule: float32 tensor * 2.0 stays float32)."""
    Tensor = tensor_cls()
    if isinstance(value, Tensor):
        return value
    xp = array_module(like.data)
    if isinstance(value, (bool, int, float, np.number)) and not isinstance(value, np.ndarray):
        if dtypes.is_floating(like.dtype):
            dtype = like.dtype
        elif isinstance(value, (float, np.floating)):
            dtype = dtypes.get_default_dtype()
        elif isinstance(value, bool) and like.dtype == np.bool_:
            dtype = np.bool_
        else:
            dtype = like.dtype if like.dtype != np.bool_ else np.int64
        return Tensor._wrap(xp.asarray(value, dtype=dtype))
    if is_gpu_array(value) or isinstance(value, np.ndarray):
        if device_of(value) != like.device:
            raise RuntimeError(f"expected all tensors on the same device, got {like.device} and "
                               f"{device_of(value)}")
        return Tensor._wrap(value)
    return Tensor._wrap(xp.asarray(np.asarray(value)))


def result_dtype(*dts):
    """The dtype operands of `dts` combine to, by PyTorch's rule: floating dtypes win over
    integer and bool ones (int64 with float32 gives float32, where NumPy gives float64);
    among floating, or among non-floating, dtypes NumPy's promotion applies."""
    floating = [d for d in dts if dtypes.is_floating(d)]
    return np.result_type(*(floating or dts))


def check_same_device(*tensors):
    first = tensors[0].device
    for t in tensors[1:]:
        if t.device != first:
            raise RuntimeError(f"expected all tensors on the same device, but found at least two "
                               f"devices: {first} and {t.device}")


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the gradient of broadcasting an input of `shape`."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def kernels(array):
    """The kernel set serving `array`'s device (see engine.backend)."""
    return backend.for_array(array)


def wrap_dim(dim, ndim):
    n = max(ndim, 1)
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -n <= dim < n:
        raise IndexError(f"dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return int(dim) % n


def wrap_dims(dim, ndim):
    """A sorted tuple of non-negative axes; None means all."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (list, tuple)):
        return tuple(sorted({wrap_dim(d, ndim) for d in dim}))
    return (wrap_dim(dim, ndim),)


def require_float(t, op):
    if not dtypes.is_floating(t.dtype):
        raise TypeError(f"{op}: expected a floating-point tensor, got {t.dtype}")
