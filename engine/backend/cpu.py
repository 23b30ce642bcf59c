"""The native CPU kernel set: C++/OpenMP kernels from engine._C and Cython ones from
engine._fused (or engine._fused_avx2, engine._fused_avx512: the widest build the CPU runs),
behind numpy_ref's signatures. Kernels without a native version use numpy_ref.

The wrappers here only adapt layouts (the GEMM reads any operand with a unit stride in one of
its last two dims in place; the other kernels take C-contiguous float32/float64 buffers) and
allocate outputs; the bindings validate everything again. Other dtypes (float16)
go to numpy_ref. sgd_update and adam_update are the one-pass versions of engine/optim/updates.py
that the optimizers call for arrays `fused_update_takes`.
"""
import importlib

import numpy as np

from engine.backend import numpy_ref
from engine.backend.kernel_set import KernelSet

try:
    from engine import _C
    from engine import _fused as _fused_baseline
except ImportError:  # running from a source tree that was never built
    _C = _fused_baseline = None


# The builds of _fused.pyx, narrowest first.
FUSED_ISAS = ("baseline", "avx2", "avx512")


def best_fused_isa():
    """The widest build of _fused.pyx this CPU runs."""
    if _C is None or not _C.cpu_has_avx2_fma():
        return "baseline"
    return "avx512" if _C.cpu_has_avx512() else "avx2"


def fused_module(isa):
    """The build of engine/_fused.pyx for `isa`: "avx512" (needs a CPU with AVX-512F), "avx2"
    (AVX2 and FMA) or "baseline" (any x86-64). A build is imported only where the CPU runs it:
    even its module initialization may use the wider instructions."""
    if isa not in FUSED_ISAS:
        raise ValueError(f"fused_module: isa must be one of {FUSED_ISAS}, got {isa!r}")
    if FUSED_ISAS.index(isa) > FUSED_ISAS.index(best_fused_isa()):
        raise RuntimeError(f"fused_module: this CPU does not run the {isa} build")
    if isa == "baseline":
        return _fused_baseline
    return importlib.import_module(f"engine._fused_{isa}")


_fused = fused_module(best_fused_isa())


_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _c(a, dtype):
    """a as a C-contiguous array of dtype, copied only when it is not one already; None stays None."""
    return None if a is None else np.ascontiguousarray(a, dtype=dtype)


# Below this many elements NumPy's add is as fast (one thread, no team to start).
_NATIVE_ADD_MIN = 1 << 15


def add(a, b):
    """The OpenMP add for large same-shape arrays when there are threads to split it over; on one
    thread NumPy's own vector loop is a few percent faster."""
    if (a.size < _NATIVE_ADD_MIN or a.shape != b.shape or a.dtype != b.dtype
            or a.dtype not in _FUSED_DTYPES or not (a.flags.c_contiguous and b.flags.c_contiguous)
            or _C.get_num_threads() == 1):
        return numpy_ref.add(a, b)
    return _C.add(a, b)


def _gemm_operand(a):
    """a itself when the GEMM can read it in place (aligned, a unit stride in one of its last
    two dims: C-contiguous or a transposed view), else a C-contiguous copy."""
    item = a.itemsize
    rows, cols = a.shape[-2:]
    if a.flags.aligned and (cols == 1 or rows == 1 or a.strides[-1] == item or a.strides[-2] == item):
        return a
    return np.ascontiguousarray(a)


def matmul(a, b):
    if a.dtype not in _FUSED_DTYPES or b.dtype != a.dtype:
        return numpy_ref.matmul(a, b)
    return _C.matmul(_gemm_operand(a), _gemm_operand(b))


def linear(x, weight, bias=None, activation=None):
    if x.dtype not in _FUSED_DTYPES or weight.dtype != x.dtype:
        return numpy_ref.linear(x, weight, bias, activation)
    return _C.matmul(_gemm_operand(x), _gemm_operand(weight).T, bias=_c(bias, x.dtype),
                     activation=activation or "none")


def softmax_forward(x, log=False):
    x = _c(x, x.dtype)
    out = np.empty_like(x)
    _fused.softmax_forward(out, x, log)
    return out


def softmax_backward(dy, y, log=False):
    dy, y = _c(dy, y.dtype), _c(y, y.dtype)
    dx = np.empty_like(y)
    _fused.softmax_backward(dx, dy, y, log)
    return dx


def layer_norm_forward(x, weight, bias, eps):
    if x.dtype not in _FUSED_DTYPES:
        return numpy_ref.layer_norm_forward(x, weight, bias, eps)
    x = _c(x, x.dtype)
    y = np.empty_like(x)
    mean, rstd = np.empty(x.shape[0], x.dtype), np.empty(x.shape[0], x.dtype)
    _fused.layer_norm_forward(y, mean, rstd, x, _c(weight, x.dtype), _c(bias, x.dtype), eps)
    return y, mean, rstd


def layer_norm_backward(dy, x, weight, mean, rstd):
    dtype = np.result_type(dy, x)
    if dtype not in _FUSED_DTYPES:
        return numpy_ref.layer_norm_backward(dy, x, weight, mean, rstd)
    dx = np.empty(x.shape, dtype)
    dweight = dbias = None
    if weight is not None:
        dweight, dbias = np.empty(x.shape[-1], dtype), np.empty(x.shape[-1], dtype)
    _fused.layer_norm_backward(dx, dweight, dbias, _c(dy, dtype), _c(x, dtype), _c(weight, dtype),
                               _c(mean, dtype), _c(rstd, dtype))
    return dx, dweight, dbias


def cross_entropy_forward(logits, target, ignore_index=-100):
    if logits.dtype not in _FUSED_DTYPES:
        return numpy_ref.cross_entropy_forward(logits, target, ignore_index)
    logits = _c(logits, logits.dtype)
    losses, lse = np.empty(logits.shape[0], logits.dtype), np.empty(logits.shape[0], logits.dtype)
    _fused.cross_entropy_forward(losses, lse, logits, _c(target, np.int64), ignore_index)
    return losses, lse


def cross_entropy_backward(dlosses, logits, target, lse, ignore_index=-100):
    dtype = np.result_type(logits, lse)
    if dtype not in _FUSED_DTYPES:
        return numpy_ref.cross_entropy_backward(dlosses, logits, target, lse, ignore_index)
    dlogits = np.empty(logits.shape, dtype)
    _fused.cross_entropy_backward(dlogits, _c(dlosses, dtype), _c(logits, dtype), _c(target, np.int64),
                                  _c(lse, dtype), ignore_index)
    return dlogits


def relu_forward(x):
    if x.dtype not in _FUSED_DTYPES:
        return numpy_ref.relu_forward(x)
    y = np.empty(x.shape, x.dtype)
    _fused.relu_forward(y.reshape(-1), _c(x, x.dtype).reshape(-1))
    return y


def relu_backward(dy, y):
    dtype = np.result_type(dy, y)
    if dtype not in _FUSED_DTYPES:
        return numpy_ref.relu_backward(dy, y)
    dx = np.empty(y.shape, dtype)
    _fused.relu_backward(dx.reshape(-1), _c(dy, dtype).reshape(-1), _c(y, dtype).reshape(-1))
    return dx


def _gelu_tanh(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: unknown approximate {approximate!r}")
    return approximate == "tanh"


def gelu_forward(x, approximate="none"):
    if x.dtype not in _FUSED_DTYPES:
        return numpy_ref.gelu_forward(x, approximate)
    y = np.empty(x.shape, x.dtype)
    _fused.gelu_forward(y.reshape(-1), _c(x, x.dtype).reshape(-1), _gelu_tanh(approximate))
    return y


def gelu_backward(dy, x, approximate="none"):
    dtype = np.result_type(dy, x)
    if dtype not in _FUSED_DTYPES:
        return numpy_ref.gelu_backward(dy, x, approximate)
    dx = np.empty(x.shape, dtype)
    _fused.gelu_backward(dx.reshape(-1), _c(dy, dtype).reshape(-1), _c(x, dtype).reshape(-1),
                         _gelu_tanh(approximate))
    return dx


def dropout_mask(shape, p, rng, dtype):
    dtype = np.dtype(dtype)
    if dtype not in _FUSED_DTYPES or p == 0 or p == 1:  # p = 0 or 1 draws nothing, as numpy_ref
        return numpy_ref.dropout_mask(shape, p, rng, dtype)
    mask = np.empty(shape, dtype)
    # one draw from rng seeds a counter-based stream: the mask is the same for any thread count
    _fused.dropout_mask(mask.reshape(-1), int(rng.integers(2**64, dtype=np.uint64)), p)
    return mask


# ---- conv2d and max_pool2d -------------------------------------------------------------------
def _same_float(*arrays):
    """The common dtype when every array is float32, or every one float64; else None."""
    dtype = arrays[0].dtype
    return dtype if dtype in _FUSED_DTYPES and all(a.dtype == dtype for a in arrays) else None


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups=1):
    dtype = _same_float(x, weight, *([bias] if bias is not None else []))
    if dtype is None:
        return numpy_ref.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    return _C.conv2d_forward(_c(x, dtype), _c(weight, dtype), _c(bias, dtype), tuple(stride),
                             tuple(padding), tuple(dilation), groups)


def conv2d_grad_input(dy, weight, input_shape, stride, padding, dilation, groups=1):
    dtype = _same_float(dy, weight)
    if dtype is None:
        return numpy_ref.conv2d_grad_input(dy, weight, input_shape, stride, padding, dilation, groups)
    return _C.conv2d_grad_input(_c(dy, dtype), _c(weight, dtype), tuple(input_shape), tuple(stride),
                                tuple(padding), tuple(dilation), groups)


def conv2d_grad_weight(dy, x, weight_shape, stride, padding, dilation, groups=1):
    dtype = _same_float(dy, x)
    if dtype is None:
        return numpy_ref.conv2d_grad_weight(dy, x, weight_shape, stride, padding, dilation, groups)
    return _C.conv2d_grad_weight(_c(dy, dtype), _c(x, dtype), tuple(weight_shape), tuple(stride),
                                 tuple(padding), tuple(dilation), groups)


def max_pool2d_forward(x, kernel, stride, padding, dilation=(1, 1)):
    if x.dtype not in _FUSED_DTYPES:
        return numpy_ref.max_pool2d_forward(x, kernel, stride, padding, dilation)
    return _C.max_pool2d_forward(_c(x, x.dtype), tuple(kernel), tuple(stride), tuple(padding),
                                 tuple(dilation))


def max_pool2d_backward(dy, indices, input_shape):
    if dy.dtype not in _FUSED_DTYPES:
        return numpy_ref.max_pool2d_backward(dy, indices, input_shape)
    return _C.max_pool2d_backward(_c(dy, dy.dtype), _c(indices, np.int64), tuple(input_shape))


# ---- one-pass optimizer updates -------------------------------------------------------------
def fused_update_takes(*arrays):
    """Whether sgd_update/adam_update below can update these arrays in place: C-contiguous NumPy
    arrays of one dtype, float32 or float64 (None, e.g. no momentum buffer, is skipped)."""
    arrays = [a for a in arrays if a is not None]
    return (_fused is not None
            and all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays)
            and len({a.dtype for a in arrays}) == 1 and arrays[0].dtype in _FUSED_DTYPES)


def _flat(a):
    return None if a is None else a.reshape(-1)  # a view: the arrays are C-contiguous


def sgd_update(param, grad, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    _fused.sgd_update(_flat(param), _flat(grad), _flat(buf), lr, momentum, dampening, nesterov,
                      weight_decay, first_step)


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    _fused.adam_update(_flat(param), _flat(grad), _flat(m), _flat(v), step, lr, beta1, beta2, eps,
                       weight_decay, decoupled)


# ---- attention ------------------------------------------------------------------------------
def _attention_operand(x, dtype):
    """x as dtype with a unit stride in its last dim; the kernel reads its other strides in place,
    so a head-transposed (B, T, H, D) -> (B, H, T, D) view is not copied."""
    x = x.astype(dtype, copy=False)
    if not x.flags.aligned or (x.ndim == 4 and x.shape[-1] > 1 and x.strides[-1] != x.itemsize):
        x = np.ascontiguousarray(x)
    return x


def _attention_mask(mask, dtype):
    """A bool mask as it is; a float one in dtype, its broadcast (stride 0) dims cut to size 1 first
    so a cast copies only the distinct values (the kernel broadcasts size-1 dims itself)."""
    if mask is None or mask.dtype == np.bool_:
        return mask
    mask = np.asarray(mask)
    distinct = mask[tuple(slice(0, 1) if st == 0 else slice(None) for st in mask.strides)]
    return distinct.astype(dtype, copy=False)


def _attention_native(dtype, mask):
    return dtype in _FUSED_DTYPES and (mask is None or mask.dtype == np.bool_ or mask.dtype.kind == "f")


def attention_forward(q, k, v, mask=None, is_causal=False, scale=None):
    dtype = np.result_type(q, k, v)
    if not _attention_native(dtype, mask):
        return numpy_ref.attention_forward(q, k, v, mask, is_causal, scale)
    q, k, v = (_attention_operand(x, dtype) for x in (q, k, v))
    return _C.attention_forward(q, k, v, _attention_mask(mask, dtype), bool(is_causal), scale)


def attention_backward(dout, q, k, v, out, lse, mask=None, is_causal=False, scale=None):
    dtype = np.result_type(dout, q, k, v)
    if not _attention_native(dtype, mask):
        return numpy_ref.attention_backward(dout, q, k, v, out, lse, mask, is_causal, scale)
    dout, q, k, v, out, lse = (_attention_operand(x, dtype) for x in (dout, q, k, v, out, lse))
    return _C.attention_backward(dout, q, k, v, out, lse, _attention_mask(mask, dtype),
                                 bool(is_causal), scale)


def _overrides():
    if _C is None:
        return {}
    return {
        "add": add,
        "matmul": matmul,
        "linear": linear,
        "conv2d_forward": conv2d_forward,
        "conv2d_grad_input": conv2d_grad_input,
        "conv2d_grad_weight": conv2d_grad_weight,
        "max_pool2d_forward": max_pool2d_forward,
        "max_pool2d_backward": max_pool2d_backward,
        "softmax_forward": softmax_forward,
        "softmax_backward": softmax_backward,
        "layer_norm_forward": layer_norm_forward,
        "layer_norm_backward": layer_norm_backward,
        "cross_entropy_forward": cross_entropy_forward,
        "cross_entropy_backward": cross_entropy_backward,
        "relu_forward": relu_forward,
        "relu_backward": relu_backward,
        "gelu_forward": gelu_forward,
        "gelu_backward": gelu_backward,
        "dropout_mask": dropout_mask,
        "attention_forward": attention_forward,
        "attention_backward": attention_backward,
    }


KERNELS = KernelSet("native", _overrides(), override_source="native")
