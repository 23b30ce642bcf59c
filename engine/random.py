"""The global random generator behind randn, dropout and parameter initialisation."""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed every random draw engine makes (CPU, and the GPU generator when CuPy is present)."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _generator = np.random.default_rng(int(seed))
    from engine._array import cupy

    if cupy() is not None:
        try:
            cupy().random.seed(int(seed) % 2**32)
        except Exception:  # CuPy present but no usable GPU: nothing to seed
            pass


seed = manual_seed


def generator():
    """The NumPy Generator all CPU draws come from."""
    return _generator
