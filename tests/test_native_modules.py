"""The compiled modules are built, import, and their first kernels match the NumPy reference."""
import importlib.util

import numpy as np
import pytest

import engine
from engine.backend import numpy_ref
from tolerances import FLOAT32, FLOAT64


def test_cpu_modules_are_built_into_the_installed_package():
    from engine import _C, _fused, _fused_avx2  # noqa: F401  (an ImportError means a broken install)

    # found, not imported: a CPU without AVX-512 must never load it
    assert importlib.util.find_spec("engine._fused_avx512") is not None

    assert engine.backend.describe()["softmax_forward"] == "native"


def test_kernel_sets_default_to_the_widest_the_cpu_runs_and_info_names_them():
    from engine import _C, info

    sets = {"gemm": _C.gemm_isas(), "conv2d": _C.conv2d_paths(), "attention": _C.attention_isas()}
    assert all(names[-1] in ("portable", "gemm-panels") for names in sets.values())
    # one CPU check; attention also has AMX tiles where the CPU has them
    assert len(sets["conv2d"]) == len(sets["gemm"])
    assert len(sets["attention"]) == len(sets["gemm"]) + (sets["attention"][0] == "avx512-amx")
    used = {"gemm": _C.gemm_isa(), "conv2d": _C.conv2d_path(), "attention": _C.attention_isa()}
    assert used == {family: names[0] for family, names in sets.items()}
    assert "native kernel sets: " + ", ".join(f"{k} {v}" for k, v in used.items()) in info.report()
    assert len(sets["gemm"]) == 1 + _C.cpu_has_avx2_fma() + ("avx512" in sets["gemm"])


@pytest.mark.parametrize("dtype,tol", [(np.float32, FLOAT32), (np.float64, FLOAT64)])
@pytest.mark.parametrize("n", [0, 1, 7, 100_003])  # 100_003 crosses the OpenMP threshold
def test_native_add_matches_numpy(dtype, tol, n):
    from engine import _C

    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    np.testing.assert_allclose(_C.add(a, b, alpha=-2.0), a - 2 * b, **tol)


def test_native_add_is_identical_with_one_and_two_threads():
    from engine import _C

    a = np.random.default_rng(0).standard_normal((300, 400)).astype(np.float32)
    before = engine.get_num_threads()
    try:
        engine.set_num_threads(1)
        one = _C.add(a, a, alpha=0.5)
        engine.set_num_threads(2)
        assert engine.get_num_threads() == 2
        two = _C.add(a, a, alpha=0.5)
    finally:
        engine.set_num_threads(before)
    assert np.array_equal(one, two)


def test_native_add_rejects_bad_arrays():
    from engine import _C

    a = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="float32 or float64.*int64"):
        _C.add(np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="same dtype"):
        _C.add(a, a.astype(np.float64))
    with pytest.raises(ValueError, match=r"same shape.*\(3, 4\).*\(4, 3\)"):
        _C.add(a, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.add(a.T, a.T)
    with pytest.raises(ValueError, match="n must be >= 1"):
        _C.set_num_threads(0)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (257, 130), (3, 0)])
def test_fused_softmax_matches_numpy_reference(log, shape):
    from engine import _fused

    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 10
    y = np.empty_like(x)
    _fused.softmax_forward(y, x, log)
    np.testing.assert_allclose(y, numpy_ref.softmax_forward(x, log=log), **FLOAT64)
    dy = rng.standard_normal(shape)
    dx = np.empty_like(x)
    _fused.softmax_backward(dx, dy, y, log)
    np.testing.assert_allclose(dx, numpy_ref.softmax_backward(dy, y, log=log), **FLOAT64)


def test_fused_softmax_rejects_a_wrong_dtype_and_shape():
    from engine import _fused

    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        _fused.softmax_forward(np.zeros((2, 3), np.float64), x)
    with pytest.raises(ValueError, match="out shape"):
        _fused.softmax_forward(np.zeros((3, 3), np.float32), x)


def test_cuda_module_reports_devices_when_built():
    if not engine.cuda.is_built():
        pytest.skip("engine._cuda was not built (no CUDA compiler at install time)")
    from engine import _cuda

    assert _cuda.device_count() >= 0
    assert engine.cuda.is_available() == (engine.cuda.device_count() > 0)


@pytest.mark.skipif(not engine.cuda.is_available(), reason="no CUDA device")
def test_cuda_add_matches_numpy():
    import cupy as cp
    from engine import _cuda

    a = cp.arange(1000, dtype=cp.float32)
    out = cp.empty_like(a)
    _cuda.add(out, a, a, alpha=3.0, stream=cp.cuda.get_current_stream().ptr)
    np.testing.assert_allclose(cp.asnumpy(out), 4 * np.arange(1000, dtype=np.float32))
    with pytest.raises(TypeError, match="GPU array"):
        _cuda.add(out, np.zeros(1000, np.float32), a)



@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("a_shape,b_shape,transposed", [
    ((300, 400), (300, 400), False),  # the OpenMP kernel
    ((300, 400), (300, 400), True),   # views: NumPy
    ((7,), (7,), False),              # small: NumPy
    ((300, 400), (400,), False),      # broadcast: NumPy
])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_the_add_kernel_gives_a_plus_b_exactly(threads, n_threads, dtype, a_shape, b_shape, transposed):
    """The kernel set's add (residual adds, gradient sums in backward) takes the OpenMP kernel for
    large C-contiguous float arrays of one shape on several threads and NumPy otherwise; either
    way a + b exactly."""
    from engine.backend import cpu

    threads(n_threads)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    if transposed:
        a, b = a.T, b.T
    got = cpu.add(a, b)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, a + b)


def test_freed_memory_is_kept_for_reuse_on_glibc():
    import os
    import platform

    from engine import _C, runtime

    # AddressSanitizer's malloc replaces glibc's and ignores mallopt
    sanitized = "asan" in os.environ.get("LD_PRELOAD", "")
    assert runtime.MALLOC_RETAINS == (platform.libc_ver()[0] == "glibc" and not sanitized)
    with pytest.raises(ValueError, match="bytes must be >= 0, got -1"):
        _C.retain_freed_memory(-1)


@pytest.mark.parametrize("text,mb", [(None, 256), ("0", 0), ("1024", 1024)])
def test_malloc_retention_comes_from_the_environment(text, mb):
    from engine import runtime

    assert runtime.malloc_retain_mb({} if text is None else {"ENGINE_MALLOC_RETAIN_MB": text}) == mb


@pytest.mark.parametrize("text", ["-1", "lots", "1.5"])
def test_a_bad_malloc_retention_names_the_variable(text):
    from engine import runtime

    with pytest.raises(ValueError, match=f"ENGINE_MALLOC_RETAIN_MB must be a whole number of MiB >= 0, got '{text}'"):
        runtime.malloc_retain_mb({"ENGINE_MALLOC_RETAIN_MB": text})
