"""Pinning one native kernel set (instruction set) of a kernel family for a test."""
import pytest


def pinned_kernel_set(name, available, use, current):
    """The body of a fixture that runs its test on the kernel set `name` (skipped where this CPU
    lacks it) and gives the widest back after: gemm, conv2d and attention each have one, over
    their own available/use/current functions in _C."""
    if name not in available():
        pytest.skip(f"CPU without {name}")
    use(name)
    assert current() == name
    yield name
    use("auto")
