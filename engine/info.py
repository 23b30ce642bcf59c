"""What this install of engine has: native modules, threads, CPU features, CUDA, kernels."""
import importlib
import pathlib
import platform

import numpy as np

import engine


def _module_status(name):
    try:
        importlib.import_module(f"engine.{name}")
        return "loaded"
    except ImportError as e:
        return f"missing ({e})"


def source_tree_hint():
    """A line explaining missing native modules when engine was imported from an unbuilt source
    tree (python -m puts the current directory first on sys.path), else None."""
    root = pathlib.Path(engine.__file__).resolve().parent.parent
    if (root / "pyproject.toml").exists() and "missing" in _module_status("_C"):
        return (f"note: this engine was imported from the source tree {root}, which has no compiled "
                "modules; run from another directory, or use the `engine` command, to use the "
                "installed package")
    return None


def collect():
    """The facts as a dict (also used by the benchmark JSON)."""
    facts = {
        "engine": engine.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "modules": {m: _module_status(m) for m in ("_C", "_fused", "_fused_avx2", "_cuda")},
        "backend": engine.backend.current(),
        "openmp_threads": engine.get_num_threads(),
        "cpu_avx2_fma": None,
        "native_isas": None,
        "fused_isa": None,
        "openmp": None,
        "cuda_built": engine.cuda.is_built(),
        "cuda_available": engine.cuda.is_available(),
        "cuda_devices": engine.cuda.device_count(),
        "cuda_unavailable_reason": engine.cuda.unavailable_reason(),
        "cuda_matmul_precision": engine.cuda.get_matmul_precision(),
    }
    try:
        from engine import _C

        facts["cpu_avx2_fma"] = _C.cpu_has_avx2_fma()
        facts["native_isas"] = {"gemm": _C.gemm_isa(), "conv2d": _C.conv2d_path(),
                                "attention": _C.attention_isa()}
        facts["openmp"] = _C.openmp_enabled()
        from engine.backend import cpu

        facts["fused_isa"] = cpu.best_fused_isa()
    except ImportError:
        pass
    return facts


def report():
    """The facts as the text `python -m engine info` prints."""
    f = collect()
    lines = [
        f"engine {f['engine']}  (Python {f['python']}, NumPy {f['numpy']}, {f['machine']})",
        "native modules: " + ", ".join(f"{m} {s}" for m, s in f["modules"].items()),
        f"OpenMP: {'enabled' if f['openmp'] else 'disabled'}, {f['openmp_threads']} threads",
        f"CPU AVX2+FMA: {'yes' if f['cpu_avx2_fma'] else 'no'} (fused ops: {f['fused_isa']} build)",
        "native kernel sets: " + (", ".join(f"{k} {v}" for k, v in f["native_isas"].items())
                                  if f["native_isas"] else "none"),
        f"CUDA: module {'built' if f['cuda_built'] else 'not built'}, "
        f"{'available' if f['cuda_available'] else 'not available'} ({f['cuda_devices']} devices)"
        + (f"; {f['cuda_unavailable_reason']}" if f["cuda_unavailable_reason"] else
           f"; matmul precision {f['cuda_matmul_precision']}"),
        f"CPU backend: {f['backend']}  (choose with ENGINE_BACKEND=numpy|native)",
        "kernels:",
    ]
    hint = source_tree_hint()
    if hint:
        lines.insert(2, hint)
    for op, impl in engine.backend.describe().items():
        lines.append(f"  {op:<24} {impl}")
    return "\n".join(lines)
