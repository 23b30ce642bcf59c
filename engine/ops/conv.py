"""2-D convolution and pooling over NCHW tensors.

Shapes: x (N, C, H, W), weight (O, C/groups, KH, KW), y (N, O, OH, OW) with
OH = (H + 2·pad − dil·(KH − 1) − 1) / stride + 1 (floor), and likewise OW.
"""
from engine.autograd import Function
from engine.ops._util import check_same_device, kernels


def _pair(v, name, op, minimum):
    if isinstance(v, int):
        v = (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2 or any(x < minimum for x in v):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints >= {minimum}, got {v}")
    return v


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class Conv2d(Function):
    def forward(self, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        self.args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        return kernels(x).conv2d_forward(x, weight, bias, **self.args)

    def backward(self, grad):
        k = kernels(grad)
        x_t, w_t = self.inputs[:2]
        # Each gradient costs as much as the forward: skip the ones nobody asked for (the input
        # of a network's first layer, a frozen weight).
        dx = k.conv2d_grad_input(grad, self.weight, self.x.shape, **self.args) if x_t.requires_grad else None
        dw = k.conv2d_grad_weight(grad, self.x, self.weight.shape, **self.args) if w_t.requires_grad else None
        if self.has_bias:
            return dx, dw, grad.sum(axis=(0, 2, 3))
        return dx, dw


class MaxPool2d(Function):
    saves_inputs = False

    def forward(self, x, kernel, stride, padding, dilation):
        self.shape = x.shape
        y, self.indices = kernels(x).max_pool2d_forward(x, kernel, stride, padding, dilation)
        return y

    def backward(self, grad):
        return kernels(grad).max_pool2d_backward(grad, self.indices, self.shape)


class AvgPool2d(Function):
    saves_inputs = False

    def forward(self, x, kernel, stride, padding, count_include_pad):
        self.shape, self.args = x.shape, (kernel, stride, padding, count_include_pad)
        return kernels(x).avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)

    def backward(self, grad):
        return kernels(grad).avg_pool2d_backward(grad, self.shape, *self.args)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    op = "conv2d"
    check_same_device(x, weight, *([bias] if bias is not None else []))
    stride, dilation = _pair(stride, "stride", op, 1), _pair(dilation, "dilation", op, 1)
    if isinstance(padding, str):
        raise NotImplementedError("conv2d: string padding ('same'/'valid') is not supported; give ints")
    padding = _pair(padding, "padding", op, 0)
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (O, C/groups, KH, KW), got shape {tuple(weight.shape)}")
    if not isinstance(groups, int) or groups < 1 or x.shape[1] % groups or weight.shape[0] % groups:
        raise ValueError(f"conv2d: groups={groups} must divide the input channels ({x.shape[1]}) "
                         f"and the output channels ({weight.shape[0]})")
    if weight.shape[1] * groups != x.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels but weight of shape "
                         f"{tuple(weight.shape)} expects {weight.shape[1] * groups} "
                         f"(weight.shape[1] * groups)")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype) or x.dtype.kind != "f":
        raise TypeError(f"conv2d: input, weight and bias must share one floating dtype, got "
                        f"{x.dtype}, {weight.dtype}" + (f", {bias.dtype}" if bias is not None else ""))
    oh = _out_size(x.shape[2], weight.shape[2], stride[0], padding[0], dilation[0])
    ow = _out_size(x.shape[3], weight.shape[3], stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d: kernel {tuple(weight.shape[2:])} (dilation {dilation}) is larger "
                         f"than the padded input {x.shape[2] + 2 * padding[0]}x{x.shape[3] + 2 * padding[1]}")
    args = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*args, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _pool_args(op, x, kernel_size, stride, padding, dilation=1):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    kernel = _pair(kernel_size, "kernel_size", op, 1)
    stride = kernel if stride is None or stride == [] else _pair(stride, "stride", op, 1)
    padding = _pair(padding, "padding", op, 0)
    dilation = _pair(dilation, "dilation", op, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half the kernel size {kernel}")
    for i in (0, 1):
        if _out_size(x.shape[2 + i], kernel[i], stride[i], padding[i], dilation[i]) < 1:
            raise ValueError(f"{op}: kernel {kernel} is larger than the padded input "
                             f"{tuple(x.shape[2:])} with padding {padding}")
    return kernel, stride, padding, dilation


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    if ceil_mode:
        raise NotImplementedError("max_pool2d: ceil_mode=True is not supported")
    if return_indices:
        raise NotImplementedError("max_pool2d: return_indices=True is not supported")
    kernel, stride, padding, dilation = _pool_args("max_pool2d", x, kernel_size, stride, padding, dilation)
    return MaxPool2d.apply(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    if ceil_mode:
        raise NotImplementedError("avg_pool2d: ceil_mode=True is not supported")
    kernel, stride, padding, _ = _pool_args("avg_pool2d", x, kernel_size, stride, padding)
    return AvgPool2d.apply(x, kernel=kernel, stride=stride, padding=padding,
                           count_include_pad=count_include_pad)
