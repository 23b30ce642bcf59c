"""Timing and thread control shared by the suites.

Each implementation of a case is timed in rounds that interleave the implementations (so a noisy
moment on a shared machine hits all of them), after a warm-up, with a short pause when switching
library: idle OpenBLAS and OpenMP threads spin for a while after a call and would steal the
other library's cores. After the pause each implementation runs untimed for a moment first: its
threads have gone to sleep, and the kernel may wake one onto the core of another, where the two
take turns until the scheduler spreads them again (~10 ms measured on a 2-core VM, during which
a 0.5 ms two-thread call took 5-6 ms).
"""
import contextlib
import time

SWITCH_PAUSE_S = 0.15
SETTLE_S = 0.02  # untimed calls after each pause (see above)


def time_call(fn, min_time=0.02):
    """Seconds per call of fn(), averaged over enough calls to last at least `min_time`."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def interleaved_samples(fns, rounds=7, min_time=0.02, warmup=1, each_round=None):
    """{name: [seconds per call in each round]} for the callables in `fns`, timed in interleaved
    rounds. `each_round`, if given, is called at the start of every round, after the same pause."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        if each_round:
            time.sleep(SWITCH_PAUSE_S)
            each_round()
        for name, fn in fns.items():
            time.sleep(SWITCH_PAUSE_S)
            time_call(fn, SETTLE_S)
            samples[name].append(time_call(fn, min_time))
    return samples


@contextlib.contextmanager
def threads(n):
    """Run with `n` threads in engine (OpenMP), NumPy's BLAS and PyTorch, restoring them after."""
    import engine

    before = engine.get_num_threads()
    torch = optional_torch()
    torch_before = torch.get_num_threads() if torch else None
    blas = _blas_limits(n)
    try:
        engine.set_num_threads(n)
        if torch:
            torch.set_num_threads(n)
        with blas:
            yield
    finally:
        engine.set_num_threads(before)
        if torch:
            torch.set_num_threads(torch_before)


def _blas_limits(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl NumPy keeps its own thread count
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


_torch = None


def optional_torch():
    """The torch module when installed, else None (PyTorch is a comparison, never required)."""
    global _torch
    if _torch is None:
        try:
            import torch

            _torch = torch
        except ImportError:
            _torch = False
    return _torch or None


def blas_threads_controllable():
    try:
        import threadpoolctl  # noqa: F401

        return True
    except ImportError:
        return False
