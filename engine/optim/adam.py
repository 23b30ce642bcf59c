"""Adam and AdamW (decoupled weight decay), as in PyTorch."""
from engine import backend
from engine._array import array_module, is_gpu_array
from engine.backend import cpu
from engine.optim import updates
from engine.optim.optimizer import Optimizer


class Adam(Optimizer):
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{type(self).__name__}: invalid hyper-parameters lr={lr}, betas={betas}, "
                             f"eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def update(self, param, grad, state, group):
        if not state:
            xp = array_module(grad)
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param.data)
            state["exp_avg_sq"] = xp.zeros_like(param.data)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if is_gpu_array(grad):
            from engine.backend import cuda as gpu

            fused = gpu if gpu.fused_update_takes(param.data, grad, m, v) else None
        else:
            fused = cpu if backend.current() == "native" and cpu.fused_update_takes(param.data, grad, m, v) else None
        (fused or updates).adam_update(param.data, grad, m, v, state["step"], group["lr"], beta1, beta2,
                                       group["eps"], group["weight_decay"], self.decoupled)


class AdamW(Adam):
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
