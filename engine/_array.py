"""Array-module helpers: CPU storage is NumPy, GPU storage is CuPy (optional).

Code that must run on either device asks `array_module(x)` for the module that owns `x`.
"""
import numpy as np

try:  # CuPy is an optional extra; without it everything runs on the CPU.
    import cupy as _cupy
except Exception:  # ImportError, or a CuPy that cannot find its CUDA libraries
    _cupy = None


def cupy():
    """The cupy module, or None when it is not importable."""
    return _cupy


def is_gpu_array(x):
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def array_module(*arrays):
    """numpy, or cupy when any of `arrays` lives on the GPU."""
    for a in arrays:
        if is_gpu_array(a):
            return _cupy
    return np
