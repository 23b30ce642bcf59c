"""The CUDA backend: GPU kernels against the float64 NumPy reference, gradients on the GPU,
DLPack exchange, device errors. Tests that need a GPU skip cleanly without one (or without CuPy);
the rest check what must hold on any machine (clear errors, the precision switch, bindings that
refuse CPU arrays)."""
import numpy as np
import pytest

import engine
from engine.backend import numpy_ref
from gradcheck import gradcheck
from tolerances import FLOAT64, float32_reduction

from cuda_support import GPU, cp, gpu, needs_cuda_module, needs_gpu

# Tensor-core precisions: each product's operands are rounded to a p-bit significand (unit
# roundoff u = 2^-p), so |error| <= (2u + K·2^-24)·(|A|·|B|) up to second-order terms; the tests
# allow twice that.
UNIT_ROUNDOFF = {"tf32": 2.0**-11, "bf16": 2.0**-8}


# ---------------------------------------------------------------------------------------------
# Any machine
# ---------------------------------------------------------------------------------------------
def test_matmul_precision_switch_validates_and_restores():
    assert engine.cuda.get_matmul_precision() == "highest"
    with engine.cuda.matmul_precision("tf32"):
        assert engine.cuda.get_matmul_precision() == "tf32"
        with engine.cuda.matmul_precision("bf16"):
            assert engine.cuda.get_matmul_precision() == "bf16"
        assert engine.cuda.get_matmul_precision() == "tf32"
    assert engine.cuda.get_matmul_precision() == "highest"
    with pytest.raises(ValueError, match="set_matmul_precision: expected one of highest, tf32, bf16, got 'fp16'"):
        engine.cuda.set_matmul_precision("fp16")
    assert engine.cuda.get_matmul_precision() == "highest"


@pytest.mark.skipif(GPU, reason="checks the error given where CUDA is missing")
@pytest.mark.parametrize("make", [
    lambda: engine.ones(2).to("cuda"),
    lambda: engine.ones(2).cuda(),
    lambda: engine.zeros(3, device="cuda"),
    lambda: engine.tensor([1.0], device="cuda:0"),
    lambda: engine.cuda.synchronize(),
    lambda: engine.cuda.current_device(),
], ids=["to", "cuda", "zeros", "tensor", "synchronize", "current_device"])
def test_asking_for_cuda_without_it_says_why(make):
    why = engine.cuda.unavailable_reason()
    assert why
    with pytest.raises(RuntimeError, match="CUDA is not available: ") as e:
        make()
    assert why in str(e.value)


def test_package_and_gpu_kernel_set_import_without_a_gpu():
    from engine.backend import cuda as gpu_kernels

    assert set(gpu_kernels.KERNELS.sources) >= {"matmul", "conv2d_forward", "max_pool2d_backward"}
    assert engine.cuda.is_available() == (engine.cuda.unavailable_reason() is None)


@needs_cuda_module
@pytest.mark.parametrize("call", [
    lambda c, x: c.matmul(x, x, x),
    lambda c, x: c.conv2d_forward(x, x, x, None, (1, 1), (0, 0), (1, 1)),
    lambda c, x: c.max_pool2d_backward(x, x, x),
], ids=["matmul", "conv2d_forward", "max_pool2d_backward"])
def test_bindings_refuse_cpu_arrays(call):
    from engine import _cuda

    with pytest.raises(TypeError, match=r"must be a GPU array \(CuPy\), got <class 'numpy.ndarray'>"):
        call(_cuda, np.zeros((2, 2, 2, 2), np.float32))


@needs_cuda_module
def test_cuda_module_answers_device_queries_without_failing():
    from engine import _cuda

    assert isinstance(_cuda.tensor_cores_supported(), bool)  # False where no device answers
    assert _cuda.device_count() >= 0


@pytest.mark.skipif(GPU, reason="checks the message given where CUDA is missing")
def test_bench_on_cuda_without_a_gpu_says_why(capsys):
    from engine.cli import main

    assert main(["bench", "--device", "cuda", "--quick"]) == 1
    out = capsys.readouterr().out
    assert "engine bench --device cuda: CUDA is not available: " in out


# ---------------------------------------------------------------------------------------------
# GPU: GEMM
# ---------------------------------------------------------------------------------------------
def _rand(rng, *shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _as_layout(rng, host, layout):
    """host (a NumPy matrix or batch) on the GPU as a C-contiguous array ("n") or as the
    transposed view of a C-contiguous array of the transposed shape ("t")."""
    if layout == "n":
        return cp.asarray(host)
    return cp.ascontiguousarray(cp.asarray(host).swapaxes(-1, -2)).swapaxes(-1, -2)


GEMM_SHAPES = [(1, 1, 1), (2, 3, 5), (7, 13, 11), (127, 129, 131), (128, 128, 128), (257, 33, 65),
               (3, 0, 5), (0, 4, 5), (5, 4, 0), (1, 300, 1), (64, 1, 96)]


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layouts", ["nn", "nt", "tn", "tt"])
@pytest.mark.parametrize("m,k,n", GEMM_SHAPES)
def test_gpu_matmul_matches_float64_reference(m, k, n, layouts, dtype):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b = _rand(rng, m, k), _rand(rng, k, n)
    ga = _as_layout(rng, a.astype(dtype), layouts[0])
    gb = _as_layout(rng, b.astype(dtype), layouts[1])
    out = gpu.matmul(ga, gb)
    assert out.dtype == dtype and out.shape == (m, n) and out.flags.c_contiguous
    tol = float32_reduction(k) if dtype == np.float32 else FLOAT64
    np.testing.assert_allclose(out.get(), a.astype(dtype).astype(np.float64) @ b.astype(dtype), **tol)


@needs_gpu
@pytest.mark.parametrize("offset", [1, 2, 3])
def test_gpu_matmul_reads_unaligned_and_padded_views(offset):
    """Views that start off a 16-byte boundary or have row strides that are not multiples of 4
    take the scalar-load path and must give the same result."""
    rng = np.random.default_rng(offset)
    big = cp.asarray(_rand(rng, 70, 90, dtype=np.float32))
    a = big[offset:offset + 37, offset:offset + 41]
    b = big[offset + 1:offset + 42, 3:3 + 29]
    out = gpu.matmul(a, b)
    np.testing.assert_allclose(out.get(), a.get().astype(np.float64) @ b.get(), **float32_reduction(41))


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_a,batch_b", [(4, 4), (4, None), (None, 3), (1, 1)])
def test_gpu_batched_matmul_shares_a_2d_operand(batch_a, batch_b, dtype):
    rng = np.random.default_rng(7)
    a = _rand(rng, *((batch_a,) if batch_a else ()), 19, 23).astype(dtype)
    b = _rand(rng, *((batch_b,) if batch_b else ()), 23, 17).astype(dtype)
    out = gpu.matmul(cp.asarray(a), cp.asarray(b))
    tol = float32_reduction(23) if dtype == np.float32 else FLOAT64
    np.testing.assert_allclose(out.get(), np.matmul(a.astype(np.float64), b), **tol)


@needs_gpu
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_linear_epilogue_matches_reference(activation, dtype):
    rng = np.random.default_rng(3)
    x, w, bias = _rand(rng, 67, 45), _rand(rng, 29, 45), _rand(rng, 29)
    got = gpu.linear(*(cp.asarray(v.astype(dtype)) for v in (x, w, bias)), activation=activation)
    want = numpy_ref.linear(*(v.astype(dtype).astype(np.float64) for v in (x, w, bias)), activation=activation)
    tol = float32_reduction(45) if dtype == np.float32 else FLOAT64
    np.testing.assert_allclose(got.get(), want, **tol)


@needs_gpu
def test_gpu_gemm_alpha_beta_accumulate_into_out():
    from engine import _cuda

    rng = np.random.default_rng(5)
    a, b, c = _rand(rng, 33, 17), _rand(rng, 17, 9), _rand(rng, 33, 9)
    out = cp.asarray(c)
    _cuda.matmul(cp.asarray(a), cp.asarray(b), out, alpha=-0.5, beta=2.0, stream=engine.cuda.current_stream_ptr())
    np.testing.assert_allclose(out.get(), -0.5 * (a @ b) + 2.0 * c, **FLOAT64)
    # beta = 0 never reads out: NaN there must not leak into the result
    out = cp.full((33, 9), np.nan)
    _cuda.matmul(cp.asarray(a), cp.asarray(b), out, beta=0.0)
    np.testing.assert_allclose(out.get(), a @ b, **FLOAT64)


@needs_gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 33, 9), (130, 260, 250), (256, 512, 128), (5, 0, 7)])
@pytest.mark.parametrize("layouts", ["nn", "nt", "tn", "tt"])
def test_gpu_tensor_core_matmul_within_its_rounding_bound(m, k, n, layouts, precision):
    rng = np.random.default_rng(k + n)
    a, b = _rand(rng, m, k, dtype=np.float32), _rand(rng, k, n, dtype=np.float32)
    with engine.cuda.matmul_precision(precision):
        out = gpu.matmul(_as_layout(rng, a, layouts[0]), _as_layout(rng, b, layouts[1])).get()
    want = a.astype(np.float64) @ b
    u = UNIT_ROUNDOFF[precision]
    bound = 2 * (2 * u + k * 2.0**-24) * (np.abs(a).astype(np.float64) @ np.abs(b)) + 1e-6
    assert np.all(np.abs(out - want) <= bound), float(np.max(np.abs(out - want) - bound))
    if k >= 256 and engine._cuda.tensor_cores_supported():
        # the tensor-core path really ran: its error is larger than plain fp32's
        assert np.max(np.abs(out - want)) > 4 * k**0.5 * 2.0**-24 * np.max(np.abs(want))


@needs_gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_gpu_tensor_core_linear_epilogue(precision):
    rng = np.random.default_rng(11)
    x, w, bias = (_rand(rng, *s, dtype=np.float32) for s in ((131, 96), (72, 96), (72,)))
    with engine.cuda.matmul_precision(precision):
        got = gpu.linear(cp.asarray(x), cp.asarray(w), cp.asarray(bias), activation="relu").get()
    want = numpy_ref.linear(x.astype(np.float64), w.astype(np.float64), bias.astype(np.float64), "relu")
    bound = 2 * (2 * UNIT_ROUNDOFF[precision] + 96 * 2.0**-24) * (np.abs(x) @ np.abs(w).T + np.abs(bias)) + 1e-6
    assert np.all(np.abs(got - want) <= bound)


# ---------------------------------------------------------------------------------------------
# GPU: conv2d and max_pool2d
# ---------------------------------------------------------------------------------------------
CONV_CASES = [  # (N, C, H, W, O, KH, KW, stride, padding, dilation, groups)
    (1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1), 1),
    (2, 3, 7, 5, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (3, 5, 11, 13, 7, 3, 2, (2, 3), (1, 0), (1, 1), 1),
    (2, 4, 9, 9, 6, 3, 3, (1, 1), (2, 2), (2, 2), 2),
    (1, 6, 8, 10, 6, 3, 3, (2, 2), (1, 1), (1, 1), 6),
    (4, 3, 16, 16, 8, 5, 5, (1, 1), (2, 2), (1, 1), 1),     # split-K in the weight gradient
    (2, 17, 13, 11, 33, 1, 1, (1, 1), (0, 0), (1, 1), 1),
    (2, 130, 6, 6, 129, 3, 3, (1, 1), (1, 1), (1, 1), 1),  # channels beyond one tile
]


def _conv_arrays(case, dtype, seed=0):
    n, c, h, w, o, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = _rand(rng, n, c, h, w).astype(dtype)
    weight = _rand(rng, o, c // groups, kh, kw).astype(dtype)
    bias = _rand(rng, o).astype(dtype)
    oh = numpy_ref._out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = numpy_ref._out_size(w, kw, stride[1], padding[1], dilation[1])
    dy = _rand(rng, n, o, oh, ow).astype(dtype)
    return x, weight, bias, dy, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
def test_gpu_conv2d_matches_float64_reference(case, dtype):
    x, w, b, dy, args = _conv_arrays(case, dtype)
    gx, gw, gb, gdy = (cp.asarray(v) for v in (x, w, b, dy))
    x64, w64, b64, dy64 = _f64(x, w, b, dy)
    r_fwd = w.shape[1] * w.shape[2] * w.shape[3]
    r_dx = (w.shape[0] // args["groups"]) * w.shape[2] * w.shape[3]
    r_dw = dy.shape[0] * dy.shape[2] * dy.shape[3]
    tol = (lambda k: float32_reduction(k)) if dtype == np.float32 else (lambda k: FLOAT64)
    np.testing.assert_allclose(gpu.conv2d_forward(gx, gw, gb, **args).get(),
                               numpy_ref.conv2d_forward(x64, w64, b64, **args), **tol(r_fwd))
    np.testing.assert_allclose(gpu.conv2d_grad_input(gdy, gw, x.shape, **args).get(),
                               numpy_ref.conv2d_grad_input(dy64, w64, x.shape, **args), **tol(r_dx))
    np.testing.assert_allclose(gpu.conv2d_grad_weight(gdy, gx, w.shape, **args).get(),
                               numpy_ref.conv2d_grad_weight(dy64, x64, w.shape, **args), **tol(r_dw))


@needs_gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("case", CONV_CASES[1:6], ids=[str(i) for i in range(1, 6)])
def test_gpu_tensor_core_conv2d_within_its_rounding_bound(case, precision):
    x, w, b, dy, args = _conv_arrays(case, np.float32, seed=1)
    gx, gw, gdy = (cp.asarray(v) for v in (x, w, dy))
    x64, w64, dy64 = _f64(x, w, dy)
    u = UNIT_ROUNDOFF[precision]
    ax, aw, ady = np.abs(x64), np.abs(w64), np.abs(dy64)
    with engine.cuda.matmul_precision(precision):
        got = [gpu.conv2d_forward(gx, gw, None, **args), gpu.conv2d_grad_input(gdy, gw, x.shape, **args),
               gpu.conv2d_grad_weight(gdy, gx, w.shape, **args)]
    want = [numpy_ref.conv2d_forward(x64, w64, None, **args), numpy_ref.conv2d_grad_input(dy64, w64, x.shape, **args),
            numpy_ref.conv2d_grad_weight(dy64, x64, w.shape, **args)]
    scale = [numpy_ref.conv2d_forward(ax, aw, None, **args), numpy_ref.conv2d_grad_input(ady, aw, x.shape, **args),
             numpy_ref.conv2d_grad_weight(ady, ax, w.shape, **args)]
    for g, want_, s in zip(got, want, scale):
        # the reductions here are at most a few thousand long: 2^-24 per term is below 2u/8
        assert np.all(np.abs(g.get() - want_) <= 2 * (2 * u + 4096 * 2.0**-24) * s + 1e-6)


POOL_CASES = [  # (N, C, H, W, kernel, stride, padding, dilation)
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1)),
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0), (1, 1)),
    (2, 3, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1)),       # overlapping windows
    (1, 2, 11, 10, (3, 2), (1, 2), (1, 1), (2, 1)),     # dilation
    (3, 4, 5, 13, (5, 3), (3, 1), (2, 1), (1, 3)),
]


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=[str(i) for i in range(len(POOL_CASES))])
def test_gpu_max_pool2d_matches_reference_values_and_indices(case, dtype):
    n, c, h, w, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(h * w)
    # small integers make ties; -inf and NaN check the running-max rules
    x = rng.integers(-3, 4, size=(n, c, h, w)).astype(dtype)
    x.flat[rng.choice(x.size, size=max(1, x.size // 10), replace=False)] = -np.inf
    x.flat[rng.choice(x.size, size=max(1, x.size // 20), replace=False)] = np.nan
    y, idx = gpu.max_pool2d_forward(cp.asarray(x), kernel, stride, padding, dilation)
    want_y, want_idx = numpy_ref.max_pool2d_forward(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(y.get(), want_y)
    np.testing.assert_array_equal(idx.get(), want_idx)
    dy = rng.standard_normal(want_y.shape).astype(dtype)
    dx = gpu.max_pool2d_backward(cp.asarray(dy), idx, x.shape)
    np.testing.assert_allclose(dx.get(), numpy_ref.max_pool2d_backward(dy, want_idx, x.shape),
                               rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)


@needs_gpu
def test_gpu_max_pool2d_backward_skips_indices_outside_the_plane():
    dy = cp.ones((1, 1, 1, 2))
    idx = cp.asarray(np.array([[[[-1, 4]]]], dtype=np.int64))
    dx = gpu.max_pool2d_backward(dy, idx, (1, 1, 2, 2))
    np.testing.assert_array_equal(dx.get(), np.zeros((1, 1, 2, 2)))


# ---------------------------------------------------------------------------------------------
# GPU: tensors, autograd, DLPack, errors
# ---------------------------------------------------------------------------------------------
def _gpu_leaf(*shape, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return engine.tensor(a, dtype=engine.float64, requires_grad=True, device="cuda")


@needs_gpu
def test_gradcheck_gpu_matmul_and_linear():
    a, b = _gpu_leaf(3, 4, seed=1), _gpu_leaf(4, 5, seed=2)
    assert gradcheck(lambda a, b: a @ b, a, b)
    x, w, bias = _gpu_leaf(2, 3, 4, seed=3), _gpu_leaf(5, 4, seed=4), _gpu_leaf(5, seed=5)
    assert gradcheck(engine.nn.functional.linear, x, w, bias)
    ba, bb = _gpu_leaf(2, 3, 4, seed=6), _gpu_leaf(2, 4, 2, seed=7)
    assert gradcheck(engine.matmul, ba, bb)


@needs_gpu
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2)])
def test_gradcheck_gpu_conv2d(stride, padding, dilation, groups):
    x, w, b = _gpu_leaf(2, 4, 6, 5, seed=8), _gpu_leaf(3 * groups, 4 // groups, 3, 2, seed=9), _gpu_leaf(3 * groups, seed=10)
    assert gradcheck(lambda x, w, b: engine.conv2d(x, w, b, stride, padding, dilation, groups), x, w, b)


@needs_gpu
def test_gradcheck_gpu_max_pool2d():
    # distinct values: no ties for the finite differences to cross
    values = np.random.default_rng(12).permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0
    x = engine.tensor(values, dtype=engine.float64, requires_grad=True, device="cuda")
    assert gradcheck(lambda x: engine.max_pool2d(x, 3, 2, 1), x)


@needs_gpu
def test_gpu_tensor_round_trip_and_ops_follow_the_device():
    x = engine.randn(4, 5)
    g = x.to("cuda")
    assert g.is_cuda and g.device == "cuda:0" and g.device.type == "cuda"
    assert g.cuda() is g and g.to("cuda:0") is g
    back = g.cpu()
    assert not back.is_cuda and np.array_equal(back.numpy(), x.numpy())
    y = (g * 2 + 1).relu().sum(dim=1)
    assert y.is_cuda
    np.testing.assert_allclose(y.numpy(), np.maximum(x.numpy() * 2 + 1, 0).sum(axis=1), rtol=1e-6)
    engine.cuda.synchronize()


@needs_gpu
def test_gpu_cnn_step_matches_cpu():
    """A small conv net's loss and gradients on the GPU equal the CPU's (float64, exact kernels)."""
    rng = np.random.default_rng(13)
    images, labels = rng.standard_normal((4, 1, 12, 12)), rng.integers(0, 3, size=4)

    def step(device):
        engine.manual_seed(0)
        model = engine.nn.Sequential(engine.nn.Conv2d(1, 4, 3, padding=1), engine.nn.ReLU(),
                                     engine.nn.MaxPool2d(2), engine.nn.Flatten(), engine.nn.Linear(4 * 36, 3))
        model = model.double().to(device)
        x = engine.tensor(images, dtype=engine.float64, device=device)
        loss = engine.nn.functional.cross_entropy(model(x), engine.tensor(labels, device=device))
        loss.backward()
        return loss.item(), [p.grad.numpy() for p in model.parameters()]

    cpu_loss, cpu_grads = step("cpu")
    gpu_loss, gpu_grads = step("cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-10)
    for c, g in zip(cpu_grads, gpu_grads):
        np.testing.assert_allclose(g, c, rtol=1e-9, atol=1e-12)


@needs_gpu
def test_dlpack_round_trip_with_cupy_shares_memory():
    a = cp.arange(6, dtype=cp.float32).reshape(2, 3)
    t = engine.from_dlpack(a)
    assert t.is_cuda and t.shape == (2, 3)
    a[0, 0] = 42
    assert t[0, 0].item() == 42  # no copy was made
    back = cp.from_dlpack(t)
    back[1, 2] = -1
    assert a[1, 2].item() == -1
    assert t.__dlpack_device__() == (2, 0)


@needs_gpu
def test_dlpack_round_trip_with_torch_shares_memory():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch has no CUDA")
    tt = torch.arange(6, dtype=torch.float32, device="cuda").reshape(2, 3)
    t = engine.from_dlpack(tt)
    assert t.is_cuda
    tt[0, 0] = 7
    assert t[0, 0].item() == 7
    back = torch.from_dlpack(t)
    assert back.device.type == "cuda"
    back[1, 1] = -3
    assert tt[1, 1].item() == -3
    cpu = engine.from_dlpack(torch.ones(3))
    assert not cpu.is_cuda and cpu.numpy().tolist() == [1, 1, 1]


@needs_gpu
@pytest.mark.parametrize("op", [
    lambda a, b: a + b,
    lambda a, b: a @ b,
    lambda a, b: engine.nn.functional.linear(a, b),
    lambda a, b: engine.conv2d(a.reshape(1, 1, 3, 3), b.reshape(1, 1, 3, 3)),
], ids=["add", "matmul", "linear", "conv2d"])
def test_mixing_devices_raises_a_clear_error(op):
    a, b = engine.randn(3, 3), engine.randn(3, 3).cuda()
    with pytest.raises(RuntimeError, match="expected all tensors on the same device"):
        op(a, b)
    with pytest.raises(RuntimeError, match="expected all tensors on the same device"):
        op(b, a)


@needs_gpu
def test_gpu_kernels_refuse_wrong_dtypes_shapes_and_overlap():
    from engine import _cuda

    a = cp.ones((4, 4), cp.float32)
    with pytest.raises(TypeError, match="matmul: a must be float32 or float64, got int32"):
        _cuda.matmul(cp.ones((4, 4), cp.int32), a, cp.empty((4, 4), cp.float32))
    with pytest.raises(TypeError, match="matmul: a and b must have the same dtype, got float32 and float64"):
        _cuda.matmul(a, cp.ones((4, 4)), cp.empty((4, 4), cp.float32))
    with pytest.raises(ValueError, match=r"matmul: a \(4, 4\) and b \(3, 4\): inner dimensions 4 and 3 differ"):
        _cuda.matmul(a, cp.ones((3, 4), cp.float32), cp.empty((4, 4), cp.float32))
    with pytest.raises(ValueError, match=r"matmul: out has shape \(4, 5\), expected \(4, 4\)"):
        _cuda.matmul(a, a, cp.empty((4, 5), cp.float32))
    with pytest.raises(ValueError, match="matmul: out .* shares memory with a"):
        _cuda.matmul(a, cp.ones((4, 4), cp.float32), a)
    with pytest.raises(ValueError, match="no unit stride in its last two dimensions"):
        _cuda.matmul(cp.ones((8, 8), cp.float32)[::2, ::2], a, cp.empty((4, 4), cp.float32))
    with pytest.raises(ValueError, match="matmul: precision must be 'highest', 'tf32' or 'bf16', got 'fp8'"):
        _cuda.matmul(a, a, cp.empty((4, 4), cp.float32), precision="fp8")
    with pytest.raises(ValueError, match="conv2d_forward: input .* has 3 channels but weight .* expects 2"):
        x = cp.ones((1, 3, 5, 5), cp.float32)
        _cuda.conv2d_forward(cp.empty((1, 1, 3, 3), cp.float32), x, cp.ones((1, 2, 3, 3), cp.float32), None,
                             (1, 1), (0, 0), (1, 1))
    with pytest.raises(TypeError, match="max_pool2d_forward: indices must be int64, got int32"):
        _cuda.max_pool2d_forward(cp.empty((1, 1, 2, 2), cp.float32), cp.empty((1, 1, 2, 2), cp.int32),
                                 cp.ones((1, 1, 4, 4), cp.float32), (2, 2), (2, 2), (0, 0), (1, 1))
