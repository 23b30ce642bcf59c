"""gradcheck: compare autograd's gradients with central finite differences in float64."""
import numpy as np

import engine
from tolerances import GRADCHECK_ATOL, GRADCHECK_EPS, GRADCHECK_RTOL


def gradcheck(fn, *inputs, eps=GRADCHECK_EPS, atol=GRADCHECK_ATOL, rtol=GRADCHECK_RTOL, seed=0):
    """Check d(fn)/d(input) for every input that requires grad.

    fn(*inputs) may return one tensor or a tuple; the scalar checked is Σ out·w with fixed random
    weights w, so every output element's gradient is exercised. Inputs may be views (transposed,
    sliced): finite differences perturb the elements the view sees, through its base array.
    """
    rng = np.random.default_rng(seed)

    def outputs():
        out = fn(*inputs)
        return out if isinstance(out, tuple) else (out,)

    weights = [rng.standard_normal(o.shape) for o in outputs()]

    def scalar():
        with engine.no_grad():
            return sum(float((o.numpy().astype(np.float64) * w).sum()) for o, w in zip(outputs(), weights))

    for t in inputs:
        if isinstance(t, engine.Tensor):
            assert t.dtype == np.float64, "gradcheck needs float64 inputs"
            t.grad = None
    total = None
    for o, w in zip(outputs(), weights):
        term = (o * engine.tensor(w, dtype=o.dtype, device=o.device)).sum()
        total = term if total is None else total + term
    total.backward()

    for i, t in enumerate(inputs):
        if not (isinstance(t, engine.Tensor) and t.requires_grad):
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        numeric = np.zeros(t.shape)
        flat = t.data  # writing through the view perturbs exactly the element it shows
        for idx in np.ndindex(*t.shape):
            orig = flat[idx]
            flat[idx] = orig + eps
            plus = scalar()
            flat[idx] = orig - eps
            minus = scalar()
            flat[idx] = orig
            numeric[idx] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i} (shape {tuple(t.shape)})")
    return True


def leaf(*shape, low=None, seed=None, positive=False):
    """A float64 leaf tensor of random values that requires grad."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return engine.tensor(a, dtype=engine.float64, requires_grad=True)


def leaf_view(array):
    """A leaf tensor over `array` itself (a transposed or sliced view stays a view)."""
    t = engine.from_numpy(array)
    return t.requires_grad_()
