# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Fused CPU ops in Cython: each a prange loop without the GIL, in float32 or float64.

Shapes: the row ops take x (N, C), one row per sample; GELU, dropout and the optimizer updates take
flat contiguous arrays. Every function writes into outputs the caller allocated (OUT), reads its
inputs (IN) and checks their shapes before it starts. The NumPy reference in
engine/backend/numpy_ref.py (engine/optim/updates.py for the updates) is the spec each function
is tested against.
"""
from cython.parallel cimport prange
from libc.math cimport erf, exp, log, logf, sqrt, sqrtf
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport calloc, free

ctypedef fused real:
    float
    double

# Below this many elements of work a loop runs on one thread: starting a parallel region costs
# microseconds, more than a small loop saves. An element that calls exp or erf counts as eight.
cdef Py_ssize_t _PARALLEL_MIN = 32768
cdef Py_ssize_t _TRANSCENDENTAL = 8
# Blocks of rows whose weight gradients are summed separately in layer_norm_backward.
cdef Py_ssize_t _WGRAD_BLOCKS = 64

cdef double _SQRT1_2 = 0.70710678118654752440          # 1/√2
cdef double _SQRT_2_OVER_PI = 0.79788456080286535588   # √(2/π)
cdef double _INV_SQRT_2PI = 0.39894228040143267794     # 1/√(2π)
cdef double _GELU_KAPPA = 0.044715


# ---- float32 exp and erf in plain arithmetic -------------------------------------------------
# libm's expf and erff are calls, which keep every loop that uses them scalar; these are
# branch-free arithmetic (selects only) that the compiler vectorizes. float64 keeps libm: it is
# the gradient-check dtype, where speed matters less than the last ulp.
# NOTE: Cython writes an integer literal next to a float as a double literal (1 becomes 1.0),
# which silently moves float arithmetic to double; hot float expressions cast theirs (<real>1).

cdef union _Float32Bits:
    float f
    int32_t i


cdef inline float _pow2f(int32_t n) noexcept nogil:
    """2ⁿ for -126 ≤ n ≤ 127, written straight into the exponent bits."""
    cdef _Float32Bits b
    b.i = (n + 127) << 23
    return b.f


cdef inline float _expf(float t) noexcept nogil:
    """exp(t) within 2 ulp: t = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two so n·ln2 is exact),
    exp(r) by Cephes' degree-5 polynomial, times 2ⁿ as two factors so that results from
    overflow (inf) down to the subnormals come out right. NaN stays NaN (the clamps keep it)."""
    cdef float lo = -104.0, hi = 89.0
    cdef float c = lo if t < lo else t  # exp(-104) is below the smallest subnormal
    c = hi if c > hi else c  # exp(89) overflows
    # n = round(c·log2 e): the offset makes the argument positive, so truncation rounds it. A NaN
    # takes n from 0 (converting NaN to an integer is undefined) and stays NaN through r.
    cdef float c_n = c if c == c else 0
    cdef int32_t n = <int32_t>(c_n * <float>1.44269504088896341 + <float>200.5) - 200
    cdef float r = c - <float>n * <float>0.693359375
    r = r - <float>n * <float>-2.12194440e-4
    cdef float p = <float>1.9875691500e-4
    p = p * r + <float>1.3981999507e-3
    p = p * r + <float>8.3334519073e-3
    p = p * r + <float>4.1665795894e-2
    p = p * r + <float>1.6666665459e-1
    p = p * r + <float>5.0000001201e-1
    p = p * r * r + r + <float>1
    cdef int32_t half = n >> 1
    return p * _pow2f(half) * _pow2f(n - half)


cdef inline float _erff(float x) noexcept nogil:
    """erf(x) within a few ulp: x·P(x²)/Q(x²) on [-4, 4], the rational minimax fit Eigen and
    XLA use for float (the GEMM's GELU epilogue uses the same); ±1 outside, as erff rounds."""
    cdef float edge = 4.0  # a float, so the comparisons stay in float
    cdef float z = -edge if x < -edge else x
    z = edge if z > edge else z
    cdef float z2 = z * z
    cdef float p = <float>-2.72614225801306e-10
    p = p * z2 + <float>2.77068142495902e-08
    p = p * z2 + <float>-2.10102402082508e-06
    p = p * z2 + <float>-5.69250639462346e-05
    p = p * z2 + <float>-7.34990630326855e-04
    p = p * z2 + <float>-2.95459980854025e-03
    p = p * z2 + <float>-1.60960333262415e-02
    cdef float q = <float>-1.45660718464996e-05
    q = q * z2 + <float>-2.13374055278905e-04
    q = q * z2 + <float>-1.68282697438203e-03
    q = q * z2 + <float>-7.37332916720468e-03
    q = q * z2 + <float>-1.42647390514189e-02
    return z * p / q


cdef inline real _exp(real x) noexcept nogil:
    if real is float:
        return _expf(x)
    else:
        return exp(x)


cdef inline real _log(real x) noexcept nogil:
    if real is float:
        return logf(x)
    else:
        return log(x)


cdef inline real _sqrt(real x) noexcept nogil:
    if real is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline real _erf(real x) noexcept nogil:
    if real is float:
        return _erff(x)
    else:
        return erf(x)


def softmax_forward(real[:, ::1] out, const real[:, ::1] x, bint log_space=False):
    """OUT out: softmax (or log-softmax) of each row of IN x, in the max-shifted form."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i, j
    cdef real row_max, total, log_total
    if out.shape[0] != n or out.shape[1] != c:
        raise ValueError(f"softmax_forward: out shape ({out.shape[0]}, {out.shape[1]}) != x shape ({n}, {c})")
    cdef _Span spans[2]
    spans[0], spans[1] = _span2(out), _span2(x)
    _check_disjoint("softmax_forward", ("out", "x"), spans, 1)
    if c == 0:
        return
    with nogil:
        for i in prange(n, schedule='static'):
            row_max = x[i, 0]
            for j in range(1, c):
                if x[i, j] > row_max:
                    row_max = x[i, j]
            total = 0
            for j in range(c):
                out[i, j] = _exp(x[i, j] - row_max)
                total = total + out[i, j]
            if log_space:
                log_total = _log(total)
                for j in range(c):
                    out[i, j] = x[i, j] - row_max - log_total
            else:
                for j in range(c):
                    out[i, j] = out[i, j] / total


def softmax_backward(real[:, ::1] dx, const real[:, ::1] dy, const real[:, ::1] y, bint log_space=False):
    """OUT dx from IN dy and the forward's output y.

    softmax:     dx = y * (dy - sum(dy * y))
    log-softmax: dx = dy - exp(y) * sum(dy)
    """
    cdef Py_ssize_t n = y.shape[0], c = y.shape[1], i, j
    cdef real acc
    if dx.shape[0] != n or dx.shape[1] != c or dy.shape[0] != n or dy.shape[1] != c:
        raise ValueError(f"softmax_backward: dx, dy and y must all have shape ({n}, {c})")
    cdef _Span spans[3]
    spans[0], spans[1], spans[2] = _span2(dx), _span2(dy), _span2(y)
    _check_disjoint("softmax_backward", ("dx", "dy", "y"), spans, 1)
    with nogil:
        for i in prange(n, schedule='static'):
            acc = 0
            if log_space:
                for j in range(c):
                    acc = acc + dy[i, j]
                for j in range(c):
                    dx[i, j] = dy[i, j] - _exp(y[i, j]) * acc
            else:
                for j in range(c):
                    acc = acc + dy[i, j] * y[i, j]
                for j in range(c):
                    dx[i, j] = y[i, j] * (dy[i, j] - acc)


cdef int _check_shape(str op, str name, tuple got, tuple want) except -1:
    if got != want:
        raise ValueError(f"{op}: {name} has shape {got}, expected {want}")
    return 0


# ----------------------------------------------------------------------------- overlap checks

# The byte range [lo, lo + n) an array covers: every memoryview here is C-contiguous, so it is one
# block; a None or empty array covers nothing (n = 0).
ctypedef struct _Span:
    size_t lo
    size_t n


cdef inline _Span _span1(const real[::1] a) noexcept:
    cdef _Span s
    s.lo = 0
    s.n = 0
    if a is not None and a.shape[0] > 0:
        s.lo = <size_t>&a[0]
        s.n = a.shape[0] * sizeof(real)
    return s


cdef inline _Span _span2(const real[:, ::1] a) noexcept:
    cdef _Span s
    s.lo = 0
    s.n = 0
    if a is not None and a.shape[0] > 0 and a.shape[1] > 0:
        s.lo = <size_t>&a[0, 0]
        s.n = a.shape[0] * a.shape[1] * sizeof(real)
    return s


cdef inline _Span _span_index(const int64_t[::1] a) noexcept:
    cdef _Span s
    s.lo = 0
    s.n = 0
    if a is not None and a.shape[0] > 0:
        s.lo = <size_t>&a[0]
        s.n = a.shape[0] * sizeof(int64_t)
    return s


cdef int _check_disjoint(str op, tuple names, const _Span* spans, int n_out) except -1:
    """Refuses an output (the first n_out spans) that shares memory with an input or another
    output: the loops read inputs after they start writing outputs, so an overlap would give
    wrong numbers, not an error."""
    cdef int i, j, n = len(names)
    for i in range(n_out):
        for j in range(i + 1, n):
            if (spans[i].n and spans[j].n and spans[i].lo < spans[j].lo + spans[j].n
                    and spans[j].lo < spans[i].lo + spans[i].n):
                raise ValueError(f"{op}: {names[i]} shares memory with {names[j]}; pass arrays "
                                 "that do not overlap")
    return 0


# NOTE: the row sums below keep four partial sums in double: without -ffast-math the compiler may
# not reorder float additions, so a single accumulator would serialise the loop on the add latency.

cdef inline double _sum(const real* x, Py_ssize_t n) noexcept nogil:
    """Σ x."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t j
    for j in range(0, n - 3, 4):
        s0 += x[j]
        s1 += x[j + 1]
        s2 += x[j + 2]
        s3 += x[j + 3]
    for j in range(n - n % 4, n):
        s0 += x[j]
    return (s0 + s1) + (s2 + s3)


cdef inline double _sum_sq_dev(const real* x, double mu, Py_ssize_t n) noexcept nogil:
    """Σ (x - mu)²."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t j
    for j in range(0, n - 3, 4):
        s0 += (x[j] - mu) * (x[j] - mu)
        s1 += (x[j + 1] - mu) * (x[j + 1] - mu)
        s2 += (x[j + 2] - mu) * (x[j + 2] - mu)
        s3 += (x[j + 3] - mu) * (x[j + 3] - mu)
    for j in range(n - n % 4, n):
        s0 += (x[j] - mu) * (x[j] - mu)
    return (s0 + s1) + (s2 + s3)


cdef inline double _dot_dev(const real* a, const real* x, double mu, Py_ssize_t n) noexcept nogil:
    """Σ a·(x - mu)."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t j
    for j in range(0, n - 3, 4):
        s0 += a[j] * (x[j] - mu)
        s1 += a[j + 1] * (x[j + 1] - mu)
        s2 += a[j + 2] * (x[j + 2] - mu)
        s3 += a[j + 3] * (x[j + 3] - mu)
    for j in range(n - n % 4, n):
        s0 += a[j] * (x[j] - mu)
    return (s0 + s1) + (s2 + s3)


# ----------------------------------------------------------------------------- layer norm

def layer_norm_forward(real[:, ::1] y, real[::1] mean, real[::1] rstd, const real[:, ::1] x,
                       const real[::1] weight, const real[::1] bias, double eps):
    """OUT y = (x - mean)·rstd·weight + bias (N, C) and the row statistics mean, rstd (N,) of IN x,
    rstd = 1/√(var + eps) with var biased; IN weight, bias (C,) may each be None."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i, j
    cdef bint has_weight = weight is not None, has_bias = bias is not None
    cdef real mu, rs, v
    _check_shape("layer_norm_forward", "y", (y.shape[0], y.shape[1]), (n, c))
    _check_shape("layer_norm_forward", "mean", (mean.shape[0],), (n,))
    _check_shape("layer_norm_forward", "rstd", (rstd.shape[0],), (n,))
    if has_weight:
        _check_shape("layer_norm_forward", "weight", (weight.shape[0],), (c,))
    if has_bias:
        _check_shape("layer_norm_forward", "bias", (bias.shape[0],), (c,))
    cdef _Span spans[6]
    spans[0], spans[1], spans[2] = _span2(y), _span1(mean), _span1(rstd)
    spans[3], spans[4], spans[5] = _span2(x), _span1(weight), _span1(bias)
    _check_disjoint("layer_norm_forward", ("y", "mean", "rstd", "x", "weight", "bias"), spans, 3)
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n * c > _PARALLEL_MIN):
            # two passes over the row (mean, then the squared deviations): a constant row gets
            # var = 0 exactly, where E[x²] - E[x]² would cancel to noise
            mu = <real>(_sum(&x[i, 0], c) / c)
            rs = <real>(1 / sqrt(_sum_sq_dev(&x[i, 0], mu, c) / c + eps))
            mean[i] = mu
            rstd[i] = rs
            for j in range(c):
                v = (x[i, j] - mu) * rs
                if has_weight:
                    v = v * weight[j]
                if has_bias:
                    v = v + bias[j]
                y[i, j] = v


def layer_norm_backward(real[:, ::1] dx, real[::1] dweight, real[::1] dbias, const real[:, ::1] dy,
                        const real[:, ::1] x, const real[::1] weight, const real[::1] mean,
                        const real[::1] rstd):
    """OUT dx (N, C) and, when IN weight is given, OUT dweight, dbias (C,) (else all three None),
    from IN dy and the forward's x, weight and saved mean, rstd.

    In the forward pass every element of a row moved its mean and variance, so with
    xhat = (x - mean)·rstd and g = dy·weight: dx = rstd·(g - mean(g) - xhat·mean(g·xhat)) over the
    row; the weights were shared by all rows: dweight = Σ_rows dy·xhat, dbias = Σ_rows dy.
    NOTE: the rows are cut into blocks that depend on N alone; each block sums its weight gradients
    into its own partial row and the partial rows are added in block order, so no two threads
    write one element and the result is the same for any number of threads."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i, j, k
    cdef Py_ssize_t nblocks = min(n, _WGRAD_BLOCKS)
    cdef bint has_weight = weight is not None
    cdef bint parallel = n * c > _PARALLEL_MIN
    cdef double* partial = NULL  # (nblocks, 2, C): Σ dy·xhat, then Σ dy, of each block's rows
    cdef double* pw
    cdef double sw, sb
    cdef const real* g
    cdef real mu, rs, mean_g, mean_gx, xhat
    _check_shape("layer_norm_backward", "dx", (dx.shape[0], dx.shape[1]), (n, c))
    _check_shape("layer_norm_backward", "dy", (dy.shape[0], dy.shape[1]), (n, c))
    _check_shape("layer_norm_backward", "mean", (mean.shape[0],), (n,))
    _check_shape("layer_norm_backward", "rstd", (rstd.shape[0],), (n,))
    if (dweight is None) != (not has_weight) or (dbias is None) != (not has_weight):
        raise ValueError("layer_norm_backward: dweight and dbias must be given exactly when weight is")
    if has_weight:
        _check_shape("layer_norm_backward", "weight", (weight.shape[0],), (c,))
        _check_shape("layer_norm_backward", "dweight", (dweight.shape[0],), (c,))
        _check_shape("layer_norm_backward", "dbias", (dbias.shape[0],), (c,))
    cdef _Span spans[8]
    spans[0], spans[1], spans[2] = _span2(dx), _span1(dweight), _span1(dbias)
    spans[3], spans[4], spans[5], spans[6], spans[7] = _span2(dy), _span2(x), _span1(weight), _span1(mean), _span1(rstd)
    _check_disjoint("layer_norm_backward", ("dx", "dweight", "dbias", "dy", "x", "weight", "mean", "rstd"),
                    spans, 3)
    if has_weight:
        partial = <double*> calloc(nblocks * 2 * c + 1, sizeof(double))
        if partial == NULL:
            raise MemoryError("layer_norm_backward: no memory for the weight-gradient partial sums")
    try:
        with nogil:
            for k in prange(nblocks, schedule='static', use_threads_if=parallel):
                pw = partial + k * 2 * c if has_weight else NULL
                for i in range(k * n // nblocks, (k + 1) * n // nblocks):
                    mu = mean[i]
                    rs = rstd[i]
                    g = &dy[i, 0]
                    if has_weight:  # g = dy·weight, kept in dx's row until dx overwrites it
                        for j in range(c):
                            dx[i, j] = dy[i, j] * weight[j]
                        g = &dx[i, 0]
                    mean_g = <real>(_sum(g, c) / c)
                    mean_gx = <real>(rs * _dot_dev(g, &x[i, 0], mu, c) / c)
                    for j in range(c):
                        xhat = (x[i, j] - mu) * rs
                        if has_weight:
                            pw[j] += dy[i, j] * xhat
                            pw[c + j] += dy[i, j]
                        dx[i, j] = rs * (g[j] - mean_g - xhat * mean_gx)
            if has_weight:
                for j in prange(c, schedule='static', use_threads_if=parallel):
                    sw = 0
                    sb = 0
                    for k in range(nblocks):
                        sw = sw + partial[k * 2 * c + j]
                        sb = sb + partial[k * 2 * c + c + j]
                    dweight[j] = <real>sw
                    dbias[j] = <real>sb
    finally:
        free(partial)


# ----------------------------------------------------------------------------- cross-entropy

cdef int _check_targets(str op, const int64_t[::1] target, Py_ssize_t c, int64_t ignore_index) except -1:
    """Refuses a target outside [0, C) that is not ignore_index: the kernels index rows with it."""
    cdef Py_ssize_t i
    for i in range(target.shape[0]):
        if target[i] != ignore_index and not 0 <= target[i] < c:
            raise IndexError(f"{op}: target[{i}] = {target[i]} is out of range for {c} classes")
    return 0


def cross_entropy_forward(real[::1] losses, real[::1] lse, const real[:, ::1] logits,
                          const int64_t[::1] target, int64_t ignore_index):
    """OUT losses = lse - logits[target] (0 where target is ignore_index) and OUT lse, the
    log-sum-exp of each row of IN logits (N, C); IN target (N,) class indices."""
    cdef Py_ssize_t n = logits.shape[0], c = logits.shape[1], i, j
    cdef int64_t t
    cdef real m
    cdef double total
    op = "cross_entropy_forward"
    _check_shape(op, "losses", (losses.shape[0],), (n,))
    _check_shape(op, "lse", (lse.shape[0],), (n,))
    _check_shape(op, "target", (target.shape[0],), (n,))
    cdef _Span spans[4]
    spans[0], spans[1], spans[2], spans[3] = _span1(losses), _span1(lse), _span2(logits), _span_index(target)
    _check_disjoint(op, ("losses", "lse", "logits", "target"), spans, 2)
    if n and not c:
        raise ValueError(f"{op}: logits has shape ({n}, 0): no classes to take a softmax over")
    _check_targets(op, target, c, ignore_index)
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n * c * _TRANSCENDENTAL > _PARALLEL_MIN):
            # log Σ exp(x) = m + log Σ exp(x - m) with m the row max: every exponent is <= 0, so
            # logits near 1e4 stay finite
            m = logits[i, 0]
            for j in range(1, c):
                if logits[i, j] > m:
                    m = logits[i, j]
            total = 0
            for j in range(c):
                total = total + _exp(logits[i, j] - m)
            lse[i] = m + <real>log(total)
            t = target[i]
            losses[i] = 0 if t == ignore_index else lse[i] - logits[i, t]


def cross_entropy_backward(real[:, ::1] dlogits, const real[::1] dlosses, const real[:, ::1] logits,
                           const int64_t[::1] target, const real[::1] lse, int64_t ignore_index):
    """OUT dlogits = dlosses[:, None]·(softmax(logits) - onehot(target)) (N, C), zero rows where
    target is ignore_index; the softmax comes from the forward's IN lse as exp(logits - lse)."""
    cdef Py_ssize_t n = logits.shape[0], c = logits.shape[1], i, j
    cdef int64_t t
    cdef real d, l
    op = "cross_entropy_backward"
    _check_shape(op, "dlogits", (dlogits.shape[0], dlogits.shape[1]), (n, c))
    _check_shape(op, "dlosses", (dlosses.shape[0],), (n,))
    _check_shape(op, "lse", (lse.shape[0],), (n,))
    _check_shape(op, "target", (target.shape[0],), (n,))
    cdef _Span spans[5]
    spans[0], spans[1], spans[2] = _span2(dlogits), _span1(dlosses), _span2(logits)
    spans[3], spans[4] = _span_index(target), _span1(lse)
    _check_disjoint(op, ("dlogits", "dlosses", "logits", "target", "lse"), spans, 1)
    _check_targets(op, target, c, ignore_index)
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n * c * _TRANSCENDENTAL > _PARALLEL_MIN):
            t = target[i]
            if t == ignore_index:
                for j in range(c):
                    dlogits[i, j] = 0
            else:
                d = dlosses[i]
                l = lse[i]
                for j in range(c):
                    dlogits[i, j] = _exp(logits[i, j] - l) * d
                dlogits[i, t] = (_exp(logits[i, t] - l) - <real>1) * d


# ----------------------------------------------------------------------------- element-wise ops

cdef int _check_elementwise(str op, tuple names, real[::1] out, const real[::1] a,
                            const real[::1] b) except -1:
    """The arguments of an element-wise op: OUT `out` and IN a, b, flat and of a's length, with
    `out` sharing memory with neither; `names` names them in that order. A unary op passes its
    input as both a and b and names only two."""
    cdef Py_ssize_t n = a.shape[0]
    _check_shape(op, names[0], (out.shape[0],), (n,))
    if len(names) > 2:
        _check_shape(op, names[2], (b.shape[0],), (n,))
    cdef _Span spans[3]
    spans[0], spans[1], spans[2] = _span1(out), _span1(a), _span1(b)
    _check_disjoint(op, names, spans, 1)
    return 0


# ----------------------------------------------------------------------------- ReLU

def relu_forward(real[::1] y, const real[::1] x):
    """OUT y = max(x, 0) of IN x (flat); NaN stays NaN, like numpy_ref's np.maximum."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef real v
    _check_elementwise("relu_forward", ("y", "x"), y, x, x)
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n > _PARALLEL_MIN):
            v = x[i]
            y[i] = 0 if v <= 0 else v  # a NaN fails `<= 0` and passes through


def relu_backward(real[::1] dx, const real[::1] dy, const real[::1] y):
    """OUT dx = dy where the forward's output y > 0, else 0 (IN dy, y flat)."""
    cdef Py_ssize_t n = y.shape[0], i
    cdef real g
    _check_elementwise("relu_backward", ("dx", "y", "dy"), dx, y, dy)
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n > _PARALLEL_MIN):
            g = dy[i]  # loaded unconditionally, so the select below vectorizes
            dx[i] = g if y[i] > 0 else 0


# ----------------------------------------------------------------------------- GELU

# NOTE: the tanh form is computed as a sigmoid, (1 + tanh u)/2 = σ(2u) = 1/(1 + exp(-2u)): one exp
# costs a fifth of libm's tanh, and no branch on the sign of u (half of them mispredicted on
# random inputs) is needed. exp(-2u) may overflow to inf, which gives the right limit σ = 0.

cdef inline real _gelu_tanh_u(real x) noexcept nogil:
    """u = √(2/π)·(x + κx³), the argument of the tanh."""
    return <real>_SQRT_2_OVER_PI * (x + <real>_GELU_KAPPA * x * x * x)


def gelu_forward(real[::1] y, const real[::1] x, bint tanh_approx=False):
    """OUT y = x·Φ(x) of IN x (flat), Φ the standard normal CDF: (1 + erf(x/√2))/2, or with
    tanh_approx (1 + tanh u)/2 with u = √(2/π)·(x + 0.044715·x³)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef real v
    _check_elementwise("gelu_forward", ("y", "x"), y, x, x)
    # One loop per form, so neither holds a branch that keeps it from vectorizing.
    with nogil:
        if tanh_approx:
            for i in prange(n, schedule='static', use_threads_if=n * _TRANSCENDENTAL > _PARALLEL_MIN):
                v = x[i]
                y[i] = v / (<real>1 + _exp(<real>-2 * _gelu_tanh_u(v)))
        else:
            for i in prange(n, schedule='static', use_threads_if=n * _TRANSCENDENTAL > _PARALLEL_MIN):
                v = x[i]
                y[i] = v * <real>0.5 * (<real>1 + _erf(v * <real>_SQRT1_2))


def gelu_backward(real[::1] dx, const real[::1] dy, const real[::1] x, bint tanh_approx=False):
    """OUT dx = dy·GELU'(x) from IN dy, x (flat). Exact: GELU' = Φ(x) + x·φ(x) with
    φ(x) = exp(-x²/2)/√(2π). tanh: GELU = x·s with s = σ(2u), so GELU' = s + 2x·s(1 - s)·u' with
    u' = √(2/π)·(1 + 3κx²), and s(1 - s) = e·s² for e = exp(-2u)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef real v, z, e, s
    _check_elementwise("gelu_backward", ("dx", "x", "dy"), dx, x, dy)
    with nogil:
        if tanh_approx:
            for i in prange(n, schedule='static', use_threads_if=n * _TRANSCENDENTAL > _PARALLEL_MIN):
                v = x[i]
                # e capped at exp(80) so e·s² stays finite (inf·0 would be NaN); s < 1e-34 there
                z = <real>-2 * _gelu_tanh_u(v)
                e = _exp(z if z < 80 else 80)
                s = <real>1 / (<real>1 + e)
                dx[i] = dy[i] * (s + <real>2 * v * e * s * s * <real>_SQRT_2_OVER_PI
                                 * (<real>1 + <real>(3 * _GELU_KAPPA) * v * v))
        else:
            for i in prange(n, schedule='static', use_threads_if=n * _TRANSCENDENTAL > _PARALLEL_MIN):
                v = x[i]
                dx[i] = dy[i] * (<real>0.5 * (<real>1 + _erf(v * <real>_SQRT1_2))
                                 + v * <real>_INV_SQRT_2PI * _exp(<real>-0.5 * v * v))


# ----------------------------------------------------------------------------- dropout

# splitmix64's increment, 2⁶⁴/φ rounded to odd
cdef uint64_t _GAMMA = 0x9E3779B97F4A7C15ULL


cdef inline uint64_t _splitmix64(uint64_t z) noexcept nogil:
    """The output function of the splitmix64 generator (Steele, Lea, Flood 2014): a bijective
    mix whose outputs for consecutive inputs pass BigCrush."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def dropout_mask(real[::1] mask, uint64_t seed, double p):
    """OUT mask (flat): 1/(1 - p) with probability 1 - p, else 0.

    Element i keeps when u >= p, u the top 53 bits of splitmix64(seed + (i + 1)·γ) over 2⁵³: the
    i-th draw of a splitmix64 stream, computed from i alone, so the mask depends only on the seed
    and never on the number of threads."""
    cdef Py_ssize_t n = mask.shape[0], i
    cdef real scale
    cdef double u
    if not 0 <= p <= 1:
        raise ValueError(f"dropout_mask: p must be in [0, 1], got {p}")
    scale = <real>(1 / (1 - p)) if p < 1 else 0
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n > _PARALLEL_MIN):
            u = (_splitmix64(seed + (<uint64_t>i + 1) * _GAMMA) >> 11) / 9007199254740992.0  # 2⁵³
            mask[i] = scale if u >= p else 0


# ----------------------------------------------------------------------------- optimizer updates

def sgd_update(real[::1] param, const real[::1] grad, real[::1] buf, double lr, double momentum,
               double dampening, bint nesterov, double weight_decay, bint first_step):
    """engine/optim/updates.py's sgd_update in one pass over flat arrays: IN/OUT param and buf (the
    momentum buffer, None without momentum), IN grad. Coefficients are rounded to the arrays'
    dtype first, as NumPy does with a Python float."""
    cdef Py_ssize_t n = param.shape[0], i
    cdef bint has_momentum = momentum != 0, has_decay = weight_decay != 0
    cdef real lr_ = lr, m = momentum, keep = 1 - dampening, wd = weight_decay, d
    _check_shape("sgd_update", "grad", (grad.shape[0],), (n,))
    if has_momentum:
        if buf is None:
            raise ValueError("sgd_update: momentum needs a momentum buffer, got buf=None")
        _check_shape("sgd_update", "buf", (buf.shape[0],), (n,))
    cdef _Span spans[3]
    spans[0], spans[1], spans[2] = _span1(param), _span1(buf), _span1(grad)
    _check_disjoint("sgd_update", ("param", "buf", "grad"), spans, 2)
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n > _PARALLEL_MIN):
            d = grad[i]
            if has_decay:
                d = d + wd * param[i]
            if has_momentum:
                if first_step:
                    buf[i] = d
                else:
                    buf[i] = m * buf[i] + keep * d
                d = d + m * buf[i] if nesterov else buf[i]
            param[i] = param[i] - lr_ * d


def adam_update(real[::1] param, const real[::1] grad, real[::1] m, real[::1] v, long step, double lr,
                double beta1, double beta2, double eps, double weight_decay, bint decoupled):
    """engine/optim/updates.py's adam_update (Adam, or AdamW when decoupled) in one pass over flat
    arrays: IN/OUT param and the moments m, v; IN grad; step counts from 1. Coefficients are
    rounded to the arrays' dtype first, as NumPy does with a Python float."""
    cdef Py_ssize_t n = param.shape[0], i
    # AdamW scales param by `decay` (exactly 1 for Adam); Adam adds wd·param to the gradient.
    cdef bint decay_grad = weight_decay != 0 and not decoupled
    cdef real decay = 1 - lr * weight_decay if decoupled else 1, wd = weight_decay, eps_ = eps
    cdef real b1 = beta1, c1 = 1 - beta1, b2 = beta2, c2 = 1 - beta2
    # bias corrections: m̂ = m/(1 - β1^t), v̂ = v/(1 - β2^t); lr/(1 - β1^t) is folded in once
    cdef real bias2 = 1 - beta2 ** step, step_size = lr / (1 - beta1 ** step), g
    _check_shape("adam_update", "grad", (grad.shape[0],), (n,))
    _check_shape("adam_update", "m", (m.shape[0],), (n,))
    _check_shape("adam_update", "v", (v.shape[0],), (n,))
    if step < 1:  # the bias corrections divide by 1 - β^step
        raise ValueError(f"adam_update: step must be >= 1 (it counts from 1), got {step}")
    cdef _Span spans[4]
    spans[0], spans[1], spans[2], spans[3] = _span1(param), _span1(m), _span1(v), _span1(grad)
    _check_disjoint("adam_update", ("param", "m", "v", "grad"), spans, 3)
    with nogil:
        for i in prange(n, schedule='static', use_threads_if=n > _PARALLEL_MIN):
            # NOTE: no branch on a store in the body, so the compiler vectorizes it (the
            # square root and division dominate); the select keeps inf/NaN params exact.
            g = grad[i] + wd * param[i] if decay_grad else grad[i]
            param[i] = param[i] * decay
            m[i] = b1 * m[i] + c1 * g
            v[i] = b2 * v[i] + c2 * g * g
            # eps outside the root, after the bias correction (PyTorch's form)
            param[i] = param[i] - step_size * m[i] / (_sqrt(v[i] / bias2) + eps_)
