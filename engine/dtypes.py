"""Data types. engine's dtypes are NumPy dtype objects, named as in PyTorch."""
import numpy as np

from engine.amp import bfloat16 as _bfloat16

float32 = float = np.dtype(np.float32)
float64 = double = np.dtype(np.float64)
float16 = half = np.dtype(np.float16)
int64 = long = np.dtype(np.int64)
int32 = int = np.dtype(np.int32)
int16 = short = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
bool = np.dtype(np.bool_)

_default_float = float32


def get_default_dtype():
    return _default_float


def set_default_dtype(dtype):
    global _default_float
    dtype = to_dtype(dtype)
    if dtype not in (float32, float64):
        raise TypeError(f"set_default_dtype: only float32 and float64 are supported, got {dtype}")
    _default_float = dtype


def to_dtype(dtype):
    """A NumPy dtype from anything naming one (engine/NumPy dtype, type, or string)."""
    if dtype is None:
        return None
    if dtype is _bfloat16:
        raise TypeError("engine.bfloat16 is a compute precision for engine.autocast('cuda'), not a storage "
                        "dtype: tensors stay float32 (see engine/amp.py)")
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"not a dtype: {dtype!r}") from None


def is_floating(dtype):
    return np.issubdtype(dtype, np.floating)
