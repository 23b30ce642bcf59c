"""Forward values of every op against NumPy closed forms, in float32 and float64.

References are computed in float64 from the same input values; float32 results are held to
tests/tolerances.py's float32 bounds (looser for long reductions). Kernel-backed ops take the
`backend` fixture, so they run under both CPU kernel sets."""
import math

import numpy as np
import pytest

import engine
import engine.nn.functional as F
from tolerances import FLOAT32, FLOAT64, float32_reduction

rng = np.random.default_rng(2)
DTYPES = [np.float32, np.float64]


def tol(dtype, k=1):
    """assert_allclose kwargs for a result of `dtype` that sums k products."""
    if np.dtype(dtype) == np.float64:
        return FLOAT64
    return float32_reduction(k) if k > 1 else FLOAT32


def make(*shape, dtype=np.float64, low=None, high=None):
    """A tensor of random values of `dtype` and the same values as a float64 array."""
    a = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
    t = engine.tensor(a.astype(dtype), dtype=dtype)
    return t, t.numpy().astype(np.float64)


def check(out, expected, dtype, k=1):
    assert out.dtype == np.dtype(dtype), f"dtype {out.dtype}, expected {np.dtype(dtype)}"
    assert tuple(out.shape) == np.shape(expected), f"shape {tuple(out.shape)}, expected {np.shape(expected)}"
    np.testing.assert_allclose(out.numpy().astype(np.float64), expected, **tol(dtype, k))


def _erf(x):
    return np.vectorize(math.erf)(x)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ---- element-wise --------------------------------------------------------------------------------
UNARY = {
    # name: (engine function, NumPy closed form, input range or None for standard normal)
    "neg": (lambda t: -t, np.negative, None),
    "abs": (engine.abs, np.abs, None),
    "exp": (engine.exp, np.exp, None),
    "log": (engine.log, np.log, (0.1, 5.0)),
    "sqrt": (engine.sqrt, np.sqrt, (0.0, 5.0)),
    "rsqrt": (engine.rsqrt, lambda x: 1 / np.sqrt(x), (0.1, 5.0)),
    "square": (engine.square, np.square, None),
    "sin": (engine.sin, np.sin, None),
    "cos": (engine.cos, np.cos, None),
    "tanh": (engine.tanh, np.tanh, None),
    "sigmoid": (engine.sigmoid, _sigmoid, (-30.0, 30.0)),
    "relu": (engine.relu, lambda x: np.maximum(x, 0), None),
    "gelu": (F.gelu, lambda x: x * 0.5 * (1 + _erf(x / math.sqrt(2))), (-6.0, 6.0)),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
                  (-6.0, 6.0)),
    "silu": (F.silu, lambda x: x * _sigmoid(x), (-20.0, 20.0)),
    "clamp": (lambda t: t.clamp(-0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), None),
    "clamp_min": (lambda t: engine.clamp(t, min=0.1), lambda x: np.maximum(x, 0.1), None),
    "sign": (engine.sign, np.sign, None),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_unary_ops_match_numpy(name, dtype, backend):
    fn, ref, domain = UNARY[name]
    t, x = make(4, 7, dtype=dtype) if domain is None else make(4, 7, dtype=dtype, low=domain[0], high=domain[1])
    check(fn(t), ref(x), dtype)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "gelu", "silu"])
def test_real_valued_unary_ops_on_integers_compute_in_the_default_float(name, backend):
    fn, ref, _ = UNARY[name]
    out = fn(engine.tensor([1, 2, 3]))
    check(out, ref(np.array([1.0, 2.0, 3.0])), np.float32)


@pytest.mark.parametrize("name", ["neg", "abs", "relu", "square"])
def test_integer_valued_unary_ops_keep_integers(name):
    fn, ref, _ = UNARY[name]
    out = fn(engine.tensor([-2, 0, 3]))
    assert out.dtype == engine.int64
    np.testing.assert_array_equal(out.numpy(), ref(np.array([-2, 0, 3])))


def test_sigmoid_saturates_without_overflow():
    out = engine.sigmoid(engine.tensor([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(out.numpy(), [0.0, 0.5, 1.0])


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "pow": (lambda a, b: a ** b, np.power),
    "maximum": (engine.maximum, np.maximum),
    "minimum": (engine.minimum, np.minimum),
    "add_alpha": (lambda a, b: engine.add(a, b, alpha=2.5), lambda x, y: x + 2.5 * y),
    "sub_alpha": (lambda a, b: engine.sub(a, b, alpha=0.5), lambda x, y: x - 0.5 * y),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3))])
@pytest.mark.parametrize("name", BINARY)
def test_binary_ops_broadcast_like_numpy(name, shapes, dtype):
    fn, ref = BINARY[name]
    positive = name in ("pow", "div")
    (a, x), (b, y) = (make(*s, dtype=dtype, low=0.5 if positive else None, high=2.0) for s in shapes)
    check(fn(a, b), ref(x, y), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow"])
def test_binary_ops_with_python_scalars_keep_the_tensors_dtype(name, dtype):
    fn, ref = BINARY[name]
    t, x = make(5, dtype=dtype, low=0.5, high=2.0)
    check(fn(t, 1.5), ref(x, 1.5), dtype)
    check(fn(2.0, t), ref(2.0, x), dtype)
    check(fn(t, 3), ref(x, 3), dtype)


def test_integer_and_float_operands_promote_as_in_pytorch():
    i = engine.tensor([1, 2, 3])
    f = engine.tensor([0.5, 0.5, 0.5])
    assert (i + f).dtype == engine.float32 and (i + f).tolist() == [1.5, 2.5, 3.5]
    assert (i * 1.5).dtype == engine.float32
    assert (i / 2).dtype == engine.float32 and (i / 2).tolist() == [0.5, 1.0, 1.5]
    assert (i / i).dtype == engine.float32
    assert (i + 1).dtype == engine.int64 and (i * i).tolist() == [1, 4, 9]
    assert (f + f.double()).dtype == engine.float64
    assert engine.cat([i.reshape(1, 3), f.reshape(1, 3)]).dtype == engine.float32
    assert engine.where(engine.tensor([True, False, True]), i, f).tolist() == [1.0, 0.5, 3.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_where_picks_elementwise_with_broadcasting(dtype):
    (a, x), (b, y) = make(3, 4, dtype=dtype), make(4, dtype=dtype)
    cond = rng.random((3, 4)) > 0.5
    check(engine.where(engine.tensor(cond), a, b), np.where(cond, x, y), dtype)
    check(engine.where(engine.tensor(cond), a, 0.0), np.where(cond, x, 0.0), dtype)


@pytest.mark.parametrize("name,ref", [
    ("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
    ("gt", np.greater), ("ge", np.greater_equal), ("logical_and", np.logical_and),
    ("logical_or", np.logical_or)])
def test_comparisons_and_logic_match_numpy(name, ref):
    x = rng.integers(0, 3, (4, 5)).astype(np.float32)
    y = rng.integers(0, 3, (5,)).astype(np.float32)
    out = getattr(engine, name)(engine.tensor(x), engine.tensor(y))
    assert out.dtype == engine.bool
    np.testing.assert_array_equal(out.numpy(), ref(x, y))


def test_isnan_isfinite_and_logical_not():
    x = engine.tensor([1.0, float("nan"), float("inf"), -float("inf")])
    assert engine.isnan(x).tolist() == [False, True, False, False]
    assert engine.isfinite(x).tolist() == [True, False, False, False]
    assert (~engine.isnan(x)).tolist() == [True, False, True, True]


# ---- reductions --------------------------------------------------------------------------------------
REDUCTIONS = {
    "sum": (lambda t, d, k: t.sum(dim=d, keepdim=k), lambda x, d, k: x.sum(axis=d, keepdims=k)),
    "mean": (lambda t, d, k: t.mean(dim=d, keepdim=k), lambda x, d, k: x.mean(axis=d, keepdims=k)),
    "var": (lambda t, d, k: t.var(dim=d, keepdim=k), lambda x, d, k: x.var(axis=d, keepdims=k, ddof=1)),
    "var_biased": (lambda t, d, k: t.var(dim=d, keepdim=k, unbiased=False),
                   lambda x, d, k: x.var(axis=d, keepdims=k)),
    "std": (lambda t, d, k: t.std(dim=d, keepdim=k), lambda x, d, k: x.std(axis=d, keepdims=k, ddof=1)),
    "amax": (lambda t, d, k: t.amax(dim=d, keepdim=k), lambda x, d, k: x.max(axis=d, keepdims=k)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2), (-1, 0, 1)])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_match_numpy(name, dim, keepdim, dtype):
    fn, ref = REDUCTIONS[name]
    t, x = make(3, 4, 5, dtype=dtype)
    axis = tuple(d % 3 for d in dim) if isinstance(dim, tuple) else dim
    check(fn(t, dim, keepdim), ref(x, axis, keepdim), dtype, k=60)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_and_min_along_a_dim_return_values_and_indices(dim, keepdim, dtype):
    t, x = make(3, 4, 5, dtype=dtype)
    values, indices = t.max(dim, keepdim=keepdim)
    check(values, x.max(axis=dim, keepdims=keepdim), dtype)
    np.testing.assert_array_equal(indices.numpy(), np.argmax(x, axis=dim, keepdims=keepdim))
    assert indices.dtype == engine.int64
    result = t.min(dim=dim, keepdim=keepdim)
    check(result.values, x.min(axis=dim, keepdims=keepdim), dtype)
    np.testing.assert_array_equal(result.indices.numpy(), np.argmin(x, axis=dim, keepdims=keepdim))


def test_max_min_argmax_argmin_over_all_elements():
    t, x = make(4, 6)
    assert t.max().item() == x.max() and t.min().item() == x.min()
    assert t.argmax().item() == x.argmax() and t.argmin().item() == x.argmin()
    np.testing.assert_array_equal(t.argmax(dim=1, keepdim=True).numpy(), x.argmax(axis=1)[:, None])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1, (0, 1)])
def test_logsumexp_matches_the_closed_form(dim, dtype):
    t, x = make(4, 6, dtype=dtype)
    check(engine.logsumexp(t, dim=dim), np.log(np.exp(x).sum(axis=dim)), dtype, k=24)
    check(engine.logsumexp(t, dim=dim, keepdim=True), np.log(np.exp(x).sum(axis=dim, keepdims=True)), dtype, k=24)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")
def test_logsumexp_is_stable_for_large_and_infinite_values():
    x = engine.tensor([[1000.0, 1000.0], [-1000.0, -1000.0], [-np.inf, -np.inf], [np.inf, 1.0]])
    out = engine.logsumexp(x, dim=1).numpy()
    np.testing.assert_allclose(out[:2], [1000 + math.log(2), -1000 + math.log(2)], rtol=1e-6)
    assert out[2] == -np.inf and out[3] == np.inf


def test_reductions_of_integer_tensors_stay_integer():
    t = engine.tensor([[1, 2], [3, 4]])
    assert t.sum().dtype == engine.int64 and t.sum().item() == 10
    assert t.sum(dim=0).tolist() == [4, 6]
    assert engine.tensor([True, True, False]).sum().item() == 2


def test_sum_with_a_dtype_accumulates_in_that_dtype():
    t = engine.tensor([1.0, 2.0])
    assert t.sum(dtype=engine.float64).dtype == engine.float64


# ---- shape ops -----------------------------------------------------------------------------------
SHAPE = {
    "reshape": (lambda t: t.reshape(6, 4), lambda x: x.reshape(6, 4)),
    "reshape_infer": (lambda t: t.reshape(-1, 2), lambda x: x.reshape(-1, 2)),
    "view": (lambda t: t.view(4, -1), lambda x: x.reshape(4, -1)),
    "flatten": (lambda t: t.flatten(), lambda x: x.reshape(-1)),
    "flatten_1": (lambda t: t.flatten(1), lambda x: x.reshape(2, -1)),
    "transpose": (lambda t: t.transpose(0, 2), lambda x: x.transpose(2, 1, 0)),
    "permute": (lambda t: t.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1)),
    "T": (lambda t: t.T, lambda x: x.T),
    "mT": (lambda t: t.mT, lambda x: x.swapaxes(-1, -2)),
    "movedim": (lambda t: t.movedim(0, -1), lambda x: np.moveaxis(x, 0, -1)),
    "unsqueeze": (lambda t: t.unsqueeze(1), lambda x: x[:, None]),
    "unsqueeze_last": (lambda t: t.unsqueeze(-1), lambda x: x[..., None]),
    "squeeze": (lambda t: t[:, :1].squeeze(), lambda x: x[:, 0]),
    "squeeze_dim": (lambda t: t[:1, :1].squeeze(1), lambda x: x[:1, 0]),
    "expand": (lambda t: t[:, :1].expand(3, 2, 5, 4), lambda x: np.broadcast_to(x[:, :1], (3, 2, 5, 4))),
    "expand_keep": (lambda t: t[:, :1].expand(-1, 5, -1), lambda x: np.broadcast_to(x[:, :1], (2, 5, 4))),
    "repeat": (lambda t: t.repeat(2, 1, 3), lambda x: np.tile(x, (2, 1, 3))),
    "contiguous": (lambda t: t.transpose(1, 2).contiguous(), lambda x: x.transpose(0, 2, 1)),
    "clone": (lambda t: t.clone(), lambda x: x),
    "t": (lambda t: t[0].t(), lambda x: x[0].T),
}


@pytest.mark.parametrize("name", SHAPE)
def test_shape_ops_match_numpy(name):
    fn, ref = SHAPE[name]
    t, x = make(2, 3, 4)
    out = fn(t)
    check(out, ref(x), np.float64)


def test_contiguous_and_clone_give_c_contiguous_copies():
    t = engine.tensor(rng.standard_normal((3, 4)))
    tt = t.T
    assert not tt.is_contiguous() and tt.contiguous().is_contiguous()
    assert t.contiguous() is t
    c = t.clone()
    c.data[0, 0] = 100.0
    assert t[0, 0].item() != 100.0


def test_cat_stack_split_chunk_unbind():
    (a, x), (b, y) = make(2, 3), make(2, 5)
    check(engine.cat([a, b], dim=1), np.concatenate([x, y], axis=1), np.float64)
    check(engine.cat([a, a], dim=-2), np.concatenate([x, x], axis=0), np.float64)
    check(engine.stack([a, a * 2], dim=1), np.stack([x, x * 2], axis=1), np.float64)
    check(engine.stack([a, a * 2], dim=-1), np.stack([x, x * 2], axis=-1), np.float64)
    parts = b.split(2, dim=1)
    assert [tuple(p.shape) for p in parts] == [(2, 2), (2, 2), (2, 1)]
    check(parts[2], y[:, 4:], np.float64)
    parts = b.split([1, 4], dim=1)
    check(parts[1], y[:, 1:], np.float64)
    chunks = b.chunk(2, dim=1)
    assert [tuple(c.shape) for c in chunks] == [(2, 3), (2, 2)]
    rows = b.unbind(0)
    assert len(rows) == 2
    check(rows[1], y[1], np.float64)


# ---- indexing ------------------------------------------------------------------------------------
INDEX = {
    "int": lambda: 1,
    "negative_int": lambda: -1,
    "slice": lambda: slice(1, None),
    "tuple_of_slices": lambda: (slice(None), slice(None, None, 2), 1),
    "negative_step": lambda: (slice(None), slice(None, None, -1)),
    "none_and_ellipsis": lambda: (None, Ellipsis, 2),
    "integer_tensor": lambda: engine.tensor([2, 0, 2]),
    "integer_list": lambda: [1, 0],
    "two_dim_integer_tensor": lambda: engine.tensor([[0, 1], [1, 0]]),
    "integer_tensors_paired": lambda: (engine.tensor([0, 1, 1]), engine.tensor([2, 0, 1])),
    "slice_then_integer_tensor": lambda: (slice(None), engine.tensor([3, 0])),
    "zero_dim_integer_tensor": lambda: engine.tensor(1),
}


def _numpy_key(key):
    if isinstance(key, tuple):
        return tuple(_numpy_key(k) for k in key)
    return key.numpy() if isinstance(key, engine.Tensor) else key


@pytest.mark.parametrize("name", INDEX)
def test_indexing_matches_numpy(name):
    t, x = make(3, 4, 5)
    key = INDEX[name]()
    check(t[key], x[_numpy_key(key)], np.float64)


def test_bool_mask_indexing_matches_numpy():
    t, x = make(3, 4)
    check(t[t > 0], x[x > 0], np.float64)
    rows = np.array([True, False, True])
    check(t[engine.tensor(rows)], x[rows], np.float64)
    check(t[:, engine.tensor([True, False, False, True])], x[:, [0, 3]], np.float64)


# ---- matrix products -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [
    ((3, 4), (4, 5)),
    ((7, 13), (13, 1)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),      # batch dims broadcast
    ((1, 3, 4), (2, 4, 5)),
    ((4,), (4, 5)),                  # 1-D operands: promoted, then the added dim removed
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
])
def test_matmul_matches_numpy(shapes, dtype, backend):
    (a, x), (b, y) = make(*shapes[0], dtype=dtype), make(*shapes[1], dtype=dtype)
    check(a @ b, np.matmul(x, y), dtype, k=shapes[0][-1])
    check(engine.matmul(a, b), np.matmul(x, y), dtype, k=shapes[0][-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bmm_matches_numpy(dtype, backend):
    (a, x), (b, y) = make(3, 2, 5, dtype=dtype), make(3, 5, 4, dtype=dtype)
    check(engine.bmm(a, b), x @ y, dtype, k=5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_is_x_times_weight_transposed_plus_bias(x_shape, bias, dtype, backend):
    (t, x), (w, wv) = make(*x_shape, dtype=dtype), make(6, 4, dtype=dtype)
    b, bv = make(6, dtype=dtype) if bias else (None, 0.0)
    check(F.linear(t, w, b), x @ wv.T + bv, dtype, k=4)


# ---- softmax family and losses ---------------------------------------------------------------------
def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_extreme_logits(dtype, backend):
    out = F.softmax(engine.tensor([1000.0, 1000.0, -1000.0], dtype=dtype), dim=-1)
    np.testing.assert_array_equal(out.numpy(), [0.5, 0.5, 0.0])
    log_out = F.log_softmax(engine.tensor([1000.0, 1000.0, -1000.0], dtype=dtype), dim=-1)
    check(log_out, [-math.log(2), -math.log(2), -2000 - math.log(2)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_and_log_softmax_match_numpy(dim, dtype, backend):
    t, x = make(3, 4, 5, dtype=dtype)
    out = F.softmax(t, dim=dim)
    check(out, _softmax(x, dim), dtype, k=5)
    check(F.log_softmax(t, dim=dim), _log_softmax(x, dim), dtype, k=5)
    np.testing.assert_allclose(out.numpy().sum(axis=dim), 1.0, **tol(dtype, 5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_unchanged_by_shifting_the_logits(dtype, backend):
    t, _ = make(4, 6, dtype=dtype)
    base = F.softmax(t, dim=1).numpy().astype(np.float64)
    for shift in (-50.0, 3.0, 500.0):
        check(F.softmax(t + shift, dim=1), base, dtype, k=6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_is_minus_log_softmax_at_the_target(reduction, dtype, backend):
    t, x = make(6, 5, dtype=dtype)
    target = np.array([0, 4, 2, 1, 1, 3])
    picked = -_log_softmax(x, 1)[np.arange(6), target]
    expected = {"mean": picked.mean(), "sum": picked.sum(), "none": picked}[reduction]
    check(F.cross_entropy(t, engine.tensor(target), reduction=reduction), expected, dtype, k=5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_skips_ignore_index(dtype, backend):
    t, x = make(5, 3, dtype=dtype)
    target = np.array([2, -100, 0, 1, -100])
    keep = target != -100
    picked = -_log_softmax(x, 1)[np.arange(5)[keep], target[keep]]
    check(F.cross_entropy(t, engine.tensor(target)), picked.mean(), dtype, k=3)
    check(F.cross_entropy(t, engine.tensor(target), reduction="sum"), picked.sum(), dtype, k=3)
    none = F.cross_entropy(t, engine.tensor(target), reduction="none").numpy()
    assert none[1] == 0 and none[4] == 0
    custom = np.array([2, 7, 0, 1, 7])
    check(F.cross_entropy(t, engine.tensor(custom), ignore_index=7), picked.mean(), dtype, k=3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_over_spatial_dims(dtype, backend):
    t, x = make(2, 3, 4, dtype=dtype)                 # (N, C, d)
    target = rng.integers(0, 3, (2, 4))
    logp = _log_softmax(x, 1)
    picked = -np.take_along_axis(logp, target[:, None], axis=1)[:, 0]
    check(F.cross_entropy(t, engine.tensor(target), reduction="none"), picked, dtype, k=3)
    check(F.cross_entropy(t, engine.tensor(target)), picked.mean(), dtype, k=3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_logits_near_1e4_stays_finite(dtype, backend):
    logits = engine.tensor([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    target = engine.tensor([2, 0, 1])
    out = F.cross_entropy(logits, target, reduction="none")
    assert np.isfinite(out.numpy()).all()
    # The log-sum-exp is of magnitude 1e4, so a few of its ulps is the error to allow.
    np.testing.assert_allclose(out.numpy(), [2e4, math.log(2), math.log(3)], rtol=1e-6,
                               atol=4 * np.finfo(dtype).eps * 1e4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_loss_picks_minus_the_target_entry(dtype):
    t, x = make(4, 3, dtype=dtype)
    target = np.array([0, 2, -100, 1])
    keep = target != -100
    expected = -x[np.arange(4)[keep], target[keep]].mean()
    check(F.nll_loss(t, engine.tensor(target)), expected, dtype, k=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction, dtype):
    (a, x), (b, y) = make(3, 4, dtype=dtype), make(3, 4, dtype=dtype)
    sq = (x - y) ** 2
    check(F.mse_loss(a, b, reduction=reduction), {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction],
          dtype, k=12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_matches_the_closed_form(dtype):
    t, x = make(3, 4, dtype=dtype)
    y = rng.random((3, 4))
    target = engine.tensor(y.astype(dtype), dtype=dtype)
    y = target.numpy().astype(np.float64)
    expected = -(y * np.log(_sigmoid(x)) + (1 - y) * np.log(1 - _sigmoid(x)))
    check(F.binary_cross_entropy_with_logits(t, target, reduction="none"), expected, dtype)
    check(F.binary_cross_entropy_with_logits(t, target), expected.mean(), dtype, k=12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_is_finite_at_plus_minus_100(dtype):
    x = engine.tensor([100.0, -100.0, 100.0, -100.0], dtype=dtype)
    y = engine.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    out = F.binary_cross_entropy_with_logits(x, y, reduction="none").numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [0.0, 0.0, 100.0, 100.0], atol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", ["none", "weight", "weight_and_bias"])
def test_layer_norm_matches_the_closed_form(affine, dtype, backend):
    t, x = make(3, 2, 8, dtype=dtype)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)   # biased, eps inside the root
    expected = (x - mean) / np.sqrt(var + 1e-5)
    w = b = None
    if affine != "none":
        w, wv = make(8, dtype=dtype)
        expected = expected * wv
    if affine == "weight_and_bias":
        b, bv = make(8, dtype=dtype)
        expected = expected + bv
    check(F.layer_norm(t, (8,), w, b), expected, dtype, k=8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_over_two_trailing_dims(dtype, backend):
    t, x = make(3, 2, 4, dtype=dtype)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    check(F.layer_norm(t, (2, 4)), (x - mean) / np.sqrt(var + 1e-5), dtype, k=8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_of_a_constant_row_returns_the_bias(dtype, backend):
    x = engine.full((2, 5), 3.25, dtype=dtype)
    w, b = engine.tensor(rng.standard_normal(5), dtype=dtype), engine.tensor(rng.standard_normal(5), dtype=dtype)
    out = F.layer_norm(x, (5,), w, b)
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(b.numpy(), (2, 5)), **tol(dtype))


def test_embedding_picks_rows(backend):
    w, wv = make(6, 3)
    idx = np.array([[1, 5, 1], [0, 2, 4]])
    check(F.embedding(engine.tensor(idx), w), wv[idx], np.float64)


def test_dropout_zeroes_or_rescales(backend):
    out = F.dropout(engine.ones(20000), p=0.25).numpy()
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.02
    x = engine.ones(10)
    assert F.dropout(x, p=0.5, training=False) is x
    assert (F.dropout(x, p=1.0).numpy() == 0).all()


# ---- convolution and pooling ------------------------------------------------------------------------
def _conv2d_naive(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, o, oh, ow))
    for ni in range(n):
        for oi in range(o):
            g = oi // og
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0 if b is None else b[oi]
                    for ci in range(cg):
                        for ki in range(kh):
                            for kj in range(kw):
                                acc += w[oi, ci, ki, kj] * xp[ni, g * cg + ci, i * sh + ki * dh, j * sw + kj * dw]
                    y[ni, oi, i, j] = acc
    return y


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride,padding,dilation,groups,bias", [
    (1, 0, 1, 1, True), (2, 1, 1, 1, True), (1, 2, 2, 1, False), ((2, 1), (0, 1), 1, 1, True),
    (1, 1, 1, 2, True), (1, 0, (2, 1), 4, False)])
def test_conv2d_matches_a_naive_loop(stride, padding, dilation, groups, bias, dtype, backend):
    t, x = make(2, 4, 6, 5, dtype=dtype)
    w, wv = make(4, 4 // groups, 3, 2, dtype=dtype)
    b, bv = make(4, dtype=dtype) if bias else (None, None)
    out = F.conv2d(t, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = _conv2d_naive(x, wv, bv, _pair(stride), _pair(padding), _pair(dilation), groups)
    check(out, expected, dtype, k=4 * 3 * 2)


def _pool_naive(x, kernel, stride, padding, reduce, pad_value, count_include_pad=True):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    inside = np.pad(np.ones((h, w)), ((ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            if reduce == "max":
                y[:, :, i, j] = window.max(axis=(2, 3))
            else:
                count = kh * kw if count_include_pad else inside[i * sh:i * sh + kh, j * sw:j * sw + kw].sum()
                y[:, :, i, j] = window.sum(axis=(2, 3)) / count
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((2, 3), 1, (1, 0)), (3, 1, 1)])
def test_max_pool2d_matches_a_naive_loop(kernel, stride, padding, dtype, backend):
    t, x = make(2, 3, 7, 6, dtype=dtype)
    k = _pair(kernel)
    expected = _pool_naive(x, k, _pair(stride) if stride else k, _pair(padding), "max", -np.inf)
    check(F.max_pool2d(t, kernel, stride, padding), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((2, 3), 1, (1, 0))])
def test_avg_pool2d_matches_a_naive_loop(kernel, stride, padding, count_include_pad, dtype, backend):
    t, x = make(2, 3, 7, 6, dtype=dtype)
    k = _pair(kernel)
    expected = _pool_naive(x, k, _pair(stride) if stride else k, _pair(padding), "avg", 0.0, count_include_pad)
    check(F.avg_pool2d(t, kernel, stride, padding, count_include_pad=count_include_pad), expected, dtype, k=6)


# ---- attention ----------------------------------------------------------------------------------------
def _attention(q, k, v, allowed=None, scale=None, float_mask=None):
    s = q @ k.swapaxes(-1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if float_mask is not None:
        s = s + float_mask
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    return (e / np.where(total == 0, 1, total)) @ v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tq,tk", [(1, 1), (5, 5), (17, 17), (3, 6), (6, 3)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_matches_naive_softmax_qk_v(is_causal, tq, tk, dtype, backend):
    (q, qv), (k, kv), (v, vv) = (make(2, 3, t, d, dtype=dtype) for t, d in ((tq, 8), (tk, 8), (tk, 5)))
    # is_causal is top-left aligned, as PyTorch's tril(ones(Tq, Tk)): query i sees keys j <= i.
    allowed = np.tril(np.ones((tq, tk), dtype=bool)) if is_causal else None
    out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    check(out, _attention(qv, kv, vv, allowed), dtype, k=max(tk, 8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_with_a_bool_mask_a_float_mask_and_a_scale(dtype, backend):
    (q, qv), (k, kv), (v, vv) = (make(2, 2, t, d, dtype=dtype) for t, d in ((4, 6), (5, 6), (5, 3)))
    allowed = rng.random((4, 5)) > 0.4
    allowed[:, 0] = True
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=engine.tensor(allowed), scale=0.3)
    check(out, _attention(qv, kv, vv, allowed, scale=0.3), dtype, k=6)
    fm, fmv = make(2, 1, 4, 5, dtype=dtype)
    check(F.scaled_dot_product_attention(q, k, v, attn_mask=fm), _attention(qv, kv, vv, float_mask=fmv), dtype, k=6)
    both = F.scaled_dot_product_attention(q, k, v, attn_mask=engine.tensor(allowed), is_causal=True)
    check(both, _attention(qv, kv, vv, allowed & np.tril(np.ones((4, 5), dtype=bool))), dtype, k=6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_fully_masked_row_gives_zeros_without_nan(dtype, backend):
    (q, qv), (k, kv), (v, vv) = (make(1, 2, 3, 4, dtype=dtype) for _ in range(3))
    allowed = np.array([[True, True, False], [False, False, False], [True, False, True]])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=engine.tensor(allowed)).numpy()
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out[:, :, 1], 0.0)
    check(engine.tensor(out), _attention(qv, kv, vv, allowed), dtype, k=4)


def test_attention_accepts_3d_and_5d_inputs(backend):
    (q, qv), (k, kv), (v, vv) = make(3, 4, 8), make(3, 6, 8), make(3, 6, 8)
    check(F.scaled_dot_product_attention(q, k, v), _attention(qv, kv, vv), np.float64)
    (q, qv), (k, kv), (v, vv) = make(2, 2, 2, 4, 8), make(2, 2, 2, 6, 8), make(2, 2, 2, 6, 8)
    check(F.scaled_dot_product_attention(q, k, v, is_causal=True),
          _attention(qv, kv, vv, np.tril(np.ones((4, 6), dtype=bool))), np.float64)


# ---- non-contiguous inputs ----------------------------------------------------------------------------
def _layouts(shape):
    """The same values as a contiguous tensor and as transposed, step-sliced and expanded views."""
    base = rng.standard_normal(shape)
    transposed = engine.from_numpy(np.ascontiguousarray(base.swapaxes(-1, -2))).transpose(-1, -2)
    wide = np.zeros(shape[:-1] + (shape[-1] * 2,))
    wide[..., ::2] = base
    sliced = engine.from_numpy(wide)[..., ::2]
    assert not transposed.is_contiguous() and not sliced.is_contiguous()
    return engine.tensor(base), {"transposed": transposed, "step_sliced": sliced}


NON_CONTIGUOUS = {
    "exp": lambda t: t.exp(),
    "mul_broadcast": lambda t: t * t[..., :1, :],
    "sum": lambda t: t.sum(dim=-1),
    "amax": lambda t: t.amax(dim=-2),
    "matmul": lambda t: t @ t.transpose(-1, -2),
    "linear": lambda t: F.linear(t, engine.tensor(np.linspace(-1, 1, 10).reshape(2, 5))),
    "softmax": lambda t: F.softmax(t, dim=-1),
    "log_softmax": lambda t: F.log_softmax(t, dim=-2),
    "layer_norm": lambda t: F.layer_norm(t, (5,)),
    "cross_entropy": lambda t: F.cross_entropy(t.reshape(-1, 5), engine.tensor(np.arange(24) % 5)),
    "conv2d": lambda t: F.conv2d(t, engine.tensor(np.linspace(-1, 1, 24).reshape(2, 3, 2, 2))),
    "max_pool2d": lambda t: F.max_pool2d(t, 2),
    "avg_pool2d": lambda t: F.avg_pool2d(t, 2, 1),
    "attention": lambda t: F.scaled_dot_product_attention(t, t, t, is_causal=True),
    "index": lambda t: t[..., engine.tensor([4, 0])],
    "reshape": lambda t: t.reshape(-1),
}


@pytest.mark.parametrize("name", NON_CONTIGUOUS)
def test_non_contiguous_inputs_equal_contiguous_ones(name, backend):
    fn = NON_CONTIGUOUS[name]
    contiguous, views = _layouts((2, 3, 4, 5))
    expected = fn(contiguous).numpy()
    for kind, view in views.items():
        np.testing.assert_allclose(fn(view).numpy(), expected, **FLOAT64, err_msg=kind)


@pytest.mark.parametrize("name", ["exp", "sum", "matmul", "softmax", "layer_norm", "conv2d", "attention"])
def test_expanded_inputs_equal_materialized_ones(name, backend):
    fn = NON_CONTIGUOUS[name]
    row = engine.tensor(rng.standard_normal((2, 3, 1, 5)))
    expanded = row.expand(2, 3, 4, 5)
    materialized = engine.tensor(np.broadcast_to(row.numpy(), (2, 3, 4, 5)).copy())
    np.testing.assert_allclose(fn(expanded).numpy(), fn(materialized).numpy(), **FLOAT64)


# ---- zero-size dimensions -----------------------------------------------------------------------------
ZERO_SIZE = {
    "exp": (lambda: engine.zeros(0, 3).exp(), (0, 3)),
    "add_broadcast": (lambda: engine.zeros(0, 3) + engine.ones(3), (0, 3)),
    "sum_dim": (lambda: engine.zeros(0, 3).sum(0), (3,)),
    "reshape": (lambda: engine.zeros(2, 0, 3).reshape(0, 6), (0, 6)),
    "flatten": (lambda: engine.zeros(2, 0, 3).flatten(1), (2, 0)),
    "cat": (lambda: engine.cat([engine.zeros(0, 3), engine.ones(2, 3)]), (2, 3)),
    "index": (lambda: engine.zeros(3, 4)[engine.tensor([], dtype=engine.int64)], (0, 4)),
    "matmul_m0": (lambda: engine.zeros(0, 4) @ engine.zeros(4, 3), (0, 3)),
    "matmul_batched_k0": (lambda: engine.zeros(2, 3, 0) @ engine.zeros(2, 0, 4), (2, 3, 4)),
    "matmul_batch0": (lambda: engine.zeros(0, 2, 3) @ engine.zeros(3, 4), (0, 2, 4)),
    "linear_n0": (lambda: F.linear(engine.zeros(0, 4), engine.ones(3, 4)), (0, 3)),
    "linear_k0": (lambda: F.linear(engine.zeros(2, 0), engine.zeros(3, 0)), (2, 3)),
    "softmax_rows0": (lambda: F.softmax(engine.zeros(0, 3), dim=-1), (0, 3)),
    "softmax_dim0": (lambda: F.softmax(engine.zeros(3, 0), dim=-1), (3, 0)),
    "log_softmax_dim0": (lambda: F.log_softmax(engine.zeros(2, 0, 4), dim=1), (2, 0, 4)),
    "layer_norm_rows0": (lambda: F.layer_norm(engine.zeros(0, 4), (4,)), (0, 4)),
    "conv2d_batch0": (lambda: F.conv2d(engine.zeros(0, 2, 5, 5), engine.ones(3, 2, 3, 3)), (0, 3, 3, 3)),
    "max_pool2d_batch0": (lambda: F.max_pool2d(engine.zeros(0, 2, 4, 4), 2), (0, 2, 2, 2)),
    "avg_pool2d_channels0": (lambda: F.avg_pool2d(engine.zeros(1, 0, 4, 4), 2), (1, 0, 2, 2)),
    "attention_tq0": (lambda: F.scaled_dot_product_attention(engine.zeros(1, 2, 0, 4), engine.ones(1, 2, 3, 4),
                                                             engine.ones(1, 2, 3, 4)), (1, 2, 0, 4)),
    "attention_batch0": (lambda: F.scaled_dot_product_attention(engine.zeros(0, 2, 3, 4), engine.ones(0, 2, 3, 4),
                                                                engine.ones(0, 2, 3, 4)), (0, 2, 3, 4)),
    "cross_entropy_none": (lambda: F.cross_entropy(engine.zeros(0, 3), engine.zeros(0, dtype=engine.int64),
                                                   reduction="none"), (0,)),
}


@pytest.mark.parametrize("name", ZERO_SIZE)
def test_zero_size_dims_give_the_expected_shape(name, backend):
    fn, shape = ZERO_SIZE[name]
    out = fn()
    assert tuple(out.shape) == shape
    assert not np.isnan(out.numpy()).any()


def test_zero_size_reductions_and_products_give_the_identity():
    assert engine.zeros(0, 3).sum().item() == 0.0
    np.testing.assert_array_equal((engine.ones(3, 0) @ engine.ones(0, 2)).numpy(), np.zeros((3, 2)))
    np.testing.assert_array_equal(F.linear(engine.zeros(2, 0), engine.zeros(3, 0), engine.ones(3)).numpy(),
                                  np.ones((2, 3)))
    assert F.cross_entropy(engine.zeros(0, 3), engine.zeros(0, dtype=engine.int64), reduction="sum").item() == 0.0
    assert math.isnan(engine.zeros(0).mean().item())


def test_attention_without_keys_gives_zeros(backend):
    out = F.scaled_dot_product_attention(engine.ones(1, 2, 3, 4), engine.zeros(1, 2, 0, 4), engine.zeros(1, 2, 0, 5))
    assert tuple(out.shape) == (1, 2, 3, 5)
    np.testing.assert_array_equal(out.numpy(), 0.0)
