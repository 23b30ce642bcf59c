"""The GPU kernel set: numpy_ref's kernels run unchanged on CuPy arrays; the hand-written CUDA
kernels of engine._cuda replace them as they land."""
from engine.backend.kernel_set import KernelSet

KERNELS = KernelSet("cuda", override_source="cuda (_cuda)")
