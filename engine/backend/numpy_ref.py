"""Pure NumPy implementation of every engine kernel: the spec, the test oracle and the NumPy baseline.

Each function takes NumPy (or CuPy) arrays of any layout, never mutates them, and returns new
arrays of the input dtype (float32 or float64), accumulating in that dtype unless its docstring
says otherwise. Everything is vectorized: Python loops walk only the KH·KW kernel offsets or
blocks of a large dimension, which bound the size of temporaries.

Shape legend
  N       batch (the rows of linear, layer norm and cross-entropy)
  C       channels; features (layer norm); classes (cross-entropy)
  H, W    input height, width          OH, OW  output height, width      L = OH·OW
  O       output channels (conv)       G       groups: Cg = C/G, Og = O/G
  KH, KW  kernel height, width         M, K, P matmul sizes: (M, K) @ (K, P)
  B       batch of matrices / of attention problems            NH  attention heads
  Tq, Tk  query, key sequence lengths  D, Dv   query-key, value head size; D also the embedding size
  V       embedding rows (num_embeddings)
"""
import math

import numpy as np

from .._array import array_module

# Bound on the large temporaries (im2col columns, attention score blocks); a block is never
# smaller than one sample or one query row.
_BLOCK_BYTES = 32 << 20
# Query rows per block under is_causal: a block computes scores only up to its last visible key.
_CAUSAL_ROWS = 128


def _slices(n, step):
    """Consecutive slices of at most step items covering range(n)."""
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _per_block(bytes_per_item):
    """How many items of bytes_per_item fit in _BLOCK_BYTES (at least one)."""
    return max(1, _BLOCK_BYTES // max(1, bytes_per_item))


# ----------------------------------------------------------------------------- element-wise sum

def add(a, b):
    """a + b for two arrays of one shape: the residual adds and the gradient sums of autograd."""
    return a + b


# ----------------------------------------------------------------------------- matmul, linear

def matmul(a, b):
    """a @ b: (M, K) @ (K, P) -> (M, P), or batched (B, M, K) @ (B, K, P) -> (B, M, P)."""
    xp = array_module(a, b)
    return xp.matmul(a, b)


def linear(x, weight, bias=None, activation=None):
    """act(x @ weight.T + bias): x (N, K), weight (M, K), bias (M,) or None -> (N, M).

    activation: None, "relu" or "gelu" (exact, erf-based)."""
    xp = array_module(x, weight)
    y = xp.matmul(x, weight.T)
    if bias is not None:
        y += bias
    if activation == "relu":
        xp.maximum(y, 0, out=y)
    elif activation == "gelu":
        y = gelu_forward(y)
    elif activation is not None:
        raise ValueError(f"linear: unknown activation {activation!r}")
    return y


# ----------------------------------------------------------------------------- conv2d

def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pad(xp, x, padding, value=0.0):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _tap(xpad, i, j, out_hw, stride, dilation):
    """The (N, C, OH, OW) view of a padded input that kernel offset (i, j) meets:
    element [oh, ow] is xpad[oh·sh + i·dh, ow·sw + j·dw]."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return xpad[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]


def _im2col(xpad, kernel, out_hw, stride, dilation, groups):
    """Columns of a padded input (N, C, Hp, Wp) -> (N, G, Cg·KH·KW, L), a contiguous copy:
    column [n, g, (c, i, j), (oh, ow)] = xpad[n, g·Cg + c, oh·sh + i·dh, ow·sw + j·dw]."""
    xp = array_module(xpad)
    n, c = xpad.shape[:2]
    (kh, kw), (oh, ow), (sh, sw), (dh, dw) = kernel, out_hw, stride, dilation
    cg = c // groups
    s_n, s_c, s_h, s_w = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad, (n, groups, cg, kh, kw, oh, ow),
        (s_n, s_c * cg, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
    return windows.reshape(n, groups, cg * kh * kw, oh * ow)


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups=1):
    """x (N, C, H, W), weight (O, Cg, KH, KW), bias (O,) or None -> y (N, O, OH, OW) with
    y[n, o, oh, ow] = bias[o] + Σ_{c,i,j} weight[o, c, i, j]·xpad[n, g·Cg + c, oh·sh + i·dh, ow·sw + j·dw],
    g = o // Og the group of output channel o and xpad the zero padded input.

    im2col: the windows are copied into columns (per block of samples), so the convolution is one
    GEMM per sample and group, (Og, Cg·KH·KW) @ (Cg·KH·KW, L)."""
    xp = array_module(x, weight)
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    oh = _out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = _out_size(w, kw, stride[1], padding[1], dilation[1])
    xpad = _pad(xp, x, padding)
    wmat = weight.reshape(groups, o // groups, cg * kh * kw)
    y = xp.empty((n, o, oh, ow), dtype=xp.result_type(x, weight))
    ycols = y.reshape(n, groups, o // groups, oh * ow)
    for s in _slices(n, _per_block(c * kh * kw * oh * ow * x.itemsize)):
        xp.matmul(wmat, _im2col(xpad[s], (kh, kw), (oh, ow), stride, dilation, groups), out=ycols[s])
    if bias is not None:
        y += bias.reshape(o, 1, 1)
    return y


def conv2d_grad_input(dy, weight, input_shape, stride, padding, dilation, groups=1):
    """dx for conv2d_forward; dy (N, O, OH, OW), weight (O, Cg, KH, KW) -> dx of input_shape (N, C, H, W).

    In the forward pass kernel offset (i, j) read the strided window _tap(xpad, i, j) and multiplied
    it by weight[:, :, i, j]; so now weight[:, :, i, j]ᵀ @ dy is added back onto that same window
    of a zero padded buffer (windows of different offsets overlap), and the padding is cropped."""
    xp = array_module(dy, weight)
    n, c, h, w = input_shape
    o, cg, kh, kw = weight.shape
    oh, ow = dy.shape[2:]
    ph, pw = padding
    dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=xp.result_type(dy, weight))
    dycols = dy.reshape(n, groups, o // groups, oh * ow)
    wg = weight.reshape(groups, o // groups, cg, kh, kw)
    for i in range(kh):
        for j in range(kw):
            dcols = xp.matmul(wg[..., i, j].swapaxes(1, 2), dycols)  # (N, G, Cg, L)
            window = _tap(dxpad, i, j, (oh, ow), stride, dilation)
            window += dcols.reshape(n, c, oh, ow)
    return xp.ascontiguousarray(dxpad[:, :, ph:ph + h, pw:pw + w])


def conv2d_grad_weight(dy, x, weight_shape, stride, padding, dilation, groups=1):
    """dw for conv2d_forward; dy (N, O, OH, OW), x (N, C, H, W) -> dw of weight_shape (O, Cg, KH, KW).

    dw[g, o, (c, i, j)] = Σ_n Σ_l dy[n, g, o, l] · columns[n, g, (c, i, j), l]: the forward GEMM with
    the columns transposed, summed over the samples."""
    xp = array_module(dy, x)
    n, c = x.shape[:2]
    o, cg, kh, kw = weight_shape
    oh, ow = dy.shape[2:]
    xpad = _pad(xp, x, padding)
    dycols = dy.reshape(n, groups, o // groups, oh * ow)
    dw = xp.zeros((groups, o // groups, cg * kh * kw), dtype=xp.result_type(dy, x))
    for s in _slices(n, _per_block(c * kh * kw * oh * ow * x.itemsize)):
        cols = _im2col(xpad[s], (kh, kw), (oh, ow), stride, dilation, groups)
        dw += xp.matmul(dycols[s], cols.swapaxes(2, 3)).sum(axis=0)
    return dw.reshape(weight_shape)


# ----------------------------------------------------------------------------- pooling

def _first_in_bounds(xp, out, stride, pad, dilation):
    """Row (or column) of the first in-bounds element of each window: start + a multiple of dilation."""
    start = xp.arange(out, dtype=xp.int64) * stride - pad
    return xp.where(start < 0, start % dilation, start)


def max_pool2d_forward(x, kernel, stride, padding, dilation=(1, 1)):
    """Max over each window; x (N, C, H, W) -> (y, indices), both (N, C, OH, OW).

    indices (int64) hold h·W + w of each max in the unpadded input plane (PyTorch's return_indices).
    As in PyTorch the running max starts at -inf on the window's first in-bounds element, padding
    is -inf (never taken), ties keep the first max in row-major window order, and a NaN is taken
    (a later NaN over an earlier one)."""
    xp = array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    xpad = _pad(xp, x, padding, -np.inf)
    rows = xp.arange(oh, dtype=xp.int64)[:, None] * sh - ph
    cols = xp.arange(ow, dtype=xp.int64) * sw - pw
    y = xp.full((n, c, oh, ow), -np.inf, dtype=x.dtype)
    indices = xp.empty((n, c, oh, ow), dtype=xp.int64)
    indices[...] = (_first_in_bounds(xp, oh, sh, ph, dh)[:, None] * w
                    + _first_in_bounds(xp, ow, sw, pw, dw))
    for i in range(kh):
        for j in range(kw):
            v = _tap(xpad, i, j, (oh, ow), stride, dilation)
            take = v > y
            take |= xp.isnan(v)
            xp.copyto(y, v, where=take)
            xp.copyto(indices, (rows + i * dh) * w + (cols + j * dw), where=take)
    return y, indices


def max_pool2d_backward(dy, indices, input_shape):
    """dx (input_shape): each dy[n, c, oh, ow] added at dx[n, c].flat[indices[n, c, oh, ow]]
    (windows may overlap, so several gradients can land on one input)."""
    xp = array_module(dy)
    n, c, h, w = input_shape
    planes = xp.arange(n * c, dtype=xp.int64).reshape(n, c, 1, 1) * (h * w)
    dx = xp.zeros(n * c * h * w, dtype=dy.dtype)
    xp.add.at(dx, (indices + planes).ravel(), dy.ravel())
    return dx.reshape(input_shape)


def _avg_divisor(xp, size_hw, out_hw, kernel, stride, padding, count_include_pad, dtype):
    """Number of elements each window averages: KH·KW, or only the in-bounds ones, (OH, OW)."""
    if count_include_pad:
        return kernel[0] * kernel[1]
    counts = []
    for size, out, k, s, p in zip(size_hw, out_hw, kernel, stride, padding):
        start = xp.arange(out, dtype=xp.int64) * s - p
        counts.append(xp.minimum(start + k, size) - xp.maximum(start, 0))
    return (counts[0][:, None] * counts[1]).astype(dtype)


def avg_pool2d_forward(x, kernel, stride, padding, count_include_pad=True):
    """Mean over each window of the zero padded input; x (N, C, H, W) -> y (N, C, OH, OW).
    count_include_pad=False divides by the number of in-bounds elements instead of KH·KW."""
    xp = array_module(x)
    n, c, h, w = x.shape
    oh = _out_size(h, kernel[0], stride[0], padding[0], 1)
    ow = _out_size(w, kernel[1], stride[1], padding[1], 1)
    xpad = _pad(xp, x, padding)
    y = xp.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            y += _tap(xpad, i, j, (oh, ow), stride, (1, 1))
    y /= _avg_divisor(xp, (h, w), (oh, ow), kernel, stride, padding, count_include_pad, x.dtype)
    return y


def avg_pool2d_backward(dy, input_shape, kernel, stride, padding, count_include_pad=True):
    """dx (input_shape) for avg_pool2d_forward: every element of a window gets dy / divisor."""
    xp = array_module(dy)
    n, c, h, w = input_shape
    oh, ow = dy.shape[2:]
    ph, pw = padding
    g = dy / _avg_divisor(xp, (h, w), (oh, ow), kernel, stride, padding, count_include_pad, dy.dtype)
    dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            window = _tap(dxpad, i, j, (oh, ow), stride, (1, 1))
            window += g
    return xp.ascontiguousarray(dxpad[:, :, ph:ph + h, pw:pw + w])


# ----------------------------------------------------------------------------- attention

def _attention_blocks(b, nh, tq, tk, itemsize, is_causal):
    """(batch slice, query-row slice) pairs covering the problem, each score block (b, NH, r, Tk)
    within _BLOCK_BYTES; under is_causal the rows go _CAUSAL_ROWS at a time."""
    row_bytes = nh * tk * itemsize
    rows = max(1, min(_CAUSAL_ROWS if is_causal else tq, _per_block(row_bytes)))
    for bs in _slices(b, _per_block(rows * row_bytes)):
        for rs in _slices(tq, rows):
            yield bs, rs


def _attention_scores(q, k, bs, rows, keys, mask, is_causal, scale):
    """S = q kᵀ·scale (+ float mask) for batches bs, query rows `rows` and keys [0, keys):
    (b, NH, r, keys), -inf wherever the bool mask or causality forbids attending."""
    xp = array_module(q, k)
    s = xp.matmul(q[bs, :, rows], k[bs, :, :keys].swapaxes(2, 3))
    s *= scale
    allowed = None
    if mask is not None:
        m = mask[bs, :, rows, :keys]
        if m.dtype == xp.bool_:
            allowed = m
        else:
            s += m
    if is_causal:  # top-left aligned: query i sees keys j <= i
        causal = xp.arange(rows.start, rows.stop)[:, None] >= xp.arange(keys)
        allowed = causal if allowed is None else allowed & causal
    if allowed is not None:
        xp.copyto(s, -np.inf, where=~allowed)  # a select, not a multiply: a NaN masked out stays out
    return s


def attention_forward(q, k, v, mask=None, is_causal=False, scale=None):
    """softmax(q kᵀ·scale + mask) v; q (B, NH, Tq, D), k (B, NH, Tk, D), v (B, NH, Tk, Dv)
    -> out (B, NH, Tq, Dv), lse (B, NH, Tq).

    scale defaults to 1/√D. mask: None, bool broadcastable to (B, NH, Tq, Tk) with True = may
    attend, or float added to the scores; is_causal lets query i see keys j <= i (both may apply).
    lse is the log-sum-exp of each row of scaled, masked scores, kept for the backward pass.
    A fully masked row gives out = 0 and lse = -inf. The scores are computed block by block, never
    whole; under is_causal a block of query rows stops at its last visible key."""
    xp = array_module(q, k, v)
    b, nh, tq, d = q.shape
    tk, dv = v.shape[2:]
    scale = d ** -0.5 if scale is None else scale
    if mask is not None:
        mask = xp.broadcast_to(mask, (b, nh, tq, tk))
    dtype = xp.result_type(q, k, v)
    out = xp.empty((b, nh, tq, dv), dtype=dtype)
    lse = xp.empty((b, nh, tq), dtype=dtype)
    for bs, rows in _attention_blocks(b, nh, tq, tk, np.dtype(dtype).itemsize, is_causal):
        keys = min(tk, rows.stop) if is_causal else tk
        s = _attention_scores(q, k, bs, rows, keys, mask, is_causal, scale)
        # softmax(s) = exp(s - m) / l with m the row max, so every exponent is <= 0. A fully masked
        # row has m = -inf: shift it by 0 instead, so its exponents are exp(-inf) = 0, not NaN.
        m = s.max(axis=-1, keepdims=True)
        m = xp.where(m == -np.inf, 0, m)
        s -= m
        p = xp.exp(s, out=s)
        l = p.sum(axis=-1, keepdims=True)
        # l >= 1 on a row that attends anywhere (its max contributes exp(0)), l = 0 on a fully masked one
        l_safe = xp.where(l == 0, 1, l)
        out[bs, :, rows] = xp.matmul(p, v[bs, :, :keys]) / l_safe
        lse[bs, :, rows] = xp.where(l == 0, -np.inf, m + xp.log(l_safe))[..., 0]
    return out, lse


def attention_backward(dout, q, k, v, out, lse, mask=None, is_causal=False, scale=None):
    """Gradients (dq, dk, dv) of attention_forward given dout (B, NH, Tq, Dv) and the saved out, lse.

    P = exp(S - lse) is recomputed block by block (zero on fully masked rows), then
      dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - rowsum(dO ∘ O)),
      dQ = scale·dS K,  dK = scale·dSᵀ Q.
    rowsum(dO ∘ O) = Σ_j P_ij dP_ij is the softmax Jacobian's shared term, computed once per row.
    The gradient with respect to a float mask is not computed."""
    xp = array_module(dout, q, k, v)
    b, nh, tq, d = q.shape
    tk = k.shape[2]
    scale = d ** -0.5 if scale is None else scale
    if mask is not None:
        mask = xp.broadcast_to(mask, (b, nh, tq, tk))
    dtype = xp.result_type(dout, q, k, v)
    dq = xp.empty(q.shape, dtype=dtype)
    dk = xp.zeros(k.shape, dtype=dtype)
    dv = xp.zeros(v.shape, dtype=dtype)
    delta = (dout * out).sum(axis=-1, keepdims=True)
    lse = xp.where(lse == -np.inf, 0, lse)[..., None]  # fully masked rows: exp(-inf - 0) = 0
    for bs, rows in _attention_blocks(b, nh, tq, tk, np.dtype(dtype).itemsize, is_causal):
        keys = min(tk, rows.stop) if is_causal else tk
        s = _attention_scores(q, k, bs, rows, keys, mask, is_causal, scale)
        s -= lse[bs, :, rows]
        p = xp.exp(s, out=s)
        do = dout[bs, :, rows]
        dv[bs, :, :keys] += xp.matmul(p.swapaxes(2, 3), do)
        ds = xp.matmul(do, v[bs, :, :keys].swapaxes(2, 3))  # dP
        ds -= delta[bs, :, rows]
        ds *= p
        dq[bs, :, rows] = xp.matmul(ds, k[bs, :, :keys]) * scale
        dk[bs, :, :keys] += xp.matmul(ds.swapaxes(2, 3), q[bs, :, rows]) * scale
    return dq, dk, dv


# ----------------------------------------------------------------------------- softmax

def softmax_forward(x, log=False):
    """softmax (or log_softmax) over the last axis, in the max-shifted form (exponents <= 0)."""
    xp = array_module(x)
    if x.size == 0:  # max over an empty axis has no identity
        return x.copy()
    z = x - x.max(axis=-1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    if log:
        z -= xp.log(s)
        return z
    e /= s
    return e


def softmax_backward(dy, y, log=False):
    """dx given dy and the forward output y: softmax y∘(dy - Σ dy∘y); log_softmax dy - exp(y)·Σ dy."""
    xp = array_module(dy, y)
    if log:
        return dy - xp.exp(y) * dy.sum(axis=-1, keepdims=True)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


# ----------------------------------------------------------------------------- layer norm

def layer_norm_forward(x, weight, bias, eps):
    """y = (x - mean)·rstd·weight + bias over the last axis; x (N, C), weight/bias (C,) or None
    -> y (N, C), mean (N,), rstd (N,) with rstd = 1/√(var + eps), var biased (divided by C)."""
    xp = array_module(x)
    mean = x.mean(axis=-1)
    xc = x - mean[..., None]
    rstd = 1.0 / xp.sqrt((xc * xc).mean(axis=-1) + eps)
    y = xc
    y *= rstd[..., None]
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y, mean, rstd


def layer_norm_backward(dy, x, weight, mean, rstd):
    """(dx, dweight, dbias) of layer_norm_forward; dweight and dbias are None when weight is None.

    With xhat = (x - mean)·rstd and g = dy·weight, the forward's mean and variance depend on every
    element of the row, so dx = rstd·(g - mean(g) - xhat·mean(g∘xhat)) over the row."""
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dy if weight is None else dy * weight
    dx = g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)
    dx *= rstd[..., None]
    if weight is None:
        return dx, None, None
    rows = tuple(range(dy.ndim - 1))
    return dx, (dy * xhat).sum(axis=rows), dy.sum(axis=rows)


# ----------------------------------------------------------------------------- cross-entropy

def cross_entropy_forward(logits, target, ignore_index=-100):
    """Per-row loss lse - logits[target]; logits (N, C), target integer (N,) -> losses (N,), lse (N,).
    Rows whose target is ignore_index get loss 0."""
    xp = array_module(logits)
    # log Σ exp(x) = m + log Σ exp(x - m) with m the row max: exponents <= 0, finite at logits ~1e4
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + xp.log(xp.exp(logits - m).sum(axis=1))
    valid = target != ignore_index
    picked = logits[xp.arange(logits.shape[0]), xp.where(valid, target, 0)]
    return xp.where(valid, lse - picked, 0), lse


def cross_entropy_backward(dlosses, logits, target, lse, ignore_index=-100):
    """dlogits = dlosses[:, None]·(softmax(logits) - onehot(target)), zero rows where ignored."""
    xp = array_module(logits)
    valid = target != ignore_index
    dlogits = xp.exp(logits - lse[:, None])  # softmax, from the saved log-sum-exp
    dlogits[xp.arange(logits.shape[0]), xp.where(valid, target, 0)] -= 1
    dlogits *= xp.where(valid, dlosses, 0)[:, None]
    return dlogits


# ----------------------------------------------------------------------------- GELU

# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# 631-638, with the coefficients of netlib SPECFUN's CALERF (relative error below 1e-16).
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)


def _rational(t, num, den):
    """Cody's nesting of num(t)/den(t): num[-1] is the top coefficient of the numerator, den is monic."""
    p, q = num[-1] * t, t
    for a, b in zip(num[:-2], den[:-1]):
        p = (p + a) * t
        q = (q + b) * t
    return (p + num[-2]) / (q + den[-1])


def _erf(x):
    """erf(x) elementwise, accurate to float64 rounding (Cody's three rational approximations)."""
    xp = array_module(x)
    y = xp.abs(x)
    # |x| <= 0.46875: erf(x) = x·R(x²)
    t = xp.minimum(y, 0.46875)
    small = x * _rational(t * t, _ERF_A, _ERF_B)
    # |x| > 0.46875: erf(|x|) = 1 - erfc(|x|) with erfc(y) = exp(-y²)·R(y) up to y = 4, and
    # exp(-y²)·(1/√π - R(1/y²)/y²)/y beyond; erfc(27) < 1e-300, so 27 stands in for anything larger.
    mid = _rational(xp.clip(y, 0.46875, 4.0), _ERF_C, _ERF_D)
    yl = xp.clip(y, 4.0, 27.0)
    t = 1.0 / (yl * yl)
    tail = (0.5641895835477562869 - t * _rational(t, _ERF_P, _ERF_Q)) / yl
    # NOTE: exp(-y²) as exp(-u²)·exp(-(y - u)(y + u)) with u = y truncated to 1/16: u² is exact,
    # so the rounding error of y² is not amplified by the exponential.
    yc = xp.clip(y, 0.46875, 27.0)
    u = xp.trunc(yc * 16.0) / 16.0
    erfc = xp.exp(-u * u) * xp.exp(-(yc - u) * (yc + u)) * xp.where(yc <= 4.0, mid, tail)
    large = xp.copysign((0.5 - erfc) + 0.5, x)
    return xp.where(y <= 0.46875, small, large)


def relu_forward(x):
    """max(x, 0); NaN stays NaN (np.maximum propagates it), as PyTorch's relu does."""
    return array_module(x).maximum(x, x.dtype.type(0))


def relu_backward(dy, y):
    """dx = dy where the output y = relu(x) is positive, else 0: y > 0 exactly where x > 0 (a NaN
    x gives a NaN y, which is not > 0), so the output serves and the input need not be kept."""
    xp = array_module(dy, y)
    dtype = xp.result_type(dy, y)
    return xp.where(y > 0, dy, dtype.type(0)).astype(dtype, copy=False)


_SQRT1_2 = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_KAPPA = 0.044715


def gelu_forward(x, approximate="none"):
    """GELU(x) = x·Φ(x), Φ the standard normal CDF. approximate="none": Φ(x) = (1 + erf(x/√2))/2;
    "tanh": Φ(x) ≈ (1 + tanh(√(2/π)·(x + 0.044715·x³)))/2 (PyTorch's formulas)."""
    xp = array_module(x)
    # NOTE: the casts keep a 0-d float32 input float32: NumPy 1.x computes a 0-d array combined
    # with Python floats in float64 (value-based casting).
    if approximate == "none":
        return (x * 0.5 * (1.0 + _erf(x * _SQRT1_2))).astype(x.dtype, copy=False)
    if approximate == "tanh":
        y = 0.5 * x * (1.0 + xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_KAPPA * x * x * x)))
        return y.astype(x.dtype, copy=False)
    raise ValueError(f"gelu: unknown approximate {approximate!r}")


def gelu_backward(dy, x, approximate="none"):
    """dx = dy·GELU'(x). Exact: GELU' = Φ(x) + x·φ(x), φ(x) = exp(-x²/2)/√(2π). tanh: with
    u = √(2/π)(x + κx³), GELU ≈ x(1 + tanh u)/2, so GELU' = (1 + tanh u)/2 + x/2·(1 - tanh²u)·u'."""
    xp = array_module(dy, x)
    dtype = xp.result_type(dy, x)
    if approximate == "none":
        cdf = 0.5 * (1.0 + _erf(x * _SQRT1_2))
        return (dy * (cdf + x * (_INV_SQRT_2PI * xp.exp(-0.5 * x * x)))).astype(dtype, copy=False)
    if approximate == "tanh":
        x2 = x * x
        th = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_KAPPA * x2 * x))
        du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_KAPPA * x2)
        return (dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du)).astype(dtype, copy=False)
    raise ValueError(f"gelu: unknown approximate {approximate!r}")


# ----------------------------------------------------------------------------- embedding, dropout

def embedding_backward(dy, indices, num_embeddings):
    """dweight (V, D): row v is the sum of dy over every position whose index is v;
    dy (..., D), indices integer (...)."""
    xp = array_module(dy)
    d = dy.shape[-1]
    dweight = xp.zeros((num_embeddings, d), dtype=dy.dtype)
    xp.add.at(dweight, indices.ravel(), dy.reshape(-1, d))
    return dweight


def dropout_mask(shape, p, rng, dtype):
    """Inverted-dropout mask of `shape` from the numpy Generator rng: 1/(1-p) with probability
    1 - p, else 0 (p = 0 gives ones and p = 1 zeros, drawing nothing)."""
    if p == 0:
        return np.ones(shape, dtype=dtype)
    if p == 1:
        return np.zeros(shape, dtype=dtype)
    keep = rng.random(shape) >= p
    return keep.astype(dtype) * (1.0 / (1.0 - p))
