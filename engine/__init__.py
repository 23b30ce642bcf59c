"""engine: a small deep-learning tensor engine with hand-written CPU (C++/OpenMP, Cython) and
CUDA kernels, reverse-mode autograd, and PyTorch-like nn / optim / data APIs."""
__version__ = "0.1.0"

from engine import backend, cuda  # noqa: F401
from engine.amp import autocast, bfloat16, get_autocast_dtype, is_autocast_enabled  # noqa: F401
from engine.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from engine.creation import (arange, empty, from_numpy, full, full_like, linspace, ones,
                             ones_like, rand, rand_like, randint, randn, randn_like, zeros,
                             zeros_like, eye, tril, triu, multinomial, topk, from_dlpack)
from engine.device import device
from engine.dtypes import (bool, double, float, float16, float32, float64, get_default_dtype,
                           half, int, int8, int16, int32, int64, long, set_default_dtype, short,
                           uint8)
from engine.ops import *  # noqa: F401,F403  (every op is also a top-level function)
from engine.random import manual_seed, seed
from engine.runtime import get_num_threads, set_num_threads
from engine.serialization import load, save
from engine.tensor import Size, Tensor, tensor
from engine import nn, optim  # noqa: E402,F401  (they build on everything above)


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
            options=None, disable=False):
    """torch.compile's signature without a compiler: engine runs eagerly, so the module or
    function comes back unchanged (also as a decorator: @compile or @compile(mode=...))."""
    if model is None:
        return lambda fn: fn
    return model



class UnsupportedFeature(AttributeError, NotImplementedError):
    """A PyTorch feature engine leaves out. Both an AttributeError, so hasattr() feature checks
    answer False, and a NotImplementedError, which is what it means."""


# PyTorch names with no engine counterpart, and the feature each stands for.
_OUT_OF_SCOPE = {
    "backends": "backend switches (torch.backends: TF32, cuDNN, SDPA kernel choice)",
    "jit": "TorchScript (torch.jit)",
    "fx": "graph capture (torch.fx)",
    "export": "graph export (torch.export)",
    "func": "function transforms (torch.func)",
    "vmap": "function transforms (torch.vmap)",
    "distributed": "distributed training (torch.distributed)",
    "sparse": "sparse tensors (torch.sparse)",
    "complex64": "complex tensors",
    "complex128": "complex tensors",
}


def __getattr__(name):
    if name in _OUT_OF_SCOPE:
        raise UnsupportedFeature(f"engine.{name}: {_OUT_OF_SCOPE[name]} is not supported by engine "
                                 "(see 'PyTorch compatibility' in README.md)")
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
