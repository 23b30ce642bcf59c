"""Runs benchmark cases and reports them: a table on stdout, JSON, and a bar chart.

A Case gives one callable per implementation ("numpy", "engine", "torch"); each returns its
result, and the results are checked against NumPy's before anything is timed.
"""
import dataclasses
import json
import math
import statistics
from typing import Callable, Dict, Optional

import numpy as np

from .timing import interleaved_samples, threads


@dataclasses.dataclass
class Case:
    suite: str
    name: str
    work: float                          # units of work per call: FLOPs, or samples for "samples/s"
    impls: Dict[str, Callable]           # implementation name -> callable returning its result
    nthreads: int
    dtype: str = "float32"
    rtol: float = 1e-4                   # agreement with the NumPy result required before timing
    atol: float = 1e-4
    memory: Optional[Dict[str, float]] = None  # implementation -> peak extra bytes, if measured
    unit: str = "GFLOP/s"                # "GFLOP/s" (work in FLOPs) or "ms/step" (work = 1 step)


def _agree(case, outputs):
    """Names of implementations whose result differs from NumPy's beyond the case's tolerance."""
    ref = outputs["numpy"]
    bad = []
    for name, out in outputs.items():
        if name == "numpy":
            continue
        for r, o in zip(_flat(ref), _flat(out)):
            if not np.allclose(np.asarray(o, dtype=np.float64), np.asarray(r, dtype=np.float64),
                               rtol=case.rtol, atol=case.atol):
                bad.append(name)
                break
    return bad


def _flat(result):
    if isinstance(result, (tuple, list)):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


def run_case(case, rounds, min_time, peak_probe=None):
    """Check, then time, one case; returns a result row (a dict). `peak_probe(dtype, threads)`,
    if given, measures the FMA peak (GFLOP/s) at the start of each round of a GFLOP/s case."""
    probe = peak_probe if case.unit == "GFLOP/s" else None
    round_peaks = []
    with threads(case.nthreads):
        outputs = {name: fn() for name, fn in case.impls.items()}
        mismatched = _agree(case, outputs)
        del outputs
        each_round = (lambda: round_peaks.append(probe(case.dtype, case.nthreads))) if probe else None
        round_seconds = interleaved_samples(case.impls, rounds=rounds, min_time=min_time,
                                            each_round=each_round)
    seconds = {k: statistics.median(s) for k, s in round_seconds.items()}
    # rate: work per second (higher is better) whatever the unit, so ratios read the same way
    scale = 1e9 if case.unit == "GFLOP/s" else 1.0
    row = {"suite": case.suite, "case": case.name, "dtype": case.dtype, "threads": case.nthreads,
           "unit": case.unit, "seconds": seconds, "round_seconds": round_seconds,
           "rate": {k: case.work / s / scale for k, s in seconds.items()}, "mismatch": mismatched}
    if round_peaks:
        row["round_peak_gflops"] = round_peaks
    if case.memory:
        row["peak_extra_mib"] = {k: v / 2**20 for k, v in case.memory.items()}
    return row


def speedup(row, impl, baseline):
    """How many times faster `impl` ran than `baseline` in a result row: the median over the
    rounds of their time ratio, both timed within the same round. A shared host slows down and
    recovers within seconds, so a ratio of medians taken over all rounds can pair one
    implementation's fast rounds with the other's slow ones; a row without rounds (the GPU
    suites) takes the ratio of its medians."""
    rounds = row.get("round_seconds", {})
    if impl in rounds and baseline in rounds:
        return statistics.median(b / a for a, b in zip(rounds[impl], rounds[baseline]))
    return row["rate"][impl] / row["rate"][baseline]


def peak_fraction(row, peaks):
    """engine's rate as a fraction of the FMA peak: the median over the rounds of its rate over
    the probe run at the start of the same round, where the row has them (the host's speed
    drifts over a run, and a peak read once at the start would misjudge rows timed later), else
    over `peaks[(dtype, threads)]`; None without either."""
    round_peaks = row.get("round_peak_gflops")
    if round_peaks:
        gflop = row["rate"]["engine"] * row["seconds"]["engine"]  # per call
        return statistics.median(gflop / s / p
                                 for s, p in zip(row["round_seconds"]["engine"], round_peaks))
    peak = peaks.get((row["dtype"], row["threads"]))
    return row["rate"]["engine"] / peak if peak else None


def format_table(rows, peaks):
    """The result rows as fixed-width text tables, one per suite (each has one unit)."""
    suites = list(dict.fromkeys(r["suite"] for r in rows))
    return "\n\n".join(_suite_table([r for r in rows if r["suite"] == s], peaks) for s in suites)


def _suite_table(rows, peaks):
    impls = [i for i in ("numpy", "engine", "torch") if any(i in r["rate"] for r in rows)]
    unit = rows[0]["unit"]
    flops = unit == "GFLOP/s"
    shown = (lambda rate: rate) if flops else (lambda rate: 1e3 / rate)  # noqa: E731  (ms per step)
    has_mem = any("peak_extra_mib" in r for r in rows)
    # eng/np and eng/torch are speed-ups: how many times faster engine is
    head = ["suite", "case", "thr"] + [f"{i} {unit}" for i in impls] + ["eng/np"]
    if "torch" in impls:
        head.append("eng/torch")
    if flops:
        head.append("%peak")
    if has_mem:
        head += [f"{i} MiB" for i in impls]
    lines = []
    for r in rows:
        g = r["rate"]
        cells = [r["suite"], r["case"], str(r["threads"])]
        cells += [f"{shown(g[i]):.1f}" if i in g else "-" for i in impls]
        cells.append(f"{speedup(r, 'engine', 'numpy'):.2f}x")
        if "torch" in impls:
            cells.append(f"{speedup(r, 'engine', 'torch'):.2f}x" if "torch" in g else "-")
        if flops:
            fraction = peak_fraction(r, peaks)
            cells.append(f"{100 * fraction:.0f}%" if fraction else "-")
        if has_mem:
            mem = r.get("peak_extra_mib", {})
            cells += [f"{mem[i]:.1f}" if i in mem else "-" for i in impls]
        if r["mismatch"]:
            cells[-1] += "  MISMATCH: " + ",".join(r["mismatch"])
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


def write_json(path, rows, peaks, facts):
    doc = {"machine": facts, "fma_peak_gflops": [{"dtype": d, "threads": t, "gflops": g}
                                                  for (d, t), g in peaks.items()],
           "results": rows}
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)


def plot(path, rows):
    """A grouped bar chart of each implementation's speed relative to NumPy, per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = [i for i in ("engine", "torch") if any(i in r["rate"] for r in rows)]
    labels = [f"{r['suite']} {r['case']}\n{r['threads']}T" for r in rows]
    width = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(rows) + 2), 5))
    for k, impl in enumerate(impls):
        xs = [i + (k - (len(impls) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [speedup(r, impl, "numpy") if impl in r["rate"] else math.nan for r in rows],
               width, label=impl)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("speed relative to NumPy (higher is better)")
    ax.set_yscale("log")
    ax.set_title("engine" + (" and PyTorch" if "torch" in impls else "")
                 + " vs NumPy (medians of per-round ratios)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
