"""Fused GPU ops (softmax, log-softmax, layer norm, cross-entropy, Adam/AdamW) against the float64
NumPy reference and engine.optim.updates; their bindings' argument checks run everywhere (empty
arrays reach them without a device), the values need a GPU."""
import numpy as np
import pytest

import engine
from engine.backend import numpy_ref
from engine.optim import updates
from empty_gpu_array import EmptyGpuArray
from tolerances import FLOAT32, float32_reduction

from cuda_support import cp, gpu, needs_cuda_module, needs_gpu

DTYPES = [np.float64, np.float32]
SHAPES = [(1, 1), (3, 7), (5, 33), (64, 65), (2, 3, 129), (4, 1000)]


def _tol(dtype, k):
    return dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else float32_reduction(k)


def _check(got, want, dtype, k):
    for g, w in zip(got, want):
        if w is None:
            assert g is None
            continue
        np.testing.assert_allclose(cp.asnumpy(g), w, **_tol(dtype, k))


# ---------------------------------------------------------------------------------------------
# Any machine: argument checks
# ---------------------------------------------------------------------------------------------
@needs_cuda_module
@pytest.mark.parametrize("call,error,message", [
    (lambda c: c.softmax_forward(EmptyGpuArray((0, 3)), EmptyGpuArray((0, 4))), ValueError,
     r"softmax_forward: y has shape \(0, 3\), expected \(0, 4\)"),
    (lambda c: c.softmax_forward(EmptyGpuArray((0, 3), "<f8"), EmptyGpuArray((0, 3))), TypeError,
     r"softmax_forward: y must be float32 like the other arrays, got float64"),
    (lambda c: c.softmax_backward(EmptyGpuArray((0, 3)), EmptyGpuArray((0, 3)), EmptyGpuArray((0, 2))), ValueError,
     r"softmax_backward: y has shape \(0, 2\), expected \(0, 3\)"),
    (lambda c: c.layer_norm_forward(EmptyGpuArray((0, 3)), EmptyGpuArray((0,)), EmptyGpuArray((0,)),
                                    EmptyGpuArray((0, 3)), EmptyGpuArray((0,)), None), ValueError,
     r"layer_norm_forward: weight has shape \(0,\), expected \(3,\)"),
    (lambda c: c.layer_norm_backward(EmptyGpuArray((0, 3)), None, None, EmptyGpuArray((0, 3)), EmptyGpuArray((0, 3)),
                                     EmptyGpuArray((3, 0)), EmptyGpuArray((0,)), EmptyGpuArray((0,))), ValueError,
     r"layer_norm_backward: weight has shape \(3, 0\), expected \(3,\)"),
    (lambda c: c.cross_entropy_forward(EmptyGpuArray((0,)), EmptyGpuArray((0,)), EmptyGpuArray((0, 5)),
                                       EmptyGpuArray((0,), "<i4")), TypeError,
     r"cross_entropy_forward: target must be int64, got int32"),
    (lambda c: c.cross_entropy_forward(EmptyGpuArray((0,)), EmptyGpuArray((0,)), EmptyGpuArray((0,)),
                                       EmptyGpuArray((0,), "<i8")), ValueError,
     r"cross_entropy_forward: logits must be 2-D, got shape \(0,\)"),
    (lambda c: c.cross_entropy_backward(EmptyGpuArray((2, 0)), EmptyGpuArray((0,)), EmptyGpuArray((2, 0)),
                                        EmptyGpuArray((0,), "<i8"), EmptyGpuArray((0,))), ValueError,
     r"cross_entropy_backward: dlosses has shape \(0,\), expected \(2,\)"),
    (lambda c: c.adam_update(EmptyGpuArray((0, 2)), EmptyGpuArray((0, 2)), EmptyGpuArray((0, 2)),
                             EmptyGpuArray((0, 2)), step=0, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                             weight_decay=0.0, decoupled=False), ValueError, r"adam_update: step must be >= 1, got 0"),
    (lambda c: c.adam_update(EmptyGpuArray((0, 2)), EmptyGpuArray((0, 3)), EmptyGpuArray((0, 3)),
                             EmptyGpuArray((0, 3)), step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                             weight_decay=0.0, decoupled=False), ValueError,
     r"adam_update: param has shape \(0, 2\), expected \(0, 3\)"),
], ids=["softmax-shape", "softmax-dtype", "softmax-bwd-shape", "ln-weight", "ln-bwd-weight", "ce-target-dtype",
        "ce-logits-1d", "ce-bwd-dlosses", "adam-step", "adam-shape"])
def test_fused_bindings_refuse_bad_arguments_before_any_gpu_call(call, error, message):
    from engine import _cuda

    with pytest.raises(error, match=message):
        call(_cuda)


@needs_cuda_module
def test_fused_bindings_accept_empty_arrays_without_launching():
    from engine import _cuda

    _cuda.softmax_forward(EmptyGpuArray((0, 4)), EmptyGpuArray((0, 4)), log=True)
    _cuda.layer_norm_forward(EmptyGpuArray((0, 4)), EmptyGpuArray((0,)), EmptyGpuArray((0,)), EmptyGpuArray((0, 4)),
                             None, None)
    _cuda.cross_entropy_forward(EmptyGpuArray((0,)), EmptyGpuArray((0,)), EmptyGpuArray((0, 5)),
                                EmptyGpuArray((0,), "<i8"))


def test_gpu_kernel_set_lists_the_fused_ops_where_cuda_is_built():
    from engine.backend import cuda as gpu_kernels

    if engine.cuda.is_built() and gpu_kernels._cp is not None:
        for op in ("attention_forward", "softmax_forward", "layer_norm_backward", "cross_entropy_forward"):
            assert gpu_kernels.KERNELS.sources[op] == "cuda (_cuda)"


# ---------------------------------------------------------------------------------------------
# GPU: values
# ---------------------------------------------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_softmax_matches_reference(shape, log, dtype):
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal(shape) * 4, rng.standard_normal(shape)
    y = numpy_ref.softmax_forward(x, log)
    gy = gpu.softmax_forward(cp.asarray(x, dtype), log)
    _check([gy], [y], dtype, shape[-1])
    dx = numpy_ref.softmax_backward(dy, y, log)
    _check([gpu.softmax_backward(cp.asarray(dy, dtype), cp.asarray(y, dtype), log)], [dx], dtype, shape[-1])


@needs_gpu
def test_gpu_softmax_is_max_shifted():
    y = gpu.softmax_forward(cp.asarray([[1000.0, 1000.0, -1000.0]], cp.float32))
    np.testing.assert_array_equal(y.get(), [[0.5, 0.5, 0.0]])


@needs_gpu
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_layer_norm_matches_reference(shape, affine, dtype):
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal(shape) + 3.0, rng.standard_normal(shape)
    w, b = (rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])) if affine else (None, None)
    want = numpy_ref.layer_norm_forward(x, w, b, 1e-5)
    g = lambda a: None if a is None else cp.asarray(a, dtype)  # noqa: E731
    got = gpu.layer_norm_forward(g(x), g(w), g(b), 1e-5)
    _check(got, want, dtype, shape[-1])
    want_b = numpy_ref.layer_norm_backward(dy, x, w, want[1], want[2])
    got_b = gpu.layer_norm_backward(g(dy), g(x), g(w), g(want[1]), g(want[2]))
    rows = int(np.prod(shape[:-1]))
    _check(got_b, want_b, dtype, max(rows, shape[-1]))


@needs_gpu
def test_gpu_layer_norm_of_a_constant_row_returns_beta():
    x = cp.full((3, 16), 7.25, cp.float32)
    b = cp.arange(16, dtype=cp.float32)
    y, _, _ = gpu.layer_norm_forward(x, cp.ones(16, cp.float32), b, 1e-5)
    np.testing.assert_array_equal(y.get(), np.broadcast_to(np.arange(16, dtype=np.float32), (3, 16)))


@needs_gpu
@pytest.mark.parametrize("n,c", [(1, 1), (7, 5), (300, 65), (33, 1000)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_cross_entropy_matches_reference(n, c, dtype):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((n, c)) * 3
    target = rng.integers(0, c, n)
    target[::4] = -100
    dlosses = rng.standard_normal(n)
    want = numpy_ref.cross_entropy_forward(logits, target, -100)
    got = gpu.cross_entropy_forward(cp.asarray(logits, dtype), cp.asarray(target), -100)
    _check(got, want, dtype, c)
    want_d = numpy_ref.cross_entropy_backward(dlosses, logits, target, want[1], -100)
    got_d = gpu.cross_entropy_backward(cp.asarray(dlosses, dtype), cp.asarray(logits, dtype), cp.asarray(target),
                                       cp.asarray(want[1], dtype), -100)
    _check([got_d], [want_d], dtype, c)


@needs_gpu
def test_gpu_cross_entropy_stays_finite_for_large_logits():
    logits = cp.asarray([[1e4, -1e4, 0.0]], cp.float32)
    losses, lse = gpu.cross_entropy_forward(logits, cp.asarray([1]), -100)
    np.testing.assert_allclose(losses.get(), [2e4], rtol=1e-6)
    assert np.isfinite(lse.get()).all()


@needs_gpu
@pytest.mark.parametrize("decoupled,weight_decay", [(False, 0.0), (False, 0.1), (True, 0.01)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_adam_update_matches_reference(decoupled, weight_decay, dtype):
    rng = np.random.default_rng(4)
    p, g = rng.standard_normal((33, 17)).astype(dtype), rng.standard_normal((33, 17)).astype(dtype)
    m, v = rng.standard_normal((33, 17)).astype(dtype), rng.random((33, 17)).astype(dtype)
    gp, gm, gv = cp.asarray(p), cp.asarray(m), cp.asarray(v)
    for step in (1, 2, 50):
        updates.adam_update(p, g, m, v, step, 1e-3, 0.9, 0.999, 1e-8, weight_decay, decoupled)
        assert gpu.fused_update_takes(gp, cp.asarray(g), gm, gv)
        gpu.adam_update(gp, cp.asarray(g), gm, gv, step, 1e-3, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else FLOAT32
    for got, want in ((gp, p), (gm, m), (gv, v)):
        np.testing.assert_allclose(got.get(), want, **tol)


@needs_gpu
def test_gpu_adamw_training_step_matches_the_cpu():
    def run(device):
        engine.manual_seed(0)
        model = engine.nn.Sequential(engine.nn.Linear(8, 16), engine.nn.LayerNorm(16), engine.nn.Linear(16, 5))
        model = model.to(device)
        opt = engine.optim.AdamW(model.parameters(), lr=1e-2)
        x = engine.tensor(np.random.default_rng(5).standard_normal((12, 8)).astype(np.float32), device=device)
        y = engine.tensor(np.arange(12) % 5, device=device)
        for _ in range(3):
            loss = engine.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.numpy() for p in model.parameters()]

    for a, b in zip(run("cpu"), run("cuda")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
