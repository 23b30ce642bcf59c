"""Bad input raises a clear Python exception whose message names the problem: the op, and the
shapes, dtypes or values at fault. Nothing reaches the native code unchecked, so nothing crashes."""
import numpy as np
import pytest

import engine
import engine.nn.functional as F


# ---- matrix products -------------------------------------------------------------------------------
@pytest.mark.parametrize("a_shape,b_shape,names", [
    ((2, 3), (4, 5), r"\(2, 3\) and \(4, 5\).*inner dimensions 3 and 4"),
    ((3,), (4,), r"\(3,\) and \(4,\)"),
    ((2, 3), (2,), r"\(2, 3\) and \(2,\)"),
    ((2, 2, 3), (3, 3, 4), r"\(2, 2, 3\) and \(3, 3, 4\).*batch dimensions"),
])
def test_matmul_shape_mismatch_names_both_shapes(a_shape, b_shape, names):
    with pytest.raises(RuntimeError, match=r"matmul: shapes " + names):
        engine.randn(*a_shape) @ engine.randn(*b_shape)


def test_matmul_of_a_zero_dim_tensor_is_refused():
    with pytest.raises(RuntimeError, match="at least 1 dimension"):
        engine.matmul(engine.tensor(2.0), engine.randn(3))


def test_matmul_mixing_float32_and_float64_names_both_dtypes():
    with pytest.raises(TypeError, match="matmul.*same dtype.*float32 and float64"):
        engine.randn(2, 3) @ engine.randn(3, 2, dtype=engine.float64)


def test_matmul_of_integer_tensors_is_refused():
    with pytest.raises(TypeError, match="matmul: only floating-point.*int64"):
        engine.tensor([[1, 2]]) @ engine.tensor([[1], [2]])


def test_bmm_needs_3d_tensors_with_one_batch_size():
    with pytest.raises(RuntimeError, match=r"bmm.*\(2, 3, 4\) and \(3, 4, 5\)"):
        engine.bmm(engine.randn(2, 3, 4), engine.randn(3, 4, 5))


def test_linear_with_wrong_in_features_names_both_shapes():
    with pytest.raises(RuntimeError, match=r"linear: input shape \(2, 3\) and weight shape \(5, 4\).*in_features 4"):
        F.linear(engine.randn(2, 3), engine.randn(5, 4))


def test_linear_with_a_wrong_bias_or_dtype():
    with pytest.raises(RuntimeError, match=r"linear: bias must have shape \(5,\), got \(4,\)"):
        F.linear(engine.randn(2, 4), engine.randn(5, 4), engine.randn(4))
    with pytest.raises(TypeError, match="linear.*float32 and float64"):
        F.linear(engine.randn(2, 4), engine.randn(5, 4, dtype=engine.float64))


# ---- convolution and pooling -------------------------------------------------------------------------
def test_conv2d_with_wrong_channels_names_both_channel_counts():
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but weight of shape \(2, 4, 3, 3\) expects 4"):
        F.conv2d(engine.randn(1, 3, 5, 5), engine.randn(2, 4, 3, 3))


def test_conv2d_with_a_kernel_larger_than_the_input():
    with pytest.raises(ValueError, match=r"conv2d: kernel \(5, 5\).*larger than the padded input 4x4"):
        F.conv2d(engine.randn(1, 2, 4, 4), engine.randn(3, 2, 5, 5))
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(engine.randn(1, 2, 4, 4), engine.randn(3, 2, 3, 3), dilation=2)


def test_conv2d_refuses_bad_ranks_groups_and_arguments():
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D input.*\(3, 5, 5\)"):
        F.conv2d(engine.randn(3, 5, 5), engine.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"groups=2 must divide the input channels \(3\)"):
        F.conv2d(engine.randn(1, 3, 5, 5), engine.randn(2, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"stride must be .* >= 1, got \(0, 0\)"):
        F.conv2d(engine.randn(1, 3, 5, 5), engine.randn(2, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.conv2d(engine.randn(1, 3, 5, 5), engine.randn(2, 3, 3, 3), engine.randn(3))


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_padding_over_half_the_kernel(pool):
    with pytest.raises(ValueError, match=r"pool2d: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"):
        pool(engine.randn(1, 1, 6, 6), 3, padding=2)


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_kernel_larger_than_the_input(pool):
    with pytest.raises(ValueError, match=r"pool2d: kernel \(4, 4\) is larger than the padded input \(3, 3\)"):
        pool(engine.randn(1, 1, 3, 3), 4)


# ---- attention ------------------------------------------------------------------------------------------
def test_attention_with_mismatched_head_dims_names_the_shapes():
    with pytest.raises(ValueError, match=r"same head dim, got \(1, 2, 3, 4\) and \(1, 2, 3, 5\)"):
        F.scaled_dot_product_attention(engine.randn(1, 2, 3, 4), engine.randn(1, 2, 3, 5), engine.randn(1, 2, 3, 4))


def test_attention_with_mismatched_key_and_value_lengths():
    with pytest.raises(ValueError, match=r"key and value must have the same length.*\(1, 2, 5, 4\), \(1, 2, 6, 4\)"):
        F.scaled_dot_product_attention(engine.randn(1, 2, 3, 4), engine.randn(1, 2, 5, 4), engine.randn(1, 2, 6, 4))


def test_attention_mask_that_does_not_broadcast():
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 4\) does not broadcast to \(1, 2, 3, 5\)"):
        F.scaled_dot_product_attention(engine.randn(1, 2, 3, 4), engine.randn(1, 2, 5, 4), engine.randn(1, 2, 5, 4),
                                       attn_mask=engine.ones(3, 4, dtype=engine.bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or floating, got int64"):
        F.scaled_dot_product_attention(engine.randn(1, 2, 3, 4), engine.randn(1, 2, 5, 4), engine.randn(1, 2, 5, 4),
                                       attn_mask=engine.ones(3, 5, dtype=engine.int64))


# ---- losses and embedding -------------------------------------------------------------------------------
@pytest.mark.parametrize("target,bad", [([0, 3], 3), ([-1, 0], -1)])
def test_cross_entropy_target_out_of_range(target, bad):
    with pytest.raises(IndexError, match=rf"cross_entropy: target {bad} is out of bounds for 3 classes"):
        F.cross_entropy(engine.randn(2, 3), engine.tensor(target))


def test_cross_entropy_target_of_the_wrong_dtype():
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer class indices, got float32"):
        F.cross_entropy(engine.randn(2, 3), engine.tensor([0.0, 1.0]))


@pytest.mark.parametrize("target_shape", [(3,), (2, 1)])
def test_cross_entropy_target_of_the_wrong_shape(target_shape):
    target = engine.zeros(target_shape, dtype=engine.int64)
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \(2,\) for input of shape \(2, 3\)"):
        F.cross_entropy(engine.randn(2, 3), target)


def test_cross_entropy_of_integer_logits():
    with pytest.raises(TypeError, match="cross_entropy: expected a floating-point tensor, got int64"):
        F.cross_entropy(engine.tensor([[1, 2]]), engine.tensor([0]))


def test_loss_reduction_must_be_known():
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.mse_loss(engine.randn(2), engine.randn(2), reduction="avg")


def test_mse_and_bce_with_mismatched_shapes():
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(2, 3\) and target shape \(3,\) differ"):
        F.mse_loss(engine.randn(2, 3), engine.randn(3))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: input shape \(2,\) and "
                                         r"target shape \(3,\)"):
        F.binary_cross_entropy_with_logits(engine.randn(2), engine.rand(3))


@pytest.mark.parametrize("index", [[0, 5], [-1, 2]])
def test_embedding_index_out_of_range(index):
    with pytest.raises(IndexError, match="embedding: index out of range for 5 embeddings"):
        F.embedding(engine.tensor(index), engine.randn(5, 2))


def test_embedding_with_float_indices():
    with pytest.raises(TypeError, match="embedding: indices must be integers, got float32"):
        F.embedding(engine.tensor([0.0, 1.0]), engine.randn(5, 2))


def test_layer_norm_shape_that_is_not_the_trailing_dims():
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \[3\] does not match .* \(2, 4\)"):
        F.layer_norm(engine.randn(2, 4), (3,))


@pytest.mark.parametrize("call,match", [
    (lambda: F.dropout(engine.ones(3), p=1.5), r"dropout: probability must be in \[0, 1\], got 1.5"),
    (lambda: F.gelu(engine.ones(3), approximate="fast"), "gelu: approximate must be 'none' or 'tanh'"),
    (lambda: F.softmax(engine.tensor([1, 2]), dim=0), "softmax: expected a floating-point tensor, got int64"),
])
def test_bad_arguments_to_nn_functions(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# ---- autograd ----------------------------------------------------------------------------------------------
def test_backward_on_a_non_scalar_without_a_gradient():
    y = engine.randn(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"implicitly created only for scalar outputs.*shape \(3,\)"):
        y.backward()


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        engine.randn(3).sum().backward()


def test_backward_with_a_gradient_of_the_wrong_shape():
    y = engine.randn(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"gradient shape \(2,\) does not match the tensor's shape \(3,\)"):
        y.backward(engine.ones(2))


@pytest.mark.parametrize("make", [
    lambda: engine.tensor([1, 2], requires_grad=True),
    lambda: engine.tensor([1, 2]).requires_grad_(),
    lambda: engine.zeros(2, dtype=engine.int64, requires_grad=True),
    lambda: engine.tensor([True], requires_grad=True),
], ids=["tensor", "requires_grad_", "zeros", "bool"])
def test_requires_grad_on_a_non_floating_tensor(make):
    with pytest.raises(RuntimeError, match="only floating-point tensors can require gradients, got (int64|bool)"):
        make()


# ---- backend switching and threads ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cuda", "torch", ""])
def test_unknown_backend_name_is_refused_and_changes_nothing(name):
    before = engine.backend.current()
    with pytest.raises(ValueError, match=rf"unknown backend '{name}'; expected one of numpy, native"):
        engine.backend.use(name)
    assert engine.backend.current() == before


@pytest.mark.parametrize("n", [0, -2, 1.5])
def test_set_num_threads_needs_a_positive_int(n):
    with pytest.raises(ValueError, match="set_num_threads: expected a positive int"):
        engine.set_num_threads(n)


# ---- making tensors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("data,match", [
    ("abc", "cannot make a tensor from data of type <U3"),
    (["a", "b"], "cannot make a tensor from data of type <U1"),
    (object(), "cannot make a tensor from data of type object"),
    ([1.0, object()], "cannot make a tensor from data of type object"),
    (None, "cannot make a tensor from data of type object"),
    (1 + 2j, "complex tensors are not supported"),
    (np.array([1 + 1j]), "complex tensors are not supported"),
])
def test_tensor_from_unsupported_data(data, match):
    with pytest.raises(TypeError, match=rf"tensor\(\): {match}"):
        engine.tensor(data)


def test_tensor_from_complex_data_with_a_real_dtype_is_refused():
    with pytest.raises(TypeError, match="complex tensors are not supported"):
        engine.tensor([1 + 2j], dtype=engine.float32)


def test_from_numpy_needs_a_numeric_ndarray():
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray, got list"):
        engine.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError, match="from_numpy: unsupported dtype <U1"):
        engine.from_numpy(np.array(["a"]))


def test_unknown_dtype_is_refused():
    with pytest.raises(TypeError, match="not a dtype: 'float99'"):
        engine.zeros(2, dtype="float99")


def test_negative_dimension_in_a_factory():
    with pytest.raises(ValueError, match=r"negative dimension in shape \(2, -1\)"):
        engine.zeros(2, -1)


# ---- shape ops ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,text", [
    ((4, 2), r"\[4, 2\]"), ((-1, 4), r"\[-1, 4\]"), ((-1, -1), r"\[-1, -1\]")])
def test_reshape_to_an_incompatible_shape(shape, text):
    with pytest.raises(RuntimeError, match=rf"shape '{text}' is invalid for input of size 6"):
        engine.randn(2, 3).reshape(*shape)


def test_reshape_with_a_negative_size_other_than_minus_one():
    with pytest.raises(RuntimeError, match=r"reshape: invalid size in shape '\[-2, -3\]'"):
        engine.randn(2, 3).reshape(-2, -3)


def test_expand_to_a_bad_shape():
    with pytest.raises(RuntimeError, match=r"expanded size \(4\) must match the existing size \(3\) at "
                                           r"non-singleton dimension 1.*\(2, 3\)"):
        engine.randn(2, 3).expand(2, 4)
    with pytest.raises(RuntimeError, match=r"number of sizes \(1\) must be >= the number of dimensions "
                                           r"of the tensor \(2\)"):
        engine.randn(2, 3).expand(3)


@pytest.mark.parametrize("shape,target,size", [((2, 3), (-1, 2, 3), -1), ((1, 3), (-2, 3), -2)])
def test_expand_with_minus_one_in_a_new_dim_or_a_negative_size(shape, target, size):
    with pytest.raises(RuntimeError, match=rf"expand: invalid size {size} at dimension 0"):
        engine.randn(*shape).expand(*target)


def test_cat_of_mismatched_shapes_names_both():
    with pytest.raises(RuntimeError, match=r"cat: sizes of tensors must match except in dimension 0; "
                                           r"got \(2, 3\) and \(2, 4\)"):
        engine.cat([engine.randn(2, 3), engine.randn(2, 4)])
    with pytest.raises(RuntimeError, match=r"got \(2, 3\) and \(3,\)"):
        engine.cat([engine.randn(2, 3), engine.randn(3)])
    with pytest.raises(ValueError, match="cat: expected a non-empty sequence"):
        engine.cat([])


def test_stack_of_mismatched_shapes_names_both():
    with pytest.raises(RuntimeError, match=r"stack expects each tensor to be equal size, but got "
                                           r"\(2, 3\) and \(2, 4\)"):
        engine.stack([engine.randn(2, 3), engine.randn(2, 4)])


def test_permute_that_is_not_a_permutation():
    with pytest.raises(RuntimeError, match=r"permute: dims \[0, 0\] are not a permutation"):
        engine.randn(2, 3).permute(0, 0)


@pytest.mark.parametrize("call", [
    lambda t: t.sum(dim=2), lambda t: t.transpose(0, 3), lambda t: F.softmax(t, dim=-3), lambda t: t.size(2)])
def test_dimension_out_of_range(call):
    with pytest.raises(IndexError, match="dimension.*out of range"):
        call(engine.randn(2, 3))


def test_indexing_with_float_indices():
    with pytest.raises(IndexError, match="tensors used as indices must be integer or bool, got float32"):
        engine.randn(3)[engine.tensor([0.0, 1.0])]


# ---- native modules: checked at the boundary, never a crash ----------------------------------------------
def test_native_add_refuses_integer_arrays():
    _C = pytest.importorskip("engine._C", reason="the native module is not built in this tree")
    with pytest.raises(TypeError, match="add: a must be float32 or float64, got int64"):
        _C.add(np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(TypeError):
        _C.add([1.0, 2.0], [3.0, 4.0])


def test_fused_softmax_refuses_a_wrong_dtype():
    _fused = pytest.importorskip("engine._fused", reason="the native module is not built in this tree")
    x = np.zeros((2, 3), np.float32)
    with pytest.raises((TypeError, ValueError)):
        _fused.softmax_forward(np.zeros((2, 3), np.float64), x)        # out and x differ
    with pytest.raises((TypeError, ValueError)):
        _fused.softmax_forward(np.zeros((2, 3), np.int32), np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError):
        _fused.softmax_forward(x, np.zeros(3, np.float32))              # 1-D input
    with pytest.raises(ValueError, match="out shape"):
        _fused.softmax_forward(np.zeros((3, 2), np.float32), x)
