"""Threads used by the native CPU kernels (OpenMP), and how freed memory is kept for reuse."""
import os

try:
    from engine import _C
except ImportError:
    _C = None

# NOTE: glibc hands freed memory back to the system eagerly: a block over a threshold that moves
# with the sizes freed gets an mmap of its own, and free space at the top of the heap is trimmed.
# A training step then faults its activations and gradients in afresh, page by page: a third of
# a small GPT's step on a VM. Like the allocators PyTorch suggests for the CPU (jemalloc,
# tcmalloc), engine keeps freed memory for reuse instead: blocks up to 32 MiB come from the heap,
# and up to ENGINE_MALLOC_RETAIN_MB MiB (default 256) of free heap stays mapped. 0 leaves the C
# library's defaults alone. It applies to the whole process (NumPy's and PyTorch's arrays too).
DEFAULT_MALLOC_RETAIN_MB = 256


def malloc_retain_mb(environ=os.environ):
    """The MiB of freed memory to keep, from ENGINE_MALLOC_RETAIN_MB."""
    text = environ.get("ENGINE_MALLOC_RETAIN_MB", str(DEFAULT_MALLOC_RETAIN_MB))
    try:
        mb = int(text)
    except ValueError:
        mb = -1
    if mb < 0:
        raise ValueError(f"ENGINE_MALLOC_RETAIN_MB must be a whole number of MiB >= 0, got {text!r}")
    return mb


def _retain_freed_memory():
    mb = malloc_retain_mb()
    return bool(mb) and _C is not None and _C.retain_freed_memory(mb << 20)


MALLOC_RETAINS = _retain_freed_memory()


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
