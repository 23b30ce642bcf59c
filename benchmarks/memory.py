"""Peak extra memory of one call, for any library.

Each measurement runs in a fresh Python process (forking after OpenMP has started hangs the
child): it builds the case's inputs, makes one warm-up call, resets its peak resident size
(Linux /proc/self/clear_refs), makes the measured call, and reports VmHWM − VmRSS: what the call
touched beyond its inputs — outputs, temporaries and workspace. glibc's mmap threshold is fixed
so freed buffers go back to the system instead of hiding the next call's allocations (and
ENGINE_MALLOC_RETAIN_MB=0 keeps engine from changing it on import).
"""
import json
import os
import re
import subprocess
import sys

_PACKAGE = __name__.rsplit(".", 1)[0]  # "benchmarks" from a checkout, "engine.benchmarks" installed


def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def supported():
    return sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")


def run_child(suite, builder_args, impl):
    """In the child: build, warm up, reset the peak, measure; print the bytes as JSON."""
    import importlib

    module = importlib.import_module(f"{_PACKAGE}.{suite}")
    fn = module.build_impls(*builder_args)[impl]
    fn()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    base = _status_kib("VmRSS")
    fn()
    print(json.dumps((_status_kib("VmHWM") - base) * 1024))


def peak_extra_bytes(suite, builder_args, impl, threads):
    """Bytes of resident memory one call of `impl` adds at its peak, or None if unmeasurable."""
    if not supported():
        return None
    code = (f"import engine; engine.set_num_threads({int(threads)}); "
            f"from {_PACKAGE}.memory import run_child; "
            f"run_child({suite!r}, {tuple(builder_args)!r}, {impl!r})")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", ENGINE_MALLOC_RETAIN_MB="0",
               OMP_NUM_THREADS=str(threads))
    # The child runs beside the engine package this process imported: `-c` puts its working
    # directory first on sys.path, and started in a checkout it would import the source tree's
    # engine/, which has no compiled modules.
    import engine

    beside = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=600, env=env, cwd=beside)
        return int(json.loads(done.stdout.strip().splitlines()[-1]))
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None
