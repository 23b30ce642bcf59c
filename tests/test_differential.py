"""Differential tests: every public op's forward values and gradients against PyTorch CPU, on the
seeded random cases of differential_cases.py, under both CPU kernel sets.

`pytest -m differential` runs the full stream (>= 500 cases); the default run takes a fixed
sample of one case per op. A mismatch prints the case (op, shapes, layouts, arguments, dtype,
seed); `differential_cases.make_case(i)` rebuilds case i exactly.
"""
import warnings

import numpy as np
import pytest

import engine
import differential_cases as dc
from tolerances import differential

torch = pytest.importorskip("torch")

FULL_CASES = 620
SAMPLE = dc.cases(len(dc.SPECS))
FULL = dc.cases(FULL_CASES)


class _Engine:
    name = "engine"
    m = engine
    F = engine.nn.functional

    @staticmethod
    def const(a):
        return engine.tensor(np.array(a))

    @staticmethod
    def tensor(a, requires_grad):
        return engine.tensor(a, requires_grad=requires_grad)

    @staticmethod
    def numpy(t):
        return np.array(t.detach().numpy())


class _Torch:
    name = "torch"
    m = torch
    F = torch.nn.functional

    @staticmethod
    def const(a):
        return torch.from_numpy(np.array(a))

    @staticmethod
    def tensor(a, requires_grad):
        return torch.tensor(a, requires_grad=requires_grad)

    @staticmethod
    def numpy(t):
        return np.array(t.detach().numpy())


def _leaf(L, inp):
    """(leaf, the view the op reads): the leaf holds the values in the input's layout."""
    a = inp.array
    if inp.layout == "transposed" and a.ndim >= 2:
        leaf = L.tensor(np.ascontiguousarray(a.swapaxes(-1, -2)), inp.requires_grad)
        return leaf, leaf.transpose(-1, -2)
    if inp.layout == "strided" and a.ndim >= 1:
        # every other element is NaN: a kernel that reads past the view's stride shows it
        base = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, dtype=a.dtype)
        base[..., ::2] = a
        leaf = L.tensor(base, inp.requires_grad)
        return leaf, leaf[..., ::2]
    leaf = L.tensor(a.copy(), inp.requires_grad)
    return leaf, leaf


def _run(L, case):
    """(outputs, input gradients) as NumPy arrays; a gradient the library left as None is None."""
    leaves, views = zip(*(_leaf(L, i) for i in case.inputs)) if case.inputs else ((), ())
    out = case.fn(L, *views)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    differentiable = [o for o in outs if o.requires_grad]
    if differentiable:
        loss = 0
        for j, o in enumerate(outs):
            if o.requires_grad:
                w = np.random.default_rng(case.seed + 7919 * (j + 1)).standard_normal(tuple(o.shape))
                loss = loss + (o * L.const(w.astype(L.numpy(o).dtype))).sum()
        loss.backward()
    grads = [None if leaf.grad is None else L.numpy(leaf.grad) for leaf in leaves]
    return [L.numpy(o) for o in outs], grads


def _close(what, got, want, case):
    """None when got matches want, else a line saying how it differs."""
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, torch {want.shape}"
    if got.dtype != want.dtype:
        return f"{what}: dtype {got.dtype}, torch {want.dtype}"
    if got.dtype.kind != "f":
        bad = np.argwhere(got != want)
        return None if not len(bad) else f"{what}: differs at {bad[:3].tolist()}: {got[tuple(bad[0])]} vs {want[tuple(bad[0])]}"
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return f"{what}: NaN at {np.argwhere(np.isnan(got))[:3].tolist()}, torch at {np.argwhere(np.isnan(want))[:3].tolist()}"
    finite = np.isfinite(want)
    if not np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)]):
        return f"{what}: infinities differ"
    if not finite.any():
        return None
    rtol, atol = differential(case.dtype, case.k)
    g, w = got[finite].astype(np.float64), want[finite].astype(np.float64)
    if not np.isfinite(g).all():
        return f"{what}: non-finite where torch is finite"
    scale = max(1.0, float(np.abs(w).max())) * case.term_scale
    err = np.abs(g - w)
    bound = atol * scale + rtol * np.abs(w)
    if (err <= bound).all():
        return None
    i = int(np.argmax(err - bound))
    return (f"{what}: max error {err.max():.3g} (bound {bound[i]:.3g} at the worst element, "
            f"{g[i]!r} vs torch {w[i]!r}; scale {scale:.3g}, rtol {rtol:.2g}, atol {atol:.2g})")


def check_case(case):
    """Run `case` in both libraries and return the list of differences (empty: they agree)."""
    # both libraries warn on, e.g., the mean of an empty row; the values are what is compared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want_out, want_grad = _run(_Torch, case)
        except Exception as e:  # the generator made a case torch refuses: a generator bug
            return [f"torch refused the case: {type(e).__name__}: {e}"]
        try:
            got_out, got_grad = _run(_Engine, case)
        except Exception as e:
            return [f"engine raised {type(e).__name__}: {e}"]
    problems = []
    if len(got_out) != len(want_out):
        return [f"{len(got_out)} outputs, torch gives {len(want_out)}"]
    for j, (g, w) in enumerate(zip(got_out, want_out)):
        problems.append(_close(f"output {j}", g, w, case))
    for j, (g, w, inp) in enumerate(zip(got_grad, want_grad, case.inputs)):
        if not inp.requires_grad:
            continue
        # a gradient one library leaves as None and the other as zeros is the same gradient
        zero = np.zeros_like(w if g is None else g)
        problems.append(_close(f"grad of input {j}", zero if g is None else g, zero if w is None else w, case))
    return [p for p in problems if p]


def _params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.mark.parametrize("case", _params(SAMPLE))
def test_sample_matches_pytorch(case, backend):
    problems = check_case(case)
    assert not problems, case.describe() + "\n  " + "\n  ".join(problems)


@pytest.mark.differential
@pytest.mark.parametrize("case", _params(FULL))
def test_matches_pytorch(case, backend):
    problems = check_case(case)
    assert not problems, case.describe() + "\n  " + "\n  ".join(problems)


def test_the_full_stream_covers_every_op_and_both_dtypes():
    assert len(FULL) >= 500
    assert {c.op for c in SAMPLE} == set(dc.SPECS)
    for op in dc.SPECS:
        dtypes = {np.dtype(c.dtype).name for c in FULL if c.op == op}
        assert dtypes == {"float32", "float64"}, (op, dtypes)
    layouts = {i.layout for c in FULL for i in c.inputs}
    assert layouts == {"contiguous", "transposed", "strided"}
    assert any(0 in i.array.shape for c in FULL for i in c.inputs)


def test_the_stream_is_reproducible():
    a, b = dc.make_case(123), dc.make_case(123)
    assert a.describe() == b.describe()
    for x, y in zip(a.inputs, b.inputs):
        np.testing.assert_array_equal(x.array, y.array)
