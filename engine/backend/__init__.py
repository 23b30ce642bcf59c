"""The only place that knows where a kernel lives.

Two CPU kernel sets exist: "numpy" (engine/backend/numpy_ref.py, the spec and the baseline) and
"native" (engine/backend/cpu.py: the C++/OpenMP and Cython kernels, with the NumPy kernel for any
op that has no native one yet). Arrays on the GPU always use engine/backend/cuda.py.

Choose with `engine.backend.use("numpy" | "native")` or the environment variable ENGINE_BACKEND.
"""
import os

from engine._array import is_gpu_array

NAMES = ("numpy", "native")


def _kernel_set(name):
    if name == "numpy":
        from engine.backend.kernel_set import KernelSet

        return KernelSet("numpy")
    if name == "native":
        from engine.backend.cpu import KERNELS
        return KERNELS
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(NAMES)}")


def use(name):
    """Select the CPU kernel set used by every op from now on."""
    global _current, _cpu
    _cpu = _kernel_set(name)
    _current = name


def current():
    """The name of the CPU kernel set in use."""
    return _current


def for_array(array):
    """The kernel set serving `array` (the GPU set for CuPy arrays)."""
    if is_gpu_array(array):
        from engine.backend.cuda import KERNELS

        return KERNELS
    return _cpu


def describe():
    """{op: implementation} for the current CPU kernel set, e.g. {"matmul": "native (_C)"}."""
    return dict(_cpu.sources)


_current = os.environ.get("ENGINE_BACKEND", "native").strip().lower() or "native"
if _current not in NAMES:
    raise ValueError(f"ENGINE_BACKEND={os.environ['ENGINE_BACKEND']!r} is not a backend; "
                     f"expected one of {', '.join(NAMES)}")
_cpu = _kernel_set(_current)
