"""GPU attention suite (`engine bench --device cuda --suite attention`): engine's flash kernels
against torch's scaled_dot_product_attention (its flash backend where it has one) and a plain CuPy
softmax(Q·Kᵀ)·V that materializes the scores.

Rows: B8 H12, T 1024/2048/4096, D 64 and 128, causal or not, forward or forward+backward, fp32 and
bf16. engine's bf16 rows call the kernel on bf16 inputs (uint16 bit patterns) as torch's take
bfloat16 tensors; the conversion autocast adds in training is not in these times. The CuPy
reference is float32 in every row (CuPy has no bfloat16). TFLOP/s count FlashAttention's
convention for every implementation: forward 4·B·H·T²·D (half under is_causal), backward 2.5× the
forward. Peak memory: what one call allocates beyond its inputs (outputs included): torch's
max_memory_allocated, CuPy's pool after it was emptied (engine's delta workspace, B·H·T floats
from cudaMallocAsync, is not in it).
"""
import sys

import numpy as np

BATCH, HEADS = 8, 12
SEQ_LENS = [1024, 2048, 4096]
QUICK_SEQ_LENS = [1024, 2048]
HEAD_DIMS = [64, 128]


def _flops(t, d, causal, backward):
    fwd = 4.0 * BATCH * HEADS * t * t * d * (0.5 if causal else 1.0)
    return fwd * (3.5 if backward else 1.0)


def _pool_peak_mib(fn):
    """MiB CuPy's default pool holds after one call of fn, starting from an emptied pool."""
    import cupy as cp

    pool = cp.get_default_memory_pool()
    cp.cuda.Device().synchronize()
    base = pool.used_bytes()
    pool.free_all_blocks()
    fn()
    cp.cuda.Device().synchronize()
    return (pool.total_bytes() - base) / 2**20


def _torch_peak_mib(torch, fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _engine_impl(gpu, q, k, v, dout, causal, bf16, backward):
    """One engine call: the bf16 kernel on bit patterns, or the float32 kernel."""
    import cupy as cp

    from engine import cuda

    _cuda, launch = cuda._cuda, dict(stream=cuda.current_stream_ptr())
    if bf16:
        q, k, v, dout = (gpu._to_bf16(a) for a in (q, k, v, dout))

    def run():
        b, h, t, d = q.shape
        out = cp.empty((b, h, t, d), cp.float32)
        lse = cp.empty((b, h, t), cp.float32)
        _cuda.attention_forward(q, k, v, out, lse, is_causal=causal, **launch)
        if backward:
            dq, dk, dv = (cp.empty((b, h, t, d), cp.float32) for _ in range(3))
            _cuda.attention_backward(dout, q, k, v, out, lse, dq, dk, dv, is_causal=causal, **launch)
            return out, dq
        return out, None
    return run


def _cupy_impl(q, k, v, dout, causal, backward):
    """softmax(q kᵀ/√D) v with the T×T scores in memory, and its backward, in float32."""
    import cupy as cp

    b, h, t, d = q.shape
    scale = d ** -0.5
    q3, k3, v3, do3 = (a.reshape(b * h, t, d) for a in (q, k, v, dout))
    hidden = cp.triu(cp.ones((t, t), dtype=bool), 1) if causal else None

    def run():
        s = cp.matmul(q3, k3.transpose(0, 2, 1))
        s *= scale
        if hidden is not None:
            s[:, hidden] = -cp.inf
        s -= s.max(axis=-1, keepdims=True)
        p = cp.exp(s, out=s)
        p /= p.sum(axis=-1, keepdims=True)
        out = cp.matmul(p, v3)
        if not backward:
            return out.reshape(b, h, t, d), None
        dv = cp.matmul(p.transpose(0, 2, 1), do3)
        dp = cp.matmul(do3, v3.transpose(0, 2, 1))
        dp -= (dp * p).sum(axis=-1, keepdims=True)
        dp *= p
        dq = cp.matmul(dp, k3) * scale
        dk = cp.matmul(dp.transpose(0, 2, 1), q3) * scale
        del dv, dk
        return out.reshape(b, h, t, d), dq.reshape(b, h, t, d)
    return run


def _torch_impl(torch, q, k, v, dout, causal, bf16, backward):
    F = torch.nn.functional
    dtype = torch.bfloat16 if bf16 else torch.float32
    tq, tk, tv, tdo = (torch.as_tensor(a, device="cuda").to(dtype) for a in (q, k, v, dout))
    for x in (tq, tk, tv):
        x.requires_grad_(backward)

    def run():
        if not backward:
            with torch.no_grad():
                return F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal), None
        for x in (tq, tk, tv):
            x.grad = None
        out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
        out.backward(tdo)
        return out, tq.grad
    return run


def attention_rows(quick):
    import cupy as cp

    from engine.backend import cuda as gpu

    from .gpu import _torch_cuda

    torch = _torch_cuda()
    rng = np.random.default_rng(0)
    for t in (QUICK_SEQ_LENS if quick else SEQ_LENS):
        for d in (HEAD_DIMS[:1] if quick else HEAD_DIMS):
            q, k, v, dout = (cp.asarray(rng.standard_normal((BATCH, HEADS, t, d), dtype=np.float32))
                             for _ in range(4))
            for causal in (False, True):
                for backward in (False, True):
                    for precision in ("highest", "bf16"):
                        bf16 = precision == "bf16"
                        impls = {"engine": _engine_impl(gpu, q, k, v, dout, causal, bf16, backward)}
                        if not bf16:
                            impls["cupy"] = _cupy_impl(q, k, v, dout, causal, backward)
                        if torch:
                            impls["torch"] = _torch_impl(torch, q, k, v, dout, causal, bf16, backward)
                        yield _attention_row(impls, t, d, causal, backward, precision, torch)
                        print(f"  attention T{t} D{d} causal={causal} bwd={backward} {precision}: done",
                              file=sys.stderr)


def _attention_row(impls, t, d, causal, backward, precision, torch):
    """Times and peak memory of each implementation, and engine's error against the most precise
    other result (torch's fp32 where there is one, else CuPy's), as one table row."""
    import cupy as cp

    from .gpu import _rel_err, _row, gpu_median_s

    seconds, peak, outputs = {}, {}, {}
    for name, fn in impls.items():
        try:
            outputs[name] = fn()
            peak[name] = _torch_peak_mib(torch, fn) if name == "torch" else _pool_peak_mib(fn)
            seconds[name] = gpu_median_s(fn, warmup=2, reps=10)
        except (cp.cuda.memory.OutOfMemoryError, MemoryError):
            print(f"  {name}: out of memory at T{t} D{d}", file=sys.stderr)
        cp.get_default_memory_pool().free_all_blocks()
    want = outputs.get("torch") if precision == "highest" and "torch" in outputs else outputs.get("cupy")
    if want is None:
        want = outputs.get("torch")
    err = float("nan")
    if want is not None and "engine" in outputs:
        got = outputs["engine"]
        as_np = lambda x: x.float().cpu().numpy() if hasattr(x, "cpu") else cp.asnumpy(x)  # noqa: E731
        err = _rel_err(as_np(got[0]), as_np(want[0]))
        if backward and got[1] is not None and want[1] is not None:
            err = max(err, _rel_err(as_np(got[1]), as_np(want[1])))
    case = f"B{BATCH} H{HEADS} T{t} D{d}" + (" causal" if causal else "") + (" fwd+bwd" if backward else " fwd")
    row = _row("attention", case, precision, _flops(t, d, causal, backward), seconds, err)
    row["peak_mib"] = peak
    return row
