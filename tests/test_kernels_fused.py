"""The Cython fused CPU ops (engine._fused, through engine/backend/cpu.py) against the NumPy
reference numpy_ref, and the one-pass optimizer updates against engine/optim/updates.py: odd
shapes, ignored targets, large logits, thread-count determinism, dropout statistics, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import nn, optim
from engine.backend import cpu, numpy_ref
from engine.optim import updates
from tolerances import FLOAT32, FLOAT64, float32_reduction

_fused = pytest.importorskip("engine._fused")

ISAS = cpu.FUSED_ISAS[:cpu.FUSED_ISAS.index(cpu.best_fused_isa()) + 1]


@pytest.fixture(params=ISAS, autouse=True)
def fused_isa(request, monkeypatch):
    """Every test here runs on each build of _fused.pyx this CPU can run."""
    monkeypatch.setattr(cpu, "_fused", cpu.fused_module(request.param))
    return request.param

DTYPES = [np.float32, np.float64]
ROWS = [(1, 1), (0, 5), (7, 1), (13, 17), (97, 131), (300, 131), (4096, 128)]  # the last two run in parallel
FLAT = [(), (1,), (0,), (7, 13), (100003,)]
rng = np.random.default_rng(2)


def close(dtype, reduction=1):
    """assert_allclose kwargs for a `dtype` result that sums `reduction` terms."""
    return FLOAT64 if dtype == np.float64 else float32_reduction(reduction)


def assert_all_close(got, want, dtype, reduction=1):
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.dtype == dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, **close(dtype, reduction))


def test_the_backend_picks_the_widest_build_this_cpu_runs():
    widest = ("avx512" if cpu._C.cpu_has_avx512() else "avx2") if cpu._C.cpu_has_avx2_fma() else "baseline"
    assert cpu.best_fused_isa() == widest == ISAS[-1]
    module = {"baseline": "engine._fused", "avx2": "engine._fused_avx2", "avx512": "engine._fused_avx512"}
    assert all(cpu.fused_module(isa).__name__ == module[isa] for isa in ISAS)
    with pytest.raises(ValueError, match=r"isa must be one of \('baseline', 'avx2', 'avx512'\), got 'sse9'"):
        cpu.fused_module("sse9")
    for isa in cpu.FUSED_ISAS[len(ISAS):]:  # the builds this CPU cannot run are refused, not imported
        with pytest.raises(RuntimeError, match=f"this CPU does not run the {isa} build"):
            cpu.fused_module(isa)


def test_native_backend_serves_the_fused_kernels():
    names = ["layer_norm_forward", "layer_norm_backward", "cross_entropy_forward", "cross_entropy_backward",
             "relu_forward", "relu_backward", "gelu_forward", "gelu_backward", "dropout_mask",
             "softmax_forward", "softmax_backward"]
    assert all(cpu.KERNELS.sources[name] == "native" for name in names)


# ---- layer norm --------------------------------------------------------------------------------
def affine_params(c, affine, dtype):
    weight = rng.standard_normal(c).astype(dtype) if affine in ("weight", "both") else None
    bias = rng.standard_normal(c).astype(dtype) if affine in ("bias", "both") else None
    return weight, bias


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROWS)
@pytest.mark.parametrize("affine", ["none", "weight", "bias", "both"])
def test_layer_norm_forward_matches_reference(shape, affine, dtype):
    x = (3 * rng.standard_normal(shape) + 1).astype(dtype)
    weight, bias = affine_params(shape[1], affine, dtype)
    got = cpu.layer_norm_forward(x, weight, bias, 1e-5)
    assert_all_close(got, numpy_ref.layer_norm_forward(x, weight, bias, 1e-5), dtype, shape[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROWS)
@pytest.mark.parametrize("affine", ["none", "weight", "both"])
def test_layer_norm_backward_matches_reference(shape, affine, dtype):
    x = (3 * rng.standard_normal(shape) + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    weight, bias = affine_params(shape[1], affine, dtype)
    _, mean, rstd = numpy_ref.layer_norm_forward(x, weight, bias, 1e-5)
    got = cpu.layer_norm_backward(dy, x, weight, mean, rstd)
    # dx sums over a row, dweight and dbias over the rows
    want = numpy_ref.layer_norm_backward(dy, x, weight, mean, rstd)
    assert_all_close(got[:1], want[:1], dtype, shape[1])
    assert_all_close(got[1:], want[1:], dtype, shape[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_of_a_constant_row_returns_the_bias(dtype):
    x = np.full((3, 17), 2.5, dtype)
    weight, bias = affine_params(17, "both", dtype)
    y, mean, rstd = cpu.layer_norm_forward(x, weight, bias, 1e-5)
    np.testing.assert_array_equal(y, np.broadcast_to(bias, y.shape))
    np.testing.assert_array_equal(mean, 2.5)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(1e-5), rtol=1e-6)


def test_layer_norm_takes_non_contiguous_inputs():
    x = rng.standard_normal((31, 23)).T  # (23, 31), Fortran order
    weight, bias = affine_params(31, "both", np.float64)
    dy = rng.standard_normal((46, 31))[::2]
    got = cpu.layer_norm_forward(x, weight, bias, 1e-5)
    assert_all_close(got, numpy_ref.layer_norm_forward(x, weight, bias, 1e-5), np.float64)
    _, mean, rstd = got
    assert_all_close(cpu.layer_norm_backward(dy, x, weight, mean, rstd),
                     numpy_ref.layer_norm_backward(dy, x, weight, mean, rstd), np.float64)


def test_layer_norm_weight_gradients_are_identical_with_1_and_2_threads(threads):
    x, dy = rng.standard_normal((2, 1000, 77)).astype(np.float32)
    weight, _ = affine_params(77, "weight", np.float32)
    _, mean, rstd = cpu.layer_norm_forward(x, weight, None, 1e-5)
    results = []
    for n in (1, 2):
        engine.set_num_threads(n)
        results.append(cpu.layer_norm_backward(dy, x, weight, mean, rstd))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), c=st.integers(1, 40), affine=st.sampled_from(["none", "weight", "both"]),
       scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_layer_norm_property(n, c, affine, scale):
    x = scale * rng.standard_normal((n, c))
    dy = rng.standard_normal((n, c))
    weight, bias = affine_params(c, affine, np.float64)
    got = cpu.layer_norm_forward(x, weight, bias, 1e-5)
    assert_all_close(got, numpy_ref.layer_norm_forward(x, weight, bias, 1e-5), np.float64)
    _, mean, rstd = got
    assert_all_close(cpu.layer_norm_backward(dy, x, weight, mean, rstd),
                     numpy_ref.layer_norm_backward(dy, x, weight, mean, rstd), np.float64)


# ---- cross-entropy -----------------------------------------------------------------------------
def targets(n, c, ignore_index=-100):
    """Class indices with every third row ignored."""
    t = rng.integers(0, c, n)
    t[::3] = ignore_index
    return t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROWS + [(4096, 103), (128, 10)])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_cross_entropy_matches_reference(shape, ignore_index, dtype):
    n, c = shape
    logits = (4 * rng.standard_normal(shape)).astype(dtype)
    target = targets(n, c, ignore_index)
    got = cpu.cross_entropy_forward(logits, target, ignore_index)
    want = numpy_ref.cross_entropy_forward(logits, target, ignore_index)
    assert_all_close(got, want, dtype, c)
    assert np.all(got[0][target == ignore_index] == 0)
    dlosses = rng.standard_normal(n).astype(dtype)
    dlogits = cpu.cross_entropy_backward(dlosses, logits, target, want[1], ignore_index)
    assert_all_close([dlogits], [numpy_ref.cross_entropy_backward(dlosses, logits, target, want[1], ignore_index)],
                     dtype, c)
    assert np.all(dlogits[target == ignore_index] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_logits_near_1e4_stays_finite(dtype):
    logits = (1e4 + rng.standard_normal((9, 11))).astype(dtype)
    logits[1] = -1e4
    target = targets(9, 11)
    losses, lse = cpu.cross_entropy_forward(logits, target)
    want = numpy_ref.cross_entropy_forward(logits, target)
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(lse))
    # float32 holds 1e4 to within 1e-3: the lse rounds there
    tol = FLOAT64 if dtype == np.float64 else dict(rtol=0, atol=4 * np.spacing(np.float32(1e4)))
    np.testing.assert_allclose(losses, want[0], **tol)
    np.testing.assert_allclose(lse, want[1], **tol)
    dlogits = cpu.cross_entropy_backward(np.ones(9, dtype), logits, target, lse)
    assert np.all(np.isfinite(dlogits))


def test_cross_entropy_takes_non_contiguous_logits_and_int32_targets():
    logits = rng.standard_normal((40, 13))[::2]
    target = targets(20, 13).astype(np.int32)
    losses, lse = cpu.cross_entropy_forward(logits, target)
    assert_all_close((losses, lse), numpy_ref.cross_entropy_forward(logits, target), np.float64)
    assert_all_close([cpu.cross_entropy_backward(np.ones(20), logits, target, lse)],
                     [numpy_ref.cross_entropy_backward(np.ones(20), logits, target, lse)], np.float64)


# ---- ReLU --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FLAT)
def test_relu_matches_reference(shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y = cpu.relu_forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, numpy_ref.relu_forward(x))
    dx = cpu.relu_backward(dy, y)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(dx, numpy_ref.relu_backward(dy, y))


def test_relu_keeps_nan_and_passes_no_gradient_at_or_below_zero():
    x = np.array([np.nan, -np.inf, -1.0, -0.0, 0.0, 1e-45, 2.0, np.inf], np.float32)
    y = cpu.relu_forward(x)
    np.testing.assert_array_equal(y, numpy_ref.relu_forward(x))
    dx = cpu.relu_backward(np.ones_like(x), y)
    np.testing.assert_array_equal(dx, [0, 0, 0, 0, 0, 1, 1, 1])


def test_relu_takes_strided_views_and_mixed_dtypes():
    x = rng.standard_normal((10, 12))[:, ::3]
    np.testing.assert_array_equal(cpu.relu_forward(x), numpy_ref.relu_forward(x))
    y = cpu.relu_forward(x.T)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = cpu.relu_backward(dy, y)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, numpy_ref.relu_backward(dy, y))


# ---- GELU --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FLAT)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_reference(shape, approximate, dtype):
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    got = cpu.gelu_forward(x, approximate), cpu.gelu_backward(dy, x, approximate)
    want = numpy_ref.gelu_forward(x, approximate), numpy_ref.gelu_backward(dy, x, approximate)
    tol = FLOAT64 if dtype == np.float64 else FLOAT32
    for g, w in zip(got, want):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **tol)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_at_large_magnitudes(approximate):
    x = np.array([-1e4, -40.0, -10.0, 0.0, 10.0, 40.0, 1e4])
    np.testing.assert_allclose(cpu.gelu_forward(x, approximate), numpy_ref.gelu_forward(x, approximate), **FLOAT64)
    np.testing.assert_allclose(cpu.gelu_backward(np.ones(7), x, approximate),
                               numpy_ref.gelu_backward(np.ones(7), x, approximate), **FLOAT64)


EPS32 = float(np.finfo(np.float32).eps)


def test_float32_erf_holds_a_few_ulp_over_the_whole_line():
    """float32 erf is a rational fit (it vectorizes; libm's erff does not): GELU on a dense grid
    stays within 4 ulp of |x| of the float64 reference; ±inf and NaN come out as the reference's."""
    x = np.concatenate([np.linspace(-12, 12, 240_001), [1e-30, -1e-30, 0.0]]).astype(np.float32)
    x64 = x.astype(np.float64)
    err = np.abs(cpu.gelu_forward(x).astype(np.float64) - numpy_ref.gelu_forward(x64))
    assert np.all(err <= 4 * EPS32 * np.abs(x64)), x[np.argmax(err / np.abs(x64))]
    err = np.abs(cpu.gelu_backward(np.ones_like(x), x) - numpy_ref.gelu_backward(np.ones_like(x64), x64))
    assert np.max(err) <= 4 * EPS32
    special = np.array([np.inf, -np.inf, np.nan], np.float32)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(cpu.gelu_forward(special), numpy_ref.gelu_forward(special))
        np.testing.assert_array_equal(cpu.gelu_backward(np.ones(3, np.float32), special),
                                      numpy_ref.gelu_backward(np.ones(3, np.float32), special))


def test_float32_exp_holds_a_few_ulp_down_to_the_subnormals():
    """float32 exp is a polynomial with 2ⁿ in the exponent bits: the softmax of rows [0, t] gives
    e^t/(1 + e^t), checked from t = 0 down past the smallest subnormal (where it must be 0)."""
    t = np.linspace(-110, 0, 110_001).astype(np.float32)
    x = np.stack([np.zeros_like(t), t], axis=1)
    got = cpu.softmax_forward(x)[:, 1].astype(np.float64)
    e = np.exp(t.astype(np.float64))
    want = e / (1 + e)
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    assert np.all(np.abs(got - want) <= 4 * EPS32 * want + tiny)
    assert np.all(got[t < -104] == 0)


def test_gelu_takes_a_strided_view():
    x = rng.standard_normal((10, 12))[:, ::3]
    np.testing.assert_allclose(cpu.gelu_forward(x), numpy_ref.gelu_forward(x), **FLOAT64)
    np.testing.assert_allclose(cpu.gelu_backward(x.T, x.T), numpy_ref.gelu_backward(x.T, x.T), **FLOAT64)


# ---- dropout -----------------------------------------------------------------------------------
def mask(shape, p, dtype=np.float32):
    return cpu.dropout_mask(shape, p, engine.random.generator(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_a_fraction_close_to_1_minus_p(p, dtype):
    n = 1_000_000
    m = mask((1000, 1000), p, dtype)
    assert m.dtype == dtype and m.shape == (1000, 1000)
    assert set(np.unique(m)) <= {0, dtype(1 / (1 - p))}
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs((m != 0).mean() - (1 - p)) < 5 * sigma
    # halves and neighbours are not correlated: each quarter keeps about 1 - p too
    for quarter in (m[:500, :500], m[500:, 500:], m[::2, ::2], m[1::2, ::2]):
        assert abs((quarter != 0).mean() - (1 - p)) < 10 * sigma


def test_dropout_is_reproducible_for_a_seed_and_draws_anew_each_call():
    engine.manual_seed(7)
    first, second = mask((37, 41), 0.5), mask((37, 41), 0.5)
    engine.manual_seed(7)
    np.testing.assert_array_equal(mask((37, 41), 0.5), first)
    assert not np.array_equal(first, second)


def test_dropout_mask_is_identical_with_1_and_2_threads(threads):
    masks = []
    for n in (1, 2):
        engine.set_num_threads(n)
        engine.manual_seed(3)
        masks.append(mask((513, 257), 0.3))
    np.testing.assert_array_equal(*masks)


@pytest.mark.parametrize("p, value", [(0.0, 1.0), (1.0, 0.0)])
def test_dropout_with_p_0_or_1_draws_nothing(p, value):
    engine.manual_seed(1)
    np.testing.assert_array_equal(mask((3, 4), p), value)
    after = engine.random.generator().random()
    engine.manual_seed(1)
    assert engine.random.generator().random() == after


def test_dropout_op_on_the_native_backend(backend):
    engine.manual_seed(0)
    x = engine.ones(64, 64)
    y = engine.nn.functional.dropout(x, p=0.25)
    assert set(np.unique(y.numpy())) <= {0.0, np.float32(1 / 0.75)}


# ---- float16 and other dtypes go to the reference ----------------------------------------------
def test_float16_falls_back_to_the_reference():
    x = rng.uniform(-2, 2, (5, 7)).astype(np.float16)
    w = np.ones(7, np.float16)
    t = targets(5, 7)
    y, mean, rstd = cpu.layer_norm_forward(x, w, w, 1e-5)
    assert y.dtype == np.float16
    assert_all_close((y, mean, rstd), numpy_ref.layer_norm_forward(x, w, w, 1e-5), np.float16)
    assert_all_close(cpu.layer_norm_backward(x, x, w, mean, rstd),
                     numpy_ref.layer_norm_backward(x, x, w, mean, rstd), np.float16)
    losses, lse = cpu.cross_entropy_forward(x, t)
    assert_all_close((losses, lse), numpy_ref.cross_entropy_forward(x, t), np.float16)
    assert_all_close([cpu.cross_entropy_backward(losses, x, t, lse)],
                     [numpy_ref.cross_entropy_backward(losses, x, t, lse)], np.float16)
    assert_all_close([cpu.gelu_forward(x), cpu.gelu_backward(x, x, "tanh")],
                     [numpy_ref.gelu_forward(x), numpy_ref.gelu_backward(x, x, "tanh")], np.float16)
    assert cpu.dropout_mask((3, 4), 0.5, engine.random.generator(), np.float16).dtype == np.float16


# ---- optimizer updates -------------------------------------------------------------------------
SGD_OPTIONS = [
    dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.3, nesterov=False, weight_decay=1e-2),
    dict(momentum=0.8, dampening=0.0, nesterov=True, weight_decay=1e-2),
]
ADAM_OPTIONS = [
    dict(weight_decay=0.0, decoupled=False),
    dict(weight_decay=0.1, decoupled=False),
    dict(weight_decay=0.1, decoupled=True),
]
SIZES = [0, 1, 1009, 100003]


def update_tolerance(dtype):
    return FLOAT64 if dtype == np.float64 else FLOAT32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_update_matches_reference_over_steps(n, options, dtype):
    param = rng.standard_normal(n).astype(dtype)
    buf = np.zeros(n, dtype) if options["momentum"] else None
    ref_param, ref_buf = param.copy(), None if buf is None else buf.copy()
    for step in range(6):
        grad = rng.standard_normal(n).astype(dtype)
        cpu.sgd_update(param, grad, buf, 0.05, first_step=step == 0, **options)
        updates.sgd_update(ref_param, grad, ref_buf, 0.05, first_step=step == 0, **options)
    np.testing.assert_allclose(param, ref_param, **update_tolerance(dtype))
    if buf is not None:
        np.testing.assert_allclose(buf, ref_buf, **update_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_adam_update_matches_reference_over_steps(n, options, dtype):
    param = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    ref = [param.copy(), m.copy(), v.copy()]
    for step in range(1, 11):
        grad = rng.standard_normal(n).astype(dtype)
        cpu.adam_update(param, grad, m, v, step, 1e-2, 0.9, 0.999, 1e-8, **options)
        updates.adam_update(*ref[:1], grad, *ref[1:], step, 1e-2, 0.9, 0.999, 1e-8, **options)
    for got, want in zip((param, m, v), ref):
        np.testing.assert_allclose(got, want, **update_tolerance(dtype))


def test_optimizer_updates_work_on_any_shape_in_place():
    param = rng.standard_normal((3, 5, 7))
    ref = param.copy()
    grad = rng.standard_normal((3, 5, 7))
    m, v, rm, rv = (np.zeros((3, 5, 7)) for _ in range(4))
    cpu.adam_update(param, grad, m, v, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False)
    updates.adam_update(ref, grad, rm, rv, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False)
    np.testing.assert_allclose(param, ref, **FLOAT64)


OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=1e-3),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01),
}


def run_optimizer(name, data, steps=8):
    p = nn.Parameter(data.copy(order="K"))  # keeps a Fortran-order layout
    opt = OPTIMIZERS[name]([p])
    grads = np.random.default_rng(5).standard_normal((steps,) + data.shape).astype(data.dtype)
    for g in grads:
        p.grad = engine.tensor(g)
        opt.step()
    return p.numpy()


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizers_on_the_native_backend_match_the_numpy_backend(name, dtype, monkeypatch):
    data = rng.standard_normal((17, 13)).astype(dtype)
    engine.backend.use("numpy")
    want = run_optimizer(name, data)
    engine.backend.use("native")
    calls = []
    for fn in ("sgd_update", "adam_update"):
        fused = getattr(cpu, fn)
        monkeypatch.setattr(cpu, fn, lambda *a, _fn=fused, **k: calls.append(1) or _fn(*a, **k))
    got = run_optimizer(name, data)
    assert len(calls) == 8  # every step took the fused update
    np.testing.assert_allclose(got, want, **update_tolerance(dtype))


@pytest.mark.parametrize("data", [np.ones((4, 6)).T, np.ones(5, np.float16)], ids=["fortran-order", "float16"])
def test_optimizers_fall_back_to_the_reference_updates(data, monkeypatch):
    engine.backend.use("native")
    monkeypatch.setattr(cpu, "adam_update", lambda *a: pytest.fail("fused update on unsupported arrays"))
    monkeypatch.setattr(cpu, "sgd_update", lambda *a: pytest.fail("fused update on unsupported arrays"))
    for name in OPTIMIZERS:
        assert np.all(np.isfinite(run_optimizer(name, data, steps=2)))


# ---- errors ------------------------------------------------------------------------------------
def f64(*shape):
    return np.zeros(shape)


def i64(*shape):
    return np.zeros(shape, np.int64)


def read_only(a):
    a.setflags(write=False)
    return a


ERRORS = {
    "ln-y-shape": (lambda: _fused.layer_norm_forward(f64(2, 3), f64(3), f64(3), f64(3, 3), None, None, 1e-5),
                   ValueError, r"layer_norm_forward: y has shape \(2, 3\), expected \(3, 3\)"),
    "ln-rstd-shape": (lambda: _fused.layer_norm_forward(f64(3, 3), f64(3), f64(4), f64(3, 3), None, None, 1e-5),
                      ValueError, r"layer_norm_forward: rstd has shape \(4,\), expected \(3,\)"),
    "ln-weight-shape": (lambda: _fused.layer_norm_forward(f64(3, 3), f64(3), f64(3), f64(3, 3), f64(2), None, 1e-5),
                        ValueError, r"layer_norm_forward: weight has shape \(2,\), expected \(3,\)"),
    "ln-bias-shape": (lambda: _fused.layer_norm_forward(f64(3, 3), f64(3), f64(3), f64(3, 3), f64(3), f64(4), 1e-5),
                      ValueError, r"layer_norm_forward: bias has shape \(4,\), expected \(3,\)"),
    "ln-dy-shape": (lambda: _fused.layer_norm_backward(f64(2, 3), None, None, f64(3, 2), f64(2, 3), None, f64(2),
                                                       f64(2)),
                    ValueError, r"layer_norm_backward: dy has shape \(3, 2\), expected \(2, 3\)"),
    "ln-dweight-without-weight": (lambda: _fused.layer_norm_backward(f64(2, 3), f64(3), f64(3), f64(2, 3), f64(2, 3),
                                                                     None, f64(2), f64(2)),
                                  ValueError, "layer_norm_backward: dweight and dbias must be given exactly when"),
    "ln-dbias-shape": (lambda: _fused.layer_norm_backward(f64(2, 3), f64(3), f64(2), f64(2, 3), f64(2, 3), f64(3),
                                                          f64(2), f64(2)),
                       ValueError, r"layer_norm_backward: dbias has shape \(2,\), expected \(3,\)"),
    "ce-lse-shape": (lambda: _fused.cross_entropy_forward(f64(2), f64(3), f64(2, 4), i64(2), -100),
                     ValueError, r"cross_entropy_forward: lse has shape \(3,\), expected \(2,\)"),
    "ce-target-shape": (lambda: _fused.cross_entropy_forward(f64(2), f64(2), f64(2, 4), i64(3), -100),
                        ValueError, r"cross_entropy_forward: target has shape \(3,\), expected \(2,\)"),
    "ce-no-classes": (lambda: _fused.cross_entropy_forward(f64(2), f64(2), f64(2, 0), i64(2), -100),
                      ValueError, r"cross_entropy_forward: logits has shape \(2, 0\)"),
    "ce-target-range": (lambda: _fused.cross_entropy_forward(f64(2), f64(2), f64(2, 4), np.array([1, 4]), -100),
                        IndexError, r"cross_entropy_forward: target\[1\] = 4 is out of range for 4 classes"),
    "ce-negative-target": (lambda: _fused.cross_entropy_backward(f64(2, 4), f64(2), f64(2, 4), np.array([-1, 0]),
                                                                 f64(2), -100),
                           IndexError, r"cross_entropy_backward: target\[0\] = -1 is out of range"),
    "ce-dlogits-shape": (lambda: _fused.cross_entropy_backward(f64(2, 5), f64(2), f64(2, 4), i64(2), f64(2), -100),
                         ValueError, r"cross_entropy_backward: dlogits has shape \(2, 5\), expected \(2, 4\)"),
    "ce-target-dtype": (lambda: _fused.cross_entropy_forward(f64(2), f64(2), f64(2, 4), np.zeros(2, np.int32), -100),
                        ValueError, "Buffer dtype mismatch, expected 'const int64_t'"),
    "gelu-y-shape": (lambda: _fused.gelu_forward(f64(4), f64(5)),
                     ValueError, r"gelu_forward: y has shape \(4,\), expected \(5,\)"),
    "gelu-dy-shape": (lambda: _fused.gelu_backward(f64(5), f64(4), f64(5)),
                      ValueError, r"gelu_backward: dy has shape \(4,\), expected \(5,\)"),
    "gelu-approximate": (lambda: cpu.gelu_forward(f64(3), "fast"), ValueError, "gelu: unknown approximate 'fast'"),
    "dropout-p": (lambda: _fused.dropout_mask(f64(3), 1, 1.5), ValueError, r"dropout_mask: p must be in \[0, 1\]"),
    "sgd-grad-shape": (lambda: _fused.sgd_update(f64(3), f64(2), None, 0.1, 0.0, 0.0, False, 0.0, True),
                       ValueError, r"sgd_update: grad has shape \(2,\), expected \(3,\)"),
    "sgd-no-buffer": (lambda: _fused.sgd_update(f64(3), f64(3), None, 0.1, 0.9, 0.0, False, 0.0, True),
                      ValueError, "sgd_update: momentum needs a momentum buffer"),
    "adam-v-shape": (lambda: _fused.adam_update(f64(3), f64(3), f64(3), f64(1), 1, 0.1, 0.9, 0.99, 1e-8, 0.0, False),
                     ValueError, r"adam_update: v has shape \(1,\), expected \(3,\)"),
    "mixed-dtypes": (lambda: _fused.gelu_forward(np.zeros(3, np.float32), f64(3)),
                     ValueError, "Buffer dtype mismatch, expected 'const float' but got 'double'"),
    "integer-arrays": (lambda: _fused.gelu_forward(i64(3), i64(3)), TypeError, "No matching signature found"),
    "float16-arrays": (lambda: _fused.gelu_forward(np.zeros(3, np.float16), np.zeros(3, np.float16)),
                       TypeError, "No matching signature found"),
    "wrong-ndim": (lambda: _fused.gelu_forward(f64(3, 2), f64(3, 2)), TypeError, "No matching signature found"),
    "non-contiguous": (lambda: _fused.gelu_forward(f64(3), f64(6)[::2]), ValueError, "ndarray is not C-contiguous"),
    "read-only-param": (lambda: _fused.adam_update(read_only(f64(3)), f64(3), f64(3), f64(3), 1, 0.1, 0.9, 0.99,
                                                   1e-8, 0.0, False), ValueError, "read-only"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_wrong_arguments_raise_clear_errors(case):
    fn, error, message = ERRORS[case]
    with pytest.raises(error, match=message):
        fn()
