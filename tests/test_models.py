"""The seed workloads train: data loading, nn modules, optimizers, checkpoints, the train CLI.

CI trains small versions to stated thresholds; the full 5-epoch figures are in the README."""
import argparse
import gzip
import os

import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F
from engine import optim
from engine.data import CharCorpus, DataLoader, TensorDataset, default_corpus, load_mnist
from engine.models import CNN, GPT, MLP, GPTConfig
from engine.train import add_arguments, fill_defaults, train_gpt, train_mnist


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return fill_defaults(parser.parse_args(list(argv) + ["--no-progress"]))


# ---- data ----------------------------------------------------------------------------------
def test_mnist_from_the_hub_package_has_the_documented_splits():
    sizes = {s: len(load_mnist(s)[0]) for s in ("train", "val", "test")}
    assert sizes == {"train": 50000, "val": 10000, "test": 10000}
    x, y = load_mnist("test", flatten=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) == set(range(10))


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_from_idx_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    labels = np.array([3, 1, 4, 1, 5])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = load_mnist("test", path=str(tmp_path))
    np.testing.assert_allclose(x, images.reshape(5, -1) / 255.0, rtol=1e-6)
    assert y.tolist() == labels.tolist()
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist("train", path=str(tmp_path))


def test_truncated_idx_file_is_refused(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 10)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\0" * 5)
    with pytest.raises(ValueError, match="truncated"):
        load_mnist("test", path=str(tmp_path))


def test_dataloader_batches_shuffles_with_a_seed_and_drops_last():
    ds = TensorDataset(np.arange(10), np.arange(10) * 2)
    batches = list(DataLoader(ds, batch_size=4))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    order1 = [b[0].tolist() for b in DataLoader(ds, batch_size=3, shuffle=True, seed=7)]
    order2 = [b[0].tolist() for b in DataLoader(ds, batch_size=3, shuffle=True, seed=7)]
    assert order1 == order2 and sorted(sum(order1, [])) == list(range(10))
    for x, y in DataLoader(ds, batch_size=3, shuffle=True, seed=1):
        assert (y.numpy() == 2 * x.numpy()).all()


def test_char_corpus_round_trips_and_makes_shifted_windows():
    corpus = CharCorpus(default_corpus())
    assert corpus.vocab_size > 50 and len(corpus.train) > 100_000
    text = "def f(x): return x"
    assert corpus.decode(corpus.encode(text)) == text
    x, y = corpus.batch("train", 4, 32, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 32)
    assert (x[:, 1:] == y[:, :-1]).all()
    assert 2.0 < corpus.unigram_entropy() < np.log(corpus.vocab_size)


# ---- modules ---------------------------------------------------------------------------------
def test_module_registers_parameters_buffers_and_children():
    model = MLP()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"]
    assert sum(p.numel() for p in model.parameters()) == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert "Linear(in_features=784, out_features=64, bias=True)" in repr(model)
    model.eval()
    assert not any(m.training for m in model.modules())


def test_linear_init_matches_pytorch_bounds():
    layer = nn.Linear(400, 30)
    bound = 1 / np.sqrt(400)
    w = layer.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(layer.bias.numpy()).max() <= bound


def test_state_dict_round_trip_and_strict_loading():
    a, b = CNN(), CNN()
    b.load_state_dict(a.state_dict())
    x = engine.randn(2, 1, 28, 28)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    with pytest.raises(RuntimeError, match="missing keys"):
        b.load_state_dict({})
    bad = dict(a.state_dict())
    bad["classifier.1.weight"] = engine.zeros(3, 3)
    with pytest.raises(RuntimeError, match="size mismatch for classifier.1.weight"):
        b.load_state_dict(bad)


def test_gpt_ties_its_head_to_the_token_embedding():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    assert model.head.weight is model.tok_emb.weight
    params = list(model.parameters())
    assert len({id(p) for p in params}) == len(params)
    idx = engine.randint(0, 11, (2, 8))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 8, 11) and np.isfinite(loss.item())


# ---- optimizers ------------------------------------------------------------------------------
def test_adam_and_sgd_follow_pytorchs_update_formulas():
    p = nn.Parameter(engine.tensor([1.0, -2.0]))
    opt = optim.Adam([p], lr=0.1)
    p.grad = engine.tensor([0.5, 0.5])
    opt.step()
    # the first Adam step moves every coordinate by lr (m̂ = g, v̂ = g²)
    np.testing.assert_allclose(p.numpy(), [0.9, -2.1], rtol=1e-6)
    q = nn.Parameter(engine.tensor([1.0]))
    sgd = optim.SGD([q], lr=0.1, momentum=0.9)
    for _ in range(2):
        q.grad = engine.tensor([1.0])
        sgd.step()
    np.testing.assert_allclose(q.numpy(), [1.0 - 0.1 - 0.1 * 1.9], rtol=1e-6)


def test_parameter_groups_keep_their_own_hyper_parameters():
    a, b = nn.Parameter(engine.ones(2)), nn.Parameter(engine.ones(2))
    opt = optim.AdamW([{"params": [a], "weight_decay": 0.0}, {"params": [b]}], lr=0.1, weight_decay=0.5)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.5]
    a.grad, b.grad = engine.zeros(2), engine.zeros(2)
    opt.step()
    np.testing.assert_allclose(a.numpy(), 1.0)
    np.testing.assert_allclose(b.numpy(), 1.0 - 0.1 * 0.5, rtol=1e-6)


def test_schedulers_and_gradient_clipping():
    p = nn.Parameter(engine.ones(1))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    cos = optim.lr_scheduler.CosineAnnealingLR(optim.SGD([p], lr=1.0), T_max=4)
    for _ in range(4):
        cos.step()
    assert cos.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    p.grad = engine.tensor([30.0])
    q = nn.Parameter(engine.ones(1))
    q.grad = engine.tensor([40.0])
    norm = nn.utils.clip_grad_norm_([p, q], max_norm=5.0)
    assert norm.item() == pytest.approx(50.0)
    assert np.hypot(p.grad.item(), q.grad.item()) == pytest.approx(5.0, rel=1e-5)


# ---- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_round_trip_is_atomic_and_truncation_is_refused(tmp_path):
    model = MLP()
    opt = optim.Adam(model.parameters())
    model(engine.randn(4, 784)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.npz"
    engine.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "progress": 3}, str(path))
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary left behind
    ckpt = engine.load(str(path))
    other = MLP()
    other.load_state_dict(ckpt["model"])
    for (n, p), (_, q) in zip(model.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    optim.Adam(other.parameters()).load_state_dict(ckpt["optimizer"])
    assert ckpt["progress"] == 3
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable engine checkpoint"):
        engine.load(str(path))


def test_save_refuses_objects_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        engine.save({"f": lambda: 0}, str(tmp_path / "x.npz"))
    assert os.listdir(tmp_path) == []


# ---- training ------------------------------------------------------------------------------
def test_mlp_trains_to_90_percent_in_one_short_epoch(capsys):
    result = train_mnist("mlp", _args("mlp", "--epochs", "1", "--steps", "400"))
    assert result["test_accuracy"] > 0.90


def test_cnn_trains_on_a_subset(capsys):
    result = train_mnist("cnn", _args("cnn", "--epochs", "1", "--limit", "2048", "--batch-size", "64"))
    assert result["test_accuracy"] > 0.80


def test_training_resumes_from_a_checkpoint(tmp_path, capsys):
    path = str(tmp_path / "mlp.npz")
    train_mnist("mlp", _args("mlp", "--epochs", "1", "--steps", "50", "--save", path))
    result = train_mnist("mlp", _args("mlp", "--epochs", "2", "--steps", "50", "--resume", path))
    assert "resumed from" in capsys.readouterr().out
    assert result["test_accuracy"] > 0.8


def test_gpt_loss_falls_below_the_unigram_entropy(tmp_path, capsys):
    text = tmp_path / "abc.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    result = train_gpt(_args("gpt", "--text", str(text), "--steps", "60", "--batch-size", "8",
                             "--block-size", "32", "--n-layer", "1", "--n-embd", "32", "--lr", "3e-3"))
    assert result["val_loss"] < 0.8 * result["unigram_entropy"]
    assert len(result["sample"]) > 100


def test_one_training_step_matches_pytorch_on_identical_weights():
    torch = pytest.importorskip("torch")
    model = MLP()
    ref = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 10)).double()
    model.double()
    with torch.no_grad():
        for (_, p), q in zip(model.named_parameters(), ref.parameters()):
            q.copy_(torch.from_numpy(p.numpy()))
    x, y = load_mnist("val")
    x, y = x[:128].astype(np.float64), y[:128]
    opt = optim.Adam(model.parameters(), lr=1e-3)
    topt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    for _ in range(3):
        loss = F.cross_entropy(model(engine.tensor(x)), engine.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        tloss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-9, atol=1e-12)
