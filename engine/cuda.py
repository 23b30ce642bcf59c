"""engine.cuda: is a GPU usable, and helpers to wait for it."""
from engine._array import cupy

try:
    from engine import _cuda
except ImportError:  # built without a CUDA compiler
    _cuda = None


def is_built():
    """True when the _cuda kernel module was compiled into this install."""
    return _cuda is not None


def device_count():
    if _cuda is None or cupy() is None:
        return 0
    return _cuda.device_count()


def is_available():
    """True when _cuda imported, CuPy is installed, and a CUDA device answers."""
    return device_count() > 0


def synchronize():
    if not is_available():
        raise RuntimeError("engine.cuda.synchronize: CUDA is not available")
    cupy().cuda.Device().synchronize()


def manual_seed(seed):
    if is_available():
        cupy().random.seed(int(seed) % 2**32)


def current_device():
    if not is_available():
        raise RuntimeError("CUDA is not available")
    return cupy().cuda.Device().id
