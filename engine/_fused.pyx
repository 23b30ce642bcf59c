# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Fused CPU ops in Cython: each a prange loop over rows, without the GIL.

Shapes: x is (N, C), one row per sample; every function writes into an output the caller
allocated (OUT) and reads its inputs (IN). The NumPy reference in engine/backend/numpy_ref.py is
the spec each function is tested against.
"""
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf

ctypedef fused real:
    float
    double


cdef inline real _exp(real x) noexcept nogil:
    if real is float:
        return expf(x)
    else:
        return exp(x)


cdef inline real _log(real x) noexcept nogil:
    if real is float:
        return logf(x)
    else:
        return log(x)


def softmax_forward(real[:, ::1] out, const real[:, ::1] x, bint log_space=False):
    """OUT out: softmax (or log-softmax) of each row of IN x, in the max-shifted form."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], i, j
    cdef real row_max, total, log_total
    if out.shape[0] != n or out.shape[1] != c:
        raise ValueError(f"softmax_forward: out shape ({out.shape[0]}, {out.shape[1]}) != x shape ({n}, {c})")
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
