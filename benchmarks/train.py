"""Training suite: one optimizer step (forward, loss, backward, update) of the seed models, in
samples per second.

numpy: engine with the NumPy kernel set; engine: engine with the native kernels; torch: the same
architecture in PyTorch, starting from the same weights. Inputs are fixed random batches of the
real shapes (the step's cost does not depend on the pixel values), so nothing is downloaded.
The first step of each implementation starts from the same weights, and its loss is what the
runner compares before timing.
"""
import numpy as np

from .runner import Case
from .timing import optional_torch

# (model, batch size): the MNIST models at their training batch sizes, and the GPT at its default
# size with a shorter context so a step stays well under a second.
CASES = [("mlp", 32), ("mlp", 128), ("cnn", 128), ("gpt", 16)]
QUICK_CASES = [("mlp", 128), ("cnn", 128)]
GPT_CONTEXT = 64


def _engine_model(kind, vocab):
    import engine
    from engine.models import CNN, GPT, MLP
    from engine.models.gpt import GPTConfig

    engine.manual_seed(0)
    if kind == "mlp":
        return MLP()
    if kind == "cnn":
        return CNN()
    return GPT(GPTConfig(vocab_size=vocab, block_size=GPT_CONTEXT))


def _batch(kind, batch, vocab, rng):
    if kind == "gpt":
        tokens = rng.integers(0, vocab, (batch, GPT_CONTEXT + 1))
        return tokens[:, :-1], tokens[:, 1:]
    shape = (batch, 784) if kind == "mlp" else (batch, 1, 28, 28)
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, batch)


def _engine_step(kind, batch, kernel_set, vocab):
    """A callable doing one Adam step of a fresh model under `kernel_set`; returns the loss."""
    import engine
    from engine import optim
    from engine.nn import functional as F

    model = _engine_model(kind, vocab)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batch(kind, batch, vocab, np.random.default_rng(1))
    x, y = engine.tensor(x), engine.tensor(y)

    def step():
        previous = engine.backend.current()
        engine.backend.use(kernel_set)
        try:
            opt.zero_grad()
            if kind == "gpt":
                _, loss = model(x, y)
            else:
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()
        finally:
            engine.backend.use(previous)
    return step


def _torch_model(torch, kind):
    nn = torch.nn
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                             nn.Linear(64, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 64), nn.ReLU(), nn.Linear(64, 10))


def _torch_step(torch, kind, batch):
    """The same step in PyTorch, from the engine model's initial weights (same parameter order)."""
    model = _torch_model(torch, kind)
    with torch.no_grad():
        for p, q in zip(model.parameters(), _engine_model(kind, 0).parameters(), strict=True):
            p.copy_(torch.from_numpy(q.numpy()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batch(kind, batch, 0, np.random.default_rng(1))
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def cases(quick, thread_counts):
    from engine.data.text import default_corpus

    vocab = len(set(default_corpus()))
    torch = optional_torch()
    for kind, batch in (QUICK_CASES if quick else CASES):
        for t in thread_counts:
            impls = {"numpy": _engine_step(kind, batch, "numpy", vocab),
                     "engine": _engine_step(kind, batch, "native", vocab)}
            if torch and kind != "gpt":
                impls["torch"] = _torch_step(torch, kind, batch)
            name = f"{kind} batch {batch}" + (f" T{GPT_CONTEXT}" if kind == "gpt" else "")
            yield Case("train", name, batch, impls, t, rtol=1e-4, atol=1e-5, unit="samples/s")
