"""`python -m engine bench`: run the suites, print the table, write JSON and a plot."""
import sys
import time

from . import attention, conv, gemm, train
from .runner import format_table, plot, run_case, write_json

SUITES = {"gemm": gemm.cases, "conv": conv.cases, "attention": attention.cases,
          "train": train.cases}


def fma_peaks(dtypes, thread_counts, tries=3):
    """{(dtype, threads): GFLOP/s} measured by the FMA probe in engine._C: the best of `tries`
    probes, since a peak is what the cores reach when nothing else holds them (one 0.2 s probe
    on a shared host sometimes reads half)."""
    from engine import _C

    return {(d, t): max(_C.fma_peak_gflops(d, t) for _ in range(tries))
            for d in dtypes for t in thread_counts}


def run(suite="all", quick=False, threads=None, json_path=None, plot_path=None, out=print, device="cpu"):
    import engine
    from engine.info import collect, source_tree_hint

    if device == "cuda":
        engine.cuda.require_available("engine bench --device cuda: CUDA")
        if plot_path:
            out("--plot draws the CPU suites only; no plot for --device cuda")
        from . import gpu

        return gpu.run(suite, quick=quick, json_path=json_path, out=out)

    try:
        from engine import _C
    except ImportError as e:
        raise SystemExit(f"engine bench needs the native modules ({e}). " + (source_tree_hint() or "")) from None

    if plot_path:
        try:
            import matplotlib  # noqa: F401  (checked before hours of timing, not after)
        except ImportError:
            raise SystemExit("--plot needs matplotlib: pip install matplotlib (or the bench extra)") from None
    names = list(SUITES) if suite == "all" else [suite]
    thread_counts = [threads] if threads else ([engine.runtime.cpu_count()] if quick else
                                               sorted({1, engine.runtime.cpu_count()}))
    rounds, min_time = (5, 0.01) if quick else (9, 0.03)
    start = time.perf_counter()
    # NOTE: probed before any suite: once NumPy's and PyTorch's thread pools have run, their idle
    # threads spin on the cores for a while and can hold one of them.
    peaks = fma_peaks(["float32", "float64"], thread_counts)
    rows = []
    for name in names:
        for case in SUITES[name](quick, thread_counts):
            rows.append(run_case(case, rounds, min_time, peak_probe=_C.fma_peak_gflops))
            print(f"  {case.suite} {case.name}, {case.nthreads} threads: done", file=sys.stderr)
    peaks = {(d, t): g for (d, t), g in peaks.items() if any(r["dtype"] == d for r in rows)}
    out(format_table(rows, peaks))
    peak_text = ", ".join(f"{d} {t} thr {g:.0f}" for (d, t), g in peaks.items())
    out(f"\nmeasured FMA peak (GFLOP/s): {peak_text}")
    out(f"rates: medians of {rounds} interleaved rounds; ratios: medians of the per-round ratios; "
        f"%peak: the median of engine's rate over the FMA probe run in the same round; "
        f"{time.perf_counter() - start:.0f} s in all")
    facts = collect()
    if facts["native_isas"]:
        amx = facts["native_isas"]["attention"] == "avx512-amx"
        out("native kernel sets: " + ", ".join(f"{k} {v}" for k, v in facts["native_isas"].items())
            + ("; AMX tiles outrun the FMA peak, so attention's %peak can pass 100%" if amx else ""))
    if json_path:
        write_json(json_path, rows, peaks, facts)
        out(f"wrote {json_path}")
    if plot_path:
        plot(plot_path, rows)
        out(f"wrote {plot_path}")
    return rows
