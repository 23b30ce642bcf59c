"""A GPT-2 style language model and a small training / sampling routine, written for PyTorch.

This file is plain PyTorch (it follows nanoGPT's model.py): it imports `torch`, `torch.nn` and
`torch.nn.functional` and nothing from engine. tests/test_torch_compat.py loads it twice: once
with those three names bound to engine, engine.nn and engine.nn.functional, and once with real
PyTorch, to check that the same model code runs, trains and gives the same numbers on both.

Shapes: B batch, T sequence length (<= block_size), C = n_embd, H = n_head, V = vocab_size.
"""
import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True        # biases in Linear and LayerNorm layers, as in GPT-2
    flash: bool = True       # F.scaled_dot_product_attention, or the explicit masked softmax
    init: str = "normal"     # Linear weights: "normal" (GPT-2), "xavier" or "kaiming"


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # key, query and value projections for all heads, in one batch
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.flash = config.flash
        if not self.flash:
            # the causal mask: position t may attend to positions <= t; not saved in checkpoints
            mask = torch.tril(torch.ones(config.block_size, config.block_size))
            self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size),
                                 persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, C/H)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                               dropout_p=self.dropout if self.training else 0,
                                               is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v  # (B, H, T, T) x (B, H, T, C/H) -> (B, H, T, C/H)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        self.config = config

        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the token embedding and the output head share one matrix
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # scaled init of the residual projections, per GPT-2
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def get_num_params(self, non_embedding=True):
        """The number of parameters (the tied matrix counted once); the position embeddings are
        left out by default."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            if self.config.init == "xavier":
                torch.nn.init.xavier_uniform_(module.weight)
            elif self.config.init == "kaiming":
                torch.nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            else:
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            torch.nn.init.ones_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        device = idx.device
        b, t = idx.size()
        assert t <= self.config.block_size, f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=device)  # shape (t)

        tok_emb = self.transformer.wte(idx)  # token embeddings of shape (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # position embeddings of shape (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)

        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            # inference: only the last position's logits are needed (a list index keeps the dim)
            logits = self.lm_head(x[:, [-1], :])
            loss = None
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        param_dict = {pn: p for pn, p in self.named_parameters()}
        param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
        # every 2-D tensor (matmul weights, embeddings) decays; biases and LayerNorm gains do not
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        fused_available = "fused" in inspect.signature(torch.optim.AdamW).parameters
        use_fused = fused_available and device_type == "cuda"
        extra_args = dict(fused=True) if use_fused else dict()
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Extend idx (b, t) by max_new_tokens tokens, each fed back in; temperature 0 is greedy."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            if temperature == 0:
                idx_next = torch.argmax(logits[:, -1, :], dim=-1, keepdim=True)
            else:
                logits = logits[:, -1, :] / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("Inf")
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


# ---- data and training ----------------------------------------------------------------------
def encode(text):
    """Character-level tokens: (the sorted vocabulary, a long tensor of ids)."""
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    return chars, torch.tensor([stoi[c] for c in text], dtype=torch.long)


def get_batch(data, block_size, batch_size, device):
    """Random windows of the token stream: inputs x and next-token targets y, both (B, T)."""
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
    return x.to(device), y.to(device)


def pad_targets(y, lengths):
    """Targets past each row's length set to -1, which the loss ignores."""
    positions = torch.arange(y.size(1), device=y.device).view(1, -1)
    keep = positions < lengths.view(-1, 1)
    return torch.where(keep, y, torch.full_like(y, -1))


def train(text, config, steps=20, batch_size=8, micro_batches=2, learning_rate=3e-3,
          weight_decay=0.1, grad_clip=1.0, seed=1337, device="cpu", compile=False):
    """Train a GPT on `text` for `steps` AdamW steps; returns (model, chars, losses)."""
    torch.manual_seed(seed)
    device = torch.device(device)
    chars, data = encode(text)
    config.vocab_size = len(chars)
    model = GPT(config).to(device)
    if compile:
        model = torch.compile(model)
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (0.9, 0.95), device.type)
    losses = []
    model.train()
    for step in range(steps):
        lr = learning_rate * min(1.0, (step + 1) / 4)  # linear warmup
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        x, y = get_batch(data, config.block_size, batch_size, device)
        # the last row loses its final target, so ignore_index is exercised
        lengths = torch.full((batch_size,), config.block_size, dtype=torch.long)
        lengths[-1] = config.block_size - 1
        y = pad_targets(y, lengths)
        total = 0.0
        # gradient accumulation over micro-batches
        for xb, yb in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
            _, loss = model(xb, yb)
            loss = loss / micro_batches
            loss.backward()
            total += loss.item()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
    return model, chars, losses


def sample(model, chars, prompt="", max_new_tokens=20, temperature=1.0, top_k=None):
    """Text generated from `prompt` (or from token 0 when the prompt is empty)."""
    model.eval()
    device = next(model.parameters()).device
    stoi = {ch: i for i, ch in enumerate(chars)}
    if prompt:
        idx = torch.tensor([[stoi[c] for c in prompt]], dtype=torch.long, device=device)
    else:
        idx = torch.zeros((1, 1), dtype=torch.long, device=device)
    assert isinstance(idx, torch.Tensor) and idx.dim() == 2
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k)
    return "".join(chars[i] for i in out[0].tolist())
