"""Transformer pieces for the GPT: causal self-attention, the MLP, and a pre-norm block.

Shapes: B batch, T sequence length, C width (n_embd), H heads, D = C / H head dim.
"""
from engine.nn import functional as F
from engine.nn.layers import GELU, Dropout, LayerNorm, Linear
from engine.nn.module import Module


class CausalSelfAttention(Module):
    """Multi-head self-attention where position t attends to positions <= t."""

    def __init__(self, n_embd, n_head, dropout=0.0, bias=True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"CausalSelfAttention: n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_head = n_head
        self.qkv = Linear(n_embd, 3 * n_embd, bias=bias)   # Q, K and V in one product
        self.proj = Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D): heads become a batch dimension of the attention kernel
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(Module):
    def __init__(self, n_embd, hidden=None, dropout=0.0, bias=True):
        super().__init__()
        hidden = hidden or 4 * n_embd
        self.fc = Linear(n_embd, hidden, bias=bias)
        self.act = GELU(approximate="tanh")
        self.proj = Linear(hidden, n_embd, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.proj(self.act(self.fc(x))))


class TransformerBlock(Module):
    """x + attn(ln(x)), then x + mlp(ln(x)): the pre-norm residual block of GPT-2."""

    def __init__(self, n_embd, n_head, dropout=0.0, bias=True):
        super().__init__()
        self.ln1 = LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln2 = LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout=dropout, bias=bias)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))
