"""GPU attention: the SIMT kernels (float32, float64, any head size) and the bf16 tensor-core kernels
against the float64 NumPy reference; masks, is_causal, Tq != Tk, T = 1, D = 80, fully masked rows;
gradcheck through autograd in float64; determinism; autocast. Tests that need a GPU skip without
one. The binding's argument checks run everywhere: they happen before any GPU call, and empty
arrays (which have no memory to locate) reach them without a device.

bf16 bound: the kernels read q, k, v, dout rounded to bf16, so the reference is computed from
those rounded values; what is left is the bf16 rounding of the probabilities P (forward, dV) and of
dS (dQ, dK) before their tensor-core products, each a relative 2^-8 per term: the tests allow
2^-6 of the output's largest magnitude.
"""
import zlib

import numpy as np
import pytest

import engine
from engine.backend import numpy_ref
from empty_gpu_array import EmptyGpuArray
from gradcheck import gradcheck
from tolerances import float32_reduction

from cuda_support import cp, gpu, needs_cuda_module, needs_gpu

BF16_BOUND = 2.0**-6
F = engine.nn.functional


def _seed(*key):
    """A seed fixed by the test's parameters (hash() of a str changes between processes)."""
    return zlib.crc32(repr(key).encode())


def bf16_round(x):
    """float32 values rounded to the nearest bf16 (ties to even), as float64."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def _problem(rng, b, h, tq, tk, d, dv, mask_kind):
    q, k = rng.standard_normal((b, h, tq, d)), rng.standard_normal((b, h, tk, d))
    v, dout = rng.standard_normal((b, h, tk, dv)), rng.standard_normal((b, h, tq, dv))
    mask = None
    if mask_kind == "bool":
        mask = rng.random((b, 1, tq, tk)) < 0.7
        mask[:, :, tq // 2] = False  # a fully masked row
    elif mask_kind == "float":
        mask = rng.standard_normal((1, h, tq, tk))
        mask[rng.random(mask.shape) < 0.2] = -np.inf
    return q, k, v, dout, mask


def _reference(q, k, v, dout, mask, causal, scale=None):
    out, lse = numpy_ref.attention_forward(q, k, v, mask, causal, scale)
    grads = numpy_ref.attention_backward(dout, q, k, v, out, lse, mask, causal, scale)
    return out, lse, grads


def _gpu_mask(mask, dtype):
    if mask is None:
        return None
    return cp.asarray(mask if mask.dtype == np.bool_ else mask.astype(dtype))


def _run_gpu(q, k, v, dout, mask, causal, dtype, simt=False, scale=None):
    """engine._cuda forward and backward on dtype copies (bf16: bit patterns of the float32 values)."""
    from engine import _cuda

    if dtype == "bf16":
        arrays = [gpu._to_bf16(cp.asarray(a, dtype=cp.float32)) for a in (q, k, v, dout)]
        acc = cp.float32
    else:
        arrays = [cp.asarray(a, dtype=dtype) for a in (q, k, v, dout)]
        acc = dtype
    gq, gk, gv, gdo = arrays
    m = _gpu_mask(mask, acc)
    b, h, tq, _ = q.shape
    out = cp.full((b, h, tq, v.shape[3]), cp.nan, dtype=acc)  # poisoned: every element must be written
    lse = cp.full((b, h, tq), cp.nan, dtype=acc)
    _cuda.attention_forward(gq, gk, gv, out, lse, mask=m, is_causal=causal, scale=scale, simt=simt)
    dq, dk, dv = (cp.full(x.shape, cp.nan, dtype=acc) for x in (q, k, v))
    _cuda.attention_backward(gdo, gq, gk, gv, out, lse, dq, dk, dv, mask=m, is_causal=causal, scale=scale, simt=simt)
    return [x.get() for x in (out, lse, dq, dk, dv)]


def _assert_close(got, want, **tol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), finite)  # -inf lse where the reference has it
    np.testing.assert_array_equal(got[~finite], want[~finite])
    np.testing.assert_allclose(got[finite], want[finite], **tol)


def _assert_within_bf16(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert np.isfinite(got).all() == np.isfinite(want).all()
    finite = np.isfinite(want)
    scale = max(np.abs(want[finite]).max(initial=0.0), 1e-30)
    assert np.abs(got[finite] - want[finite]).max(initial=0.0) <= BF16_BOUND * scale


# (B, H, Tq, Tk, D, Dv)
CASES = [(1, 1, 1, 1, 8, 8), (2, 3, 17, 17, 16, 16), (1, 2, 129, 129, 64, 64), (2, 1, 33, 70, 80, 80),
         (1, 2, 70, 33, 32, 48), (1, 1, 130, 5, 128, 128)]


# ---------------------------------------------------------------------------------------------
# Any machine: the binding's checks, before any GPU call
# ---------------------------------------------------------------------------------------------
@needs_cuda_module
def test_attention_binding_accepts_empty_problems_without_launching():
    from engine import _cuda

    for typestr, acc in (("<f4", "<f4"), ("<f8", "<f8"), ("<u2", "<f4")):
        shapes = dict(q=(2, 3, 0, 8), k=(2, 3, 0, 8), v=(2, 3, 0, 8), out=(2, 3, 0, 8), lse=(2, 3, 0))
        a = {n: EmptyGpuArray(s, acc if n in ("out", "lse") else typestr) for n, s in shapes.items()}
        _cuda.attention_forward(a["q"], a["k"], a["v"], a["out"], a["lse"], is_causal=True)
        grads = [EmptyGpuArray((2, 3, 0, 8), acc) for _ in range(3)]
        _cuda.attention_backward(a["q"], a["q"], a["k"], a["v"], a["out"], a["lse"], *grads,
                                 mask=EmptyGpuArray((1, 1, 0, 0), "|b1"))


def _forward_call(**changes):
    from engine import _cuda

    shapes = dict(q=((1, 2, 0, 4), "<f4"), k=((1, 2, 0, 4), "<f4"), v=((1, 2, 0, 4), "<f4"),
                  out=((1, 2, 0, 4), "<f4"), lse=((1, 2, 0), "<f4"))
    mask = changes.pop("mask", None)
    scale = changes.pop("scale", None)
    shapes.update(changes)
    a = {n: EmptyGpuArray(s, t) for n, (s, t) in shapes.items()}
    m = None if mask is None else EmptyGpuArray(*mask)
    return lambda: _cuda.attention_forward(a["q"], a["k"], a["v"], a["out"], a["lse"], mask=m, scale=scale)


@needs_cuda_module
@pytest.mark.parametrize("changes,error,message", [
    (dict(q=((2, 0, 4), "<f4")), ValueError, r"attention_forward: q must be 4-D, got shape \(2, 0, 4\)"),
    (dict(k=((1, 2, 0, 5), "<f4")), ValueError, r"attention_forward: k has shape \(1, 2, 0, 5\), expected \(1, 2, 0, 4\)"),
    (dict(v=((1, 3, 0, 4), "<f4")), ValueError, r"attention_forward: v has shape \(1, 3, 0, 4\), expected \(1, 2, 0, 4\)"),
    (dict(k=((1, 2, 0, 4), "<f8")), TypeError, r"attention_forward: k and q must have the same dtype, got float64 and float32"),
    (dict(q=((1, 2, 0, 4), "<i8")), TypeError, r"attention_forward: q must be float32, float64 or uint16 \(bf16 bit patterns\), got int64"),
    (dict(out=((1, 2, 0, 4), "<f8")), TypeError, r"attention_forward: out must be float32 for float32 inputs, got float64"),
    (dict(q=((1, 2, 0, 4), "<u2"), k=((1, 2, 0, 4), "<u2"), v=((1, 2, 0, 4), "<u2"), out=((1, 2, 0, 4), "<u2")),
     TypeError, r"attention_forward: out must be float32 or float64, got uint16 \(bf16 bits\)"),
    (dict(out=((1, 2, 0, 4), "<f8"), q=((1, 2, 0, 4), "<u2"), k=((1, 2, 0, 4), "<u2"), v=((1, 2, 0, 4), "<u2")),
     TypeError, r"attention_forward: out must be float32 for uint16 \(bf16 bits\) inputs, got float64"),
    (dict(lse=((1, 3, 0), "<f4")), ValueError, r"attention_forward: lse has shape \(1, 3, 0\), expected \(1, 2, 0\)"),
    (dict(out=((1, 2, 0, 5), "<f4")), ValueError, r"attention_forward: out has shape \(1, 2, 0, 5\), expected \(1, 2, 0, 4\)"),
    (dict(mask=((3, 1, 0, 0), "|b1")), ValueError, r"attention_forward: mask of shape \(3, 1, 0, 0\) does not broadcast to \(1, 2, 0, 0\)"),
    (dict(mask=((1, 0, 0), "|b1")), ValueError, r"attention_forward: mask must be 4-D"),
    (dict(mask=((1, 1, 0, 0), "<i8")), TypeError, r"attention_forward: mask must be bool, float32 or float64, got int64"),
    (dict(mask=((1, 1, 0, 0), "<f8")), TypeError, r"attention_forward: a float mask must be float32 for float32 inputs, got float64"),
    (dict(q=((1, 2, 0, 0), "<f4"), k=((1, 2, 0, 0), "<f4")), ValueError, r"attention_forward: head dim 0 needs an explicit scale"),
    (dict(scale=float("nan")), ValueError, r"attention_forward: scale must be finite"),
], ids=["q-3d", "k-head-dim", "v-heads", "k-dtype", "q-int", "out-dtype", "out-bf16", "out-f64-for-bf16", "lse-shape", "out-shape",
        "mask-broadcast", "mask-3d", "mask-int", "mask-float-dtype", "head-dim-0", "scale-nan"])
def test_attention_binding_refuses_bad_arguments_before_any_gpu_call(changes, error, message):
    with pytest.raises(error, match=message):
        _forward_call(**changes)()


@needs_cuda_module
def test_attention_backward_binding_checks_dout_and_saved_values():
    from engine import _cuda

    a = [EmptyGpuArray((1, 2, 0, 4)) for _ in range(4)]
    lse = EmptyGpuArray((1, 2, 0))
    grads = [EmptyGpuArray((1, 2, 0, 4)) for _ in range(3)]
    with pytest.raises(TypeError, match=r"attention_backward: dout and q must have the same dtype, got float64 and float32"):
        _cuda.attention_backward(EmptyGpuArray((1, 2, 0, 4), "<f8"), *a[1:], a[0], lse, *grads)
    with pytest.raises(ValueError, match=r"attention_backward: dout has shape \(1, 2, 0, 3\), expected \(1, 2, 0, 4\)"):
        _cuda.attention_backward(EmptyGpuArray((1, 2, 0, 3)), *a[1:], a[0], lse, *grads)
    with pytest.raises(TypeError, match=r"attention_backward: lse must be float32 for float32 inputs, got float64"):
        _cuda.attention_backward(*a, a[0], EmptyGpuArray((1, 2, 0), "<f8"), *grads)
    with pytest.raises(ValueError, match=r"attention_backward: dk has shape \(1, 2, 0, 5\), expected \(1, 2, 0, 4\)"):
        _cuda.attention_backward(*a, a[0], lse, grads[0], EmptyGpuArray((1, 2, 0, 5)), grads[2])


@needs_cuda_module
def test_bf16_conversion_bindings_check_dtypes_and_shapes():
    from engine import _cuda

    with pytest.raises(TypeError, match=r"float_to_bf16: expected x float32 and out uint16 \(bf16 bits\), got float64"):
        _cuda.float_to_bf16(EmptyGpuArray((0, 3), "<u2"), EmptyGpuArray((0, 3), "<f8"))
    with pytest.raises(ValueError, match=r"bf16_to_float: out has shape \(0, 2\), expected \(0, 3\)"):
        _cuda.bf16_to_float(EmptyGpuArray((0, 2), "<f4"), EmptyGpuArray((0, 3), "<u2"))


@needs_cuda_module
def test_attention_bindings_refuse_cpu_arrays():
    from engine import _cuda

    x = np.zeros((1, 1, 2, 4), np.float32)
    with pytest.raises(TypeError, match=r"attention_forward: q must be a GPU array \(CuPy\)"):
        _cuda.attention_forward(x, x, x, x, x[..., 0])


def test_reference_bf16_rounding_helper_rounds_to_nearest_even():
    x = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-9, -3.5], np.float32)
    np.testing.assert_array_equal(bf16_round(x), [1.0, 1.0, 1.0 + 2**-6, 1.0, -3.5])


# ---------------------------------------------------------------------------------------------
# GPU: values against the float64 reference
# ---------------------------------------------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gpu_attention_simt_matches_float64_reference(case, mask_kind, causal, dtype):
    rng = np.random.default_rng(_seed(case, mask_kind, causal, np.dtype(dtype).name))
    q, k, v, dout, mask = _problem(rng, *case, mask_kind)
    want = _reference(q, k, v, dout, mask, causal)
    got = _run_gpu(q, k, v, dout, mask, causal, dtype)
    tq, tk, d = case[2], case[3], case[4]
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else float32_reduction(max(tk, d, tq))
    for g, w in zip(got, [want[0], want[1], *want[2]]):
        _assert_close(g, w, **tol)


@needs_gpu
@pytest.mark.parametrize("case", [c for c in CASES if c[4] == c[5] and c[4] in (32, 64, 128)] +
                         [(2, 2, 77, 77, 32, 32), (1, 3, 200, 131, 64, 64), (1, 1, 64, 64, 128, 128)],
                         ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_bf16_tensor_core_attention_within_rounding_bound(case, mask_kind, causal):
    from engine import _cuda

    rng = np.random.default_rng(_seed(case, mask_kind, causal, "bf16"))
    q, k, v, dout, mask = _problem(rng, *case, mask_kind)
    bq, bk, bv = (gpu._to_bf16(cp.asarray(a, dtype=cp.float32)) for a in (q, k, v))
    assert _cuda.attention_uses_tensor_cores(bq, bk, bv) == _cuda.tensor_cores_supported()
    rounded = [bf16_round(a) for a in (q, k, v, dout)]
    want = _reference(*rounded, mask, causal)
    got = _run_gpu(q, k, v, dout, mask, causal, "bf16")
    _assert_close(got[1], want[1], rtol=1e-3, atol=1e-3)  # lse: fp32 sums of fp32 scores
    for g, w in zip([got[0], *got[2:]], [want[0], *want[2]]):
        _assert_within_bf16(g, w)


@needs_gpu
@pytest.mark.parametrize("d", [32, 64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_bf16_tensor_core_and_simt_kernels_agree(d, causal):
    rng = np.random.default_rng(d + causal)
    q, k, v, dout, mask = _problem(rng, 2, 2, 150, 97, d, d, "bool")
    fast = _run_gpu(q, k, v, dout, mask, causal, "bf16")
    slow = _run_gpu(q, k, v, dout, mask, causal, "bf16", simt=True)
    for f, s in zip(fast, slow):
        _assert_within_bf16(f, s)


@needs_gpu
def test_gpu_bf16_attention_with_other_head_sizes_runs_the_simt_kernels():
    from engine import _cuda

    rng = np.random.default_rng(80)
    q, k, v, dout, _ = _problem(rng, 1, 2, 40, 33, 80, 80, None)
    bq, bk, bv = (gpu._to_bf16(cp.asarray(a, dtype=cp.float32)) for a in (q, k, v))
    assert not _cuda.attention_uses_tensor_cores(bq, bk, bv)
    want = _reference(*(bf16_round(a) for a in (q, k, v, dout)), None, True)
    got = _run_gpu(q, k, v, dout, None, True, "bf16")
    for g, w in zip([got[0], *got[2:]], [want[0], *want[2]]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)  # P stays fp32 on this path


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, "bf16"])
def test_gpu_attention_fully_masked_rows_give_zeros_and_finite_gradients(dtype):
    rng = np.random.default_rng(5)
    q, k, v, dout, _ = _problem(rng, 1, 2, 70, 64, 64, 64, None)
    mask = rng.random((1, 2, 70, 64)) < 0.5
    mask[:, :, [0, 33, 69]] = False
    out, lse, dq, dk, dv = _run_gpu(q, k, v, dout, mask, False, dtype)
    assert np.isfinite(out).all() and np.isfinite(dq).all() and np.isfinite(dk).all() and np.isfinite(dv).all()
    np.testing.assert_array_equal(out[:, :, [0, 33, 69]], 0.0)
    np.testing.assert_array_equal(dq[:, :, [0, 33, 69]], 0.0)
    assert (lse[:, :, [0, 33, 69]] == -np.inf).all()


@needs_gpu
def test_gpu_attention_nan_in_a_masked_out_place_does_not_leak():
    rng = np.random.default_rng(6)
    q, k, v, dout, _ = _problem(rng, 1, 1, 9, 9, 16, 16, None)
    k[0, 0, 8] = np.nan
    v[0, 0, 8] = np.nan
    out, lse, dq, dk, dv = _run_gpu(q, k, v, dout, None, True, np.float32)  # key 8 visible to row 8 only
    assert np.isfinite(out[0, 0, :8]).all() and np.isfinite(dq[0, 0, :8]).all()


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, "bf16"])
def test_gpu_attention_backward_is_deterministic(dtype):
    rng = np.random.default_rng(7)
    q, k, v, dout, mask = _problem(rng, 2, 3, 257, 190, 64, 64, "float")
    first = _run_gpu(q, k, v, dout, mask, True, dtype)
    second = _run_gpu(q, k, v, dout, mask, True, dtype)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@needs_gpu
def test_gpu_attention_head_dim_beyond_the_largest_tile_still_runs():
    rng = np.random.default_rng(8)
    q, k, v, dout, _ = _problem(rng, 1, 1, 20, 23, 300, 260, None)
    want = _reference(q, k, v, dout, None, False)
    got = _run_gpu(q, k, v, dout, None, False, np.float64)
    for g, w in zip(got, [want[0], want[1], *want[2]]):
        _assert_close(g, w, rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------------------------------------
# GPU: through the ops layer (autograd, layouts, autocast)
# ---------------------------------------------------------------------------------------------
def _gpu_leaf(rng, *shape):
    return engine.tensor(rng.standard_normal(shape), dtype=engine.float64, requires_grad=True, device="cuda")


@needs_gpu
@pytest.mark.parametrize("causal,mask_kind,tq,tk", [(False, None, 5, 5), (True, None, 6, 4), (False, "bool", 4, 7),
                                                    (True, "float", 7, 7)])
def test_gradcheck_gpu_scaled_dot_product_attention(causal, mask_kind, tq, tk):
    rng = np.random.default_rng(9)
    q, k, v = _gpu_leaf(rng, 2, tq, 5), _gpu_leaf(rng, 2, tk, 5), _gpu_leaf(rng, 2, tk, 3)
    mask = None
    if mask_kind == "bool":
        m = rng.random((tq, tk)) < 0.6
        m[1] = False
        mask = engine.tensor(m, device="cuda")
    elif mask_kind == "float":
        mask = engine.tensor(rng.standard_normal((tq, tk)), dtype=engine.float64, device="cuda")
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal),
                     q, k, v)


@needs_gpu
def test_gpu_attention_reads_head_transposed_views_like_the_cpu():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 19, 3, 3, 16)).astype(np.float32)  # (B, T, qkv, H, D)
    cpu = engine.tensor(x, requires_grad=True)
    dev = engine.tensor(x, device="cuda", requires_grad=True)
    outs = []
    for t in (cpu, dev):
        q, k, v = (t[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, T, D) views, not contiguous
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.sum().backward()
        outs.append((out.numpy(), t.grad.numpy()))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, **float32_reduction(19))


@needs_gpu
def test_gpu_autocast_runs_attention_in_bf16_and_its_backward_too():
    rng = np.random.default_rng(11)
    q, k, v = (engine.tensor(rng.standard_normal((1, 2, 33, 64)).astype(np.float32), device="cuda",
                             requires_grad=True) for _ in range(3))
    with engine.autocast("cuda", dtype=engine.bfloat16):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == engine.float32
    out.backward(engine.ones_like(out))  # outside the block: replays bf16
    host = [t.numpy() for t in (q, k, v)]
    want = _reference(*(bf16_round(a) for a in host), np.ones((1, 2, 33, 64)), None, True)
    _assert_within_bf16(out.numpy(), want[0])
    for t, w in zip((q, k, v), want[2]):
        _assert_within_bf16(t.grad.numpy(), w)
    fp32 = F.scaled_dot_product_attention(*(t.detach() for t in (q, k, v)), is_causal=True)
    assert not np.array_equal(fp32.numpy(), out.numpy())  # autocast did change the arithmetic
