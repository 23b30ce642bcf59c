"""Seeded random cases for the differential tests (test_differential.py): every public op, in
float32 and float64, on shapes with 1s, primes, zero-size dims and broadcasting, with inputs
that are contiguous, transposed or step-sliced views, and a random mix of requires_grad.

A case is library-neutral: `fn(L, *xs)` calls the op through `L.m` (the engine or torch module)
and `L.F` (its nn.functional), and `L.const(array)` turns fixed arrays (targets, indices, masks)
into tensors, so one expression is run by both libraries. Everything a case holds is drawn
from a NumPy generator seeded with the case's index, so a failing case is rebuilt exactly by
`cases()[i]`.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Sizes drawn for dims: 1 and primes, so no kernel's blocking divides a size by accident.
SIZES = (1, 2, 3, 5, 7, 11, 13)
DTYPES = (np.float32, np.float64)
# How often a dim that may be empty is 0.
P_ZERO = 0.08


@dataclass
class In:
    """One float input: its values (in the shape the op sees), whether it requires grad, and
    the layout of the leaf it is read through."""
    array: np.ndarray
    requires_grad: bool = False
    layout: str = "contiguous"  # "contiguous" | "transposed" | "strided"


@dataclass
class Case:
    id: str
    op: str
    inputs: list
    fn: Callable
    k: int = 1                     # longest reduction in the forward or backward (tolerances)
    term_scale: float = 1.0        # size of the terms relative to the result, where it is > 1
    note: str = ""                 # the op's arguments, for the failure message
    dtype: type = np.float64
    seed: int = 0

    def describe(self):
        shapes = ", ".join(f"{tuple(i.array.shape)}{'*' if i.requires_grad else ''}"
                           f"{'' if i.layout == 'contiguous' else ' ' + i.layout}" for i in self.inputs)
        return f"{self.id}: {self.op}({shapes}) {self.note} {np.dtype(self.dtype).name} seed={self.seed}"


# ---- drawing shapes and values ---------------------------------------------------------------
def _size(rng, zero=P_ZERO):
    return 0 if rng.random() < zero else int(rng.choice(SIZES))


def _shape(rng, ndim, zero=P_ZERO):
    return tuple(_size(rng, zero) for _ in range(ndim))


def _partner(rng, shape):
    """A shape that broadcasts with `shape`: some leading dims dropped, some dims set to 1."""
    drop = int(rng.integers(0, len(shape) + 1)) if rng.random() < 0.4 else 0
    return tuple(1 if rng.random() < 0.3 else n for n in shape[drop:])


def _values(rng, shape, domain):
    if domain == "normal":
        return rng.standard_normal(shape)
    if domain == "positive":        # log, sqrt, pow base: away from 0
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":         # denominators
        return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    if domain == "unit":            # probabilities (bce targets)
        return rng.uniform(0.0, 1.0, shape)
    if domain == "wide":            # logits far from 0: the max-shift must hold
        return rng.standard_normal(shape) * 30
    if domain == "ties":            # small integers: comparisons meet equal values
        return rng.integers(-2, 3, shape).astype(np.float64)
    raise ValueError(domain)


class _Draw:
    """What a spec draws from: the generator and the case dtype."""

    def __init__(self, rng, dtype):
        self.rng, self.dtype = rng, dtype

    def x(self, shape, domain="normal", grad=True):
        """A float input of the case dtype; `grad` False keeps it out of the gradient check."""
        return ("in", tuple(shape), domain, grad)

    def shape(self, ndim, zero=P_ZERO):
        return _shape(self.rng, ndim, zero)

    def partner(self, shape):
        return _partner(self.rng, shape)

    def size(self, zero=0.0):
        return _size(self.rng, zero)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def int(self, lo, hi):
        """An int in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def coin(self, p=0.5):
        return bool(self.rng.random() < p)

    def dim(self, ndim):
        """A dim of a tensor of `ndim` dims, sometimes negative."""
        d = int(self.rng.integers(0, max(ndim, 1)))
        return d - ndim if ndim and self.coin(0.3) else d


# ---- the ops ---------------------------------------------------------------------------------
# Each spec draws one case: it returns (inputs, fn, k, note[, term_scale]).
SPECS = {}


def spec(name, weight=1):
    def register(f):
        SPECS[name] = (f, weight)
        return f
    return register


def _broadcast_numel(*shapes):
    """Elements of the broadcast result: the gradient of a broadcast input sums up to this many."""
    return max(1, int(np.prod(np.broadcast_shapes(*shapes))))


def _binary(op, domain_b="normal"):
    def draw(d):
        a = d.shape(d.int(0, 4))
        b = d.partner(a)
        if d.coin(0.3):
            a, b = b, a
        if op == "pow":
            xs = [d.x(a, "positive"), d.x(b, "normal")]
        else:
            xs = [d.x(a), d.x(b, domain_b)]
        return xs, lambda L, x, y: getattr(L.m, op)(x, y), _broadcast_numel(a, b), ""
    return draw


for _op, _dom in [("add", "normal"), ("sub", "normal"), ("mul", "normal"), ("div", "nonzero"),
                  ("pow", "normal"), ("maximum", "normal"), ("minimum", "normal")]:
    spec(_op, weight=2)(_binary(_op, _dom))


@spec("operators")
def _operators(d):
    """Python operators with tensors and scalars on either side."""
    a = d.shape(d.int(1, 3))
    forms = [
        ("x + 2.5 * y", lambda L, x, y: x + 2.5 * y),
        ("3 - x / y", lambda L, x, y: 3 - x / y),
        ("x ** 2 - y", lambda L, x, y: x ** 2 - y),
        ("-x * y + 1", lambda L, x, y: -x * y + 1),
        ("2 / y + abs(x)", lambda L, x, y: 2 / y + abs(x)),
        ("add(alpha=-1.5)", lambda L, x, y: L.m.add(x, y, alpha=-1.5)),
        ("sub(alpha=2)", lambda L, x, y: L.m.sub(x, y, alpha=2)),
    ]
    note, fn = d.pick(forms)
    b = d.partner(a)
    return [d.x(a), d.x(b, "nonzero")], fn, _broadcast_numel(a, b), note


_UNARY = {
    "neg": ("normal", lambda L, x: L.m.neg(x)),
    "exp": ("normal", lambda L, x: L.m.exp(x)),
    "log": ("positive", lambda L, x: L.m.log(x)),
    "sqrt": ("positive", lambda L, x: L.m.sqrt(x)),
    "rsqrt": ("positive", lambda L, x: L.m.rsqrt(x)),
    "abs": ("nonzero", lambda L, x: L.m.abs(x)),
    "sin": ("normal", lambda L, x: L.m.sin(x)),
    "cos": ("normal", lambda L, x: L.m.cos(x)),
    "tanh": ("normal", lambda L, x: L.m.tanh(x)),
    "sigmoid": ("wide", lambda L, x: L.m.sigmoid(x)),
    "relu": ("nonzero", lambda L, x: L.F.relu(x)),
    "silu": ("normal", lambda L, x: L.F.silu(x)),
    "square": ("normal", lambda L, x: L.m.square(x)),
    "gelu": ("normal", lambda L, x: L.F.gelu(x)),
    "gelu_tanh": ("normal", lambda L, x: L.F.gelu(x, approximate="tanh")),
    "sign": ("nonzero", lambda L, x: L.m.sign(x)),
}


def _unary(name):
    domain, fn = _UNARY[name]

    def draw(d):
        return [d.x(d.shape(d.int(0, 4)), domain)], fn, 1, ""
    return draw


for _name in _UNARY:
    spec(_name)(_unary(_name))


@spec("clamp")
def _clamp(d):
    lo, hi = d.pick([(-0.5, 0.7), (None, 0.3), (-0.2, None)])
    return ([d.x(d.shape(d.int(0, 3)))], lambda L, x: L.m.clamp(x, min=lo, max=hi), 1,
            f"min={lo} max={hi}")


@spec("compare")
def _compare(d):
    a = d.shape(d.int(0, 3))
    op = d.pick(["eq", "ne", "lt", "le", "gt", "ge"])
    return ([d.x(a, "ties", grad=False), d.x(d.partner(a), "ties", grad=False)],
            lambda L, x, y: getattr(L.m, op)(x, y), 1, op)


@spec("logical")
def _logical(d):
    a = d.shape(d.int(0, 3))
    p = d.rng.random(a) < 0.5
    q = d.rng.random(d.partner(a)) < 0.5
    op = d.pick(["logical_and", "logical_or", "logical_not"])
    if op == "logical_not":
        return [], lambda L: L.m.logical_not(L.const(p)), 1, op
    return [], lambda L: getattr(L.m, op)(L.const(p), L.const(q)), 1, op


@spec("isnan_isfinite")
def _nonfinite(d):
    a = d.shape(d.int(1, 3), zero=0)
    vals = d.rng.standard_normal(a)
    flat = vals.reshape(-1)
    flat[d.rng.random(flat.size) < 0.3] = np.nan
    flat[d.rng.random(flat.size) < 0.2] = np.inf
    flat[d.rng.random(flat.size) < 0.2] = -np.inf
    op = d.pick(["isnan", "isfinite"])
    return [], lambda L: getattr(L.m, op)(L.const(vals.astype(d.dtype))), 1, op


@spec("where")
def _where(d):
    a = d.shape(d.int(0, 3))
    cond = d.rng.random(d.partner(a)) < 0.5
    b = d.partner(a)
    return ([d.x(a), d.x(b)], lambda L, x, y: L.m.where(L.const(cond), x, y),
            _broadcast_numel(a, b, cond.shape), f"cond {cond.shape}")


@spec("masked_fill")
def _masked_fill(d):
    a = d.shape(d.int(1, 3))
    mask = d.rng.random(d.partner(a)) < 0.4
    value = d.pick([0.0, -1e9, 2.5, float("-inf")])
    return ([d.x(a)], lambda L, x: L.m.masked_fill(x, L.const(mask), value), 1,
            f"mask {mask.shape} value={value}")


# ---- reductions ------------------------------------------------------------------------------
def _dims(d, ndim):
    """None (all dims), one dim, or a tuple of distinct dims."""
    if ndim == 0 or d.coin(0.25):
        return None
    if d.coin(0.6):
        return d.dim(ndim)
    k = d.int(1, ndim)
    return tuple(int(v) for v in d.rng.choice(ndim, size=k, replace=False))


def _count(shape, dims):
    if dims is None:
        return int(np.prod(shape)) if shape else 1
    dims = (dims,) if isinstance(dims, int) else dims
    return int(np.prod([shape[i] for i in dims])) if dims else 1


@spec("sum", weight=2)
def _sum(d):
    a = d.shape(d.int(0, 4))
    dims, keep = _dims(d, len(a)), d.coin()
    if dims is None:
        return [d.x(a)], lambda L, x: L.m.sum(x), _count(a, None), "dim=None"
    return ([d.x(a)], lambda L, x: L.m.sum(x, dim=dims, keepdim=keep), _count(a, dims),
            f"dim={dims} keepdim={keep}")


@spec("mean", weight=2)
def _mean(d):
    a = d.shape(d.int(0, 4))
    dims, keep = _dims(d, len(a)), d.coin()
    if dims is None:
        return [d.x(a)], lambda L, x: L.m.mean(x), _count(a, None), "dim=None"
    return ([d.x(a)], lambda L, x: L.m.mean(x, dim=dims, keepdim=keep), _count(a, dims),
            f"dim={dims} keepdim={keep}")


@spec("var_std", weight=2)
def _var(d):
    # NOTE: sizes >= 2 along the reduced dims: with fewer elements than the correction the
    # result is NaN (0/0) in both libraries, and comparing NaN gradients says nothing.
    a = tuple(max(2, n) for n in d.shape(d.int(1, 3), zero=0))
    dims, keep = _dims(d, len(a)), d.coin()
    corr = d.pick([0, 1])
    op = d.pick(["var", "std"])
    if dims is None:
        return ([d.x(a)], lambda L, x: getattr(L.m, op)(x, correction=corr), _count(a, None),
                f"{op} correction={corr}")
    return ([d.x(a)], lambda L, x: getattr(L.m, op)(x, dim=dims, keepdim=keep, correction=corr),
            _count(a, dims), f"{op} dim={dims} keepdim={keep} correction={corr}")


@spec("max_min", weight=2)
def _max(d):
    a = d.shape(d.int(1, 4), zero=0)
    op = d.pick(["max", "min"])
    if d.coin(0.3):
        return [d.x(a)], lambda L, x: getattr(L.m, op)(x), 1, f"{op}()"
    dim, keep = d.dim(len(a)), d.coin()
    # (values, indices): both compared
    return ([d.x(a)], lambda L, x: tuple(getattr(L.m, op)(x, dim, keepdim=keep)), 1,
            f"{op}(dim={dim}, keepdim={keep})")


@spec("amax")
def _amax(d):
    a = d.shape(d.int(1, 4), zero=0)
    dims = _dims(d, len(a))
    dims = tuple(range(len(a))) if dims is None else dims
    keep = d.coin()
    return [d.x(a)], lambda L, x: L.m.amax(x, dim=dims, keepdim=keep), 1, f"dim={dims} keepdim={keep}"


@spec("argmax_argmin")
def _argmax(d):
    a = d.shape(d.int(1, 4), zero=0)
    op = d.pick(["argmax", "argmin"])
    if d.coin(0.3):
        return [d.x(a, grad=False)], lambda L, x: getattr(L.m, op)(x), 1, f"{op}()"
    dim, keep = d.dim(len(a)), d.coin()
    return ([d.x(a, grad=False)], lambda L, x: getattr(L.m, op)(x, dim=dim, keepdim=keep), 1,
            f"{op}(dim={dim}, keepdim={keep})")


@spec("logsumexp")
def _logsumexp(d):
    a = d.shape(d.int(1, 4), zero=0)
    dim, keep = d.dim(len(a)), d.coin()
    return ([d.x(a, "wide")], lambda L, x: L.m.logsumexp(x, dim=dim, keepdim=keep), a[dim],
            f"dim={dim} keepdim={keep}")


# ---- shape ops -------------------------------------------------------------------------------
@spec("reshape_view_flatten", weight=2)
def _reshape(d):
    a = d.shape(d.int(1, 4))
    n = int(np.prod(a))
    form = d.pick(["reshape", "reshape-1", "flatten", "view"])
    if form == "reshape":
        target = (n,) if d.coin() else tuple(reversed(a))
        return [d.x(a)], lambda L, x: x.reshape(target), 1, f"reshape{target}"
    if form == "reshape-1" and n:
        target = (-1,) + a[-1:]
        return [d.x(a)], lambda L, x: x.reshape(target), 1, f"reshape{target}"
    if form == "view":
        # a view of a non-contiguous tensor is an error in torch; the leaf is made contiguous
        return [d.x(a) + ("contiguous",)], lambda L, x: x.view(a[::-1]), 1, f"view{a[::-1]}"
    start = d.int(0, len(a) - 1)
    end = d.int(start, len(a) - 1)
    return [d.x(a)], lambda L, x: L.m.flatten(x, start, end), 1, f"flatten({start}, {end})"


@spec("permute_transpose", weight=2)
def _permute(d):
    a = d.shape(d.int(2, 4))
    form = d.pick(["permute", "transpose", "movedim", "T", "mT"])
    if form == "permute":
        perm = tuple(int(v) for v in d.rng.permutation(len(a)))
        return [d.x(a)], lambda L, x: L.m.permute(x, perm), 1, f"permute{perm}"
    if form == "transpose":
        i, j = d.dim(len(a)), d.dim(len(a))
        return [d.x(a)], lambda L, x: L.m.transpose(x, i, j), 1, f"transpose({i}, {j})"
    if form == "movedim":
        i, j = d.dim(len(a)), d.dim(len(a))
        return [d.x(a)], lambda L, x: L.m.movedim(x, i, j), 1, f"movedim({i}, {j})"
    if form == "T" and len(a) == 2:
        return [d.x(a)], lambda L, x: x.T * 1.0, 1, "T"
    return [d.x(a)], lambda L, x: x.mT * 1.0, 1, "mT"


@spec("squeeze_unsqueeze_expand", weight=2)
def _squeeze(d):
    a = tuple(1 if d.coin(0.4) else n for n in d.shape(d.int(1, 4)))
    form = d.pick(["squeeze", "squeeze_dim", "unsqueeze", "expand", "repeat"])
    if form == "squeeze":
        return [d.x(a)], lambda L, x: L.m.squeeze(x), 1, "squeeze()"
    if form == "squeeze_dim":
        dim = d.dim(len(a))
        return [d.x(a)], lambda L, x: L.m.squeeze(x, dim), 1, f"squeeze({dim})"
    if form == "unsqueeze":
        dim = d.int(-len(a) - 1, len(a))
        return [d.x(a)], lambda L, x: L.m.unsqueeze(x, dim), 1, f"unsqueeze({dim})"
    if form == "expand":
        target = tuple(d.pick([2, 3, 5]) if n == 1 and d.coin(0.7) else (-1 if d.coin(0.3) else n)
                       for n in a)
        target = (d.pick([1, 2, 3]),) * d.int(0, 1) + target
        return [d.x(a)], lambda L, x: x.expand(*target), 1, f"expand{target}"
    reps = tuple(d.int(1, 3) for _ in range(len(a) + d.int(0, 1)))
    return [d.x(a)], lambda L, x: x.repeat(*reps), 1, f"repeat{reps}"


@spec("cat_stack", weight=2)
def _cat(d):
    a = d.shape(d.int(1, 3))
    n = d.int(1, 3)
    if d.coin(0.6):
        dim = d.dim(len(a))
        shapes = [tuple(d.size(zero=0.2) if i == dim % len(a) else s for i, s in enumerate(a))
                  for _ in range(n)]
        return [d.x(s) for s in shapes], lambda L, *xs: L.m.cat(list(xs), dim=dim), 1, f"cat(dim={dim})"
    dim = d.int(-len(a) - 1, len(a))
    return [d.x(a) for _ in range(n)], lambda L, *xs: L.m.stack(list(xs), dim=dim), 1, f"stack(dim={dim})"


@spec("split_chunk_unbind", weight=2)
def _split(d):
    a = d.shape(d.int(1, 3), zero=0)
    dim = d.dim(len(a))
    n = a[dim]
    form = d.pick(["split", "sections", "chunk", "unbind"])
    if form == "split":
        size = d.int(1, n + 1)
        return [d.x(a)], lambda L, x: tuple(L.m.split(x, size, dim)), 1, f"split({size}, {dim})"
    if form == "sections":
        cuts = sorted(int(v) for v in d.rng.integers(0, n + 1, size=d.int(0, 2)))
        sections = [b - a_ for a_, b in zip([0] + cuts, cuts + [n])]
        return ([d.x(a)], lambda L, x: tuple(L.m.split(x, sections, dim)), 1,
                f"split({sections}, {dim})")
    if form == "chunk":
        chunks = d.int(1, n + 1)
        return [d.x(a)], lambda L, x: tuple(L.m.chunk(x, chunks, dim)), 1, f"chunk({chunks}, {dim})"
    return [d.x(a)], lambda L, x: tuple(L.m.unbind(x, dim)), 1, f"unbind({dim})"


@spec("index", weight=3)
def _index(d):
    a = d.shape(d.int(1, 3), zero=0)
    form = d.pick(["int", "slice", "ellipsis", "int_array", "bool_mask", "mixed"])
    if form == "int":
        i = d.int(-a[0], a[0] - 1)
        return [d.x(a)], lambda L, x: x[i], 1, f"[{i}]"
    if form == "slice":
        start, step = d.int(0, a[0]), d.int(1, 3)
        return [d.x(a)], lambda L, x: x[start::step], 1, f"[{start}::{step}]"
    if form == "ellipsis" and len(a) >= 2:
        j = d.int(0, a[-1] - 1)
        return [d.x(a)], lambda L, x: x[..., j, None], 1, f"[..., {j}, None]"
    if form == "bool_mask":
        mask = d.rng.random(a) < 0.5
        return [d.x(a)], lambda L, x: x[L.const(mask)], 1, "[bool mask]"
    # repeated indices: their gradients accumulate
    idx = d.rng.integers(0, a[0], size=d.int(0, 6))
    if form == "mixed" and len(a) >= 2:
        return [d.x(a)], lambda L, x: x[L.const(idx), 1:], 1, f"[{idx.tolist()}, 1:]"
    return [d.x(a)], lambda L, x: x[L.const(idx)], 1, f"[{idx.tolist()}]"


@spec("clone_contiguous")
def _clone(d):
    a = d.shape(d.int(1, 3))
    if d.coin():
        return [d.x(a)], lambda L, x: x.contiguous() * 2, 1, "contiguous"
    return [d.x(a)], lambda L, x: L.m.clone(x) * 2, 1, "clone"


# ---- matrix products -------------------------------------------------------------------------
@spec("matmul", weight=4)
def _matmul(d):
    m, k, n = d.size(P_ZERO), d.size(P_ZERO), d.size(P_ZERO)
    if d.coin(0.3):
        k = d.pick([17, 64, 129, 300])   # a longer reduction
    if d.coin(0.3):                      # past one register tile (6×16) and one packed panel
        m, n = d.pick([7, 17, 70]), d.pick([17, 33, 129])
    batch = d.shape(d.int(0, 2), zero=0.05)
    form = d.pick(["2d", "batched", "broadcast", "vec-mat", "mat-vec", "vec-vec"])
    if form == "vec-vec":
        a, b = (k,), (k,)
    elif form == "vec-mat":
        a, b = (k,), batch + (k, n)
    elif form == "mat-vec":
        a, b = batch + (m, k), (k,)
    elif form == "2d":
        a, b = (m, k), (k, n)
    elif form == "batched":
        a, b = batch + (m, k), batch + (k, n)
    else:
        bb = d.partner(batch)
        a, b = (batch + (m, k), bb + (k, n)) if d.coin() else (bb + (m, k), batch + (k, n))
    return [d.x(a), d.x(b)], lambda L, x, y: L.m.matmul(x, y), max(k, m * n, 1), form


@spec("bmm")
def _bmm(d):
    b, m, k, n = d.size(P_ZERO), d.size(), d.size(P_ZERO), d.size()
    return [d.x((b, m, k)), d.x((b, k, n))], lambda L, x, y: L.m.bmm(x, y), max(k, m * n, 1), ""


@spec("linear", weight=3)
def _linear(d):
    lead = d.shape(d.int(0, 2))
    k, m = d.pick([1, 3, 7, 64, 129]), d.size()
    bias = d.coin()
    xs = [d.x(lead + (k,)), d.x((m, k))] + ([d.x((m,))] if bias else [])
    rows = int(np.prod(lead)) if lead else 1
    return xs, lambda L, *t: L.F.linear(*t), max(k, rows, 1), f"bias={bias}"


# ---- nn ops ----------------------------------------------------------------------------------
@spec("softmax", weight=3)
def _softmax(d):
    a = d.shape(d.int(0, 3))
    dim = d.dim(len(a))
    op = d.pick(["softmax", "log_softmax"])
    k = a[dim] if a else 1
    return ([d.x(a, d.pick(["normal", "wide"]))], lambda L, x: getattr(L.F, op)(x, dim=dim), k,
            f"{op} dim={dim}")


@spec("layer_norm", weight=3)
def _layer_norm(d):
    a = d.shape(d.int(1, 3))
    nd = d.int(1, len(a))
    norm = a[len(a) - nd:]
    affine = d.pick(["none", "weight", "weight+bias"])
    eps = d.pick([1e-5, 1e-3])
    xs = [d.x(a)]
    if affine != "none":
        xs.append(d.x(norm))
    if affine == "weight+bias":
        xs.append(d.x(norm))
    rows = int(np.prod(a[:len(a) - nd])) if len(a) > nd else 1
    c = int(np.prod(norm))
    # NOTE: a row of one element has variance 0, so rstd = 1/√eps multiplies every term of
    # the input gradient (which is 0 up to that rounding).
    scale = eps ** -0.5 if c == 1 else 1.0
    return (xs, lambda L, x, *wb: L.F.layer_norm(x, norm, *wb, eps=eps),
            max(c, rows, 1), f"normalized_shape={norm} {affine} eps={eps}", scale)


def _targets(d, shape, c, ignore_index):
    t = d.rng.integers(0, max(c, 1), size=shape)
    if ignore_index is not None and t.size:
        t[d.rng.random(shape) < 0.3] = ignore_index
    return t.astype(np.int64)


@spec("cross_entropy", weight=4)
def _cross_entropy(d):
    n, c = d.size(P_ZERO), d.pick([1, 2, 5, 13, 100])
    form = d.pick(["2d", "2d", "spatial", "1d"])
    ignore = d.pick([None, -100, 0, -1])
    kwargs = {} if ignore is None else {"ignore_index": ignore}
    reduction = d.pick(["mean", "sum", "none"])
    if form == "1d":
        shape, tshape = (c,), ()
    elif form == "spatial":
        extra = d.shape(d.int(1, 2))
        shape, tshape = (n, c) + extra, (n,) + extra
    else:
        shape, tshape = (n, c), (n,)
    target = _targets(d, tshape, c, ignore)
    return ([d.x(shape, d.pick(["normal", "wide"]))],
            lambda L, x: L.F.cross_entropy(x, L.const(target), reduction=reduction, **kwargs),
            max(c, int(np.prod(tshape)) if tshape else 1), f"ignore_index={ignore} reduction={reduction} {form}")


@spec("nll_loss")
def _nll(d):
    n, c = d.size(), d.pick([2, 5, 13])
    ignore = d.pick([-100, 0])
    target = _targets(d, (n,), c, ignore if ignore != -100 else None)
    reduction = d.pick(["mean", "sum", "none"])
    return ([d.x((n, c))],
            lambda L, x: L.F.nll_loss(L.F.log_softmax(x, dim=1), L.const(target), ignore_index=ignore,
                                      reduction=reduction), max(n, c), f"ignore_index={ignore} reduction={reduction}")


@spec("mse_loss")
def _mse(d):
    a = d.shape(d.int(0, 3), zero=0.05)
    reduction = d.pick(["mean", "sum", "none"])
    return ([d.x(a), d.x(a)], lambda L, x, y: L.F.mse_loss(x, y, reduction=reduction),
            int(np.prod(a)) if a else 1, f"reduction={reduction}")


@spec("bce_with_logits")
def _bce(d):
    a = d.shape(d.int(0, 3), zero=0.05)
    reduction = d.pick(["mean", "sum", "none"])
    return ([d.x(a, "wide"), d.x(a, "unit")],
            lambda L, x, y: L.F.binary_cross_entropy_with_logits(x, y, reduction=reduction),
            int(np.prod(a)) if a else 1, f"reduction={reduction}")


@spec("conv2d", weight=6)
def _conv2d(d):
    groups = d.pick([1, 1, 1, 2, 3])
    cg, og = d.pick([1, 2, 3]), d.pick([1, 2, 3])
    if d.coin(0.25):  # channel counts past a vector width and its tail
        cg, og, groups = d.pick([8, 17]), d.pick([8, 19]), d.pick([1, 2])
    kh, kw = d.pick([1, 2, 3, 5]), d.pick([1, 2, 3])
    stride = (d.int(1, 3), d.int(1, 2))
    padding = (d.int(0, 2), d.int(0, 2))
    dilation = (d.int(1, 2), d.int(1, 2))
    n = d.pick([0, 1, 2, 3])
    # the input is at least as large as the dilated kernel, so the output has >= 1 row and column
    h = (kh - 1) * dilation[0] + 1 + d.int(0, 6) - 2 * padding[0]
    w = (kw - 1) * dilation[1] + 1 + d.int(0, 6) - 2 * padding[1]
    h, w = max(h, 1), max(w, 1)
    if d.coin(0.2):  # shared stride/padding/dilation given as ints
        stride, padding, dilation = stride[0], padding[0], dilation[0]
        h, w = max(h, kh * 2 + 1), max(w, kw * 2 + 1)
    bias = d.coin()
    xs = [d.x((n, cg * groups, h, w)), d.x((og * groups, cg, kh, kw))] + ([d.x((og * groups,))] if bias else [])
    k = max(cg * kh * kw, n * h * w, og * kh * kw, 1)
    return (xs, lambda L, *t: L.F.conv2d(*t, stride=stride, padding=padding, dilation=dilation, groups=groups),
            k, f"stride={stride} padding={padding} dilation={dilation} groups={groups} bias={bias}")


@spec("max_pool2d", weight=3)
def _max_pool(d):
    kh, kw = d.int(1, 3), d.int(1, 3)
    stride = d.pick([None, 1, 2, (2, 1), 3])
    padding = (d.int(0, kh // 2), d.int(0, kw // 2))
    dilation = d.pick([1, 1, 2, (1, 2)])
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    h = (kh - 1) * dh + 1 + d.int(0, 6)
    w = (kw - 1) * dw + 1 + d.int(0, 6)
    shape = (d.pick([0, 1, 2]), d.pick([1, 3]), h, w)
    return ([d.x(shape)], lambda L, x: L.F.max_pool2d(x, (kh, kw), stride, padding, dilation), 1,
            f"kernel=({kh}, {kw}) stride={stride} padding={padding} dilation={dilation}")


@spec("avg_pool2d", weight=2)
def _avg_pool(d):
    kh, kw = d.int(1, 4), d.int(1, 3)
    stride = d.pick([None, 1, 2, (1, 3)])
    padding = (d.int(0, kh // 2), d.int(0, kw // 2))
    include = d.coin()
    shape = (d.pick([0, 1, 2]), d.pick([1, 3]), kh + d.int(0, 6), kw + d.int(0, 6))
    return ([d.x(shape)],
            lambda L, x: L.F.avg_pool2d(x, (kh, kw), stride, padding, count_include_pad=include),
            kh * kw, f"kernel=({kh}, {kw}) stride={stride} padding={padding} count_include_pad={include}")


@spec("scaled_dot_product_attention", weight=6)
def _sdpa(d):
    b, h = d.size(0.05), d.pick([1, 2, 3])
    tq, tk = d.pick([1, 2, 5, 17, 33]), d.pick([1, 3, 5, 17, 64])
    dq, dv = d.pick([1, 4, 8, 16]), d.pick([1, 4, 8])
    if d.coin(0.2):  # past a tile of query rows and of keys
        tq, tk, dq, dv = d.pick([65, 129]), d.pick([129, 200]), d.pick([16, 64]), d.pick([16, 64])
        b, h = min(b, 2), 1
    lead = d.pick([(b, h), (h,), ()])
    form = d.pick(["plain", "causal", "bool", "float", "scale"])
    kwargs, note = {}, form
    mask = None
    if form == "causal":
        kwargs["is_causal"] = True
    elif form in ("bool", "float"):
        mshape = d.pick([(tq, tk), lead + (tq, tk), (1,) * len(lead) + (1, tk)])
        if form == "bool":
            mask = d.rng.random(mshape) < 0.6
            # NOTE: every query row keeps key 0. A query that sees no key is a deliberate difference:
            # engine returns 0 and zero gradients for it, PyTorch's CPU kernels return NaN.
            mask[..., 0] = True
        else:
            mask = (d.rng.standard_normal(mshape) * 2).astype(d.dtype)
        note += f" mask {mshape}"
    elif form == "scale":
        kwargs["scale"] = float(d.pick([0.1, 1.0, 2.5]))
        note += f" {kwargs['scale']}"
    xs = [d.x(lead + (tq, dq)), d.x(lead + (tk, dq)), d.x(lead + (tk, dv))]

    def fn(L, q, k, v):
        m = None if mask is None else L.const(mask)
        return L.F.scaled_dot_product_attention(q, k, v, attn_mask=m, **kwargs)
    return xs, fn, max(tq, tk, dq, dv), note


@spec("embedding", weight=2)
def _embedding(d):
    v, dim = d.pick([1, 3, 7, 50]), d.pick([1, 4, 13])
    idx = d.rng.integers(0, v, size=d.shape(d.int(1, 2), zero=0.05))
    pad = d.pick([None, 0, v - 1])
    kwargs = {} if pad is None else {"padding_idx": pad}
    return ([d.x((v, dim))], lambda L, w: L.F.embedding(L.const(idx), w, **kwargs),
            max(idx.size, 1), f"indices {idx.shape} padding_idx={pad}")


@spec("dropout_identity")
def _dropout(d):
    """Only the draws that are not random: p = 0, p = 1 and eval mode."""
    p, training = d.pick([(0.0, True), (1.0, True), (0.5, False)])
    return ([d.x(d.shape(d.int(0, 3)))], lambda L, x: L.F.dropout(x, p=p, training=training), 1,
            f"p={p} training={training}")


# ---- building cases --------------------------------------------------------------------------
def _materialize(d, spec_in):
    """An In from a spec's ("in", shape, domain, grad[, layout]) tuple."""
    _, shape, domain, grad = spec_in[:4]
    array = _values(d.rng, shape, domain).astype(d.dtype)
    requires_grad = bool(grad and d.rng.random() < 0.75)
    if len(spec_in) > 4:
        layout = spec_in[4]
    else:
        options = ["contiguous", "strided"] + (["transposed"] if len(shape) >= 2 else [])
        layout = options[int(d.rng.integers(len(options)))] if d.rng.random() < 0.5 else "contiguous"
        if not shape:
            layout = "contiguous"  # a 0-d tensor has no stride to vary
    return In(array, requires_grad, layout)


def _order():
    """One pass over the specs: every spec once, then those of weight >= 2 again, and so on, so
    the first len(SPECS) cases cover every op."""
    top = max(w for _, w in SPECS.values())
    return [name for r in range(top) for name, (_, w) in SPECS.items() if w > r]


def make_case(index, seed=0):
    """Case number `index` of the stream for `seed`: specs taken in passes of _order() (each
    as often as its weight), float32 and float64 alternating."""
    order = _order()
    name = order[index % len(order)]
    draw_fn = SPECS[name][0]
    case_seed = seed * 1_000_003 + index
    rng = np.random.default_rng(case_seed)
    # neighbours in a pass differ in dtype, and each position flips from one pass to the next
    dtype = DTYPES[(index // len(order)) % 2 ^ (index % len(order)) % 2]
    d = _Draw(rng, dtype)
    out = draw_fn(d)
    ins, fn, k, note = out[:4]
    inputs = [_materialize(d, i) for i in ins]
    return Case(id=f"{name}-{index}", op=name, inputs=inputs, fn=fn, k=k, note=note, dtype=dtype,
                seed=case_seed, term_scale=out[4] if len(out) > 4 else 1.0)


def cases(n, seed=0):
    return [make_case(i, seed) for i in range(n)]


def pass_length():
    """Cases in one pass over the specs (the sum of their weights)."""
    return len(_order())
