"""GPU suites (`engine bench --device cuda`): engine's CUDA GEMM and conv2d against cuBLAS
(cupy.matmul, torch.matmul), cuDNN (torch conv2d) and NumPy on the CPU; attention
(benchmarks/gpu_attention.py) against torch's SDPA and a CuPy reference; GPT training
(benchmarks/gpu_train.py) against PyTorch eager.

Each GPU time is the median of CUDA-event timings after a warm-up (all libraries run on the legacy
default stream, so one pair of events brackets each call); NumPy's is the median of wall-clock
times. Results are checked against a reference before anything is timed.
Precision rows: fp32 ("highest"), tf32 and bf16 (engine rounds float32 operands to that format
inside the kernel; torch's bf16 row multiplies bfloat16 tensors, cuBLAS's native bf16 GEMM).
"""
import statistics
import sys
import time

import numpy as np

from .timing import optional_torch

GEMM_SIZES = [1024, 4096, 8192]
QUICK_GEMM_SIZES = [1024, 4096]
CONV_SHAPES = [  # (N, C, H, W, O, kernel, padding)
    (128, 1, 28, 28, 32, 3, 0),
    (128, 32, 13, 13, 64, 3, 0),
    (32, 64, 56, 56, 64, 3, 1),
    (32, 128, 28, 28, 128, 3, 1),
]
PRECISIONS = ["highest", "tf32", "bf16"]
# max |got − want| / max |want| allowed before timing, per precision
AGREEMENT = {"highest": 1e-4, "tf32": 1e-2, "bf16": 5e-2}


def gpu_median_s(fn, warmup=3, reps=20):
    """Median seconds of fn() on the GPU, timed with CUDA events after `warmup` calls."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times)


def cpu_median_s(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def _torch_precision(torch, precision):
    """Set torch's TF32 switches for a precision row."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def gemm_rows(quick):
    import cupy as cp

    import engine
    from engine.backend import cuda as gpu

    torch = _torch_cuda()
    rng = np.random.default_rng(0)
    for size in (QUICK_GEMM_SIZES if quick else GEMM_SIZES):
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        ga, gb = cp.asarray(a), cp.asarray(b)
        flops = 2.0 * size**3
        reference = cp.matmul(ga, gb).get()
        numpy_s = cpu_median_s(lambda: a @ b, reps=1 if size >= 8192 else 3)
        for precision in PRECISIONS:
            impls = {}
            with engine.cuda.matmul_precision(precision):
                impls["engine"] = lambda: gpu.matmul(ga, gb)
                err = _rel_err(impls["engine"]().get(), reference)
                if precision == "highest":
                    impls["cupy"] = lambda: cp.matmul(ga, gb)
                if torch:
                    _torch_precision(torch, precision)
                    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
                    ta, tb = torch.as_tensor(ga, device="cuda").to(dtype), torch.as_tensor(gb, device="cuda").to(dtype)
                    impls["torch"] = lambda ta=ta, tb=tb: torch.matmul(ta, tb)
                seconds = {name: gpu_median_s(fn) for name, fn in impls.items()}
            seconds["numpy"] = numpy_s
            yield _row("gemm", f"{size}x{size}x{size}", precision, flops, seconds, err)
            print(f"  gemm {size} {precision}: done", file=sys.stderr)


def conv_rows(quick):
    import cupy as cp

    import engine
    from engine.backend import cuda as gpu
    from engine.backend import numpy_ref

    torch = _torch_cuda()
    rng = np.random.default_rng(0)
    for n, c, h, w_, o, k, p in (CONV_SHAPES[:1] + CONV_SHAPES[2:3] if quick else CONV_SHAPES):
        x = rng.standard_normal((n, c, h, w_), dtype=np.float32)
        w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        oh, ow = h + 2 * p - k + 1, w_ + 2 * p - k + 1
        dy = rng.standard_normal((n, o, oh, ow), dtype=np.float32)
        gx, gw, gdy = cp.asarray(x), cp.asarray(w), cp.asarray(dy)
        args = dict(stride=(1, 1), padding=(p, p), dilation=(1, 1), groups=1)
        flops = 2.0 * n * o * oh * ow * c * k * k
        reference = numpy_ref.conv2d_forward(gx, gw, None, **args).get()
        for backward in (False, True):
            name = f"{n}x{c}x{h}x{w_}->{o} {k}x{k}" + (" p1" if p else "") + (" fwd+bwd" if backward else " fwd")
            numpy_s = cpu_median_s(_kernel_conv(numpy_ref, x, w, dy, args, backward), reps=3)
            for precision in ("highest", "tf32"):
                with engine.cuda.matmul_precision(precision):
                    impls = {"engine": _kernel_conv(gpu, gx, gw, gdy, args, backward)}
                    err = _rel_err(gpu.conv2d_forward(gx, gw, None, **args).get(), reference)
                    if torch:
                        _torch_precision(torch, precision)
                        impls["torch"] = _torch_conv(torch, gx, gw, gdy, p, backward)
                    seconds = {name_: gpu_median_s(fn) for name_, fn in impls.items()}
                seconds["numpy"] = numpy_s
                yield _row("conv", name, precision, flops * (3 if backward else 1), seconds, err)
            print(f"  conv {name}: done", file=sys.stderr)


def _kernel_conv(kernels, x, w, dy, args, backward):
    """One conv step through a kernel set (numpy_ref on the CPU, engine's CUDA set on the GPU)."""
    def run():
        y = kernels.conv2d_forward(x, w, None, **args)
        if backward:
            kernels.conv2d_grad_input(dy, w, x.shape, **args)
            kernels.conv2d_grad_weight(dy, x, w.shape, **args)
        return y
    return run


def _torch_conv(torch, x, w, dy, padding, backward):
    F = torch.nn.functional
    tx, tw, tdy = (torch.as_tensor(a, device="cuda") for a in (x, w, dy))

    def run():
        if not backward:
            with torch.no_grad():
                return F.conv2d(tx, tw, None, 1, padding)
        # the two gradients alone, as engine computes them (no autograd bookkeeping in the time)
        torch.ops.aten.convolution_backward(tdy, tx, tw, None, (1, 1), (padding, padding), (1, 1), False,
                                            (0, 0), 1, (True, True, False))
        return F.conv2d(tx, tw, None, 1, padding)
    return run


def _torch_cuda():
    torch = optional_torch()
    return torch if torch and torch.cuda.is_available() else None


def _row(suite, case, precision, flops, seconds, err):
    return {"suite": suite, "case": case, "precision": precision, "flops": flops, "seconds": seconds,
            "tflops": {k: flops / s / 1e12 for k, s in seconds.items()}, "rel_err": err,
            "mismatch": err > AGREEMENT[precision]}


def _suites():
    from .gpu_attention import attention_rows
    from .gpu_train import train_rows

    return {"gemm": gemm_rows, "conv": conv_rows, "attention": attention_rows, "train": train_rows}


SUITES = ("gemm", "conv", "attention", "train")


def format_table(rows):
    impls = [i for i in ("engine", "cupy", "torch", "numpy") if any(i in r["tflops"] for r in rows)]
    memory = [i for i in ("engine", "cupy", "torch") if any(i in r.get("peak_mib", {}) for r in rows)]
    head = (["suite", "case", "precision"] + [f"{i} TFLOP/s" for i in impls] + ["eng/torch", "eng/cupy", "eng/numpy"]
            + [f"{i} MiB" for i in memory] + ["rel err"])
    lines = []
    ratio = lambda t, other, fmt: fmt.format(t["engine"] / t[other]) if "engine" in t and other in t else "-"  # noqa: E731
    for r in rows:
        t, mib = r["tflops"], r.get("peak_mib", {})
        cells = [r["suite"], r["case"], r["precision"]] + [f"{t[i]:.2f}" if i in t else "-" for i in impls]
        cells += [ratio(t, "torch", "{:.2f}x"), ratio(t, "cupy", "{:.1f}x"), ratio(t, "numpy", "{:.0f}x")]
        cells += [f"{mib[i]:.0f}" if i in mib else "-" for i in memory]
        cells.append(f"{r['rel_err']:.1e}" + ("  MISMATCH" if r["mismatch"] else ""))
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) if i > 2 else str(c).ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


def run(suite="all", quick=False, json_path=None, out=print):
    """Run the GPU suites; returns the rows. The caller checked that CUDA is available."""
    import json

    import cupy as cp

    from engine.info import collect

    from .gpu_train import format_train_table

    suites = _suites()
    names = list(SUITES) if suite == "all" else [suite]
    skipped = [n for n in names if n not in suites]
    if skipped:
        out(f"no GPU rows for suite(s) {', '.join(skipped)}: GPU suites are {', '.join(SUITES)}")
    start = time.perf_counter()
    rows = [row for name in names if name in suites for row in suites[name](quick)]
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    kernel_rows = [r for r in rows if r["suite"] != "train"]
    train_rows = [r for r in rows if r["suite"] == "train"]
    if kernel_rows:
        out(format_table(kernel_rows))
    if train_rows:
        out(("\n" if kernel_rows else "") + format_train_table(train_rows))
    out(f"\n{props['name'].decode()}; GPU times: medians of CUDA-event timings after warm-ups (attention: 10 "
        f"after 2, others 20 after 3); train: wall-clock medians per step; NumPy: CPU wall-clock medians; "
        f"{time.perf_counter() - start:.0f} s in all")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": collect(), "device": props["name"].decode(), "results": rows}, f, indent=2)
        out(f"wrote {json_path}")
    return rows
