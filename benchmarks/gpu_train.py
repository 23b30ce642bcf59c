"""GPU training suite (`engine bench --device cuda --suite train`): tokens per second of the
character GPT's training step (forward, backward, AdamW) in engine against the same model in
PyTorch eager, both on the GPU, in float32 and in bf16 autocast (engine.autocast /
torch.autocast: matmul and attention in bf16, float32 master weights).

The GPT is engine's default configuration (4 layers, 4 heads, 128 channels, context 256, batch 16);
both start from the same weights and see the same batch. Times are medians of per-step wall clock
with a synchronize per step (loss.item()), after warm-up steps.
"""
import statistics
import sys
import time

import numpy as np

BATCH, CONTEXT = 16, 256


def _engine_step(vocab, bf16):
    import engine
    from engine import optim
    from engine.models import GPT
    from engine.models.gpt import GPTConfig

    engine.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=CONTEXT)).to("cuda")
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    x, y = _batch(vocab)

    def step():
        xb, yb = engine.tensor(x, device="cuda"), engine.tensor(y, device="cuda")
        with engine.autocast("cuda", dtype=engine.bfloat16, enabled=bf16):
            _, loss = model(xb, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _torch_step(torch, vocab, bf16):
    import engine
    from engine.models import GPT
    from engine.models.gpt import GPTConfig

    from .train import _torch_model

    model = _torch_model(torch, "gpt", vocab, context=CONTEXT)
    engine.manual_seed(0)
    weights = dict(GPT(GPTConfig(vocab_size=vocab, block_size=CONTEXT)).named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(weights[name].numpy()))
    model = model.cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a).cuda() for a in _batch(vocab))

    def step():
        xb, yb = x.clone(), y.clone()  # a fresh batch on the device per step, as engine's
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = model(xb, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _batch(vocab):
    tokens = np.random.default_rng(1).integers(0, vocab, (BATCH, CONTEXT + 1))
    return tokens[:, :-1], tokens[:, 1:]


def _median_s(step, warmup, reps):
    losses = [step() for _ in range(warmup)]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), losses[0]


def train_rows(quick):
    from engine.data.text import default_corpus

    from .gpu import _torch_cuda

    vocab = len(set(default_corpus()))
    torch = _torch_cuda()
    warmup, reps = (3, 10) if quick else (5, 30)
    for precision in ("highest", "bf16"):
        bf16 = precision == "bf16"
        impls = {"engine": _engine_step(vocab, bf16)}
        if torch:
            impls["torch"] = _torch_step(torch, vocab, bf16)
        seconds, first_loss = {}, {}
        for name, step in impls.items():
            seconds[name], first_loss[name] = _median_s(step, warmup, reps)
        tokens = BATCH * CONTEXT
        row = {"suite": "train", "case": f"gpt B{BATCH} T{CONTEXT}", "precision": precision,
               "seconds": seconds, "tokens_per_s": {k: tokens / s for k, s in seconds.items()},
               "first_loss": first_loss}
        # same weights and batch: the first losses agree to the precision's rounding
        if "torch" in first_loss:
            row["loss_diff"] = abs(first_loss["engine"] - first_loss["torch"])
        yield row
        print(f"  train gpt {precision}: done", file=sys.stderr)


def format_train_table(rows):
    head = ["suite", "case", "precision", "engine tok/s", "torch tok/s", "eng/torch", "|loss diff|"]
    lines = [head]
    for r in rows:
        t = r["tokens_per_s"]
        lines.append([r["suite"], r["case"], r["precision"], f"{t['engine']:.0f}",
                      f"{t['torch']:.0f}" if "torch" in t else "-",
                      f"{t['engine'] / t['torch']:.2f}x" if "torch" in t else "-",
                      f"{r['loss_diff']:.1e}" if "loss_diff" in r else "-"])
    widths = [max(len(c) for c in col) for col in zip(*lines)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i > 2 else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(lines[0]), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines[1:]])
