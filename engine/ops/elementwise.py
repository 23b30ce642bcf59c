"""Element-wise ops: arithmetic with broadcasting, unary math, activations, comparisons.

Each Function holds its forward and its backward; the gradient of a broadcast input is summed
back to that input's shape (`unbroadcast`).
"""
import numpy as np

from engine import dtypes
from engine._array import array_module
from engine.autograd import Function
from engine.ops._util import as_tensor, check_same_device, kernels, result_dtype, tensor_cls, unbroadcast


# ---- binary arithmetic --------------------------------------------------------------------
class Add(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return kernels(a).add(a, b) if a.shape == b.shape else a + b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class Sub(Function):
    saves_inputs = False

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(-grad, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        return unbroadcast(grad * self.b, self.a.shape), unbroadcast(grad * self.a, self.b.shape)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        ga = grad / self.b
        return unbroadcast(ga, self.a.shape), unbroadcast(-ga * self.a / self.b, self.b.shape)


class Pow(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, grad):
        xp = array_module(self.a)
        a, b = self.a, self.b
        # d(a^b)/da = b·a^(b-1); d(a^b)/db = a^b·ln a (taken as 0 where a == 0, as PyTorch does)
        ga = grad * b * a ** (b - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gb = grad * xp.where(a > 0, self.out * xp.log(xp.where(a > 0, a, 1)), 0)
        return unbroadcast(ga, a.shape), unbroadcast(gb.astype(grad.dtype, copy=False), b.shape)


class Maximum(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).maximum(a, b)

    def backward(self, grad):
        # Ties split the gradient evenly, so the result is symmetric in a and b.
        wa = ((self.a > self.b) + 0.5 * (self.a == self.b)).astype(grad.dtype)
        return unbroadcast(grad * wa, self.a.shape), unbroadcast(grad * (1 - wa), self.b.shape)


class Minimum(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).minimum(a, b)

    def backward(self, grad):
        wa = ((self.a < self.b) + 0.5 * (self.a == self.b)).astype(grad.dtype)
        return unbroadcast(grad * wa, self.a.shape), unbroadcast(grad * (1 - wa), self.b.shape)


class Where(Function):
    saves_inputs = False

    def forward(self, cond, a, b):
        self.cond, self.shapes = cond, (a.shape, b.shape)
        return array_module(a).where(cond, a, b)

    def backward(self, grad):
        zero = grad.dtype.type(0)
        xp = array_module(grad)
        return (unbroadcast(xp.where(self.cond, grad, zero), self.shapes[0]),
                unbroadcast(xp.where(self.cond, zero, grad), self.shapes[1]))


# ---- unary ----------------------------------------------------------------------------------
class Neg(Function):
    saves_inputs = False

    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Exp(Function):
    def forward(self, a):
        self.out = array_module(a).exp(a)
        return self.out

    def backward(self, grad):
        return grad * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).log(a)

    def backward(self, grad):
        return grad / self.a


class Sqrt(Function):
    def forward(self, a):
        self.out = array_module(a).sqrt(a)
        return self.out

    def backward(self, grad):
        return grad / (2 * self.out)


class Abs(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).abs(a)

    def backward(self, grad):
        return grad * array_module(grad).sign(self.a)


class Sin(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).sin(a)

    def backward(self, grad):
        return grad * array_module(grad).cos(self.a)


class Cos(Function):
    def forward(self, a):
        self.a = a
        return array_module(a).cos(a)

    def backward(self, grad):
        return -grad * array_module(grad).sin(self.a)


class Tanh(Function):
    def forward(self, a):
        self.out = array_module(a).tanh(a)
        return self.out

    def backward(self, grad):
        return grad * (1 - self.out * self.out)


class Sigmoid(Function):
    def forward(self, a):
        xp = array_module(a)
        # 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) below, so neither branch overflows.
        e = xp.exp(-xp.abs(a))
        self.out = xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        return self.out

    def backward(self, grad):
        return grad * self.out * (1 - self.out)


class Relu(Function):
    saves_inputs = False  # backward reads the output, which is positive exactly where a is

    def forward(self, a):
        self.out = kernels(a).relu_forward(a)
        return self.out

    def backward(self, grad):
        return kernels(grad).relu_backward(grad, self.out)


class Gelu(Function):
    def forward(self, a, approximate="none"):
        self.a, self.approximate = a, approximate
        return kernels(a).gelu_forward(a, approximate=approximate)

    def backward(self, grad):
        return kernels(grad).gelu_backward(grad, self.a, approximate=self.approximate)


class Clamp(Function):
    def forward(self, a, lo=None, hi=None):
        xp = array_module(a)
        self.mask = xp.ones(a.shape, dtype=bool)
        if lo is not None:
            self.mask &= a >= lo
        if hi is not None:
            self.mask &= a <= hi
        # NOTE: NumPy 1.x clips a 0-d float32 array against Python floats in float64.
        return xp.clip(a, lo, hi).astype(a.dtype, copy=False)

    def backward(self, grad):
        return grad * self.mask


class Cast(Function):
    saves_inputs = False

    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.dtype)


class ToDevice(Function):
    saves_inputs = False

    def forward(self, a, device):
        from engine.device import device_of, move

        self.source = device_of(a)
        return move(a, device)

    def backward(self, grad):
        from engine.device import move

        return move(grad, self.source)


# ---- public functions ---------------------------------------------------------------------
def _binary(fn, a, b):
    Tensor = tensor_cls()
    if not isinstance(a, Tensor):
        a = as_tensor(a, b)
    b = as_tensor(b, a)
    if a.is_cuda != b.is_cuda:
        raise RuntimeError(f"expected all tensors on the same device, but found at least two "
                           f"devices: {a.device} and {b.device}")
    dtype = result_dtype(a.dtype, b.dtype)
    if fn is Div and not dtypes.is_floating(dtype):
        dtype = dtypes.get_default_dtype()  # true division of integers gives the default float
    if a.dtype != dtype:
        a = a.to(dtype)
    if b.dtype != dtype:
        b = b.to(dtype)
    return fn.apply(a, b)


def add(a, b, alpha=1):
    return _binary(Add, a, b if alpha == 1 else b * alpha)


def sub(a, b, alpha=1):
    return _binary(Sub, a, b if alpha == 1 else b * alpha)


def mul(a, b):
    return _binary(Mul, a, b)


def div(a, b):
    return _binary(Div, a, b)


def pow(a, b):
    return _binary(Pow, a, b)


def maximum(a, b):
    return _binary(Maximum, a, b)


def minimum(a, b):
    return _binary(Minimum, a, b)


def where(cond, a, b):
    Tensor = tensor_cls()
    like = a if isinstance(a, Tensor) else b
    if not isinstance(like, Tensor):
        raise TypeError("where: at least one of the two value arguments must be a Tensor")
    a, b = as_tensor(a, like), as_tensor(b, like)
    cond = cond.data if isinstance(cond, Tensor) else cond
    if a.is_cuda != b.is_cuda:
        raise RuntimeError(f"where: expected all tensors on the same device, got {a.device} and {b.device}")
    if a.dtype != b.dtype:
        common = result_dtype(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    return Where.apply(cond, a, b)


def masked_fill(a, mask, value):
    """`a` with `value` wherever the bool `mask` is True (mask and a broadcast together). The
    value takes a's dtype; a 0-d tensor value receives the gradient of the filled positions."""
    Tensor = tensor_cls()
    m = mask.data if isinstance(mask, Tensor) else mask
    if getattr(m, "dtype", None) != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got "
                        f"{getattr(m, 'dtype', type(m).__name__)}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got a tensor of "
                             f"shape {tuple(value.shape)}")
        value = value if value.dtype == a.dtype else value.to(a.dtype)
    else:
        value = Tensor._wrap(array_module(a.data).asarray(value, dtype=a.dtype))
    return where(mask, value, a)


def _floating(a):
    """`a` itself when floating; integers and bools as the default float dtype (PyTorch's rule
    for ops with real-valued results: exp(int64) is float32)."""
    return a if dtypes.is_floating(a.dtype) else a.to(dtypes.get_default_dtype())


def neg(a):
    return Neg.apply(a)


def exp(a):
    return Exp.apply(_floating(a))


def log(a):
    return Log.apply(_floating(a))


def sqrt(a):
    return Sqrt.apply(_floating(a))


def rsqrt(a):
    return 1 / sqrt(a)


def abs(a):
    return Abs.apply(a)


def sin(a):
    return Sin.apply(_floating(a))


def cos(a):
    return Cos.apply(_floating(a))


def tanh(a):
    return Tanh.apply(_floating(a))


def sigmoid(a):
    return Sigmoid.apply(_floating(a))


def relu(a):
    return Relu.apply(a)


def gelu(a, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(_floating(a), approximate=approximate)


def silu(a):
    return a * sigmoid(a)


def clamp(a, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return Clamp.apply(a, lo=min, hi=max)


def square(a):
    return a * a


# ---- comparisons and logic: no gradient ----------------------------------------------------
def _compare(op):
    def compare(a, b):
        Tensor = tensor_cls()
        if not isinstance(a, Tensor):
            a = as_tensor(a, b)
        b = as_tensor(b, a)
        check_same_device(a, b)
        return Tensor._wrap(op(a.data, b.data))

    compare.__name__ = op.__name__
    return compare


eq, ne = _compare(np.equal), _compare(np.not_equal)
lt, le = _compare(np.less), _compare(np.less_equal)
gt, ge = _compare(np.greater), _compare(np.greater_equal)
logical_and, logical_or = _compare(np.logical_and), _compare(np.logical_or)


def logical_not(a):
    return tensor_cls()._wrap(array_module(a.data).logical_not(a.data))


def isnan(a):
    return tensor_cls()._wrap(array_module(a.data).isnan(a.data))


def isfinite(a):
    return tensor_cls()._wrap(array_module(a.data).isfinite(a.data))


def sign(a):
    return tensor_cls()._wrap(array_module(a.data).sign(a.data))


def allclose(a, b, rtol=1e-5, atol=1e-8):
    return bool(array_module(a.data).allclose(a.data, as_tensor(b, a).data, rtol=rtol, atol=atol))


def equal(a, b):
    return a.shape == b.shape and bool((a.data == b.data).all())

