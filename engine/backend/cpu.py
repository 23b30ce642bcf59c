"""The native CPU kernel set: C++/OpenMP kernels from engine._C and Cython ones from
engine._fused, behind numpy_ref's signatures. Kernels without a native version use numpy_ref.

The wrappers here only adapt layouts (the native code takes C-contiguous float32/float64
buffers) and allocate outputs; the bindings validate everything again.
"""
import numpy as np

from engine.backend.kernel_set import KernelSet

try:
    from engine import _C, _fused
except ImportError:  # running from a source tree that was never built
    _C = _fused = None


def _rows(x):
    return np.ascontiguousarray(x)


def softmax_forward(x, log=False):
    x = _rows(x)
    out = np.empty_like(x)
    _fused.softmax_forward(out, x, log)
    return out


def softmax_backward(dy, y, log=False):
    dy, y = _rows(dy).astype(y.dtype, copy=False), _rows(y)
    dx = np.empty_like(y)
    _fused.softmax_backward(dx, dy, y, log)
    return dx


def _overrides():
    if _C is None:
        return {}
    return {
        "softmax_forward": softmax_forward,
        "softmax_backward": softmax_backward,
    }


KERNELS = KernelSet("native", _overrides(), override_source="native")
