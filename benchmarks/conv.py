"""Convolution suite: NCHW conv2d forward, and forward + both gradients, named N×C×H×W→O k×k.

numpy: numpy_ref (im2col over strided windows + one matmul per sample); engine: the native
kernel set; torch: torch.nn.functional.conv2d (and autograd for the gradients).
"""
import numpy as np

from .runner import Case
from .timing import optional_torch

SHAPES = [  # (N, C, H, W, O, kernel, padding)
    (128, 1, 28, 28, 32, 3, 0),     # MNIST CNN layer 1
    (128, 32, 13, 13, 64, 3, 0),    # MNIST CNN layer 2
    (32, 64, 56, 56, 64, 3, 1),
    (32, 128, 28, 28, 128, 3, 1),
]
QUICK_SHAPES = SHAPES[:1] + SHAPES[2:3]


def _conv_impls(kernels, x, w, dy, args, backward):
    def run():
        y = kernels.conv2d_forward(x, w, None, *args)
        if not backward:
            return y
        return (y, kernels.conv2d_grad_input(dy, w, x.shape, *args),
                kernels.conv2d_grad_weight(dy, x, w.shape, *args))
    return run


def _torch_impl(torch, x, w, dy, stride, padding, backward):
    F = torch.nn.functional
    tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))

    def run():
        if not backward:
            with torch.no_grad():
                return F.conv2d(tx, tw, None, stride, padding).numpy()
        xg, wg = tx.clone().requires_grad_(), tw.clone().requires_grad_()
        y = F.conv2d(xg, wg, None, stride, padding)
        y.backward(tdy)
        return y.detach().numpy(), xg.grad.numpy(), wg.grad.numpy()
    return run


def cases(quick, thread_counts):
    from engine.backend import numpy_ref
    from engine.backend.cpu import KERNELS as native

    torch = optional_torch()
    rng = np.random.default_rng(0)
    for n, c, h, w_, o, k, p in (QUICK_SHAPES if quick else SHAPES):
        x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
        w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        oh, ow = h + 2 * p - k + 1, w_ + 2 * p - k + 1
        dy = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
        args = ((1, 1), (p, p), (1, 1), 1)
        flops = 2.0 * n * o * oh * ow * c * k * k
        for backward in (False, True) if not quick else (False,):
            impls = {"numpy": _conv_impls(numpy_ref, x, w, dy, args, backward),
                     "engine": _conv_impls(native, x, w, dy, args, backward)}
            if torch:
                impls["torch"] = _torch_impl(torch, x, w, dy, 1, p, backward)
            name = f"{n}x{c}x{h}x{w_}->{o} {k}x{k}" + (" p1" if p else "") + (" fwd+bwd" if backward else " fwd")
            for t in thread_counts:
                # float32 sums of C·k·k products (and N·OH·OW for the weight gradient)
                tol = 1e-3 * np.sqrt(c * k * k * (n * oh * ow if backward else 1)) ** 0.5
                yield Case("conv", name, flops * (3 if backward else 1), impls, t, rtol=1e-3, atol=tol)
