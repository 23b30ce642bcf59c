"""Reproducibility: the same seed and thread count give bitwise-identical training runs; one
and two threads agree (bitwise for the kernels listed in BITWISE_ACROSS_THREADS, within
THREADS_RTOL for any other native kernel); checkpoints are written atomically and a damaged
file is refused. (Round trip, truncation and unstorable objects: tests/test_models.py.)
"""
import os
import zipfile

import numpy as np
import pytest

import engine
import engine.nn.functional as F
from engine import optim
from engine.backend import numpy_ref
from engine.models import GPT, MLP, GPTConfig

# Native kernels whose result does not depend on the thread count: each output element (row,
# tile) is computed by one thread in a fixed order, and per-thread partial sums, where there are
# any, are combined in a fixed order (layer_norm_backward's weight gradient, by blocks of rows
# that depend on N alone; the GEMM never splits K across threads; dropout draws from a counter).
BITWISE_ACROSS_THREADS = {
    "add", "matmul", "linear", "softmax_forward", "softmax_backward", "layer_norm_forward",
    "layer_norm_backward", "cross_entropy_forward", "cross_entropy_backward", "relu_forward",
    "relu_backward", "gelu_forward", "gelu_backward", "dropout_mask",
}
# Any other native kernel (one whose threads split a reduction) may round differently with
# another thread count, within this relative bound in float64.
THREADS_RTOL = 1e-12
# ...and a few float32 training steps through such kernels, this far apart in the loss.
TRAINING_THREADS_RTOL = 1e-5


@pytest.fixture
def native():
    """The native kernel set for the test; the previous one restored after."""
    previous = engine.backend.current()
    engine.backend.use("native")
    yield
    engine.backend.use(previous)


# ---- training runs ---------------------------------------------------------------------------
def _mnist_slice(n=512):
    from engine.data import load_mnist

    x, y = load_mnist("val")
    return x[:n], y[:n]


def mlp_losses(seed, steps=15, batch=64):
    """Losses of a short MLP run on a real-MNIST slice (Adam, shuffled batches)."""
    from engine.data import DataLoader, TensorDataset

    engine.manual_seed(seed)
    x, y = _mnist_slice()
    model = MLP()
    opt = optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, seed=seed)
    losses = []
    while len(losses) < steps:
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return np.array(losses)


def gpt_losses(seed, steps=4):
    """Losses of a few AdamW steps of a small GPT with dropout on a fixed batch of tokens."""
    engine.manual_seed(seed)
    cfg = GPTConfig(vocab_size=29, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    model = GPT(cfg)
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    tokens = np.random.default_rng(seed).integers(0, cfg.vocab_size, size=(4, cfg.block_size + 1))
    idx, targets = engine.tensor(tokens[:, :-1]), engine.tensor(tokens[:, 1:])
    losses = []
    for _ in range(steps):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


@pytest.mark.parametrize("run", [mlp_losses, gpt_losses], ids=["mlp", "gpt"])
def test_same_seed_and_threads_give_bitwise_identical_losses(run, backend, threads):
    threads(2)
    first, second = run(seed=3), run(seed=3)
    assert np.array_equal(first, second), f"{first} vs {second}"
    assert not np.array_equal(first, run(seed=4)), "the seed must matter"


@pytest.mark.parametrize("run", [mlp_losses, gpt_losses], ids=["mlp", "gpt"])
def test_one_and_two_threads_give_the_same_losses(run, native, threads):
    threads(1)
    one = run(seed=5)
    threads(2)
    two = run(seed=5)
    if set(_native_kernels()) <= BITWISE_ACROSS_THREADS:
        assert np.array_equal(one, two), f"{one} vs {two}"
    else:  # a native kernel that splits a reduction across threads rounds differently
        np.testing.assert_allclose(one, two, rtol=TRAINING_THREADS_RTOL, atol=0)


# ---- kernels, one against two threads --------------------------------------------------------
def _kernel_args(name, rng):
    """Arguments for kernel `name` (numpy_ref's signature), float64, past every parallel threshold."""
    f = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    if name == "matmul":
        return f(300, 200), f(200, 150)
    if name == "linear":
        return f(300, 200), f(150, 200), f(150)
    if name in ("conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight"):
        x, w, args = f(4, 6, 20, 20), f(8, 3, 3, 3), ((1, 2), (1, 0), (1, 1), 2)
        dy = f(*numpy_ref.conv2d_forward(x, w, None, *args).shape)
        return {"conv2d_forward": (x, w, f(8)) + args, "conv2d_grad_input": (dy, w, x.shape) + args,
                "conv2d_grad_weight": (dy, x, w.shape) + args}[name]
    if name in ("max_pool2d_forward", "max_pool2d_backward"):
        x, args = f(4, 8, 33, 33), ((3, 3), (2, 2), (1, 1), (1, 1))
        y, idx = numpy_ref.max_pool2d_forward(x, *args)
        return (x,) + args if name == "max_pool2d_forward" else (f(*y.shape), idx, x.shape)
    if name in ("avg_pool2d_forward", "avg_pool2d_backward"):
        x, args = f(4, 8, 33, 33), ((3, 3), (2, 2), (1, 1), False)
        y = numpy_ref.avg_pool2d_forward(x, *args)
        return (x,) + args if name == "avg_pool2d_forward" else (f(*y.shape), x.shape) + args
    if name in ("attention_forward", "attention_backward"):
        q, k, v = f(2, 4, 130, 32), f(2, 4, 150, 32), f(2, 4, 150, 16)
        if name == "attention_forward":
            return q, k, v, None, False, None
        out, lse = numpy_ref.attention_forward(q, k, v)
        return f(*out.shape), q, k, v, out, lse, None, False, None
    if name in ("softmax_forward", "softmax_backward"):
        x = f(400, 300)
        return (x, True) if name == "softmax_forward" else (f(400, 300), numpy_ref.softmax_forward(x, True), True)
    if name in ("layer_norm_forward", "layer_norm_backward"):
        x, w, b = f(400, 300), f(300), f(300)
        if name == "layer_norm_forward":
            return x, w, b, 1e-5
        _, mean, rstd = numpy_ref.layer_norm_forward(x, w, b, 1e-5)
        return f(400, 300), x, w, mean, rstd
    if name in ("cross_entropy_forward", "cross_entropy_backward"):
        logits, target = f(400, 300), rng.integers(0, 300, 400)
        if name == "cross_entropy_forward":
            return logits, target, -100
        _, lse = numpy_ref.cross_entropy_forward(logits, target)
        return f(400), logits, target, lse, -100
    if name == "add":
        return f(300, 400), f(300, 400)
    if name in ("gelu_forward", "gelu_backward", "relu_forward", "relu_backward"):
        return (f(200_000),) if name.endswith("forward") else (f(200_000), f(200_000))
    if name == "embedding_backward":
        return f(64, 50, 32), rng.integers(0, 100, (64, 50)), 100
    if name == "dropout_mask":
        return (300, 400), 0.3, np.random.default_rng(7), np.float64
    raise KeyError(f"no arguments for kernel {name!r}: add them here when a new kernel lands")


def _native_kernels():
    from engine.backend.cpu import KERNELS

    return [name for name, source in KERNELS.sources.items() if source == "native"]


@pytest.mark.parametrize("name", _native_kernels())
def test_native_kernel_with_one_and_two_threads(name, threads):
    from engine.backend.cpu import KERNELS

    results = []
    for n in (1, 2):
        threads(n)
        args = _kernel_args(name, np.random.default_rng(11))  # fresh: dropout_mask consumes its rng
        out = getattr(KERNELS, name)(*args)
        results.append(out if isinstance(out, tuple) else (out,))
    for one, two in zip(*results):
        if one is None:
            assert two is None
        elif name in BITWISE_ACROSS_THREADS:
            assert np.array_equal(one, two), f"{name}: 1 and 2 threads differ"
        else:
            np.testing.assert_allclose(one, two, rtol=THREADS_RTOL, atol=THREADS_RTOL, err_msg=name)


def test_the_bitwise_list_names_only_kernels():
    from engine.backend.kernel_set import KERNEL_NAMES

    assert BITWISE_ACROSS_THREADS <= set(KERNEL_NAMES)


# ---- checkpoints -----------------------------------------------------------------------------
def _checkpoint(tmp_path, name="ckpt.npz"):
    engine.manual_seed(0)
    model = MLP()
    path = tmp_path / name
    engine.save({"model": model.state_dict(), "step": 7}, str(path))
    return path, model


def test_an_interrupted_save_leaves_the_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    path, _ = _checkpoint(tmp_path)
    before = path.read_bytes()
    real_savez = np.savez

    def savez_then_interrupt(f, **arrays):
        real_savez(f, **arrays)  # the temporary is fully written...
        raise KeyboardInterrupt  # ...and Ctrl-C arrives before the rename

    monkeypatch.setattr(np, "savez", savez_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        engine.save({"step": 8}, str(path))
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert path.read_bytes() == before
    assert engine.load(str(path))["step"] == 7


def test_overwriting_a_checkpoint_keeps_its_file_mode(tmp_path):
    path, model = _checkpoint(tmp_path)
    os.chmod(path, 0o640)
    engine.save({"model": model.state_dict(), "step": 8}, str(path))
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert engine.load(str(path))["step"] == 8


def _flip_byte_in_an_array(path):
    """Corrupt one byte inside a stored array (not the zip directory), as a bad disk would."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if i.filename != "__meta__.npy"), key=lambda i: i.file_size)
    # the member's data starts after its 30-byte local header, name and extra field
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped-byte", "empty", "garbage", "bad-metadata", "cut-directory"])
def test_a_damaged_checkpoint_is_refused_with_a_clear_error(tmp_path, damage):
    path, _ = _checkpoint(tmp_path)
    if damage == "flipped-byte":
        _flip_byte_in_an_array(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "bad-metadata":
        arrays = dict(np.load(path))
        arrays["__meta__"] = np.frombuffer(b'{"format": "engine-checkpoint-v1", "skel', dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    else:
        path.write_bytes(path.read_bytes()[:-10])  # the end of the zip's central directory
    with pytest.raises(ValueError, match=r"load: .*ckpt\.npz is not a readable engine checkpoint"):
        engine.load(str(path))
