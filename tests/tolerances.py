"""Every tolerance the tests use, stated once (see ../shared/TESTING.md for where they come from).

Gradient checks follow torch.autograd.gradcheck: float64, central differences.
"""
GRADCHECK_EPS = 1e-6
GRADCHECK_ATOL = 1e-5
GRADCHECK_RTOL = 1e-3

# Forward values against a float64 reference.
FLOAT64 = dict(rtol=1e-7, atol=1e-7)
FLOAT32 = dict(rtol=1.3e-6, atol=1e-5)
# float32 reductions (matmul, conv, attention): the error grows with the reduction length K.
FLOAT32_REDUCTION_RTOL_PER_SQRT_K = 2e-6


def float32_reduction(k):
    """assert_allclose kwargs for a float32 result that sums k products."""
    return dict(rtol=max(1e-5, FLOAT32_REDUCTION_RTOL_PER_SQRT_K * k ** 0.5), atol=1e-5 * max(1.0, k ** 0.5))

# Differential tests against PyTorch (test_differential.py). Both libraries compute in the case's
# dtype, each with its own rounding, so the bound is |engine − torch| <= atol·scale + rtol·|torch|
# with scale = max(1, max |torch|) over that output (an error in a sum is relative to the size of
# its terms, not of the result); both grow with √k for a result that sums k terms.
DIFFERENTIAL = {
    "float64": dict(rtol=1e-10, atol=1e-12),
    "float32": dict(rtol=2e-6, atol=2e-6),
}


def differential(dtype, k=1):
    """(rtol, atol) for one output of `dtype` that sums k terms; atol is to be scaled (above)."""
    import numpy as np

    base = DIFFERENTIAL[np.dtype(dtype).name]
    grow = max(1.0, k ** 0.5)
    return base["rtol"] * grow, base["atol"] * grow
