"""Attention suite: softmax(Q·Kᵀ/√D)·V for (B, H, T, D), forward and forward + backward, with a
column of peak extra memory. FLOPs: 4·B·H·T²·D forward (half when causal), 2.5× that backward.

numpy: numpy_ref (blocked, materializes score blocks); engine: the native kernel set (flash-style,
online softmax); torch: torch.nn.functional.scaled_dot_product_attention.
"""
import numpy as np

from .memory import peak_extra_bytes
from .runner import Case
from .timing import optional_torch

SHAPES = [  # (B, H, T, D, causal)
    (8, 8, 256, 64, False), (8, 8, 1024, 64, False),
    (8, 8, 256, 64, True), (8, 8, 1024, 64, True),
    (1, 12, 2048, 64, True),
]
QUICK_SHAPES = [(8, 8, 1024, 64, False), (8, 8, 1024, 64, True)]


def _impl(kernels, q, k, v, do, causal, backward):
    scale = 1.0 / np.sqrt(q.shape[-1])

    def run():
        out, lse = kernels.attention_forward(q, k, v, is_causal=causal, scale=scale)
        if not backward:
            return out
        return (out,) + tuple(kernels.attention_backward(do, q, k, v, out, lse, is_causal=causal, scale=scale))
    return run


def _torch_impl(torch, q, k, v, do, causal, backward):
    sdpa = torch.nn.functional.scaled_dot_product_attention
    tq, tk, tv, tdo = (torch.from_numpy(a) for a in (q, k, v, do))

    def run():
        if not backward:
            with torch.no_grad():
                return sdpa(tq, tk, tv, is_causal=causal).numpy()
        qg, kg, vg = (t.clone().requires_grad_() for t in (tq, tk, tv))
        out = sdpa(qg, kg, vg, is_causal=causal)
        out.backward(tdo)
        return out.detach().numpy(), qg.grad.numpy(), kg.grad.numpy(), vg.grad.numpy()
    return run


def build_impls(b, h, t, d, causal, backward):
    """{implementation: callable} on seeded random inputs of one shape."""
    from engine.backend import numpy_ref
    from engine.backend.cpu import KERNELS as native

    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((b, h, t, d)).astype(np.float32) for _ in range(4))
    impls = {"numpy": _impl(numpy_ref, q, k, v, do, causal, backward),
             "engine": _impl(native, q, k, v, do, causal, backward)}
    torch = optional_torch()
    if torch:
        impls["torch"] = _torch_impl(torch, q, k, v, do, causal, backward)
    return impls


def cases(quick, thread_counts):
    for b, h, t, d, causal in (QUICK_SHAPES if quick else SHAPES):
        flops = 4.0 * b * h * t * t * d * (0.5 if causal else 1.0)
        for backward in (False, True) if not quick else (False,):
            shape = (b, h, t, d, causal, backward)
            impls = build_impls(*shape)
            name = f"B{b} H{h} T{t} D{d}" + (" causal" if causal else "") + (" fwd+bwd" if backward else " fwd")
            for nt in thread_counts:
                memory = {i: peak_extra_bytes("attention", shape, i, nt) for i in impls}
                yield Case("attention", name, flops * (3.5 if backward else 1.0), impls, nt,
                           rtol=1e-3, atol=2e-4, memory={i: m for i, m in memory.items() if m is not None})
