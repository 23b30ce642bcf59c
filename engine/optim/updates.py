"""One-pass parameter updates on arrays, PyTorch's formulas: the NumPy reference the fused
Cython versions (engine/_fused.pyx) are tested against. Each updates its OUT arrays in place."""


def sgd_update(param, grad, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    """param -= lr·d where d = g + wd·param, with momentum buf = m·buf + (1−dampening)·d
    (buf = d on the first step), and Nesterov d + m·buf."""
    d = grad + weight_decay * param if weight_decay else grad
    if momentum:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    param -= lr * d


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Adam (decoupled=False, L2 added to the gradient) or AdamW (decoupled weight decay):
    m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  param −= lr·m̂ / (√v̂ + eps)."""
    if weight_decay:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    bias1 = 1 - beta1 ** step
    bias2 = 1 - beta2 ** step
    denom = (v / bias2) ** 0.5 + eps
    param -= (lr / bias1) * m / denom
