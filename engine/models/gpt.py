"""A character-level GPT: token + position embeddings, pre-norm Transformer blocks, a final
LayerNorm and a linear head tied to the token embedding.

Shapes: B batch, T ≤ block_size positions, C = n_embd, V = vocab_size.
"""
import dataclasses

import numpy as np

import engine
from engine import nn
from engine.nn import functional as F


@dataclasses.dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([nn.TransformerBlock(config.n_embd, config.n_head, config.dropout)
                                     for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        self.head.weight = self.tok_emb.weight  # weight tying: one matrix, two uses

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"GPT: sequence length {T} exceeds block_size {self.config.block_size}")
        pos = engine.arange(T)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))
        return logits, loss

    @engine.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, rng=None):
        """Extend idx (B, T) by sampling max_new_tokens characters one at a time."""
        rng = rng or np.random.default_rng()
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size:]
            logits, _ = self(context)
            logits = logits[:, -1, :].numpy().astype(np.float64) / max(temperature, 1e-6)
            if top_k is not None:
                kth = np.sort(logits, axis=-1)[:, -min(top_k, logits.shape[-1])][:, None]
                logits = np.where(logits < kth, -np.inf, logits)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            nxt = np.array([[rng.choice(p.shape[-1], p=row)] for row in p])
            idx = engine.cat([idx, engine.tensor(nxt)], dim=1)
        return idx
