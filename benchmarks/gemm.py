"""GEMM suite: C = A·B for A (M, K) and B (K, N), named MxKxN.

numpy: the NumPy reference (OpenBLAS); engine: the native kernel set's matmul (the C++ GEMM);
torch: torch.matmul on the same memory, when PyTorch is installed.
"""
import numpy as np

from .runner import Case
from .timing import optional_torch

FULL_SHAPES = [(128, 128, 128), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024),
               (2048, 2048, 2048), (4096, 768, 3072), (128, 784, 64), (64, 784, 64),
               (8192, 128, 512)]
QUICK_SHAPES = [(256, 256, 256), (1024, 1024, 1024), (128, 784, 64)]


def cases(quick, thread_counts):
    from engine.backend import numpy_ref
    from engine.backend.cpu import KERNELS as native

    torch = optional_torch()
    rng = np.random.default_rng(0)
    dtypes = ["float32"] if quick else ["float32", "float64"]
    for dtype in dtypes:
        for m, k, n in (QUICK_SHAPES if quick else FULL_SHAPES):
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            impls = {"numpy": lambda a=a, b=b: numpy_ref.matmul(a, b),
                     "engine": lambda a=a, b=b: native.matmul(a, b)}
            if torch:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                impls["torch"] = lambda ta=ta, tb=tb: torch.matmul(ta, tb).numpy()
            # float32 sums of k products of unit normals: error ~ sqrt(k)·eps·sqrt(k)
            tol = 1e-3 if dtype == "float32" else 1e-9
            for t in thread_counts:
                yield Case("gemm", f"{m}x{k}x{n} {dtype[5:]}", 2.0 * m * n * k, impls, t,
                           dtype=dtype, rtol=tol, atol=tol * np.sqrt(k))
