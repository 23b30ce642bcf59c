"""What the GPU tests share: whether a GPU answers, the skip marks, and CuPy with engine's CUDA
kernel set (None without a GPU, so the modules import on any machine)."""
import pytest

import engine

GPU = engine.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason=f"no usable GPU: {engine.cuda.unavailable_reason()}")
needs_cuda_module = pytest.mark.skipif(not engine.cuda.is_built(), reason="engine._cuda was not built")

if GPU:
    import cupy as cp
    from engine.backend import cuda as gpu
else:
    cp = gpu = None
