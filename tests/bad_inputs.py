"""The bad-input corpus: calls that must end in a clear Python exception (never a crash, never a
hang), and non-finite data whose result is documented here. test_bad_inputs.py runs every case
in a subprocess, so a segfault or an abort in native code is caught and named.

A case is a line of Python run with the names in PRELUDE:
  Raises(id, code, error, match)   `code` raises `error` (a type or a tuple of types) with a
                                   message matching the regex `match`, which names the problem
  Returns(id, code, doc)           `code` runs to the end; its asserts are the documented result
"""
from dataclasses import dataclass

PRELUDE = """
import numpy as np
import engine
import engine.nn.functional as F
from engine import nn, optim, kernels, _C, _fused
nan, inf = float("nan"), float("inf")
randn, tensor, zeros, ones = engine.randn, engine.tensor, engine.zeros, engine.ones
def f32(*shape):
    return np.zeros(shape, np.float32)
def f64(*shape):
    return np.zeros(shape, np.float64)
def misaligned(n):
    # n float32 values starting one byte into a buffer
    return np.frombuffer(np.zeros(4 * n + 1, np.uint8)[1:].data, np.float32)
"""


@dataclass(frozen=True)
class Raises:
    id: str
    code: str
    error: object
    match: str


@dataclass(frozen=True)
class Returns:
    id: str
    code: str
    doc: str


# ---- wrong number of dims --------------------------------------------------------------------
NDIM = [
    Raises("conv2d-3d-input", "F.conv2d(randn(3, 5, 5), randn(2, 3, 3, 3))", ValueError,
           r"conv2d: expected a 4-D input .*\(3, 5, 5\)"),
    Raises("conv2d-5d-weight", "F.conv2d(randn(1, 3, 5, 5), randn(2, 3, 3, 3, 1))", ValueError,
           r"conv2d: expected a 4-D weight .*\(2, 3, 3, 3, 1\)"),
    Raises("max_pool2d-3d", "F.max_pool2d(randn(3, 4, 4), 2)", ValueError, r"max_pool2d: expected a 4-D input"),
    Raises("avg_pool2d-2d", "F.avg_pool2d(randn(4, 4), 2)", ValueError, r"avg_pool2d: expected a 4-D input"),
    Raises("sdpa-1d", "F.scaled_dot_product_attention(randn(4), randn(4), randn(4))", ValueError,
           r"scaled_dot_product_attention: .*same number of dims \(>= 2\)"),
    Raises("sdpa-ndim-mismatch", "F.scaled_dot_product_attention(randn(2, 3, 4), randn(3, 4), randn(3, 4))",
           ValueError, r"scaled_dot_product_attention: .*same number of dims"),
    Raises("linear-3d-weight", "F.linear(randn(2, 3), randn(1, 4, 3))", RuntimeError, r"linear: weight must be 2-D"),
    Raises("embedding-1d-weight", "F.embedding(tensor([0]), randn(3))", ValueError, r"embedding: weight must be 2-D"),
    Raises("matmul-0d", "engine.matmul(tensor(2.0), randn(3))", RuntimeError, r"matmul: .*at least 1 dimension"),
    Raises("bmm-2d", "engine.bmm(randn(2, 3), randn(3, 2))", RuntimeError, r"bmm: expected two 3-D tensors"),
    Raises("layer_norm-shape-longer-than-input", "F.layer_norm(randn(3), (2, 3))", ValueError,
           r"layer_norm: normalized_shape \[2, 3\] does not match"),
    Raises("cross_entropy-0d-input", "F.cross_entropy(tensor(1.0), tensor(0))", ValueError,
           r"cross_entropy: expected target of shape"),
    Raises("nll_loss-3d", "F.nll_loss(randn(2, 3, 4), tensor([0, 1]))", ValueError, r"nll_loss: expected input \(N, C\)"),
    Raises("t-3d", "randn(2, 3, 4).t()", RuntimeError, r"t\(\) expects a tensor with <= 2 dimensions"),
    Raises("dim-out-of-range", "randn(2, 3).sum(dim=2)", IndexError, r"dimension out of range"),
    Raises("softmax-dim-out-of-range", "F.softmax(randn(2, 3), dim=-3)", IndexError, r"dimension out of range"),
    Raises("permute-not-a-permutation", "randn(2, 3).permute(0, 0)", RuntimeError, r"permute: dims \[0, 0\] are not a permutation"),
]

# ---- mismatched shapes -----------------------------------------------------------------------
SHAPES = [
    Raises("add-no-broadcast", "randn(2, 3) + randn(4)", ValueError, r"could not be broadcast.*\(2,3\).*\(4,\)"),
    Raises("matmul-inner", "randn(2, 3) @ randn(4, 5)", RuntimeError, r"matmul: shapes \(2, 3\) and \(4, 5\).*inner dimensions 3 and 4"),
    Raises("matmul-batch", "randn(2, 2, 3) @ randn(3, 3, 4)", RuntimeError, r"matmul: .*batch dimensions do not broadcast"),
    Raises("cat-shapes", "engine.cat([randn(2, 3), randn(2, 4)], dim=0)", RuntimeError, r"cat: sizes of tensors must match.*\(2, 3\) and \(2, 4\)"),
    Raises("stack-shapes", "engine.stack([randn(2), randn(3)])", RuntimeError, r"stack expects each tensor to be equal size"),
    Raises("where-shapes", "engine.where(tensor([True, False, True]), randn(2), randn(2))", ValueError, r"could not be broadcast"),
    Raises("masked_fill-mask-shape", "randn(2, 3).masked_fill(tensor([True, False]), 0.0)", ValueError, r"could not be broadcast"),
    Raises("masked_fill-tensor-value", "randn(2).masked_fill(tensor([True, False]), randn(2))", ValueError,
           r"masked_fill: value must be a number or a 0-d tensor"),
    Raises("mse-shapes", "F.mse_loss(randn(2, 3), randn(3, 2))", ValueError, r"mse_loss: input shape \(2, 3\) and target shape \(3, 2\) differ"),
    Raises("bce-shapes", "F.binary_cross_entropy_with_logits(randn(3), randn(4))", ValueError,
           r"binary_cross_entropy_with_logits: input shape \(3,\) and target shape \(4,\) differ"),
    Raises("conv2d-channels", "F.conv2d(randn(1, 3, 5, 5), randn(2, 4, 3, 3))", ValueError, r"conv2d: input has 3 channels but weight"),
    Raises("conv2d-bias-shape", "F.conv2d(randn(1, 3, 5, 5), randn(2, 3, 3, 3), randn(3))", ValueError, r"conv2d: bias must have shape \(2,\)"),
    Raises("conv2d-kernel-too-large", "F.conv2d(randn(1, 1, 2, 2), randn(1, 1, 3, 3))", ValueError, r"conv2d: kernel \(3, 3\).* larger than the padded input"),
    Raises("sdpa-head-dims", "F.scaled_dot_product_attention(randn(1, 2, 4), randn(1, 2, 5), randn(1, 2, 5))", ValueError,
           r"scaled_dot_product_attention: query and key must have the same head dim"),
    Raises("sdpa-kv-lengths", "F.scaled_dot_product_attention(randn(1, 2, 4), randn(1, 3, 4), randn(1, 2, 4))", ValueError,
           r"key and value must have the same length"),
    Raises("sdpa-mask-broadcast", "F.scaled_dot_product_attention(randn(1, 2, 4), randn(1, 3, 4), randn(1, 3, 4), attn_mask=ones(2, 2, dtype=engine.bool))",
           ValueError, r"attn_mask of shape \(2, 2\) does not broadcast"),
    Raises("cross_entropy-target-shape", "F.cross_entropy(randn(4, 3), tensor([0, 1]))", ValueError, r"cross_entropy: expected target of shape \(4,\)"),
    Raises("nll_loss-target-shape", "F.nll_loss(randn(4, 3), tensor([0, 1]))", ValueError, r"nll_loss: expected input \(N, C\) and target \(N,\)"),
    Raises("layer_norm-weight-shape", "F.layer_norm(randn(2, 3), (3,), randn(4))", ValueError, r"layer_norm: weight must have shape \(3,\)"),
    Raises("linear-in-features", "F.linear(randn(2, 3), randn(5, 4))", RuntimeError, r"linear: input shape \(2, 3\) and weight shape \(5, 4\)"),
    Raises("linear-bias-shape", "F.linear(randn(2, 4), randn(5, 4), randn(4))", RuntimeError, r"linear: bias must have shape \(5,\)"),
    Raises("reshape-size", "randn(2, 3).reshape(4, 2)", RuntimeError, r"shape '\[4, 2\]' is invalid for input of size 6"),
    Raises("reshape-two-minus-one", "randn(2, 3).reshape(-1, -1)", RuntimeError, r"is invalid for input of size 6"),
    Raises("view-size", "randn(6).view(4)", RuntimeError, r"shape '\[4\]' is invalid for input of size 6"),
    Raises("expand-bad", "randn(2, 3).expand(4, 3)", RuntimeError, r"expand: the expanded size \(4\) must match the existing size \(2\)"),
    Raises("split-sections", "randn(5).split([2, 2])", ValueError, r"split: sections \[2, 2\] do not add up to dimension 0 of size 5"),
    Raises("backward-gradient-shape", "x = randn(3, requires_grad=True); (x * 2).backward(ones(4))", RuntimeError,
           r"backward\(\): gradient shape \(4,\) does not match the tensor's shape \(3,\)"),
    Raises("index-out-of-range", "randn(3)[10]", IndexError, r"index 10 is out of bounds for axis 0 with size 3"),
    Raises("embedding-index", "F.embedding(tensor([0, 3]), randn(3, 2))", IndexError, r"embedding: index out of range for 3 embeddings"),
    Raises("embedding-negative-index", "F.embedding(tensor([-1]), randn(3, 2))", IndexError, r"embedding: index out of range"),
    Raises("cross_entropy-target-range", "F.cross_entropy(randn(2, 3), tensor([0, 3]))", IndexError, r"cross_entropy: target 3 is out of bounds for 3 classes"),
    Raises("cross_entropy-negative-target", "F.cross_entropy(randn(2, 3), tensor([0, -2]))", IndexError, r"cross_entropy: target -2 is out of bounds"),
    Raises("nll_loss-target-range", "F.nll_loss(randn(2, 3), tensor([0, 3]))", IndexError, r"nll_loss: target 3 is out of bounds for 3 classes"),
    Raises("nll_loss-negative-target", "F.nll_loss(randn(2, 3), tensor([-1, 0]))", IndexError, r"nll_loss: target -1 is out of bounds for 3 classes"),
    Raises("load_state_dict-shape", "m = nn.Linear(2, 3); m.load_state_dict({'weight': zeros(3, 3), 'bias': zeros(3)})",
           (RuntimeError, ValueError), r"weight.*\(3, 3\).*\(3, 2\)|size mismatch"),
]

# ---- wrong dtypes ----------------------------------------------------------------------------
DTYPES = [
    Raises("matmul-int", "tensor([[1, 2]]) @ tensor([[1], [2]])", TypeError, r"matmul: only floating-point tensors.*int64"),
    Raises("matmul-mixed", "randn(2, 3) @ randn(3, 2, dtype=engine.float64)", TypeError, r"matmul: .*same dtype.*float32 and float64"),
    Raises("linear-mixed", "F.linear(randn(2, 4), randn(5, 4, dtype=engine.float64))", TypeError, r"linear: .*float32 and float64"),
    Raises("conv2d-int", "F.conv2d(zeros(1, 1, 3, 3, dtype=engine.int64), zeros(1, 1, 2, 2, dtype=engine.int64))", TypeError,
           r"conv2d: input, weight and bias must share one floating dtype, got int64"),
    Raises("conv2d-bool", "F.conv2d(zeros(1, 1, 3, 3, dtype=engine.bool), randn(1, 1, 2, 2))", TypeError, r"conv2d: .*floating dtype, got bool"),
    Raises("conv2d-mixed", "F.conv2d(randn(1, 1, 3, 3), randn(1, 1, 2, 2, dtype=engine.float64))", TypeError, r"conv2d: .*float32, float64"),
    Raises("softmax-int", "F.softmax(tensor([1, 2, 3]), dim=0)", TypeError, r"softmax: expected a floating-point tensor, got int64"),
    Raises("log_softmax-bool", "F.log_softmax(tensor([True, False]), dim=0)", TypeError, r"log_softmax: expected a floating-point tensor, got bool"),
    Raises("layer_norm-int", "F.layer_norm(tensor([[1, 2]]), (2,))", TypeError, r"layer_norm: expected a floating-point tensor, got int64"),
    Raises("cross_entropy-float-target", "F.cross_entropy(randn(2, 3), tensor([0.0, 1.0]))", TypeError, r"cross_entropy: target must hold integer class indices, got float32"),
    Raises("cross_entropy-int-logits", "F.cross_entropy(tensor([[1, 2]]), tensor([0]))", TypeError, r"cross_entropy: expected a floating-point tensor"),
    Raises("nll_loss-float-target", "F.nll_loss(randn(2, 3), tensor([0.0, 1.0]))", TypeError, r"nll_loss: target must hold integer class indices, got float32"),
    Raises("embedding-float-indices", "F.embedding(tensor([0.5]), randn(3, 2))", TypeError, r"embedding: indices must be integers, got float32"),
    Raises("sdpa-int", "F.scaled_dot_product_attention(zeros(1, 2, 4, dtype=engine.int64), randn(1, 2, 4), randn(1, 2, 4))", TypeError,
           r"scaled_dot_product_attention: query, key and value must share one floating dtype, got int64"),
    Raises("sdpa-int-mask", "F.scaled_dot_product_attention(randn(1, 2, 4), randn(1, 2, 4), randn(1, 2, 4), attn_mask=zeros(2, 2, dtype=engine.int64))",
           TypeError, r"attn_mask must be bool or floating, got int64"),
    Raises("masked_fill-float-mask", "randn(2).masked_fill(ones(2), 0.0)", TypeError, r"masked_fill: mask must be a bool tensor, got float32"),
    Raises("index-float-tensor", "randn(3)[tensor([1.5])]", IndexError, r"tensors used as indices must be integer or bool, got float32"),
    Raises("requires_grad-int", "tensor([1, 2], requires_grad=True)", RuntimeError, r"only floating-point tensors can require gradients, got int64"),
    Raises("requires_grad_-bool", "tensor([True]).requires_grad_()", RuntimeError, r"only floating-point tensors can require gradients, got bool"),
    Raises("tensor-complex", "tensor([1 + 2j])", TypeError, r"tensor\(\): complex tensors are not supported"),
    Raises("tensor-object", "tensor(object())", TypeError, r"tensor\(\): cannot make a tensor from data of type object"),
    Raises("tensor-string", "tensor('abc')", TypeError, r"tensor\(\): cannot make a tensor from data of type <U3"),
    Raises("tensor-mixed-list", "tensor([1, 'a'])", TypeError, r"tensor\(\): cannot make a tensor from data of type <U"),
    Raises("tensor-ragged", "tensor([[1, 2], [3]])", ValueError, r"inhomogeneous shape"),
    Raises("tensor-int-too-large", "tensor(2 ** 70)", TypeError, r"tensor\(\): cannot make a tensor from data of type object"),
    Raises("dtype-unknown", "zeros(2, dtype='float99')", TypeError, r"not a dtype|data type 'float99' not understood"),
    Raises("bfloat16-storage", "zeros(2, dtype=engine.bfloat16)", TypeError,
           r"engine.bfloat16 is a compute precision for engine.autocast\('cuda'\), not a storage dtype"),
    Raises("complex64", "engine.complex64", NotImplementedError, r"complex tensors is not supported"),
]

# ---- non-finite data: documented results ----------------------------------------------------
NONFINITE = [
    Returns("softmax-nan-row", "y = F.softmax(tensor([[nan, 1.0], [1.0, 2.0]]), dim=1).numpy(); "
            "assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()",
            "a NaN makes its own row NaN and no other"),
    Returns("softmax-inf", "y = F.softmax(tensor([[inf, 1.0], [-inf, 2.0]]), dim=1).numpy(); "
            "assert np.isnan(y[0]).all() and (y[1] == [0.0, 1.0]).all()",
            "+inf in a row gives NaN (inf - inf), as PyTorch; -inf gets probability 0"),
    Returns("softmax-all-minus-inf", "y = F.softmax(tensor([[-inf, -inf]]), dim=1).numpy(); assert np.isnan(y).all()",
            "a row of -inf is NaN, as PyTorch (attention has its own rule: zeros)"),
    Returns("log_softmax-large", "y = F.log_softmax(tensor([[1e30, 0.0]]), dim=1).numpy(); assert y[0, 0] == 0 and y[0, 1] == np.float32(-1e30)",
            "max-shifted: huge finite logits stay finite"),
    Returns("cross_entropy-inf-logit", "assert np.isnan(F.cross_entropy(tensor([[inf, 0.0]]), tensor([0])).item())",
            "+inf logit: NaN (inf - inf), as PyTorch"),
    Returns("cross_entropy-minus-inf-target", "assert F.cross_entropy(tensor([[-inf, 0.0]]), tensor([0])).item() == inf",
            "the target class at -inf: loss +inf"),
    Returns("cross_entropy-minus-inf-other", "assert F.cross_entropy(tensor([[-inf, 0.0]]), tensor([1])).item() == 0.0",
            "another class at -inf: loss 0"),
    Returns("cross_entropy-huge-logits", "x = tensor([[1e4, -1e4, 0.0]], requires_grad=True); l = F.cross_entropy(x, tensor([1])); "
            "l.backward(); assert l.item() == 2e4 and np.isfinite(x.grad.numpy()).all()",
            "log-sum-exp: logits near 1e4 give a finite loss and gradient"),
    Returns("cross_entropy-all-ignored", "assert np.isnan(F.cross_entropy(randn(2, 3), tensor([-100, -100])).item())",
            "mean over zero targets is NaN (0/0), as PyTorch"),
    Returns("layer_norm-constant-row", "y = F.layer_norm(ones(2, 3) * 5, (3,), ones(3), tensor([1.0, 2.0, 3.0])).numpy(); "
            "assert (y == [[1, 2, 3], [1, 2, 3]]).all()",
            "a constant row has variance 0 and returns beta"),
    Returns("layer_norm-inf-row", "y = F.layer_norm(tensor([[1.0, 1.0], [1.0, inf]]), (2,)).numpy(); "
            "assert (y[0] == 0).all() and np.isnan(y[1]).all()",
            "an inf makes its own row NaN"),
    Returns("max_pool2d-nan", "y = F.max_pool2d(tensor([[[[1.0, nan], [2.0, 3.0]]]]), 2).numpy(); assert np.isnan(y).all()",
            "max pooling takes a NaN, as PyTorch"),
    Returns("gelu-nonfinite", "y = F.gelu(tensor([inf, -inf, nan])).numpy(); assert y[0] == inf and np.isnan(y[1:]).all()",
            "gelu(inf) = inf; gelu(-inf) = -inf·0 = NaN, as PyTorch"),
    Returns("relu-nonfinite", "y = F.relu(tensor([nan, -inf, inf])).numpy(); assert np.isnan(y[0]) and y[1] == 0 and y[2] == inf",
            "relu keeps NaN and maps -inf to 0, as PyTorch"),
    Returns("sigmoid-nonfinite", "y = engine.sigmoid(tensor([nan, -inf, inf])).numpy(); assert np.isnan(y[0]) and y[1] == 0 and y[2] == 1",
            "sigmoid saturates at ±inf"),
    Returns("sum-inf-minus-inf", "assert np.isnan(tensor([inf, -inf]).sum().item())", "inf + -inf is NaN"),
    Returns("matmul-nan-stays-in-its-row", "y = engine.matmul(tensor([[nan, 1.0], [1.0, 1.0]] + [[1.0, 1.0]] * 40), ones(2, 40)).numpy(); "
            "assert np.isnan(y[0]).all() and np.isfinite(y[1:]).all()",
            "a NaN in row i of a reaches row i of the product only (packing never spreads it)"),
    Returns("matmul-inf-times-zero", "y = engine.matmul(tensor([[inf, 1.0]]), tensor([[0.0, 1.0], [1.0, 1.0]])).numpy(); "
            "assert np.isnan(y[0, 0]) and y[0, 1] == inf",
            "inf·0 is NaN inside a product, as IEEE says"),
    Returns("conv2d-nan-stays-local", "x = ones(1, 1, 4, 4); x[0, 0, 0, 0] = nan; y = F.conv2d(x, ones(1, 1, 2, 2)).numpy(); "
            "assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(y[0, 0].ravel()[1:]).all()",
            "a NaN reaches only the outputs whose window covers it"),
    Returns("attention-nan-masked-out", "y = F.scaled_dot_product_attention(ones(1, 2, 4), tensor([[[1.0] * 4, [nan] * 4]]), "
            "ones(1, 2, 4), attn_mask=tensor([[True, False], [True, False]])).numpy(); assert (y == 1).all()",
            "a NaN in a masked-out key never leaks (select, not multiply)"),
    Returns("attention-fully-masked-row", "q = ones(1, 2, 4, requires_grad=True); y = F.scaled_dot_product_attention(q, ones(1, 2, 4), "
            "ones(1, 2, 4), attn_mask=tensor([[False, False], [True, False]])); y.sum().backward(); "
            "assert (y.numpy()[0, 0] == 0).all() and np.isfinite(q.grad.numpy()).all()",
            "a query that sees no key gives 0 and finite gradients"),
    Returns("bce-inf-logits", "y = F.binary_cross_entropy_with_logits(tensor([inf, -inf, 80.0]), tensor([1.0, 0.0, 1.0]), reduction='none').numpy(); "
            "assert np.isnan(y[:2]).all() and y[2] == 0",
            "±inf logits: NaN (inf - inf), as PyTorch; a large finite logit stays finite"),
    Returns("nonfinite-loss-backward", "w = ones(3, requires_grad=True); l = (w * tensor([1.0, nan, 1.0])).sum(); l.backward(); "
            "assert np.isnan(l.item()) and np.isnan(w.grad.numpy()[1]) and np.isfinite(w.grad.numpy()[[0, 2]]).all()",
            "a NaN loss backpropagates: NaN only where it came from, no error"),
    Returns("clip_grad_norm-nonfinite", "p = nn.Parameter(ones(2)); p.grad = tensor([nan, 1.0]); "
            "assert np.isnan(nn.utils.clip_grad_norm_([p], 1.0).item())",
            "the norm of non-finite gradients is NaN, returned without an error by default"),
    Raises("clip_grad_norm-nonfinite-error", "p = nn.Parameter(ones(2)); p.grad = tensor([inf, 1.0]); "
           "nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)", RuntimeError,
           r"clip_grad_norm_: the total norm of the gradients is inf"),
]

# ---- empty tensors ---------------------------------------------------------------------------
EMPTY = [
    Raises("max-empty", "zeros(0).max()", RuntimeError, r"max\(\): cannot reduce an empty dimension \(shape \(0,\)\)"),
    Raises("min-empty-dim", "zeros(2, 0).min(1)", RuntimeError, r"min\(\): cannot reduce dimension 1 of size 0"),
    Raises("argmax-empty", "zeros(2, 0).argmax(1)", RuntimeError, r"argmax\(\): cannot reduce dimension 1 of size 0"),
    Raises("argmin-empty", "zeros(0).argmin()", RuntimeError, r"argmin\(\): cannot reduce an empty tensor"),
    Raises("amax-empty", "engine.amax(zeros(3, 0), dim=1)", RuntimeError, r"amax\(\): cannot reduce dimension 1 of size 0"),
    Raises("item-empty", "zeros(0).item()", ValueError, r"item\(\): only one-element tensors"),
    Raises("cat-nothing", "engine.cat([])", ValueError, r"cat: expected a non-empty sequence of tensors"),
    Raises("stack-nothing", "engine.stack([])", ValueError, r"stack: expected a non-empty sequence of tensors"),
    Raises("cross_entropy-no-classes", "F.cross_entropy(zeros(2, 0), tensor([0, 0]))", IndexError, r"cross_entropy: target 0 is out of bounds for 0 classes"),
    Returns("logsumexp-empty", "y = engine.logsumexp(zeros(2, 0), 1).numpy(); assert (y == -inf).all()", "log of an empty sum is -inf, as PyTorch"),
    Returns("softmax-empty", "assert F.softmax(zeros(3, 0), dim=1).shape == (3, 0)", "an empty row softmaxes to an empty row"),
    Returns("matmul-k0", "assert (engine.matmul(zeros(2, 0), zeros(0, 3)).numpy() == 0).all()", "K = 0 gives zeros"),
    Returns("mean-empty", "assert np.isnan(zeros(0).mean().item())", "the mean of nothing is NaN, as NumPy and PyTorch"),
    Returns("cross_entropy-no-rows", "assert np.isnan(F.cross_entropy(zeros(0, 3), zeros(0, dtype=engine.int64)).item())", "the mean over zero rows is NaN"),
    Returns("conv2d-no-channels", "assert (F.conv2d(zeros(1, 0, 3, 3), zeros(2, 0, 3, 3)).numpy() == 0).all()", "no input channels: a sum of nothing, 0"),
    Returns("conv2d-no-batch", "x = zeros(0, 2, 5, 5, requires_grad=True); w = randn(3, 2, 3, 3, requires_grad=True); "
            "F.conv2d(x, w).sum().backward(); assert w.grad.shape == (3, 2, 3, 3) and (w.grad.numpy() == 0).all()",
            "an empty batch: empty output, zero weight gradient"),
    Returns("embedding-no-indices", "assert F.embedding(zeros(0, dtype=engine.int64), randn(3, 2)).shape == (0, 2)", "no indices: no rows"),
    Returns("layer_norm-no-rows", "assert F.layer_norm(zeros(0, 4), (4,)).shape == (0, 4)", "no rows: no output"),
    Returns("sdpa-no-keys", "y = F.scaled_dot_product_attention(randn(1, 2, 4), zeros(1, 0, 4), zeros(1, 0, 4)).numpy(); assert (y == 0).all()",
            "no keys: every query is fully masked, so 0"),
]

# ---- sizes that cannot be allocated ----------------------------------------------------------
HUGE = [
    Raises("zeros-4tib", "zeros(2 ** 40)", MemoryError, r"Unable to allocate 4.00 TiB"),
    Raises("randn-8tib", "randn(2 ** 40, dtype=engine.float64)", MemoryError, r"Unable to allocate 8.00 TiB"),
    Raises("zeros-too-big", "zeros(2 ** 31, 2 ** 31, 4)", ValueError, r"array is too big"),
    Raises("expand-then-copy", "ones(1).expand(2 ** 40).contiguous()", MemoryError, r"Unable to allocate"),
    Raises("matmul-huge-output", "engine.matmul(ones(2 ** 20, 1), ones(1, 2 ** 20))", MemoryError, r"Unable to allocate 4.00 TiB"),
    Raises("C-matmul-huge-output", "_C.matmul(np.ones((2 ** 20, 1), np.float32), np.ones((1, 2 ** 20), np.float32))", MemoryError, r"Unable to allocate"),
    Raises("conv2d-huge-padding", "F.conv2d(randn(1, 1, 1, 1), randn(1, 1, 1, 1), padding=2 ** 20)", MemoryError, r"Unable to allocate"),
    Raises("conv2d-padding-past-int64", "F.conv2d(randn(1, 1, 1, 1), randn(1, 1, 1, 1), padding=2 ** 40)", (ValueError, MemoryError),
           r"array is too big|Unable to allocate"),
    Raises("conv2d-padding-past-int32", "F.conv2d(randn(1, 1, 2, 2), randn(1, 1, 2, 2), padding=(2 ** 31, 0))", (ValueError, MemoryError),
           r"array is too big|Unable to allocate|padding"),
    Raises("max_pool2d-huge-kernel", "F.max_pool2d(randn(1, 1, 4, 4), 2 ** 31)", ValueError, r"max_pool2d: kernel \(2147483648, 2147483648\) is larger"),
    Raises("reshape-overflow", "zeros(3, 4).reshape(2 ** 62, 2 ** 62)", RuntimeError, r"is invalid for input of size 12"),
    Raises("C-set_num_threads-overflow", "_C.set_num_threads(2 ** 40)", TypeError, r"incompatible function arguments"),
    Raises("embedding-huge-index", "F.embedding(tensor([2 ** 62]), randn(3, 2))", IndexError, r"embedding: index out of range for 3 embeddings"),
]

# ---- zero or negative strides, padding, kernel sizes, counts ---------------------------------
ARGS = [
    Raises("conv2d-stride-0", "F.conv2d(randn(1, 1, 5, 5), randn(1, 1, 3, 3), stride=0)", ValueError, r"conv2d: stride must be .*>= 1, got \(0, 0\)"),
    Raises("conv2d-stride-negative", "F.conv2d(randn(1, 1, 5, 5), randn(1, 1, 3, 3), stride=(1, -1))", ValueError, r"conv2d: stride .* got \(1, -1\)"),
    Raises("conv2d-padding-negative", "F.conv2d(randn(1, 1, 5, 5), randn(1, 1, 3, 3), padding=-1)", ValueError, r"conv2d: padding must be .*>= 0, got \(-1, -1\)"),
    Raises("conv2d-dilation-0", "F.conv2d(randn(1, 1, 5, 5), randn(1, 1, 3, 3), dilation=0)", ValueError, r"conv2d: dilation must be .*>= 1"),
    Raises("conv2d-groups-0", "F.conv2d(randn(1, 2, 5, 5), randn(2, 2, 3, 3), groups=0)", ValueError, r"conv2d: groups=0 must divide"),
    Raises("conv2d-groups-negative", "F.conv2d(randn(1, 2, 5, 5), randn(2, 2, 3, 3), groups=-2)", ValueError, r"conv2d: groups=-2 must divide"),
    Raises("conv2d-groups-float", "F.conv2d(randn(1, 2, 5, 5), randn(2, 1, 3, 3), groups=2.0)", ValueError, r"conv2d: groups=2.0 must divide"),
    Raises("conv2d-stride-triple", "F.conv2d(randn(1, 1, 5, 5), randn(1, 1, 3, 3), stride=(1, 1, 1))", ValueError, r"conv2d: stride must be an int or a pair"),
    Raises("conv2d-string-padding", "F.conv2d(randn(1, 1, 5, 5), randn(1, 1, 3, 3), padding='same')", NotImplementedError, r"conv2d: string padding"),
    Raises("max_pool2d-kernel-0", "F.max_pool2d(randn(1, 1, 4, 4), 0)", ValueError, r"max_pool2d: kernel_size must be .*>= 1, got \(0, 0\)"),
    Raises("max_pool2d-kernel-negative", "F.max_pool2d(randn(1, 1, 4, 4), -2)", ValueError, r"max_pool2d: kernel_size must be"),
    Raises("max_pool2d-stride-0", "F.max_pool2d(randn(1, 1, 4, 4), 2, stride=0)", ValueError, r"max_pool2d: stride must be"),
    Raises("max_pool2d-padding-negative", "F.max_pool2d(randn(1, 1, 4, 4), 2, padding=-1)", ValueError, r"max_pool2d: padding must be"),
    Raises("max_pool2d-padding-over-half", "F.max_pool2d(randn(1, 1, 4, 4), 3, padding=2)", ValueError, r"max_pool2d: padding \(2, 2\) must be at most half"),
    Raises("max_pool2d-dilation-0", "F.max_pool2d(randn(1, 1, 4, 4), 2, dilation=0)", ValueError, r"max_pool2d: dilation must be"),
    Raises("max_pool2d-ceil_mode", "F.max_pool2d(randn(1, 1, 4, 4), 2, ceil_mode=True)", NotImplementedError, r"max_pool2d: ceil_mode=True is not supported"),
    Raises("avg_pool2d-kernel-0", "F.avg_pool2d(randn(1, 1, 4, 4), (2, 0))", ValueError, r"avg_pool2d: kernel_size must be .*got \(2, 0\)"),
    Raises("avg_pool2d-stride-negative", "F.avg_pool2d(randn(1, 1, 4, 4), 2, stride=-1)", ValueError, r"avg_pool2d: stride must be"),
    Raises("avg_pool2d-kernel-too-large", "F.avg_pool2d(randn(1, 1, 2, 2), 5, padding=1)", ValueError, r"avg_pool2d: kernel \(5, 5\) is larger than the padded input"),
    Raises("split-size-0", "randn(4).split(0)", ValueError, r"split: split_size must be positive, got 0"),
    Raises("chunk-0", "randn(4).chunk(0)", ValueError, r"chunk: chunks must be positive, got 0"),
    Raises("expand-negative", "randn(1, 3).expand(-2, 3)", RuntimeError, r"expand: invalid size -2"),
    Raises("reshape-negative", "randn(6).reshape(-2, -3)", RuntimeError, r"reshape: invalid size in shape"),
    Raises("zeros-negative", "zeros(2, -1)", ValueError, r"negative dimension in shape \(2, -1\)"),
    Raises("dropout-p-negative", "F.dropout(randn(3), p=-0.1)", ValueError, r"dropout: probability must be in \[0, 1\], got -0.1"),
    Raises("dropout-p-over-1", "F.dropout(randn(3), p=1.5)", ValueError, r"dropout: probability must be in \[0, 1\], got 1.5"),
    Raises("sdpa-dropout-p", "F.scaled_dot_product_attention(randn(1, 2, 4), randn(1, 2, 4), randn(1, 2, 4), dropout_p=2.0)", ValueError,
           r"dropout_p must be in \[0, 1\], got 2.0"),
    Raises("sdpa-head-dim-0", "F.scaled_dot_product_attention(zeros(1, 2, 0), zeros(1, 2, 0), randn(1, 2, 4))", ValueError,
           r"head dim 0 needs an explicit scale"),
    Raises("gelu-approximate", "F.gelu(randn(3), approximate='fast')", ValueError, r"gelu: approximate must be 'none' or 'tanh', got 'fast'"),
    Raises("clamp-nothing", "engine.clamp(randn(3))", ValueError, r"clamp: at least one of min and max must be given"),
    Raises("loss-reduction", "F.mse_loss(randn(3), randn(3), reduction='avg')", ValueError, r"mse_loss: reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    Raises("set_num_threads-0", "engine.set_num_threads(0)", ValueError, r"set_num_threads: expected a positive int, got 0"),
    Raises("set_num_threads-str", "engine.set_num_threads('2')", ValueError, r"set_num_threads: expected a positive int, got '2'"),
    Raises("backend-unknown", "engine.backend.use('cuda')", ValueError, r"unknown backend 'cuda'; expected one of numpy, native"),
    Raises("manual_seed-float", "engine.manual_seed(1.5)", TypeError, r"manual_seed: seed must be an int, got float"),
]

# ---- autograd misuse -------------------------------------------------------------------------
AUTOGRAD = [
    Raises("backward-twice", "x = randn(3, requires_grad=True); y = (x * x).sum(); y.backward(); y.backward()", RuntimeError,
           r"Trying to backward through the graph a second time"),
    Raises("backward-inplace-saved", "x = randn(3, requires_grad=True); y = x * 1.0; z = (y * y).sum(); "
           "\nwith engine.no_grad():\n    y.mul_(2)\nz.backward()", RuntimeError,
           r"backward through Mul: one of its inputs \(shape \(3,\)\) was modified in place"),
    Raises("inplace-on-leaf", "x = randn(3, requires_grad=True); x.add_(1)", RuntimeError, r"a leaf tensor that requires grad is being used in an in-place operation"),
    Raises("inplace-in-graph", "x = randn(3, requires_grad=True); y = x * 2; y.add_(1)", RuntimeError, r"in-place operation on a tensor of shape \(3,\) that is part of an autograd graph"),
    Raises("setitem-in-graph", "x = randn(3, requires_grad=True); y = x * 2; y[0] = 5.0", RuntimeError, r"in-place operation on a tensor"),
    Raises("backward-non-scalar", "x = randn(3, requires_grad=True); (x * 2).backward()", RuntimeError, r"grad can be implicitly created only for scalar outputs"),
    Raises("backward-no-grad", "randn(3).sum().backward()", RuntimeError, r"backward\(\): this tensor does not require grad"),
    Raises("backward-under-no_grad", "x = randn(3, requires_grad=True)\nwith engine.no_grad():\n    y = (x * 2).sum()\ny.backward()",
           RuntimeError, r"does not require grad"),
    Raises("requires_grad_false-non-leaf", "x = randn(3, requires_grad=True); (x * 2).requires_grad_(False)", RuntimeError,
           r"requires_grad_\(False\) on a non-leaf tensor"),
    Raises("bool-of-tensor", "bool(randn(3))", RuntimeError, r"bool\(\) of a tensor with 3 elements is ambiguous"),
    Raises("len-0d", "len(tensor(1.0))", TypeError, r"len\(\) of a 0-d tensor"),
    Raises("optimizer-no-params", "optim.SGD([], lr=0.1)", ValueError, r"empty parameter list|no parameters"),
]

MIXED_DEVICES = """
if engine.cuda.is_available():
    try:
        tensor([1.0], device="cuda") + randn(1)
    except RuntimeError as e:
        assert "same device" in str(e) and "cpu" in str(e) and "cuda" in str(e), e
    else:
        raise AssertionError("an op on a CPU and a GPU tensor was accepted")
else:
    try:
        tensor([1.0], device="cuda")
    except RuntimeError as e:
        assert "CUDA is not available" in str(e), e
    else:
        raise AssertionError("a CUDA tensor was made without CUDA")
"""

# ---- devices, files --------------------------------------------------------------------------
DEVICES = [
    Returns("mixed-devices", MIXED_DEVICES, "without CUDA a tensor cannot go there (RuntimeError); with CUDA, "
            "an op on a CPU and a GPU tensor raises RuntimeError naming both devices"),
    Raises("to-unknown-device", "randn(2).to('tpu')", ValueError, r"device: unknown device type 'tpu'"),
    Raises("device-bad-index", "engine.device('cuda:x')", ValueError, r"device: bad device index in 'cuda:x'"),
    Raises("device-not-a-string", "engine.device(3.5)", TypeError, r"device: expected a string like 'cpu' or 'cuda:0'"),
    Raises("load-missing-file", "engine.load('/nonexistent/ckpt.npz')", FileNotFoundError, r"No such file or directory"),
    Raises("load-foreign-file", "import tempfile, os\nd = tempfile.mkdtemp(); p = os.path.join(d, 'x.npz')\n"
           "open(p, 'wb').write(b'PK not a zip at all')\nengine.load(p)", ValueError, r"load: .* is not a readable engine checkpoint"),
    Raises("load-plain-npz", "import tempfile, os\nd = tempfile.mkdtemp(); p = os.path.join(d, 'x.npz')\n"
           "np.savez(p, a=np.zeros(3))\nengine.load(p)", ValueError, r"not a readable engine checkpoint .*no engine metadata"),
    Raises("save-lambda", "import tempfile, os\nengine.save({'f': lambda: 0}, os.path.join(tempfile.mkdtemp(), 'x.npz'))", TypeError,
           r"save: cannot store an object of type function"),
]

# ---- straight into the native bindings -------------------------------------------------------
NATIVE = [
    Raises("C-add-int", "_C.add(np.zeros(3, np.int64), np.zeros(3, np.int64))", TypeError, r"add: a must be float32 or float64, got int64"),
    Raises("C-add-dtypes", "_C.add(f32(3), f64(3))", TypeError, r"add: a and b must have the same dtype"),
    Raises("C-add-shapes", "_C.add(f32(3, 4), f32(4, 3))", ValueError, r"add: a and b must have the same shape, got \(3, 4\) and \(4, 3\)"),
    Raises("C-add-strided", "_C.add(f32(3, 4).T, f32(3, 4).T)", ValueError, r"add: a must be C-contiguous"),
    Raises("C-add-object", "_C.add(np.array([None]), np.array([None]))", TypeError, r"add: a must be float32 or float64, got object"),
    Raises("C-add-complex", "_C.add(np.zeros(2, np.complex64), np.zeros(2, np.complex64))", TypeError, r"float32 or float64, got complex64"),
    Raises("C-matmul-int", "_C.matmul(np.zeros((2, 2), np.int32), np.zeros((2, 2), np.int32))", TypeError, r"matmul: a must be float32 or float64, got int32"),
    Raises("C-matmul-bool", "_C.matmul(np.zeros((2, 2), bool), np.zeros((2, 2), bool))", TypeError, r"matmul: a must be float32 or float64, got bool"),
    Raises("C-matmul-4d", "_C.matmul(f32(1, 2, 3, 4), f32(4, 5))", ValueError, r"matmul: a must be 2-D or 3-D, got shape \(1, 2, 3, 4\)"),
    Raises("C-matmul-1d", "_C.matmul(f32(3), f32(3, 2))", ValueError, r"matmul: a must be 2-D or 3-D, got shape \(3,\)"),
    Raises("C-matmul-inner", "_C.matmul(f32(2, 3), f32(4, 5))", ValueError, r"matmul: a \(2, 3\) and b \(4, 5\): inner dimensions 3 and 4 differ"),
    Raises("C-matmul-batch", "_C.matmul(f32(2, 2, 3), f32(3, 3, 4))", ValueError, r"batch sizes 2 and 3 differ"),
    Raises("C-matmul-dtypes", "_C.matmul(f32(2, 3), f64(3, 2))", TypeError, r"matmul: a and b must have the same dtype"),
    Raises("C-matmul-no-unit-stride", "_C.matmul(f32(4, 6)[::2, ::2], f32(3, 2))", ValueError, r"has no unit stride in its last two dimensions"),
    Raises("C-matmul-negative-col-stride", "_C.matmul(f32(2, 3)[:, ::-1], f32(3, 2))", ValueError, r"has no unit stride"),
    Raises("C-matmul-misaligned", "_C.matmul(misaligned(6).reshape(2, 3), f32(3, 2))", ValueError, r"matmul: a \(2, 3\) is not aligned to its itemsize"),
    Raises("C-matmul-odd-byte-strides", "_C.matmul(np.zeros((2, 3), dtype=[('x', np.float32), ('y', np.int8)])['x'], f32(3, 2))", ValueError,
           r"byte strides .* not multiples of its itemsize"),
    Raises("C-matmul-out-overlaps-a", "a = f32(3, 3); _C.matmul(a, f32(3, 3), out=a)", ValueError, r"matmul: out \(3, 3\) shares memory with a"),
    Raises("C-matmul-out-overlaps-b-partly", "buf = f32(4, 3); _C.matmul(f32(3, 3), buf[1:], out=buf[:3])", ValueError, r"shares memory with b"),
    Raises("C-matmul-out-strided", "_C.matmul(f32(3, 3), f32(3, 3), out=f32(3, 6)[:, ::2])", ValueError, r"matmul: out must be C-contiguous"),
    Raises("C-matmul-out-readonly", "o = f32(3, 3); o.setflags(write=False); _C.matmul(f32(3, 3), f32(3, 3), out=o)", ValueError, r"matmul: out must be writeable"),
    Raises("C-matmul-out-shape", "_C.matmul(f32(3, 3), f32(3, 3), out=f32(3, 4))", ValueError, r"matmul: out has shape \(3, 4\), expected \(3, 3\)"),
    Raises("C-matmul-out-dtype", "_C.matmul(f32(3, 3), f32(3, 3), out=f64(3, 3))", TypeError, r"matmul: out must be float32 like a and b, got float64"),
    Raises("C-matmul-out-list", "_C.matmul(f32(3, 3), f32(3, 3), out=[0.0] * 9)", TypeError, r"matmul: out must be a numpy.ndarray, got <class 'list'>"),
    Raises("C-matmul-beta-without-out", "_C.matmul(f32(3, 3), f32(3, 3), beta=1.0)", ValueError, r"beta=1.0+ needs out="),
    Raises("C-matmul-bias-shape", "_C.matmul(f32(3, 3), f32(3, 2), bias=f32(3))", ValueError, r"matmul: bias has shape \(3,\), expected \(2,\)"),
    Raises("C-matmul-bias-dtype", "_C.matmul(f32(3, 3), f32(3, 2), bias=f64(2))", TypeError, r"matmul: bias must be float32 like a and b, got float64"),
    Raises("C-matmul-bias-strided", "_C.matmul(f32(3, 3), f32(3, 2), bias=f32(4)[::2])", ValueError, r"matmul: bias must be C-contiguous"),
    Raises("C-matmul-activation", "_C.matmul(f32(3, 3), f32(3, 3), activation='tanh')", ValueError, r"matmul: activation must be 'none', 'relu' or 'gelu', got 'tanh'"),
    Returns("C-matmul-negative-row-stride", "a = np.arange(6, dtype=np.float32).reshape(3, 2); b = np.ones((2, 2), np.float32); "
            "assert (_C.matmul(a[::-1], b) == a[::-1] @ b).all()", "a negative row stride is read in place, correctly"),
    Returns("C-matmul-zero-stride", "a = np.broadcast_to(np.arange(2, dtype=np.float32), (4, 2)); b = np.ones((2, 3), np.float32); "
            "assert (_C.matmul(a, b) == a @ b).all()", "a broadcast (zero-stride) operand is read in place, correctly"),
    Raises("C-set_num_threads-0", "_C.set_num_threads(0)", ValueError, r"set_num_threads: n must be >= 1, got 0"),
    Raises("C-set_num_threads-negative", "_C.set_num_threads(-3)", ValueError, r"set_num_threads: n must be >= 1, got -3"),
    Raises("C-fma_peak-dtype", "_C.fma_peak_gflops('int8')", TypeError, r"fma_peak_gflops: dtype must be float32 or float64, got int8"),
    Raises("C-fma_peak-threads", "_C.fma_peak_gflops('float32', threads=0)", ValueError, r"fma_peak_gflops: threads must be >= 1, got 0"),
    Raises("C-gemm_use_isa-name", "_C.gemm_use_isa('avx9')", ValueError, r"gemm_use_isa: must be 'auto' or one this CPU runs \('.*portable'\), got 'avx9'"),
    Raises("C-gemm_use_isa-type", "_C.gemm_use_isa(3)", TypeError, r"incompatible function arguments"),
    Raises("C-attention_use_isa-name", "_C.attention_use_isa('avx2')", ValueError, r"attention_use_isa: must be 'auto' or one this CPU runs \('.*portable'\), got 'avx2'"),
    Raises("C-conv2d_use_path-name", "_C.conv2d_use_path('fast')", ValueError, r"conv2d_use_path: must be 'auto' or one this CPU runs \('.*gemm-panels'\), got 'fast'"),
    Raises("fused-softmax-dtype", "_fused.softmax_forward(f32(2, 3), f64(2, 3))", ValueError, r"Buffer dtype mismatch, expected 'const float' but got 'double'"),
    Raises("fused-softmax-int", "_fused.softmax_forward(f64(2, 3), np.zeros((2, 3), np.int64))", ValueError, r"Buffer dtype mismatch"),
    Raises("fused-softmax-strided", "_fused.softmax_forward(f64(2, 3), f64(3, 2).T)", ValueError, r"ndarray is not C-contiguous"),
    Raises("fused-softmax-ndim", "_fused.softmax_forward(f64(2, 3), f64(3))", ValueError, r"Buffer has wrong number of dimensions \(expected 2, got 1\)"),
    Raises("fused-softmax-shape", "_fused.softmax_forward(f64(3, 3), f64(2, 3))", ValueError, r"softmax_forward: out shape \(3, 3\) != x shape \(2, 3\)"),
    Raises("fused-softmax-readonly-out", "o = f64(2, 3); o.setflags(write=False); _fused.softmax_forward(o, f64(2, 3))", ValueError, r"read-only"),
    Raises("fused-softmax-alias", "x = np.ones((2, 3)); _fused.softmax_forward(x, x, True)", ValueError, r"softmax_forward: out shares memory with x"),
    Raises("fused-softmax_backward-shape", "_fused.softmax_backward(f64(2, 3), f64(2, 4), f64(2, 3))", ValueError, r"softmax_backward: dx, dy and y must all have shape \(2, 3\)"),
    Raises("fused-softmax_backward-alias", "y = np.full((2, 3), 1 / 3); _fused.softmax_backward(y, np.ones((2, 3)), y)", ValueError,
           r"softmax_backward: dx shares memory with y"),
    Raises("fused-layer_norm-weight-shape", "_fused.layer_norm_forward(f64(2, 3), f64(2), f64(2), f64(2, 3), f64(4), None, 1e-5)", ValueError,
           r"layer_norm_forward: weight has shape \(4,\), expected \(3,\)"),
    Raises("fused-layer_norm-stats-shape", "_fused.layer_norm_forward(f64(2, 3), f64(3), f64(2), f64(2, 3), None, None, 1e-5)", ValueError,
           r"layer_norm_forward: mean has shape \(3,\), expected \(2,\)"),
    Raises("fused-layer_norm-alias", "x = np.ones((2, 3)); _fused.layer_norm_forward(f64(2, 3), x[0, :2], f64(2), x, None, None, 1e-5)", ValueError,
           r"layer_norm_forward: mean shares memory with x"),
    Raises("fused-layer_norm_backward-missing-dweight", "_fused.layer_norm_backward(f64(2, 3), None, None, f64(2, 3), f64(2, 3), f64(3), f64(2), f64(2))",
           ValueError, r"layer_norm_backward: dweight and dbias must be given exactly when weight is"),
    Raises("fused-layer_norm_backward-alias", "dy = np.ones((2, 3)); _fused.layer_norm_backward(dy, None, None, dy, f64(2, 3), None, f64(2), f64(2))",
           ValueError, r"layer_norm_backward: dx shares memory with dy"),
    Raises("fused-cross_entropy-int32-target", "_fused.cross_entropy_forward(f64(2), f64(2), f64(2, 3), np.zeros(2, np.int32), -100)", ValueError,
           r"Buffer dtype mismatch, expected 'const int64_t' but got 'int'"),
    Raises("fused-cross_entropy-target-range", "_fused.cross_entropy_forward(f64(2), f64(2), f64(2, 3), np.array([0, 7]), -100)", IndexError,
           r"cross_entropy_forward: target\[1\] = 7 is out of range for 3 classes"),
    Raises("fused-cross_entropy-negative-target", "_fused.cross_entropy_forward(f64(2), f64(2), f64(2, 3), np.array([0, -1]), -100)", IndexError,
           r"target\[1\] = -1 is out of range"),
    Raises("fused-cross_entropy-no-classes", "_fused.cross_entropy_forward(f64(2), f64(2), f64(2, 0), np.array([0, 0]), -100)", ValueError,
           r"cross_entropy_forward: logits has shape \(2, 0\): no classes"),
    Raises("fused-cross_entropy_backward-range", "_fused.cross_entropy_backward(f64(2, 3), f64(2), f64(2, 3), np.array([3, 0]), f64(2), -100)", IndexError,
           r"cross_entropy_backward: target\[0\] = 3 is out of range"),
    Raises("fused-cross_entropy_backward-alias", "l = np.ones((2, 3)); _fused.cross_entropy_backward(l, f64(2), l, np.array([0, 0]), f64(2), -100)",
           ValueError, r"cross_entropy_backward: dlogits shares memory with logits"),
    Raises("fused-relu-shape", "_fused.relu_forward(f32(3), f32(4))", ValueError, r"relu_forward: y has shape \(3,\), expected \(4,\)"),
    Raises("fused-relu-overlap", "b = np.ones(5, np.float32); _fused.relu_forward(b[1:], b[:4])", ValueError, r"relu_forward: y shares memory with x"),
    Raises("fused-relu_backward-overlap", "b = np.ones(5); _fused.relu_backward(b[1:], np.ones(4), b[:4])", ValueError, r"relu_backward: dx shares memory with y"),
    Raises("fused-gelu-shape", "_fused.gelu_forward(f32(3), f32(4))", ValueError, r"gelu_forward: y has shape \(3,\), expected \(4,\)"),
    # NOTE: Cython picks float or double from the arguments first; a 2-D array matches neither
    Raises("fused-gelu-2d", "_fused.gelu_forward(f32(2, 2), f32(2, 2))", TypeError, r"No matching signature found"),
    Raises("fused-gelu-overlap", "b = np.ones(5, np.float32); _fused.gelu_forward(b[1:], b[:4])", ValueError, r"gelu_forward: y shares memory with x"),
    Raises("fused-gelu_backward-overlap", "b = np.ones(5); _fused.gelu_backward(b[1:], np.ones(4), b[:4])", ValueError, r"gelu_backward: dx shares memory with x"),
    Raises("fused-dropout-p", "_fused.dropout_mask(f32(3), 1, 1.5)", ValueError, r"dropout_mask: p must be in \[0, 1\], got 1.5"),
    Raises("fused-dropout-p-nan", "_fused.dropout_mask(f32(3), 1, nan)", ValueError, r"dropout_mask: p must be in \[0, 1\], got nan"),
    Raises("fused-dropout-negative-seed", "_fused.dropout_mask(f32(3), -1, 0.5)", OverflowError, r"can't convert negative value to uint64_t"),
    Raises("fused-sgd-no-buffer", "_fused.sgd_update(f32(3), f32(3), None, 0.1, 0.9, 0.0, False, 0.0, True)", ValueError,
           r"sgd_update: momentum needs a momentum buffer"),
    Raises("fused-sgd-grad-shape", "_fused.sgd_update(f32(3), f32(4), None, 0.1, 0.0, 0.0, False, 0.0, True)", ValueError,
           r"sgd_update: grad has shape \(4,\), expected \(3,\)"),
    Raises("fused-sgd-overlap", "b = np.ones(5, np.float32); _fused.sgd_update(b[1:], b[:4], None, 0.1, 0.0, 0.0, False, 0.0, True)", ValueError,
           r"sgd_update: param shares memory with grad"),
    Raises("fused-adam-moment-shape", "_fused.adam_update(f32(3), f32(3), f32(2), f32(3), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)", ValueError,
           r"adam_update: m has shape \(2,\), expected \(3,\)"),
    Raises("fused-adam-step-0", "_fused.adam_update(f32(3), f32(3), f32(3), f32(3), 0, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)", ValueError,
           r"adam_update: step must be >= 1 \(it counts from 1\), got 0"),
    Raises("fused-adam-m-is-v", "m = f32(3); _fused.adam_update(f32(3), f32(3), m, m, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)", ValueError,
           r"adam_update: m shares memory with v"),
]

# ---- engine.kernels misuse -------------------------------------------------------------------
KERNELS = [
    Raises("kernels-matmul-int", "kernels.matmul(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64))", TypeError, r"matmul: only floating-point"),
    Raises("kernels-matmul-out-shape", "kernels.matmul(f32(2, 3), f32(3, 4), out=f32(2, 3))", ValueError, r"out has shape \(2, 3\) .* the result has shape \(2, 4\)"),
    Raises("kernels-linear-activation", "kernels.linear(f32(2, 3), f32(4, 3), activation='tanh')", ValueError, r"linear: activation must be None, 'relu' or 'gelu', got 'tanh'"),
    Raises("kernels-linear-shapes", "kernels.linear(f32(2, 3), f32(4, 5))", RuntimeError, r"linear: input shape \(2, 3\) and weight shape \(4, 5\)"),
    Raises("kernels-conv2d-stride", "kernels.conv2d(f32(1, 1, 4, 4), f32(1, 1, 2, 2), stride=0)", ValueError, r"conv2d: stride must be"),
    Raises("kernels-conv2d_grad_input-shapes", "kernels.conv2d_grad_input(f32(1, 2, 3, 3), f32(2, 1, 3, 3), (1, 5, 5, 5))", ValueError,
           r"conv2d_grad_input: input \(1, 5, 5, 5\) has 5 channels but weight \(2, 1, 3, 3\) expects 1"),
    Raises("kernels-conv2d_grad_input-grad-shape", "kernels.conv2d_grad_input(f32(1, 2, 4, 4), f32(2, 1, 3, 3), (1, 1, 5, 5))", ValueError,
           r"conv2d_grad_input: grad_out has shape \(1, 2, 4, 4\), expected \(1, 2, 3, 3\)"),
    Raises("kernels-conv2d_grad_input-stride-0", "kernels.conv2d_grad_input(f32(1, 2, 3, 3), f32(2, 1, 3, 3), (1, 1, 5, 5), stride=0)", ValueError,
           r"conv2d_grad_input: stride must be"),
    Raises("kernels-conv2d_grad_input-dtype", "kernels.conv2d_grad_input(np.zeros((1, 2, 3, 3), np.int64), f32(2, 1, 3, 3), (1, 1, 5, 5))", TypeError,
           r"conv2d_grad_input: .*one floating dtype, got int64, float32"),
    Raises("kernels-conv2d_grad_weight-shapes", "kernels.conv2d_grad_weight(f32(1, 2, 3, 3), f32(1, 1, 5, 5), (2, 3, 3, 3))", ValueError,
           r"conv2d_grad_weight: input \(1, 1, 5, 5\) has 1 channels but weight \(2, 3, 3, 3\) expects 3"),
    Raises("kernels-conv2d_grad_weight-3d-x", "kernels.conv2d_grad_weight(f32(1, 2, 3, 3), f32(1, 5, 5), (2, 1, 3, 3))", ValueError,
           r"conv2d_grad_weight: expected a 4-D input"),
    Raises("kernels-max_pool2d-kernel", "kernels.max_pool2d(f32(1, 1, 4, 4), 0)", ValueError, r"max_pool2d: kernel_size must be"),
    Raises("kernels-attention-dtype", "kernels.attention(np.zeros((1, 2, 4), np.int32), f32(1, 2, 4), f32(1, 2, 4))", TypeError,
           r"scaled_dot_product_attention: .*floating dtype"),
    Raises("kernels-attention_backward-lse-shape", "kernels.attention_backward(f64(1, 1, 2, 4), f64(1, 1, 2, 4), f64(1, 1, 3, 4), f64(1, 1, 3, 4), "
           "f64(1, 1, 2, 4), f64(1, 1, 5))", ValueError, r"attention_backward: lse has shape \(1, 1, 5\), expected \(1, 1, 2\) for q \(1, 1, 2, 4\)"),
    Raises("kernels-attention_backward-out-shape", "kernels.attention_backward(f64(1, 1, 2, 4), f64(1, 1, 2, 4), f64(1, 1, 3, 4), f64(1, 1, 3, 4), "
           "f64(1, 1, 3, 4), f64(1, 1, 2))", ValueError, r"attention_backward: out has shape \(1, 1, 3, 4\), expected \(1, 1, 2, 4\)"),
    Raises("kernels-attention_backward-3d", "kernels.attention_backward(f64(1, 2, 4), f64(1, 2, 4), f64(1, 3, 4), f64(1, 3, 4), f64(1, 2, 4), f64(1, 2))",
           ValueError, r"attention_backward: q, k, v, grad_out and out must be 4-D \(B, H, T, D\)"),
    Raises("kernels-softmax-int", "kernels.softmax(np.arange(3))", TypeError, r"softmax: expected a floating-point tensor, got int64"),
    Raises("kernels-layer_norm-weight", "kernels.layer_norm(f32(2, 3), weight=f32(4))", ValueError, r"layer_norm: weight must have shape \(3,\)"),
    Raises("kernels-cross_entropy-target", "kernels.cross_entropy(f32(2, 3), np.array([0.5, 1.0]))", TypeError, r"cross_entropy: target must hold integer"),
]

CASES = NDIM + SHAPES + DTYPES + NONFINITE + EMPTY + HUGE + ARGS + AUTOGRAD + DEVICES + NATIVE + KERNELS
