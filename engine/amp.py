"""Automatic mixed precision on the GPU: `with engine.autocast("cuda", dtype=engine.bfloat16): ...`

Inside the block, ops on float32 CUDA tensors compute as follows:
    matmul, linear, conv2d           tensor cores, operands rounded to bf16, fp32 accumulation
                                     (engine.cuda's matmul precision "bf16")
    scaled_dot_product_attention     q, k, v (and the incoming gradient) rounded to bf16, the bf16
                                     tensor-core flash kernel, fp32 outputs and gradients
    everything else                  float32 as usual (softmax, layer norm, cross-entropy, optimizers)

bfloat16 is a compute precision here, never a storage dtype: every tensor stays float32 (CuPy has
no bfloat16 dtype; the bf16 copies the attention kernel reads are uint16 bit patterns that live only
inside engine/backend/cuda.py for the duration of one kernel call). So the float32 parameters are
the master weights, the optimizer updates them in float32, and no loss scaling is needed (bf16 has
float32's exponent range).

An op's backward runs in the precision its forward ran in (autograd records it), so
`loss.backward()` after the block still multiplies in bf16, as torch.autocast's saved bf16
tensors make it do. CPU and float64 tensors are not affected.
"""
import contextlib
import threading


class _Bfloat16:
    """engine.bfloat16: names the autocast compute precision; it is not a storage dtype."""

    name = "bfloat16"
    itemsize = 2

    def __repr__(self):
        return "engine.bfloat16"

    def __reduce__(self):
        return "bfloat16"


bfloat16 = _Bfloat16()

# The compute precision ops on float32 CUDA tensors use right now, per thread (as grad mode):
# None (float32) or "bf16".
_state = threading.local()


def current():
    """None, or "bf16" while an autocast block (or the backward of an op run in one) is active."""
    return getattr(_state, "precision", None)


@contextlib.contextmanager
def _use(precision):
    """Runs the block with `precision` (None or "bf16"); the autograd walk replays an op's."""
    previous, _state.precision = current(), precision
    try:
        yield
    finally:
        _state.precision = previous


class autocast(contextlib.ContextDecorator):
    """Context manager (and decorator) that runs float32 CUDA matrix products and attention in bf16.

    autocast("cuda", dtype=engine.bfloat16, enabled=True); dtype defaults to bfloat16, the only
    one supported (float16 would need loss scaling). autocast("cpu", enabled=False) and
    enabled=False blocks are accepted and turn autocast off inside them; the CPU kernels have no
    reduced-precision path, so autocast("cpu") with enabled=True is refused."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        device_type = str(device_type).split(":")[0]
        if device_type not in ("cuda", "cpu"):
            raise ValueError(f"autocast: device_type must be 'cuda' or 'cpu', got {device_type!r}")
        if dtype is not None and dtype is not bfloat16:
            raise ValueError(f"autocast: only dtype=engine.bfloat16 is supported, got {dtype!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be a bool, got {type(enabled).__name__}")
        if device_type == "cpu" and enabled:
            raise NotImplementedError("autocast('cpu'): the CPU kernels compute in float32/float64 only; "
                                      "use autocast('cuda', dtype=engine.bfloat16) on GPU tensors")
        self.device_type, self.enabled = device_type, enabled
        self._stack = []

    def __enter__(self):
        cm = _use("bf16" if self.enabled else None)
        cm.__enter__()
        self._stack.append(cm)
        return self

    def __exit__(self, *exc):
        return self._stack.pop().__exit__(*exc)


def is_autocast_enabled(device_type="cuda"):
    """Whether an autocast block for `device_type` is active (never for "cpu")."""
    return device_type == "cuda" and current() is not None


def get_autocast_dtype(device_type="cuda"):
    """engine.bfloat16 inside an autocast("cuda") block, else None."""
    return bfloat16 if is_autocast_enabled(device_type) else None
