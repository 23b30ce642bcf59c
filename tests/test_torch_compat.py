"""PyTorch model code runs on engine by changing its import.

tests/torch_style_gpt.py is an unmodified PyTorch file (a nanoGPT-style GPT, its training loop and
its sampler): it says `import torch`. `load_model_file()` runs that file's source as a fresh module
while sys.modules maps "torch", "torch.nn" and "torch.nn.functional" to engine, engine.nn and
engine.nn.functional, and puts the previous entries back right after; so the model file needs no
switch of its own, and real PyTorch, when installed, can load the same file in the same process.

Part (a) trains and samples the model on engine; part (b), only where PyTorch is installed, loads
the file under both and checks the same weights give the same loss, gradients, optimizer steps
and greedy samples (float64, the tolerances of tests/tolerances.py); part (c) checks each piece of
PyTorch surface engine added for this, one by one.
"""
import ast
import importlib.util
import math
import os
import sys

import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F
from gradcheck import gradcheck, leaf
from tolerances import FLOAT32, FLOAT64

MODEL_FILE = os.path.join(os.path.dirname(__file__), "torch_style_gpt.py")
TEXT = "the quick brown fox jumps over the lazy dog. " * 12
SWAP = ("torch", "torch.nn", "torch.nn.functional")


def load_model_file(module_name, on_engine=True):
    """tests/torch_style_gpt.py as a new module; with on_engine, its `torch` is engine."""
    saved = {name: sys.modules.get(name) for name in SWAP}
    if on_engine:
        sys.modules.update({"torch": engine, "torch.nn": engine.nn,
                            "torch.nn.functional": engine.nn.functional})
    try:
        spec = importlib.util.spec_from_file_location(module_name, MODEL_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module


@pytest.fixture(scope="module")
def gpt():
    return load_model_file("torch_style_gpt_on_engine")


@pytest.fixture(scope="module")
def torch_gpt():
    pytest.importorskip("torch")
    return load_model_file("torch_style_gpt_on_torch", on_engine=False)


def tiny(gpt, **overrides):
    cfg = dict(block_size=16, vocab_size=len(set(TEXT)), n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    cfg.update(overrides)
    return gpt.GPTConfig(**cfg)


def pytorch_keys(n_layer, bias=True):
    """state_dict keys PyTorch gives this GPT: both names of the tied matrix, no causal mask."""
    keys = ["transformer.wte.weight", "transformer.wpe.weight"]
    for i in range(n_layer):
        for layer in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            keys.append(f"transformer.h.{i}.{layer}.weight")
            if bias:
                keys.append(f"transformer.h.{i}.{layer}.bias")
    keys += ["transformer.ln_f.weight"] + (["transformer.ln_f.bias"] if bias else []) + ["lm_head.weight"]
    return keys


# ---- (a) the PyTorch file on engine --------------------------------------------------------------
def test_the_model_file_imports_torch_and_nothing_of_engine():
    tree = ast.parse(open(MODEL_FILE).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"inspect", "math", "dataclasses", "torch", "torch.nn", "torch.nn.functional"}


def test_loading_binds_torch_to_engine_and_restores_sys_modules(gpt):
    before = {name: sys.modules.get(name) for name in SWAP}
    again = load_model_file("torch_style_gpt_again")
    assert again.torch is engine and again.nn is engine.nn and again.F is engine.nn.functional
    assert gpt.torch is engine
    assert {name: sys.modules.get(name) for name in SWAP} == before


@pytest.mark.parametrize("flash", [True, False], ids=["sdpa", "explicit-mask"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_training_on_repeated_text_lowers_the_loss(gpt, flash, dropout):
    model, chars, losses = gpt.train(TEXT, tiny(gpt, flash=flash, dropout=dropout), steps=40)
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.6 * losses[0]
    # the tie survives training: one Parameter, two modules
    assert model.lm_head.weight is model.transformer.wte.weight
    assert isinstance(model.lm_head.weight, nn.Parameter)


def test_the_sdpa_and_explicit_mask_paths_compute_the_same_model(gpt):
    engine.manual_seed(3)
    fast = gpt.GPT(tiny(gpt, flash=True))
    slow = gpt.GPT(tiny(gpt, flash=False))
    slow.load_state_dict(fast.state_dict())
    idx = engine.randint(0, 20, (3, 11))
    a, _ = fast(idx, idx)
    b, _ = slow(idx, idx)
    np.testing.assert_allclose(a.numpy(), b.numpy(), **FLOAT32)


def test_generation_extends_the_prompt_with_ids_in_the_vocabulary(gpt):
    model, chars, _ = gpt.train(TEXT, tiny(gpt), steps=5)
    model.eval()
    idx = engine.tensor([[1, 2, 3]], dtype=engine.long)
    for kwargs in (dict(), dict(top_k=3), dict(temperature=0.7, top_k=1), dict(temperature=0)):
        out = model.generate(idx, 20, **kwargs)  # 20 > block_size: the context is cropped
        assert out.shape == (1, 23) and out.dtype == engine.int64 and not out.requires_grad
        assert out[:, :3].tolist() == [[1, 2, 3]]
        assert 0 <= int(out.min()) and int(out.max()) < len(chars)
    text = gpt.sample(model, chars, prompt="the ", max_new_tokens=10, top_k=5)
    assert text.startswith("the ") and len(text) == 14 and set(text) <= set(chars)
    assert len(gpt.sample(model, chars, max_new_tokens=4)) == 5


def test_greedy_and_top_1_sampling_agree(gpt):
    model, chars, _ = gpt.train(TEXT, tiny(gpt), steps=5)
    idx = engine.tensor([[4, 5]])
    greedy = model.generate(idx, 8, temperature=0)
    top1 = model.generate(idx, 8, temperature=1.0, top_k=1)
    assert greedy.tolist() == top1.tolist()


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_are_pytorchs(gpt, bias):
    model = gpt.GPT(tiny(gpt, bias=bias))
    sd = model.state_dict()
    assert list(sd) == pytorch_keys(2, bias)
    assert "transformer.h.0.attn.c_attn.weight" in sd and "lm_head.weight" in sd
    # the tied matrix is stored under both names, and is one array
    assert np.shares_memory(sd["lm_head.weight"].numpy(), sd["transformer.wte.weight"].numpy())
    # named_parameters lists it once, under its first name, as PyTorch does
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names and names == [k for k in sd if k != "lm_head.weight"]


def test_the_causal_mask_buffer_is_not_in_the_state_dict(gpt):
    model = gpt.GPT(tiny(gpt, flash=False))
    assert [n for n, _ in model.named_buffers()] == ["transformer.h.0.attn.bias", "transformer.h.1.attn.bias"]
    assert list(model.state_dict()) == pytorch_keys(2)
    fresh = gpt.GPT(tiny(gpt, flash=False))
    fresh.load_state_dict(model.state_dict())  # strict: the mask is neither missing nor unexpected
    idx = engine.randint(0, 20, (2, 7))
    np.testing.assert_array_equal(fresh(idx)[0].numpy(), model(idx)[0].numpy())


def test_state_dict_round_trips_through_a_checkpoint(gpt, tmp_path):
    model, _, _ = gpt.train(TEXT, tiny(gpt), steps=3)
    engine.save(model.state_dict(), tmp_path / "ckpt.npz")
    fresh = gpt.GPT(tiny(gpt))
    fresh.load_state_dict(engine.load(tmp_path / "ckpt.npz"))
    assert fresh.lm_head.weight is fresh.transformer.wte.weight  # loading keeps the tie
    idx = engine.randint(0, 20, (2, 9))
    np.testing.assert_array_equal(fresh(idx, idx)[1].numpy(), model(idx, idx)[1].numpy())


def test_initialisation_follows_gpt2(gpt):
    engine.manual_seed(0)
    cfg = tiny(gpt, n_embd=64, n_layer=3, vocab_size=200, block_size=64)
    model = gpt.GPT(cfg)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert abs(p.numpy().std() - 0.02 / math.sqrt(2 * cfg.n_layer)) < 0.002, name
        elif name.endswith(".bias"):
            assert not p.numpy().any(), name
        elif ".ln_" in name:
            assert (p.numpy() == 1).all(), name
        else:
            assert abs(p.numpy().std() - 0.02) < 0.002, name
    assert model.get_num_params() == sum(p.numel() for p in model.parameters()) - 64 * 64


@pytest.mark.parametrize("init", ["xavier", "kaiming"])
def test_xavier_and_kaiming_inits_stay_within_their_bounds(gpt, init):
    cfg = tiny(gpt, init=init, n_embd=64)
    model = gpt.GPT(cfg)
    w = model.transformer.h[0].attn.c_attn.weight.numpy()  # (3C, C): fan_in C, fan_out 3C
    fan_in, fan_out = cfg.n_embd, 3 * cfg.n_embd
    bound = math.sqrt(6 / (fan_in + fan_out)) if init == "xavier" else 1 / math.sqrt(fan_in)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound


def test_configure_optimizers_splits_decay_and_no_decay_groups(gpt):
    model = gpt.GPT(tiny(gpt))
    opt = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), "cpu")
    assert isinstance(opt, engine.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert decay["lr"] == no_decay["lr"] == 6e-4 and decay["betas"] == (0.9, 0.95)
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == model.get_num_params(non_embedding=False)


def test_compiled_model_trains_like_the_eager_one(gpt):
    _, _, eager = gpt.train(TEXT, tiny(gpt), steps=3)
    _, _, compiled = gpt.train(TEXT, tiny(gpt), steps=3, compile=True)
    assert eager == compiled


def test_get_batch_slices_with_tensor_indices(gpt):
    _, data = gpt.encode(TEXT)
    x, y = gpt.get_batch(data, 8, 5, engine.device("cpu"))
    assert x.shape == y.shape == (5, 8) and x.dtype == engine.long
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])


# ---- (b) the same file under PyTorch and under engine ---------------------------------------------
def _twin_models(gpt, torch_gpt, cfg_kwargs):
    """A PyTorch model and an engine model holding the same float64 weights."""
    import torch

    torch.manual_seed(0)
    reference = torch_gpt.GPT(tiny(torch_gpt, **cfg_kwargs)).double()
    model = gpt.GPT(tiny(gpt, **cfg_kwargs)).double()
    model.load_state_dict({k: engine.tensor(v.detach().numpy()) for k, v in reference.state_dict().items()})
    return reference, model


def _batch(rng, vocab, b=4, t=12):
    idx = rng.integers(0, vocab, (b, t))
    targets = rng.integers(0, vocab, (b, t))
    targets[0, -3:] = -1  # ignored positions
    return idx, targets


@pytest.mark.parametrize("cfg", [dict(flash=True), dict(flash=False), dict(bias=False, n_layer=1)],
                         ids=["sdpa", "explicit-mask", "no-bias"])
def test_same_loss_and_gradients_as_pytorch(gpt, torch_gpt, cfg):
    import torch

    reference, model = _twin_models(gpt, torch_gpt, cfg)
    assert list(model.state_dict()) == list(reference.state_dict())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in reference.named_parameters()]
    idx, targets = _batch(np.random.default_rng(1), model.config.vocab_size)
    logits_ref, loss_ref = reference(torch.from_numpy(idx), torch.from_numpy(targets))
    logits, loss = model(engine.tensor(idx), engine.tensor(targets))
    assert loss.dtype == engine.float64
    np.testing.assert_allclose(logits.numpy(), logits_ref.detach().numpy(), **FLOAT64)
    np.testing.assert_allclose(loss.item(), loss_ref.item(), **FLOAT64)
    loss_ref.backward()
    loss.backward()
    for (name, p), (_, p_ref) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), p_ref.grad.numpy(), **FLOAT64, err_msg=name)


def test_same_loss_as_pytorch_in_float32(gpt, torch_gpt):
    import torch

    torch.manual_seed(0)
    reference = torch_gpt.GPT(tiny(torch_gpt))
    model = gpt.GPT(tiny(gpt))
    model.load_state_dict({k: engine.tensor(v.detach().numpy()) for k, v in reference.state_dict().items()})
    idx, targets = _batch(np.random.default_rng(2), model.config.vocab_size)
    _, loss_ref = reference(torch.from_numpy(idx), torch.from_numpy(targets))
    _, loss = model(engine.tensor(idx), engine.tensor(targets))
    assert loss.dtype == engine.float32
    # float32 through two blocks: a few ulps per op, so a looser bound than FLOAT32's
    np.testing.assert_allclose(loss.item(), loss_ref.item(), rtol=1e-5)


def test_same_adamw_steps_with_parameter_groups_as_pytorch(gpt, torch_gpt):
    import torch

    reference, model = _twin_models(gpt, torch_gpt, {})
    opt_ref = reference.configure_optimizers(0.1, 1e-2, (0.9, 0.95), "cpu")
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95), "cpu")
    rng = np.random.default_rng(3)
    for step in range(3):
        idx, targets = _batch(rng, model.config.vocab_size)
        for o in (opt_ref, opt):
            for group in o.param_groups:
                group["lr"] = 1e-2 * (step + 1) / 3
        _, loss_ref = reference(torch.from_numpy(idx), torch.from_numpy(targets))
        _, loss = model(engine.tensor(idx), engine.tensor(targets))
        np.testing.assert_allclose(loss.item(), loss_ref.item(), **FLOAT64)
        loss_ref.backward()
        loss.backward()
        norm_ref = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        norm = engine.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        np.testing.assert_allclose(float(norm), float(norm_ref), **FLOAT64)
        opt_ref.step()
        opt.step()
        opt_ref.zero_grad(set_to_none=True)
        opt.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in model.parameters())
    for (name, p), (_, p_ref) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(p.numpy(), p_ref.detach().numpy(), **FLOAT64, err_msg=name)


def test_same_greedy_generation_as_pytorch(gpt, torch_gpt):
    import torch

    reference, model = _twin_models(gpt, torch_gpt, {})
    prompt = np.array([[3, 1, 4, 1, 5]])
    out_ref = reference.generate(torch.from_numpy(prompt), 15, temperature=0)
    out = model.generate(engine.tensor(prompt), 15, temperature=0)
    assert out.tolist() == out_ref.tolist()


def test_functional_pieces_match_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).standard_normal((3, 5))
    np.testing.assert_allclose(F.gelu(engine.tensor(x), approximate="tanh").numpy(),
                               torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy(),
                               **FLOAT64)
    mask = x > 0.3
    np.testing.assert_array_equal(engine.tensor(x).masked_fill(engine.tensor(mask), float("-inf")).numpy(),
                                  torch.from_numpy(x).masked_fill(torch.from_numpy(mask), float("-inf")).numpy())
    np.testing.assert_array_equal(engine.tril(engine.ones(4, 6)).numpy(), torch.tril(torch.ones(4, 6)).numpy())
    v, i = engine.topk(engine.tensor(x), 2)
    v_ref, i_ref = torch.topk(torch.from_numpy(x), 2)
    np.testing.assert_array_equal(v.numpy(), v_ref.numpy())
    np.testing.assert_array_equal(i.numpy(), i_ref.numpy())


# ---- (c) the engine surface this needs, piece by piece --------------------------------------------
def _sdpa_inputs(tq=5, tk=5, d=4, seed=0):
    return leaf(2, 3, tq, d, seed=seed), leaf(2, 3, tk, d, seed=seed + 1), leaf(2, 3, tk, d, seed=seed + 2)


def _reseeded_sdpa(**kwargs):
    """SDPA that draws the same dropout mask on every call (gradcheck calls it many times)."""
    def fn(q, k, v):
        engine.manual_seed(7)
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    return fn


@pytest.mark.parametrize("kwargs", [
    dict(is_causal=True),
    dict(),
    dict(attn_mask=engine.tensor(np.random.default_rng(0).random((5, 5)) > 0.3)),
    dict(attn_mask=engine.tensor(np.random.default_rng(0).standard_normal((1, 3, 5, 5)))),
], ids=["causal", "no-mask", "bool-mask", "float-mask"])
def test_sdpa_with_dropout_has_correct_gradients(kwargs):
    q, k, v = _sdpa_inputs()
    assert gradcheck(_reseeded_sdpa(dropout_p=0.3, **kwargs), q, k, v)


def test_sdpa_dropout_zeroes_or_rescales_each_attention_weight():
    # with V the identity, the output rows are the attention weights themselves
    q = leaf(1, 2, 6, 4, seed=0)
    k = leaf(1, 2, 6, 4, seed=1)
    eye = engine.tensor(np.broadcast_to(np.eye(6), (1, 2, 6, 6)).copy())
    p = 0.4
    weights = F.scaled_dot_product_attention(q, k, eye, is_causal=True).numpy()
    dropped = F.scaled_dot_product_attention(q, k, eye, is_causal=True, dropout_p=p).numpy()
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], weights[kept] / (1 - p), **FLOAT64)
    assert not np.triu(kept, 1).any()  # the causal mask holds
    assert 0 < (~kept)[np.tril(np.ones((6, 6), bool)) & (weights > 0)].mean() < 1
    assert not F.scaled_dot_product_attention(q, k, eye, dropout_p=1.0).numpy().any()


def test_sdpa_with_dropout_is_reproducible_for_a_seed():
    q, k, v = _sdpa_inputs()
    fn = _reseeded_sdpa(dropout_p=0.5, is_causal=True)
    np.testing.assert_array_equal(fn(q, k, v).numpy(), fn(q, k, v).numpy())


def test_sdpa_with_dropout_gives_zeros_and_no_nan_on_fully_masked_rows():
    q, k, v = _sdpa_inputs()
    mask = np.ones((5, 5), bool)
    mask[2] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=engine.tensor(mask), dropout_p=0.2)
    assert not out.numpy()[:, :, 2].any() and np.isfinite(out.numpy()).all()
    out.sum().backward()
    assert all(np.isfinite(t.grad.numpy()).all() for t in (q, k, v))


def _ops_in_graph(t):
    """Names of the Functions that made `t`."""
    names, stack = set(), [t]
    while stack:
        node = stack.pop()._ctx
        if node is not None:
            names.add(type(node).__name__)
            stack.extend(node.inputs)
    return names


def test_sdpa_dropout_p_zero_keeps_the_fused_kernel_and_out_of_range_is_refused():
    q, k, v = _sdpa_inputs()
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.0)
    composed = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.1)
    assert "ScaledDotProductAttention" in _ops_in_graph(fused)
    assert "ScaledDotProductAttention" not in _ops_in_graph(composed) and "Dropout" in _ops_in_graph(composed)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\], got 1.5"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.5)


def test_masked_fill_values_broadcasting_and_dtype():
    x = engine.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = x.masked_fill(engine.tensor([True, False, True]), -1.0)
    assert out.tolist() == [[-1.0, 2.0, -1.0], [-1.0, 5.0, -1.0]] and out.dtype == engine.float32
    ints = engine.arange(4).masked_fill(engine.tensor([False, True, False, True]), 9)
    assert ints.tolist() == [0, 9, 2, 9] and ints.dtype == engine.long
    assert engine.masked_fill(x, x > 3, 0.0).tolist() == [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]


def test_masked_fill_gradients_reach_the_input_and_a_tensor_value():
    x = leaf(3, 4, seed=0)
    value = leaf(seed=1)  # 0-d
    mask = engine.tensor(np.random.default_rng(2).random((3, 4)) > 0.5)
    assert gradcheck(lambda a, b: a.masked_fill(mask, b), x, value)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: x.masked_fill(engine.ones(2, 3), 0.0), TypeError, "masked_fill: mask must be a bool tensor, got float32"),
    (lambda x: x.masked_fill(x > 0, engine.ones(2)), ValueError, r"value must be a number or a 0-d tensor, got a tensor of shape \(2,\)"),
    (lambda x: x.masked_fill_(engine.ones(2, 3), 0.0), TypeError, "masked_fill_: mask must be a bool tensor, got float32"),
])
def test_masked_fill_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(engine.zeros(2, 3))


def test_size_dim_numel_and_shape_unpacking():
    x = engine.zeros(2, 3, 4)
    B, T, C = x.size()
    assert (B, T, C) == (2, 3, 4) and x.size(-1) == 4 and x.size(1) == 3
    assert x.dim() == 3 and x.numel() == 24 and x.size().numel() == 24
    with pytest.raises(IndexError, match="dimension 3 out of range"):
        x.size(3)


@pytest.mark.parametrize("make", [
    lambda: engine.zeros((1, 1), dtype=engine.long),
    lambda: engine.ones(2, dtype=engine.long),
    lambda: engine.empty(2, dtype=engine.long),
    lambda: engine.full((2,), 3, dtype=engine.long),
    lambda: engine.arange(0, 5, dtype=engine.long, device="cpu"),
    lambda: engine.tensor([1, 2], dtype=engine.long),
    lambda: engine.randint(5, (3,)),
    lambda: engine.zeros_like(engine.ones(2), dtype=engine.long),
], ids=["zeros", "ones", "empty", "full", "arange", "tensor", "randint", "zeros_like"])
def test_factories_take_dtype_long(make):
    assert engine.long is engine.int64
    t = make()
    assert t.dtype == engine.long and isinstance(t, engine.Tensor)


def test_randint_takes_pytorchs_high_size_form():
    t = engine.randint(4, (1000,))
    assert t.shape == (1000,) and set(np.unique(t.numpy())) == {0, 1, 2, 3}
    assert engine.randint(3, 5, (10,)).numpy().min() >= 3


def test_compile_returns_the_module_or_function_unchanged():
    model = nn.Linear(2, 3)
    assert engine.compile(model) is model
    assert engine.compile(model, mode="max-autotune", fullgraph=True) is model

    def f(x):
        return x * 2

    assert engine.compile(f) is f

    @engine.compile(dynamic=False)
    def g(x):
        return x + 1

    assert g(engine.ones(1)).tolist() == [2.0]


def test_out_of_scope_features_are_named():
    assert not hasattr(engine, "jit")  # hasattr-style feature checks still work
    with pytest.raises(NotImplementedError, match=r"engine.jit: TorchScript"):
        engine.jit
    with pytest.raises(NotImplementedError, match=r"torch.backends"):
        engine.backends
    with pytest.raises(AttributeError, match="module 'engine' has no attribute 'no_such_thing'"):
        engine.no_such_thing


def test_device_objects_and_to_cpu():
    device = engine.device("cpu")
    x = engine.ones(2)
    assert x.device == device == "cpu" and x.device.type == "cpu" and str(device) == "cpu"
    assert x.to(device) is x and x.to("cpu") is x and x.cpu() is x
    y = x.to(device, engine.float64)
    assert y.dtype == engine.float64 and y.device == device
    model = nn.Linear(2, 2)
    assert model.to(device) is model and model.weight.device == device
    if not engine.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            x.to("cuda")


def test_tensor_isinstance_checks():
    p = nn.Parameter(engine.ones(2))
    assert isinstance(p, engine.Tensor) and isinstance(engine.zeros(1), engine.Tensor)
    assert isinstance(p, nn.Parameter) and not isinstance(engine.zeros(1), nn.Parameter)
    assert not isinstance(np.zeros(1), engine.Tensor)


class _WithMask(nn.Module):
    def __init__(self, persistent):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.register_buffer("mask", engine.tril(engine.ones(3, 3)), persistent=persistent)
        self.register_buffer("count", engine.zeros(1))


def test_non_persistent_buffers_move_but_are_not_saved():
    m = _WithMask(persistent=False)
    assert [n for n, _ in m.named_buffers()] == ["mask", "count"]
    # a module's own parameters and buffers come before its children's, as in PyTorch
    assert list(m.state_dict()) == ["count", "lin.weight", "lin.bias"]
    m.double()
    assert m.mask.dtype == engine.float64  # to() moves every buffer
    m.load_state_dict(_WithMask(persistent=True).state_dict(), strict=False)
    result = m.load_state_dict(_WithMask(persistent=False).state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    with pytest.raises(RuntimeError, match="unexpected keys"):
        m.load_state_dict(_WithMask(persistent=True).state_dict())
    m.register_buffer("mask", engine.ones(3, 3))  # registering again as persistent saves it
    assert list(m.state_dict()) == ["mask", "count", "lin.weight", "lin.bias"]


def test_buffers_can_be_none_and_reassigned():
    m = _WithMask(persistent=True)
    m.mask = engine.zeros(3, 3)
    assert m.state_dict()["mask"].numpy().sum() == 0
    m.register_buffer("mask", None)
    assert m.mask is None and "mask" not in m.state_dict()
    m.mask = engine.ones(2)
    assert [n for n, _ in m.named_buffers()] == ["mask", "count"]  # it keeps its place


def test_reassigning_a_parameter_keeps_its_place_in_the_state_dict():
    lin = nn.Linear(2, 3)
    lin.weight = nn.Parameter(engine.zeros(3, 2))
    assert list(lin.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("name, tensor, error, message", [
    ("a.b", engine.ones(1), KeyError, "without '.'"),
    ("", engine.ones(1), KeyError, "non-empty"),
    ("lin", engine.ones(1), KeyError, "attribute 'lin' already exists"),
    ("forward", engine.ones(1), KeyError, "attribute 'forward' already exists"),
    ("x", np.ones(1), TypeError, "cannot assign a ndarray to buffer 'x'"),
])
def test_register_buffer_errors(name, tensor, error, message):
    with pytest.raises(error, match=message):
        _WithMask(persistent=True).register_buffer(name, tensor)


def test_optimizer_parameter_groups_keep_their_own_options():
    a = nn.Parameter(engine.ones(2, 2))
    b = nn.Parameter(engine.ones(2))
    opt = engine.optim.AdamW([{"params": [a], "weight_decay": 0.5, "lr": 0.1},
                              {"params": [b], "weight_decay": 0.0}], lr=0.01, betas=(0.8, 0.9))
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert [g["betas"] for g in opt.param_groups] == [(0.8, 0.9)] * 2
    a.grad, b.grad = engine.zeros(2, 2), engine.zeros(2)
    opt.step()
    # a zero gradient leaves only the decoupled decay: p *= 1 - lr·wd, per group
    np.testing.assert_allclose(a.numpy(), np.full((2, 2), 1 - 0.1 * 0.5), **FLOAT32)
    np.testing.assert_array_equal(b.numpy(), np.ones(2))
    opt.param_groups[1]["weight_decay"] = 1.0  # a changed option takes effect on the next step
    opt.step()
    np.testing.assert_allclose(b.numpy(), np.full(2, 1 - 0.01), **FLOAT32)


def test_optimizer_zero_grad_and_param_errors():
    p = nn.Parameter(engine.ones(2))
    opt = engine.optim.SGD([p], lr=0.1)
    p.grad = engine.ones(2)
    opt.zero_grad(set_to_none=False)
    assert p.grad.tolist() == [0.0, 0.0]
    opt.zero_grad(set_to_none=True)
    assert p.grad is None
    with pytest.raises(TypeError, match=r"params must be an iterable .* got a single tensor of shape \(2,\)"):
        engine.optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        engine.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_no_grad_as_decorator_with_and_without_call():
    x = engine.ones(2, requires_grad=True)

    @engine.no_grad()
    def called(t):
        return t * 2

    @engine.no_grad
    def bare(t):
        return t * 2

    assert not called(x).requires_grad and not bare(x).requires_grad
    assert engine.is_grad_enabled() and (x * 2).requires_grad


def test_gelu_tanh_approximation():
    x = leaf(4, 5, seed=0)
    expected = 0.5 * x.numpy() * (1 + np.tanh(math.sqrt(2 / math.pi) * (x.numpy() + 0.044715 * x.numpy() ** 3)))
    np.testing.assert_allclose(F.gelu(x, approximate="tanh").numpy(), expected, **FLOAT64)
    np.testing.assert_allclose(nn.GELU(approximate="tanh")(x).numpy(), expected, **FLOAT64)
    assert gradcheck(lambda t: F.gelu(t, approximate="tanh"), x)
