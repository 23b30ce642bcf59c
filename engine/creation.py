"""Tensor factories: zeros/ones/randn/arange/..., as in PyTorch. Floating tensors default to
float32; random draws come from engine.random's generator, so manual_seed fixes them."""
import builtins

import numpy as np

from engine import dtypes
from engine._array import array_module
from engine.device import move
from engine.random import generator
from engine.tensor import Tensor


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    shape = tuple(builtins.int(s) for s in size)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


def _make(array, dtype, device, requires_grad):
    dtype = dtypes.to_dtype(dtype)
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    if device is not None:
        array = move(array, device)
    if requires_grad and not dtypes.is_floating(array.dtype):
        raise RuntimeError(f"only floating-point tensors can require gradients, got {array.dtype}")
    return Tensor._wrap(array, requires_grad=requires_grad)


def _float(dtype):
    return dtypes.to_dtype(dtype) or dtypes.get_default_dtype()


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.zeros(_shape(size), _float(dtype)), None, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.ones(_shape(size), _float(dtype)), None, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = dtypes.bool if isinstance(fill_value, builtins.bool) else (
            dtypes.int64 if isinstance(fill_value, builtins.int) else _float(None))
    return _make(np.full(_shape((size,)), fill_value, dtypes.to_dtype(dtype)), None, device, requires_grad)


def _like(t, dtype, device):
    return dtype or t.dtype, device or t.device


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return zeros(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return ones(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return full(t.shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False):
    dtype = _float(dtype)
    return _make(generator().standard_normal(_shape(size), dtype=np.float64).astype(dtype), None,
                 device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    dtype = _float(dtype)
    return _make(generator().random(_shape(size)).astype(dtype), None, device, requires_grad)


def randn_like(t, dtype=None, device=None):
    dtype, device = _like(t, dtype, device)
    return randn(t.shape, dtype=dtype, device=device)


def rand_like(t, dtype=None, device=None):
    dtype, device = _like(t, dtype, device)
    return rand(t.shape, dtype=dtype, device=device)


def randint(low, high=None, size=(), dtype=None, device=None, requires_grad=False):
    """Integers drawn uniformly from [low, high): randint(low, high, size), or randint(high, size)
    as PyTorch's two-argument form."""
    if isinstance(high, (tuple, list)):
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    return _make(generator().integers(low, high, _shape((size,))), dtype or dtypes.int64, device,
                 requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    ints = all(isinstance(v, (builtins.int, np.integer)) for v in (start, end, step))
    default = dtypes.int64 if ints else _float(None)
    return _make(np.arange(start, end, step), dtype or default, device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _make(np.linspace(start, end, steps), _float(dtype), device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _make(np.eye(n, m), _float(dtype), device, requires_grad)


def from_numpy(array):
    """A tensor sharing memory with the NumPy array `array` (no copy), as torch.from_numpy."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"from_numpy: unsupported dtype {array.dtype}")
    return Tensor._wrap(array)


# DLPack device types (dlpack.h): where a producer's memory lives
_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13


def from_dlpack(obj):
    """A tensor sharing memory with any DLPack producer (NumPy, CuPy, PyTorch, JAX): on the CPU
    for host memory, on the GPU (through CuPy) for CUDA memory. No copy either way."""
    if isinstance(obj, Tensor):
        return obj
    device_type = obj.__dlpack_device__()[0] if hasattr(obj, "__dlpack_device__") else None
    if device_type == _DL_CPU:
        return Tensor._wrap(np.from_dlpack(obj))
    if device_type in (_DL_CUDA, _DL_CUDA_MANAGED, None):
        # None: a bare DLPack capsule (the legacy protocol) that only CuPy still accepts
        from engine.device import require_cupy

        return Tensor._wrap(require_cupy().from_dlpack(obj))
    raise TypeError(f"from_dlpack: memory of DLPack device type {device_type} is neither host nor CUDA "
                    "device memory; engine tensors live on the CPU or a CUDA GPU")


def _triangle(t, keep):
    from engine.ops.elementwise import where

    return where(Tensor._wrap(keep), t, 0)


def tril(t, diagonal=0):
    """The lower triangle of the last two dims (the rest set to zero)."""
    xp = array_module(t.data)
    return _triangle(t, xp.tril(xp.ones(t.shape[-2:], dtype=bool), diagonal))


def triu(t, diagonal=0):
    """The upper triangle of the last two dims (the rest set to zero)."""
    xp = array_module(t.data)
    return _triangle(t, xp.triu(xp.ones(t.shape[-2:], dtype=bool), diagonal))


def multinomial(probs, num_samples, replacement=False):
    """Draw `num_samples` class indices per row of `probs` (1-D or 2-D, non-negative weights)."""
    p = np.asarray(probs.numpy(), dtype=np.float64)
    rows = p.reshape(-1, p.shape[-1])
    if (rows < 0).any() or not np.isfinite(rows).all() or (rows.sum(-1) <= 0).any():
        raise RuntimeError("multinomial: probabilities must be finite, non-negative, with a positive sum")
    if not replacement and num_samples > rows.shape[-1]:
        raise RuntimeError("multinomial: cannot draw more samples than categories without replacement")
    out = np.stack([generator().choice(rows.shape[-1], num_samples, replace=replacement, p=r / r.sum())
                    for r in rows])
    return _make(out.reshape(p.shape[:-1] + (num_samples,)), dtypes.int64, probs.device, False)


def topk(t, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (or smallest) entries along `dim`."""
    from engine.ops.reduce import ValuesIndices
    from engine.ops.shape import index

    xp = array_module(t.data)
    d = dim % t.ndim
    if not 0 <= k <= t.shape[d]:
        raise RuntimeError(f"topk: k ({k}) out of range for dimension {d} of size {t.shape[d]}")
    key = -t.data if largest else t.data
    idx = xp.argsort(key, axis=d, kind="stable")
    idx = xp.take(idx, xp.arange(k), axis=d)
    grid = list(xp.indices(idx.shape, sparse=True))
    grid[d] = idx
    values = index(t, tuple(Tensor._wrap(g) for g in grid))
    return ValuesIndices(values, Tensor._wrap(idx))
