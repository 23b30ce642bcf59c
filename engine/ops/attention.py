"""Scaled dot-product attention: softmax(Q·Kᵀ·scale + mask)·V.

Shapes: q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) -> out (..., Tq, Dv); the leading dims
are flattened to (B, H). The forward saves the per-row log-sum-exp of the scores, so the
backward recomputes the probabilities instead of keeping a Tq×Tk matrix.

With dropout_p > 0 the fused kernel does not apply: attention is then composed from primitives
(matmul, softmax, dropout, matmul), which keeps the Tq×Tk weights for the backward.
"""
import math

import numpy as np

from engine._array import array_module
from engine.autograd import Function
from engine.ops._util import check_same_device, kernels, tensor_cls


class ScaledDotProductAttention(Function):
    def forward(self, q, k, v, mask=None, is_causal=False, scale=None):
        self.q, self.k, self.v, self.mask = q, k, v, mask
        self.is_causal, self.scale = is_causal, scale
        # NOTE: an empty problem never reaches the kernels. With no keys every query row is
        # fully masked, so its output is 0 (the kernels' rule for such rows).
        b, nh, tq, _ = q.shape
        self.empty = 0 in (b, nh, tq, k.shape[2])
        if self.empty:
            xp = array_module(q)
            self.out = xp.zeros((b, nh, tq, v.shape[3]), dtype=q.dtype)
            return self.out
        self.out, self.lse = kernels(q).attention_forward(q, k, v, mask=mask, is_causal=is_causal, scale=scale)
        return self.out

    def backward(self, grad):
        if self.empty:
            xp = array_module(grad)
            return xp.zeros_like(self.q), xp.zeros_like(self.k), xp.zeros_like(self.v)
        dq, dk, dv = kernels(grad).attention_backward(
            grad, self.q, self.k, self.v, self.out, self.lse,
            mask=self.mask, is_causal=self.is_causal, scale=self.scale)
        return dq, dk, dv


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    q, k, v, mask, scale, lead = prepare_attention(query, key, value, attn_mask, dropout_p, is_causal,
                                                   scale, enable_gqa)
    if dropout_p > 0:
        out = _attention_with_dropout(q, k, v, mask, bool(is_causal), scale, dropout_p)
    else:
        out = ScaledDotProductAttention.apply(q, k, v, mask=mask, is_causal=bool(is_causal), scale=scale)
    return out.reshape(lead + (query.shape[-2], value.shape[-1]))


def _attention_with_dropout(q, k, v, mask, is_causal, scale, dropout_p):
    """dropout(softmax(q·kᵀ·scale + mask))·v from primitives, with the fused kernel's masking
    rules: a bool mask and is_causal (key j visible to query i when j <= i) hide scores, a float
    mask is added, and a query row that sees no key gives 0."""
    from engine.ops.elementwise import where
    from engine.ops.linalg import matmul
    from engine.ops.nn_ops import dropout, softmax

    xp = array_module(q.data)
    scores = matmul(q, k.transpose(-2, -1)) * scale
    tq, tk = scores.shape[-2:]
    if is_causal:
        scores = where(xp.tril(xp.ones((tq, tk), dtype=bool)), scores, float("-inf"))
    if mask is not None:
        scores = where(mask, scores, float("-inf")) if mask.dtype == bool else scores + mask
    # NOTE: softmax of a row that is all -inf is NaN ((-inf) - (-inf)); such rows are softmaxed
    # as zeros and their weights then set to 0, through where, so no NaN reaches any gradient.
    dead = (scores.data == float("-inf")).all(axis=-1, keepdims=True)
    if dead.any():
        scores = where(dead, 0.0, scores)
    weights = softmax(scores, dim=-1)
    if dead.any():
        weights = where(dead, 0.0, weights)
    return matmul(dropout(weights, p=dropout_p), v)


def prepare_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                      enable_gqa=False):
    """Validate the arguments; returns (q, k, v) as (B, H, T, D) tensors, the mask as a
    (B, H, Tq, Tk) array view or None, the scale, and the leading dims of the inputs."""
    op = "scaled_dot_product_attention"
    check_same_device(query, key, value)
    if query.ndim < 2 or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(f"{op}: query, key and value must have the same number of dims (>= 2), got "
                         f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{op}: query and key must have the same head dim, got {tuple(query.shape)} "
                         f"and {tuple(key.shape)}")
    if key.shape[-2] != value.shape[-2] or query.shape[:-2] != key.shape[:-2] or key.shape[:-2] != value.shape[:-2]:
        raise ValueError(f"{op}: key and value must have the same length and query, key, value the "
                         f"same batch dims, got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if not (query.dtype == key.dtype == value.dtype) or query.dtype.kind != "f":
        raise TypeError(f"{op}: query, key and value must share one floating dtype, got "
                        f"{query.dtype}, {key.dtype}, {value.dtype}")
    if enable_gqa:
        raise NotImplementedError(f"{op}: enable_gqa is not supported")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    lead = tuple(query.shape[:-2])
    tq, tk = query.shape[-2], key.shape[-2]
    mask = None
    if attn_mask is not None:
        mask = attn_mask.data if isinstance(attn_mask, tensor_cls()) else attn_mask
        if mask.dtype.kind not in "bf":
            raise TypeError(f"{op}: attn_mask must be bool or floating, got {mask.dtype}")
        try:
            np.broadcast_shapes(mask.shape, lead + (tq, tk))
        except ValueError:
            raise ValueError(f"{op}: attn_mask of shape {tuple(mask.shape)} does not broadcast to "
                             f"{lead + (tq, tk)}") from None
        mask = _as_4d(mask, lead, tq, tk)
        if mask.dtype.kind == "f":
            mask = mask.astype(query.dtype, copy=False)
    if query.shape[-1] == 0 and scale is None:
        raise ValueError(f"{op}: head dim 0 needs an explicit scale")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    q, k, v = (_flatten_heads(t) for t in (query, key, value))
    return q, k, v, mask, scale, lead


def _flatten_heads(t):
    """(..., T, D) -> (B, H, T, D) so the kernels see one layout."""
    if t.ndim == 4:
        return t
    if t.ndim == 3:
        return t.unsqueeze(0)
    if t.ndim == 2:
        return t.reshape(1, 1, *t.shape)
    # Explicit sizes, not -1: a reshape cannot infer a dimension when another one is 0.
    return t.reshape(math.prod(t.shape[:-3]), *t.shape[-3:])


def _as_4d(mask, lead, tq, tk):
    """The mask broadcast to the (B, H, Tq, Tk) view the kernels take (no copy)."""
    from engine._array import array_module

    xp = array_module(mask)
    full = xp.broadcast_to(mask, lead + (tq, tk))
    if len(lead) == 2:
        return full
    if len(lead) < 2:
        return full.reshape((1,) * (2 - len(lead)) + full.shape)
    return full.reshape((math.prod(full.shape[:-3]),) + full.shape[-3:])
