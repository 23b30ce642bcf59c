"""Threads used by the native CPU kernels (OpenMP)."""
import os

try:
    from engine import _C
except ImportError:
    _C = None


def set_num_threads(n):
    """Number of OpenMP threads for the native kernels (as torch.set_num_threads)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    if _C is not None:
        _C.set_num_threads(n)


def get_num_threads():
    if _C is None:
        return 1
    return _C.get_num_threads()


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
