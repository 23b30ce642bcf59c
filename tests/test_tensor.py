"""The Tensor API, held to PyTorch's behaviour: creation and dtypes, sharing memory with NumPy,
autograd bookkeeping (backward, accumulation, retain_graph, no_grad, detach, in-place versions),
factories, seeding, conversions, threads and the kernel-set switch."""
import numpy as np
import pytest

import engine
import engine.nn.functional as F
from engine.autograd import Function
from engine.backend.kernel_set import KERNEL_NAMES


# ---- engine.tensor(): dtypes and copying ---------------------------------------------------------
@pytest.mark.parametrize("data,dtype", [
    ([1.0, 2.5], engine.float32),
    (3.5, engine.float32),
    ([[1, 2], [3, 4]], engine.int64),
    (7, engine.int64),
    ([True, False], engine.bool),
    (np.array([1.0, 2.0]), engine.float64),            # a float64 array keeps its dtype
    (np.array([1.0, 2.0], np.float32), engine.float32),
    (np.array([1, 2], np.int32), engine.int32),
    (np.float64(0.5), engine.float64),
])
def test_tensor_infers_the_dtype_as_pytorch_does(data, dtype):
    t = engine.tensor(data)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))


def test_tensor_with_an_explicit_dtype_converts_the_data():
    t = engine.tensor([1, 2], dtype=engine.float64)
    assert t.dtype == engine.float64
    assert engine.tensor([1.7, -1.7], dtype=engine.int64).tolist() == [1, -1]


@pytest.mark.parametrize("make_source", [
    lambda: [1.0, 2.0, 3.0],
    lambda: np.array([1.0, 2.0, 3.0], np.float32),
    lambda: engine.tensor([1.0, 2.0, 3.0]),
])
def test_tensor_copies_its_data(make_source):
    source = make_source()
    t = engine.tensor(source)
    array = source.numpy() if isinstance(source, engine.Tensor) else source
    if isinstance(array, np.ndarray):
        array[0] = 100.0
    t.data[1] = -5.0
    assert t.tolist() == [1.0, -5.0, 3.0]
    if isinstance(array, np.ndarray):
        assert array[1] == 2.0


def test_tensor_with_requires_grad_is_a_leaf_without_grad():
    t = engine.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None
    assert not engine.tensor([1.0]).requires_grad


def test_tensor_class_constructor_matches_the_factory():
    t = engine.Tensor([[1.0, 2.0]], requires_grad=True)
    assert t.shape == (1, 2) and t.dtype == engine.float32 and t.requires_grad


# ---- NumPy interop -----------------------------------------------------------------------------
def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = engine.from_numpy(a)
    assert t.dtype == engine.float64
    a[0, 0] = 42.0
    assert t[0, 0].item() == 42.0
    t.data[1, 2] = -1.0
    assert a[1, 2] == -1.0


def test_numpy_returns_the_tensors_own_storage():
    t = engine.tensor([1.0, 2.0])
    view = t.numpy()
    view[0] = 9.0
    assert t.tolist() == [9.0, 2.0]


def test_np_asarray_uses_the_array_protocol_without_copying():
    t = engine.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = np.asarray(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert np.shares_memory(a, t.numpy())
    np.testing.assert_array_equal(np.asarray(t, dtype=np.float64), [[1, 2], [3, 4]])


def test_np_array_of_a_tensor_is_a_copy():
    a = np.zeros(3)
    t = engine.from_numpy(a)
    b = np.array(t)
    b[0] = 5.0
    assert a[0] == 0.0


def test_np_asarray_of_a_scalar_result_is_a_zero_dim_array():
    s = engine.tensor([1.0, 2.0, 3.0]).sum()
    a = np.asarray(s)
    assert isinstance(a, np.ndarray) and a.shape == () and a == 6.0


@pytest.mark.parametrize("data,expected,kind", [
    (2.5, 2.5, float), (7, 7, int), (True, True, bool), ([[3.25]], 3.25, float)])
def test_item_returns_a_python_scalar(data, expected, kind):
    value = engine.tensor(data).item()
    assert type(value) is kind and value == expected


def test_item_of_more_than_one_element_raises():
    with pytest.raises(ValueError, match=r"one-element.*shape \(2,\)"):
        engine.tensor([1.0, 2.0]).item()


# ---- backward --------------------------------------------------------------------------------------
def test_backward_runs_each_node_after_every_node_that_uses_its_output():
    calls = []

    class Record(Function):
        saves_inputs = False

        def forward(self, a, name):
            self.name = name
            return a.copy()

        def backward(self, grad):
            calls.append(self.name)
            return grad

    x = engine.tensor([1.0, 2.0], requires_grad=True)
    a = Record.apply(x, name="a")
    b = Record.apply(a, name="b")
    c = Record.apply(b, name="c")
    # `a` feeds both `b` (a long path) and the sum (a short one): its backward must wait for both.
    out = (c + a).sum()
    out.backward()
    assert calls == ["c", "b", "a"]
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_backward_through_a_diamond_adds_every_path():
    x = engine.tensor([1.0, -2.0, 3.0], requires_grad=True)
    a = x * 2
    out = (a + a * a).sum()            # d/dx = 2 + 2·(2a)
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 + 8 * x.numpy())


def test_gradient_accumulates_across_two_uses_of_a_leaf():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    (x * 3 + x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 + 2 * x.numpy())


def test_gradients_accumulate_over_two_backward_calls_with_retain_graph():
    x = engine.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0, 12.0])


def test_backward_twice_without_retain_graph_raises():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_backward_with_an_explicit_gradient():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    (x * x).backward(engine.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 40.0])


def test_leaf_gradients_are_separate_arrays():
    a = engine.tensor([1.0, 2.0], requires_grad=True)
    b = engine.tensor([3.0, 4.0], requires_grad=True)
    gradient = np.ones(2, dtype=np.float32)
    (a + b).backward(gradient)            # add hands the same gradient to both inputs
    a.grad.zero_()
    assert b.grad.tolist() == [1.0, 1.0]
    assert gradient.tolist() == [1.0, 1.0]


def test_non_leaf_gradient_is_kept_only_with_retain_grad():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.retain_grad()
    other = x * 3
    (h * h + other).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())
    np.testing.assert_allclose(x.grad.numpy(), 8 * x.numpy() + 3)
    assert other.grad is None and not other.is_leaf


def test_backward_of_a_cast_returns_the_gradient_in_the_inputs_dtype():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    (x.double() * 3).sum().backward()
    assert x.grad.dtype == engine.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


# ---- grad mode ---------------------------------------------------------------------------------
def test_no_grad_as_a_context_manager_records_no_graph():
    x = engine.tensor([1.0], requires_grad=True)
    with engine.no_grad():
        assert not engine.is_grad_enabled()
        y = x * 2
    assert engine.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert (x * 2).requires_grad


@pytest.mark.parametrize("decorate", [lambda f: engine.no_grad(f), lambda f: engine.no_grad()(f)],
                         ids=["@no_grad", "@no_grad()"])
def test_no_grad_as_a_decorator(decorate):
    x = engine.tensor([1.0], requires_grad=True)

    def double(t):
        """Doubles t."""
        assert not engine.is_grad_enabled()
        return t * 2

    wrapped = decorate(double)
    y = wrapped(x)
    assert not y.requires_grad and y.tolist() == [2.0]
    assert wrapped.__name__ == "double" and engine.is_grad_enabled()


def test_no_grad_decorated_function_restores_grad_mode_after_recursing():
    @engine.no_grad()
    def depth(n):
        assert not engine.is_grad_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    try:
        assert depth(3) == 3
        assert engine.is_grad_enabled()
    finally:
        engine.set_grad_enabled(True)  # so a failure here does not leak into later tests


def test_one_no_grad_object_entered_twice_restores_grad_mode():
    ctx = engine.no_grad()
    try:
        with ctx:
            with ctx:
                pass
            assert not engine.is_grad_enabled()
        assert engine.is_grad_enabled()
    finally:
        engine.set_grad_enabled(True)


def test_no_grad_restores_grad_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with engine.no_grad():
            1 / 0
    assert engine.is_grad_enabled()


def test_enable_grad_inside_no_grad_records_again():
    x = engine.tensor([1.0], requires_grad=True)
    with engine.no_grad():
        with engine.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


def test_detach_shares_data_and_stops_the_gradient():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and np.shares_memory(d.numpy(), y.numpy())
    (y + d * d).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


# ---- in-place updates and versions ------------------------------------------------------------------
@pytest.mark.parametrize("update", [
    lambda t: t.add_(1.0),
    lambda t: t.sub_(engine.tensor([1.0, 1.0])),
    lambda t: t.mul_(2.0),
    lambda t: t.div_(2.0),
    lambda t: t.zero_(),
    lambda t: t.fill_(3.0),
    lambda t: t.clamp_(0.0, 1.5),
    lambda t: t.copy_(engine.tensor([5.0, 6.0])),
    lambda t: t.masked_fill_(engine.tensor([True, False]), 0.0),
    lambda t: t.__setitem__(0, 7.0),
    lambda t: t.__iadd__(1.0),
], ids=["add_", "sub_", "mul_", "div_", "zero_", "fill_", "clamp_", "copy_", "masked_fill_",
        "setitem", "iadd"])
def test_in_place_ops_change_the_data_and_bump_the_version(update):
    t = engine.tensor([1.0, 2.0])
    before = t.numpy().copy()
    update(t)
    assert t._version == 1
    assert not np.array_equal(t.numpy(), before)


def test_in_place_change_to_a_saved_input_makes_backward_raise():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    w = engine.tensor([3.0, 4.0])
    y = (x * w).sum()                  # mul saves w for x's gradient
    w.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_optimizer_style_update_between_forward_and_backward_is_detected():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    with engine.no_grad():
        x.sub_(0.1)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_in_place_change_to_an_input_of_add_is_harmless():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    w = engine.tensor([3.0, 4.0])
    y = (x + w).sum()                  # add's gradient does not depend on its inputs' values
    w.mul_(10.0)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


def test_in_place_on_a_leaf_that_requires_grad_raises_outside_no_grad():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*in-place"):
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x[0] = 3.0
    with engine.no_grad():
        x.add_(1.0)
    assert x.tolist() == [2.0, 3.0] and x._version == 1


def test_in_place_on_a_tensor_inside_the_graph_raises():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1
    with pytest.raises(RuntimeError, match="in-place.*part of an autograd graph"):
        h.mul_(3.0)
    buffer = engine.zeros(2)
    with pytest.raises(RuntimeError, match="in-place.*part of an autograd graph"):
        buffer.add_(x)
    with engine.no_grad():
        buffer.add_(x)
    assert buffer.tolist() == [1.0, 2.0]


# ---- conversions -------------------------------------------------------------------------------
@pytest.mark.parametrize("convert,dtype", [
    (lambda t: t.to(engine.float64), engine.float64),
    (lambda t: t.double(), engine.float64),
    (lambda t: t.float(), engine.float32),
    (lambda t: t.long(), engine.int64),
    (lambda t: t.to(engine.int32), engine.int32),
])
def test_dtype_conversions(convert, dtype):
    t = engine.tensor([1.75, -2.25])
    out = convert(t)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.numpy(), np.array([1.75, -2.25]).astype(dtype))


def test_to_the_same_dtype_returns_the_tensor_itself():
    t = engine.tensor([1.0])
    assert t.to(engine.float32) is t and t.float() is t


def test_integer_conversion_of_a_tensor_that_requires_grad_does_not_require_grad():
    x = engine.tensor([1.5, 2.5], requires_grad=True)
    assert not x.long().requires_grad
    assert x.double().requires_grad


@pytest.mark.parametrize("compare,expected", [
    (lambda a, b: a == b, [False, True, False]),
    (lambda a, b: a != b, [True, False, True]),
    (lambda a, b: a < b, [True, False, False]),
    (lambda a, b: a <= b, [True, True, False]),
    (lambda a, b: a > b, [False, False, True]),
    (lambda a, b: a >= b, [False, True, True]),
])
def test_comparisons_return_bool_tensors_without_grad(compare, expected):
    a = engine.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = engine.tensor([2.0, 2.0, 2.0], requires_grad=True)
    out = compare(a, b)
    assert out.dtype == engine.bool and not out.requires_grad
    assert out.tolist() == expected
    assert compare(a, 2.0).tolist() == expected


# ---- factories and seeding -------------------------------------------------------------------------
@pytest.mark.parametrize("make,shape,dtype", [
    (lambda: engine.randn(2, 3), (2, 3), engine.float32),
    (lambda: engine.randn((4,), dtype=engine.float64), (4,), engine.float64),
    (lambda: engine.rand(3, 1), (3, 1), engine.float32),
    (lambda: engine.randint(0, 5, (2, 2)), (2, 2), engine.int64),
    (lambda: engine.zeros(2, 0, 3), (2, 0, 3), engine.float32),
    (lambda: engine.zeros((3,), dtype=engine.int64), (3,), engine.int64),
    (lambda: engine.ones(4), (4,), engine.float32),
    (lambda: engine.empty(2, 2), (2, 2), engine.float32),
    (lambda: engine.arange(5), (5,), engine.int64),
    (lambda: engine.arange(0.0, 1.0, 0.25), (4,), engine.float32),
    (lambda: engine.full((2, 3), 7), (2, 3), engine.int64),
    (lambda: engine.full((2,), 1.5), (2,), engine.float32),
    (lambda: engine.full((2,), True), (2,), engine.bool),
    (lambda: engine.eye(3), (3, 3), engine.float32),
    (lambda: engine.eye(2, 4), (2, 4), engine.float32),
    (lambda: engine.linspace(0, 1, 5), (5,), engine.float32),
    (lambda: engine.zeros_like(engine.tensor([[1, 2]])), (1, 2), engine.int64),
    (lambda: engine.ones_like(engine.zeros(2, dtype=engine.float64)), (2,), engine.float64),
    (lambda: engine.zeros(()), (), engine.float32),
])
def test_factories_give_the_shape_and_dtype_asked_for(make, shape, dtype):
    t = make()
    assert t.shape == shape and t.dtype == dtype and not t.requires_grad


def test_factory_values():
    np.testing.assert_array_equal(engine.arange(1, 8, 3).numpy(), [1, 4, 7])
    np.testing.assert_allclose(engine.linspace(-1, 1, 5).numpy(), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_array_equal(engine.eye(2, 3).numpy(), [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(engine.full((2,), 7).numpy(), [7, 7])
    assert engine.zeros(2, 3).numpy().sum() == 0 and engine.ones(2, 3).numpy().sum() == 6
    r = engine.rand(1000).numpy()
    assert r.min() >= 0 and r.max() < 1
    k = engine.randint(3, 6, (1000,)).numpy()
    assert set(np.unique(k)) == {3, 4, 5}


def test_factories_can_make_leaves_that_require_grad():
    t = engine.zeros(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf


def _draws():
    return [engine.randn(5).numpy(), engine.rand(5).numpy(), engine.randint(0, 1000, (5,)).numpy(),
            F.dropout(engine.ones(50), p=0.5).numpy()]


def test_manual_seed_makes_every_random_draw_reproducible():
    engine.manual_seed(1234)
    first = _draws()
    engine.manual_seed(1234)
    second = _draws()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    engine.manual_seed(4321)
    third = _draws()
    assert not np.array_equal(first[0], third[0])
    assert not np.array_equal(first[3], third[3])


# ---- facts: Size, shape, repr -----------------------------------------------------------------------
def test_size_is_a_tuple_with_numel_and_a_readable_repr():
    s = engine.zeros(2, 3, 4).shape
    assert isinstance(s, engine.Size) and isinstance(s, tuple)
    assert s == (2, 3, 4) and s.numel() == 24 and s[1:] == (3, 4)
    assert repr(s) == "engine.Size([2, 3, 4])"
    assert engine.Size([]).numel() == 1


def test_shape_ndim_size_dim_numel():
    t = engine.zeros(2, 3, 4)
    assert t.ndim == 3 and t.dim() == 3 and t.numel() == 24 and len(t) == 2
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    s = engine.tensor(1.0)
    assert s.shape == () and s.ndim == 0 and s.numel() == 1


@pytest.mark.parametrize("make,text", [
    (lambda: engine.tensor([1.0, 2.5]), "tensor([1. , 2.5])"),
    (lambda: engine.tensor([1, 2]), "tensor([1, 2])"),
    (lambda: engine.tensor([True, False]), "tensor([ True, False])"),
    (lambda: engine.tensor([0.5], dtype=engine.float64), "tensor([0.5], dtype=engine.float64)"),
    (lambda: engine.tensor([3], dtype=engine.int32), "tensor([3], dtype=engine.int32)"),
    (lambda: engine.tensor(2.0, requires_grad=True), "tensor(2., requires_grad=True)"),
    (lambda: engine.tensor(2.0, requires_grad=True) * 3, "tensor(6., grad_fn=<MulBackward>)"),
])
def test_repr_reads_like_pytorch(make, text):
    assert repr(make()) == text


# ---- threads and kernel sets --------------------------------------------------------------------------
def test_set_num_threads_round_trips():
    pytest.importorskip("engine._C", reason="the native module is not built in this tree")
    before = engine.get_num_threads()
    try:
        for n in (1, 2, 3):
            engine.set_num_threads(n)
            assert engine.get_num_threads() == n
    finally:
        engine.set_num_threads(before)


@pytest.mark.parametrize("name", ["numpy", "native"])
def test_backend_use_switches_the_cpu_kernel_set(name):
    previous = engine.backend.current()
    try:
        engine.backend.use(name)
        assert engine.backend.current() == name
        described = engine.backend.describe()
        assert set(described) == set(KERNEL_NAMES)
        if name == "numpy":
            assert set(described.values()) == {"numpy"}
        e = np.exp([1.0, 2.0, 3.0])
        np.testing.assert_allclose(F.softmax(engine.tensor([1.0, 2.0, 3.0]), dim=-1).numpy(), e / e.sum(),
                                   rtol=1e-6)
    finally:
        engine.backend.use(previous)
    assert engine.backend.current() == previous
