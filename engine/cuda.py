"""engine.cuda: is a GPU usable, waiting for it, and how float32 matrix products multiply on it.

Matrix precision (matmul, linear and conv2d on float32 GPU tensors; float64 is always exact):
    "highest"  fp32 FMA on the CUDA cores (the default; like torch's "highest")
    "tf32"     tensor cores, operands rounded to TF32 (10-bit mantissa), fp32 accumulation:
               relative error ~1e-3 of the result's scale (torch's "high" / allow_tf32)
    "bf16"     tensor cores, operands rounded to bfloat16 (7-bit mantissa), fp32 accumulation:
               relative error ~1e-2 (torch's "medium")
The tensor-core modes need an sm_80+ GPU (A100, H100); on older ones they run as "highest".
"""
import contextlib

from engine._array import cupy

try:
    from engine import _cuda
except ImportError:  # built without a CUDA compiler
    _cuda = None

PRECISIONS = ("highest", "tf32", "bf16")
_precision = "highest"


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


def unavailable_reason():
    """Why CUDA cannot be used here (None when it can), as a sentence for error messages."""
    if cupy() is None:
        return "CuPy is not installed (pip install 'engine[cuda]', or cupy-cuda13x for CUDA 13)"
    if _cuda is None:
        return ("engine was built without its CUDA kernels (engine._cuda): no CUDA compiler was found "
                "at install time; reinstall with nvcc on PATH")
    if _cuda.device_count() == 0:
        return "no CUDA device answers (no GPU, or no driver that supports this CUDA runtime)"
    return None


def require_available(what="CUDA"):
    """Raise RuntimeError("CUDA is not available: <why>") unless a GPU can be used."""
    why = unavailable_reason()
    if why is not None:
        raise RuntimeError(f"{what} is not available: {why}")


def synchronize():
    """Wait for all work queued on the current GPU."""
    require_available("engine.cuda.synchronize: CUDA")
    cupy().cuda.Device().synchronize()


def manual_seed(seed):
    if is_available():
        cupy().random.seed(int(seed) % 2**32)


def current_device():
    require_available()
    return cupy().cuda.Device().id


def current_stream_ptr():
    """The cudaStream_t of CuPy's current stream as an int (0: the legacy default stream)."""
    return cupy().cuda.get_current_stream().ptr


def set_matmul_precision(precision):
    """Choose how float32 matmul, linear and conv2d multiply on the GPU: "highest", "tf32" or
    "bf16" (see the module docstring). Returns the previous setting."""
    global _precision
    if precision not in PRECISIONS:
        raise ValueError(f"set_matmul_precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    previous, _precision = _precision, precision
    return previous


def get_matmul_precision():
    """The current float32 GPU matrix precision: "highest", "tf32" or "bf16"."""
    return _precision


@contextlib.contextmanager
def matmul_precision(precision):
    """`with engine.cuda.matmul_precision("tf32"): ...` sets the precision for the block only."""
    previous = set_matmul_precision(precision)
    try:
        yield
    finally:
        set_matmul_precision(previous)
