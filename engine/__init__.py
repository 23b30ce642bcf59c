"""engine: a small deep-learning tensor engine with hand-written CPU (C++/OpenMP, Cython) and
CUDA kernels, reverse-mode autograd, and PyTorch-like nn / optim / data APIs."""
__version__ = "0.1.0"

from engine import backend, cuda  # noqa: F401
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
