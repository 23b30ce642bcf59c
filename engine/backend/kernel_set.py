"""KernelSet: the kernels one device/back-end uses, as attributes.

Every set starts from the NumPy reference (numpy_ref.py implements all of KERNEL_NAMES, on NumPy
and on CuPy arrays) and overrides the kernels it has a faster version of.
"""

# The kernel contract: each native back-end implements a subset of these, with numpy_ref's
# signatures.
KERNEL_NAMES = (
    "add", "matmul", "linear",
    "conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "attention_forward", "attention_backward",
    "softmax_forward", "softmax_backward", "layer_norm_forward", "layer_norm_backward",
    "cross_entropy_forward", "cross_entropy_backward", "relu_forward", "relu_backward",
    "gelu_forward", "gelu_backward",
    "embedding_backward", "dropout_mask",
)


class KernelSet:
    """Kernels as attributes; `sources[name]` says which implementation serves each one."""

    def __init__(self, name, overrides=None, override_source=""):
        from engine.backend import numpy_ref

        self.name = name
        self.sources = {}
        for op in KERNEL_NAMES:
            setattr(self, op, getattr(numpy_ref, op))
            self.sources[op] = "numpy"
        for op, fn in (overrides or {}).items():
            if op not in KERNEL_NAMES:
                raise KeyError(f"{name}: {op!r} is not a kernel name")
            setattr(self, op, fn)
            self.sources[op] = override_source or name

    def __repr__(self):
        return f"<KernelSet {self.name}: {len(self.sources)} kernels>"
