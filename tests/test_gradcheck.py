"""Every differentiable op's gradient against central finite differences, in float64.

Kernel-backed ops run under both CPU kernel sets (the `backend` fixture)."""
import numpy as np
import pytest

import engine
import engine.nn.functional as F
from gradcheck import gradcheck, leaf, leaf_view

rng = np.random.default_rng(1)


# ---- element-wise, with broadcasting ---------------------------------------------------------
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "maximum": engine.maximum,
    "minimum": engine.minimum,
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3))])
def test_binary_ops_with_broadcasting(name, shapes):
    positive = name in ("pow", "div")
    a, b = leaf(*shapes[0], seed=1, positive=positive), leaf(*shapes[1], seed=2, positive=positive)
    assert gradcheck(BINARY[name], a, b)


@pytest.mark.parametrize("name", ["add", "mul", "div"])
def test_binary_ops_with_python_scalars(name):
    a = leaf(3, 4, positive=True)
    assert gradcheck(lambda x: BINARY[name](x, 2.5), a)
    assert gradcheck(lambda x: BINARY[name](1.5, x), a)


def test_pow_with_scalar_exponent_and_base():
    a = leaf(5, positive=True)
    assert gradcheck(lambda x: x ** 3, a)
    assert gradcheck(lambda x: 2.0 ** x, a)


UNARY = {
    "neg": (lambda a: -a, False),
    "exp": (engine.exp, False),
    "log": (engine.log, True),
    "sqrt": (engine.sqrt, True),
    "abs": (engine.abs, False),
    "tanh": (engine.tanh, False),
    "sigmoid": (engine.sigmoid, False),
    "relu": (engine.relu, False),
    "gelu": (F.gelu, False),
    "gelu_tanh": (lambda a: F.gelu(a, approximate="tanh"), False),
    "sin": (engine.sin, False),
    "cos": (engine.cos, False),
    "clamp": (lambda a: a.clamp(-0.5, 0.5), False),
    "silu": (F.silu, False),
}


@pytest.mark.parametrize("name", UNARY)
def test_unary_ops(name, backend):
    fn, positive = UNARY[name]
    a = leaf(4, 5, seed=3, positive=positive)
    if name in ("abs", "relu", "clamp"):  # keep away from the kinks, where the derivative jumps
        a.data[np.abs(a.data) < 1e-3] += 0.1
        a.data[np.abs(np.abs(a.data) - 0.5) < 1e-3] += 0.01
    assert gradcheck(fn, a)


def test_where_routes_gradient_to_the_chosen_side():
    a, b = leaf(3, 4, seed=1), leaf(3, 4, seed=2)
    cond = engine.tensor(rng.random((3, 4)) > 0.5)
    assert gradcheck(lambda x, y: engine.where(cond, x, y), a, b)


# ---- reductions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "var", "amax"])
def test_reductions(name, dim, keepdim):
    a = leaf(3, 4, 5, seed=4)
    fn = getattr(engine, name)
    assert gradcheck(lambda x: fn(x, dim=dim, keepdim=keepdim), a)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_and_min_along_a_dim(dim, keepdim):
    a = leaf(3, 4, 5, seed=5)  # random values: no ties
    assert gradcheck(lambda x: x.max(dim, keepdim=keepdim).values, a)
    assert gradcheck(lambda x: x.min(dim, keepdim=keepdim)[0], a)


def test_max_over_all_elements():
    assert gradcheck(lambda x: x.max(), leaf(4, 3, seed=6))


def test_std_and_logsumexp():
    a = leaf(3, 6, seed=7)
    assert gradcheck(lambda x: x.std(dim=1), a)
    assert gradcheck(lambda x: engine.logsumexp(x, dim=1), a)


# ---- shape ops ---------------------------------------------------------------------------------
SHAPE = {
    "reshape": lambda a: a.reshape(6, 4),
    "view": lambda a: a.view(-1),
    "transpose": lambda a: a.transpose(0, 2),
    "permute": lambda a: a.permute(2, 0, 1),
    "expand": lambda a: a[:, :1].expand(2, 5, 4),
    "squeeze": lambda a: a[:, :1].squeeze(1),
    "unsqueeze": lambda a: a.unsqueeze(1),
    "flatten": lambda a: a.flatten(1),
    "basic_index": lambda a: a[1, ::2, 1:],
    "negative_step_slice": lambda a: a[:, ::-1],
    "integer_array_index": lambda a: a[engine.tensor([1, 0, 1])],
    "gather_repeated_rows": lambda a: a.reshape(6, 4)[engine.tensor([[0, 5], [5, 5]])],
    "bool_mask_index": lambda a: a[a > 0],
    "split": lambda a: a.split([1, 2], dim=1),
    "chunk": lambda a: a.chunk(2, dim=2),
    "contiguous_of_view": lambda a: a.transpose(1, 2).contiguous(),
    "repeat": lambda a: a.repeat(2, 1, 1),
    "t": lambda a: a[0].t(),
    "movedim": lambda a: a.movedim(0, -1),
}


@pytest.mark.parametrize("name", SHAPE)
def test_shape_ops(name):
    assert gradcheck(SHAPE[name], leaf(2, 3, 4, seed=8))


def test_cat_and_stack():
    a, b = leaf(2, 3, seed=1), leaf(2, 5, seed=2)
    assert gradcheck(lambda x, y: engine.cat([x, y], dim=1), a, b)
    c = leaf(2, 3, seed=3)
    assert gradcheck(lambda x, y: engine.stack([x, y], dim=1), a, c)


# ---- matrix products ---------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),   # batch broadcasting
    ((1, 3, 4), (2, 4, 5)),
])
def test_matmul(shapes, backend):
    a, b = leaf(*shapes[0], seed=1), leaf(*shapes[1], seed=2)
    assert gradcheck(engine.matmul, a, b)


def test_matmul_of_transposed_views(backend):
    a = leaf_view(rng.standard_normal((4, 3)).T)   # (3, 4), column-major
    b = leaf_view(rng.standard_normal((5, 4)).T)   # (4, 5)
    assert not a.is_contiguous()
    assert gradcheck(engine.matmul, a, b)


def test_matmul_with_zero_size_dims(backend):
    a, b = leaf(0, 4), leaf(4, 3)
    out = a @ b
    assert out.shape == (0, 3)
    out.sum().backward()
    assert a.grad.shape == (0, 4) and np.all(b.grad.numpy() == 0)
    k0 = leaf(3, 0) @ leaf(0, 2)
    assert np.all(k0.numpy() == 0) and k0.shape == (3, 2)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, backend):
    x, w = leaf(2, 3, 4, seed=1), leaf(5, 4, seed=2)
    b = leaf(5, seed=3) if bias else None
    if bias:
        assert gradcheck(F.linear, x, w, b)
    else:
        assert gradcheck(F.linear, x, w)


# ---- nn ops ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_family(fn, dim, backend):
    assert gradcheck(lambda x: fn(x, dim=dim), leaf(3, 4, 5, seed=9))


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(affine, backend):
    x = leaf(3, 2, 6, seed=1)
    if affine:
        w, b = leaf(6, seed=2), leaf(6, seed=3)
        assert gradcheck(lambda x, w, b: F.layer_norm(x, (6,), w, b), x, w, b)
        w2 = leaf(2, 6, seed=4)
        assert gradcheck(lambda x, w: F.layer_norm(x, (2, 6), w), x, w2)
    else:
        assert gradcheck(lambda x: F.layer_norm(x, (6,)), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, backend):
    logits = leaf(6, 5, seed=1)
    target = engine.tensor([0, 4, 2, -100, 1, 2])
    assert gradcheck(lambda x: F.cross_entropy(x, target, reduction=reduction), logits)


def test_cross_entropy_with_spatial_dims(backend):
    logits = leaf(2, 3, 4, seed=1)
    target = engine.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
    assert gradcheck(lambda x: F.cross_entropy(x, target), logits)


def test_nll_loss_mse_and_bce():
    x, y = leaf(4, 3, seed=1), leaf(4, 3, seed=2)
    target = engine.tensor([0, 2, 1, 1])
    assert gradcheck(lambda a: F.nll_loss(F.log_softmax(a, dim=1), target), x)
    assert gradcheck(F.mse_loss, x, y)
    probs = engine.tensor(rng.random((4, 3)), dtype=engine.float64)
    assert gradcheck(lambda a: F.binary_cross_entropy_with_logits(a, probs), x)


def test_dropout_gradient_uses_the_same_mask():
    x = leaf(20, 30, seed=1)
    engine.manual_seed(3)
    out = F.dropout(x, p=0.3)
    out.sum().backward()
    kept = out.numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.7)


@pytest.mark.parametrize("padding_idx", [None, 1])
def test_embedding(padding_idx, backend):
    w = leaf(6, 4, seed=1)
    idx = engine.tensor([[1, 3, 1], [5, 0, 1]])
    out = F.embedding(idx, w, padding_idx=padding_idx)
    assert out.shape == (2, 3, 4)
    if padding_idx is None:
        assert gradcheck(lambda w: F.embedding(idx, w), w)
    else:
        out.sum().backward()
        assert np.all(w.grad.numpy()[padding_idx] == 0)
        np.testing.assert_allclose(w.grad.numpy()[3], 1.0)


# ---- convolution, pooling, attention -------------------------------------------------------------
@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), ((2, 1), (0, 1), 1, 1), (1, 1, 1, 2),
])
def test_conv2d(stride, padding, dilation, groups, backend):
    x = leaf(2, 4, 7, 6, seed=1)
    w = leaf(6, 4 // groups, 3, 3, seed=2)
    b = leaf(6, seed=3)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding,
                                              dilation=dilation, groups=groups), x, w, b)


def test_conv2d_without_bias_on_a_non_contiguous_input(backend):
    x = leaf_view(rng.standard_normal((2, 5, 6, 3)).transpose(0, 3, 1, 2))  # NHWC memory
    w = leaf(2, 3, 2, 2, seed=2)
    assert gradcheck(lambda x, w: F.conv2d(x, w), x, w)


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), ((2, 3), 1, 0)])
def test_max_pool2d(kernel, stride, padding, backend):
    x = leaf(2, 3, 7, 6, seed=4)  # random values: no ties inside a window
    assert gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding), x)


@pytest.mark.parametrize("kernel,stride,padding,count_include_pad", [
    (2, None, 0, True), (3, 2, 1, True), (3, 2, 1, False)])
def test_avg_pool2d(kernel, stride, padding, count_include_pad, backend):
    x = leaf(2, 3, 7, 6, seed=4)
    assert gradcheck(lambda x: F.avg_pool2d(x, kernel, stride, padding,
                                            count_include_pad=count_include_pad), x)


@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(5, 5), (1, 1), (3, 6)])
def test_scaled_dot_product_attention(is_causal, tq, tk, backend):
    q, k, v = leaf(2, 2, tq, 4, seed=1), leaf(2, 2, tk, 4, seed=2), leaf(2, 2, tk, 3, seed=3)
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=is_causal), q, k, v)


def test_attention_with_masks_and_scale(backend):
    q, k, v = leaf(1, 2, 4, 3, seed=1), leaf(1, 2, 5, 3, seed=2), leaf(1, 2, 5, 3, seed=3)
    bool_mask = engine.tensor(rng.random((4, 5)) > 0.3)
    bool_mask.data[:, 0] = True  # no fully masked rows here (tested on their own)
    float_mask = engine.tensor(rng.standard_normal((2, 4, 5)), dtype=engine.float64)
    for mask in (bool_mask, float_mask):
        assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.7), q, k, v)


def test_attention_on_3d_inputs(backend):
    q, k, v = leaf(2, 3, 4, seed=1), leaf(2, 3, 4, seed=2), leaf(2, 3, 4, seed=3)
    assert gradcheck(F.scaled_dot_product_attention, q, k, v)


# ---- graph behaviour ---------------------------------------------------------------------------
def test_gradients_accumulate_through_shared_subexpressions():
    a = leaf(3, seed=1)
    assert gradcheck(lambda x: (x * x + x.exp()) * x, a)


def test_zero_size_inputs_give_zero_size_gradients():
    a = leaf(0, 3)
    (a.exp() * 2).sum().backward()
    assert a.grad.shape == (0, 3)
