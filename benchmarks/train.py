"""Training suite: milliseconds per optimizer step (forward, loss, backward, Adam update) of the
seed models.

numpy: engine with the NumPy kernel set; engine: engine with the native kernels; torch: the same
architecture in PyTorch (written out here, parameter names matching engine's), starting from
the same weights. Inputs are fixed random batches of the
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


def _torch_model(torch, kind, vocab, context=GPT_CONTEXT):
    nn, F = torch.nn, torch.nn.functional
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                             nn.Linear(64, 10))
    if kind == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 64),
                             nn.ReLU(), nn.Linear(64, 10))
    from engine.models.gpt import GPTConfig

    cfg = GPTConfig(vocab_size=vocab, block_size=context)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.proj = nn.Linear(cfg.n_embd, 3 * cfg.n_embd), nn.Linear(cfg.n_embd, cfg.n_embd)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = (t.view(B, T, cfg.n_head, -1).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.proj(y.transpose(1, 2).reshape(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn, self.ln2 = nn.LayerNorm(cfg.n_embd), Attention(), nn.LayerNorm(cfg.n_embd)
            self.mlp = nn.Module()
            self.mlp.fc, self.mlp.proj = nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.Linear(4 * cfg.n_embd, cfg.n_embd)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp.proj(F.gelu(self.mlp.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_emb, self.pos_emb = nn.Embedding(vocab, cfg.n_embd), nn.Embedding(context, cfg.n_embd)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.n_layer)])
            self.ln_f = nn.LayerNorm(cfg.n_embd)
            self.head = nn.Linear(cfg.n_embd, vocab, bias=False)
            self.head.weight = self.tok_emb.weight

        def forward(self, idx, targets):
            x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.ln_f(x))
            return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))

    return GPT()


def _torch_step(torch, kind, batch, vocab):
    """The same step in PyTorch, from the engine model's initial weights."""
    model = _torch_model(torch, kind, vocab)
    weights = dict(_engine_model(kind, vocab).named_parameters())
    with torch.no_grad():
        mine = list(model.named_parameters())
        # nn.Sequential names its layers by index, engine's models by role: those follow the order
        sources = [weights[n] for n, _ in mine] if kind == "gpt" else list(weights.values())
        for (name, p), q in zip(mine, sources, strict=True):
            p.copy_(torch.from_numpy(q.numpy()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batch(kind, batch, vocab, np.random.default_rng(1))
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    loss_of = (lambda: model(x, y)) if kind == "gpt" else (lambda: torch.nn.functional.cross_entropy(model(x), y))

    def step():
        opt.zero_grad()
        loss = loss_of()
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
            if torch:
                impls["torch"] = _torch_step(torch, kind, batch, vocab)
            name = f"{kind} batch {batch}" + (f" T{GPT_CONTEXT}" if kind == "gpt" else "")
            yield Case("train", name, 1.0, impls, t, rtol=1e-4, atol=1e-5, unit="ms/step")
